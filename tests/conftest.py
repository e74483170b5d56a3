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
    """A management API client logged in as Alice with HTTP Basic."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_header("alice", ALICE_PASSWORD))
    return client


@pytest.fixture
def admin_client_alice(client: Any, alice: Any) -> Any:
    """The Django test client, logged in to the admin as Alice."""
    client.force_login(alice)
    return client


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
def _fast_password_hashing(settings: Any) -> None:
    """Django's default PBKDF2 costs ~0.3 s per check; tests of Basic-authenticated API calls need none of it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
