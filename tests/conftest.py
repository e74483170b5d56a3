"""Project-wide fixtures: the cast of users, API clients, and builders for config objects.

The cast: Alice is an administrator (may use the admin and the management API); Bob is
a staff user without admin rights (the API refuses him). External callers of channels
authenticate with security definitions, built by ``basic_auth``.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import BasicAuth
from integration import snapshot
from integration.deploy import deploy_sources, sync_builtin
from integration.models import DeployedService, RestChannel

ALICE_PASSWORD = "alice-password-1"
BOB_PASSWORD = "bob-password-1"


@pytest.fixture(autouse=True)
def _fresh_snapshot() -> Any:
    """Each test starts from the database, not from a snapshot a rolled-back test built."""
    snapshot.reset()
    yield
    snapshot.reset()


@pytest.fixture(autouse=True)
def _no_poller_in_the_test_process(settings: Any) -> None:
    """Embedded Celery workers would start the config poller here; server processes that tests start keep theirs."""
    settings.CONFIG_POLLER = False


@pytest.fixture
def builtins(db: None) -> None:
    """The built-in and demo services, recorded as after `migrate` (test DBs are flushed)."""
    sync_builtin()


@pytest.fixture
def alice(db: None) -> Any:
    """Alice, an administrator."""
    return get_user_model().objects.create_superuser("alice", "alice@example.com", ALICE_PASSWORD)


@pytest.fixture
def bob(db: None) -> Any:
    """Bob, staff but not an administrator: the management API refuses him."""
    return get_user_model().objects.create_user("bob", "bob@example.com", BOB_PASSWORD, is_staff=True)


@pytest.fixture
def api(alice: Any) -> APIClient:
    """A management API client authenticated as Alice with an API token (what scripts use)."""
    return api_client_for(alice)


def api_client_for(user: Any, **token_options: Any) -> APIClient:
    """A management API client sending a new API token of ``user`` (``read_only=True`` for a read-only one)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=token_header(user, **token_options))
    return client


def token_header(user: Any, **token_options: Any) -> str:
    """``Token <token>`` for a new API token of ``user``: the ``Authorization`` header scripts send."""
    from accounts.models import ApiToken

    _row, token = ApiToken.issue(user, name="tests", **token_options)
    return f"Token {token}"


@pytest.fixture
def totp_device(db: None) -> Callable[..., tuple[Any, bytes]]:
    """``totp_device(user, key=None)`` -> (confirmed TOTPDevice, key bytes); replaces the user's devices."""
    from accounts import enrolment

    def _make(user: Any, key: bytes | None = None) -> tuple[Any, bytes]:
        return enrolment.reset_key(user, key)

    return _make


def verified_login(client: Any, user: Any, device: Any) -> Any:
    """Log ``client`` in as ``user`` with a TOTP-verified session, as a real login leaves it.

    ``django_otp.login`` stores the device's persistent id under ``DEVICE_ID_SESSION_KEY``;
    ``OTPMiddleware`` reads it back on every request, so the admin sees a verified user.
    """
    from django_otp import DEVICE_ID_SESSION_KEY

    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def admin_client_alice(client: Any, alice: Any, totp_device: Callable[..., tuple[Any, bytes]]) -> Any:
    """The Django test client, logged in to the admin as Alice, TOTP-verified (ADMIN_REQUIRE_TOTP is on)."""
    device, _key = totp_device(alice)
    return verified_login(client, alice, device)


class Clock:
    """Unix time that moves only when the test says so."""

    def __init__(self, start: float = 1_899_999_995.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def login_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One controlled clock for TOTP codes (``accounts.totp``) and login throttling (``accounts.throttle``).

    It starts 5 s into a 30-second step, so a test that moves it by less than 25 s stays in that step.
    """
    from accounts import throttle, totp

    fake = Clock()
    monkeypatch.setattr(totp, "clock", fake)
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def deploy(db: None) -> Callable[..., list[str]]:
    """Deploy a module from source text; returns the service names or raises on rejection."""

    def _deploy(filename: str, source: str) -> list[str]:
        (outcome,) = deploy_sources([(filename, textwrap.dedent(source))], "api")
        if not outcome.ok:
            raise AssertionError(outcome.error)
        return outcome.services

    return _deploy


@pytest.fixture
def make_channel(builtins: None) -> Callable[..., RestChannel]:
    """Create a REST channel; ``service`` is a service name."""

    def _make(url_path: str, service: str, **fields: Any) -> RestChannel:
        fields.setdefault("name", f"{fields.get('method', '') or 'any'} {url_path} {fields.get('accept', '')}")
        return RestChannel.objects.create(
            url_path=url_path, service=DeployedService.objects.get(name=service), **fields
        )

    return _make


@pytest.fixture
def basic_auth(db: None) -> Callable[..., BasicAuth]:
    """Create a Basic Auth definition with a known password."""

    def _make(name: str = "crm", username: str = "crm-user", password: str = "crm-secret", **fields: Any) -> BasicAuth:
        definition = BasicAuth(name=name, username=username, **fields)
        definition.set_password(password)
        definition.save()
        return definition

    return _make


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    """Django's default PBKDF2 costs ~0.3 s per hash; most tests need none of it.

    Passwords of users and security definitions are hashed with MD5 here, except in tests that start
    server processes (their ``server_env*`` fixtures): those processes use the real settings, which
    cannot read an MD5 hash, so what the test stores must be hashed as in production.
    """
    if any(name.startswith("server_env") for name in request.fixturenames):
        return
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_credential_failures_from_other_tests() -> Any:
    """Brute-force counts live in Redis, which test transactions do not roll back: each test starts at zero.

    Only this database's keys are removed (``accounts.limits`` namespaces them by database), so
    parallel test workers, each on its own database, do not clear each other's.
    """
    from accounts import limits

    def clear() -> None:
        limits.forget()
        if hasattr(limits.store, "cache_clear"):  # not while a test has replaced it
            limits.store.cache_clear()  # its namespace follows the database this test runs on
        store = limits.store()
        if isinstance(store, limits.RedisFailures):
            try:
                keys = list(store.client.scan_iter(match=store.prefix + "*", count=1000))
                if keys:
                    store.client.delete(*keys)
            except redis.RedisError:
                pass  # a test pointed REDIS_URL at nothing (its settings are restored after this): nothing stored

    clear()
    yield
    clear()
