"""Who is calling the management API (and ``/metrics``): API tokens, verified sessions, and Basic for development.

The management API can deploy arbitrary Python, so it must not be an easier way in than the
admin, which asks for a TOTP code as well as the password. It accepts, in this order
(``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``):

1. **API tokens** (``ApiTokenAuthentication``): ``Authorization: Token <token>``, or ``Bearer``,
   for scripts and automation. A token is made by a user already past the TOTP login (the admin's
   **API tokens** page) or by whoever runs ``manage.py api_token create USER``, and is shown once.
   Only its lookup prefix and a keyed hash are stored; it has an expiry, a last-used time (written at
   most once a minute per process, not on every call) and can be revoked, which takes effect at once
   since every call reads the row. A read-only token may only read (``integration.permissions``).
   Wrong tokens count towards the brute-force limits (``accounts.limits``), per client address.
2. **The admin's browser session**, when it passed the TOTP step (django-otp's ``is_verified()``)
   or ``ADMIN_REQUIRE_TOTP`` is off.
3. **HTTP Basic with a user's password** (``AdminBasicAuthentication``), only when
   ``MANAGE_API_BASIC_AUTH`` is on (off by default; ``make run`` turns it on for local development,
   as it turns TOTP off). It is throttled and audited like the admin login form
   (``accounts.throttle``: the same counts, per username and per address). Verified credentials are
   remembered for a few minutes under an HMAC with a random per-process key, next to the user's
   stored hash, so scripts do not pay ~0.3 s of PBKDF2 per call. When it is off, a Basic header is
   refused with a 401 that says what to use instead.

``/metrics`` (``check_metrics_access``) takes ``Authorization: Bearer <METRICS_TOKEN>`` (what
Prometheus sends with ``authorization: {credentials: ...}``) or any valid API token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from datetime import timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth import authenticate as django_authenticate
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled

from accounts import crypto, limits, throttle
from accounts.authentication import parse_basic
from accounts.models import API_TOKEN_LOOKUP_LENGTH, API_TOKEN_PREFIX, ApiToken, LoginAttempt
from integration.errors import TooManyRequests, Unauthorized

logger = logging.getLogger(__name__)

Kind = LoginAttempt.Kind
Stage = LoginAttempt.Stage
MAX_TOKEN_LENGTH = 200
LAST_USED_EVERY = 60.0  # seconds between writes of a token's last_used, per process

BASIC_OFF = (
    "HTTP Basic with a user's password is off for the management API (MANAGE_API_BASIC_AUTH=false): it would "
    "skip the admin's TOTP step. Use an API token: make one in the admin (API tokens) or with "
    "`python manage.py api_token create USER`, then send `Authorization: Token <token>`."
)
METRICS_HELP = (
    "Send `Authorization: Bearer <METRICS_TOKEN>` (set METRICS_TOKEN for your Prometheus scraper) or an API token "
    "(`python manage.py api_token create USER --read-only`)."
)


class TokenRefused(Exception):
    """An API token was not accepted: ``message`` for the caller, ``reason`` for the log and audit list."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def parse_token(header: str) -> str | None:
    """The token of ``Token <token>`` or ``Bearer <token>``; None for other schemes or no header.

    Raises ``ValueError`` for a Token/Bearer header that holds no single, plausible token.
    """
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer"):
        return None
    token = rest.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH or any(char.isspace() or not char.isprintable() for char in token):
        raise ValueError(f"send `Authorization: {scheme} <token>` with one token of at most {MAX_TOKEN_LENGTH} "
                         "printable characters")
    return token


_touched: dict[int, float] = {}
_touched_lock = threading.Lock()


def check_api_token(token: str) -> ApiToken:
    """The valid token row for ``token`` (user loaded), or ``TokenRefused``; one query, plus a rare write."""
    row = None
    if token.startswith(API_TOKEN_PREFIX) and len(token) > API_TOKEN_LOOKUP_LENGTH:
        row = ApiToken.objects.select_related("user").filter(prefix=token[:API_TOKEN_LOOKUP_LENGTH]).first()
    if row is None or not crypto.verify_secret(token, row.token_hash):
        raise TokenRefused("Invalid API token", f"invalid API token (prefix given: {token[:8]!r})")
    # Past this point the caller holds a real token: telling why it no longer works helps and leaks nothing.
    if row.revoked is not None:
        raise TokenRefused("This API token was revoked", f"revoked token {row.prefix}")
    if row.expires is not None and row.expires <= timezone.now():
        raise TokenRefused("This API token has expired; make a new one", f"expired token {row.prefix}")
    user = row.user
    if not (user.is_active and user.is_staff):
        raise TokenRefused("This API token's user may not use the management API (inactive or not staff)",
                           f"token {row.prefix} of an inactive or non-staff user")
    _touch(row)
    return row


def _touch(row: ApiToken) -> None:
    """Record the use at most once a minute per process; the conditional UPDATE keeps processes from repeating it."""
    now = time.monotonic()
    if now - _touched.get(row.pk, -LAST_USED_EVERY) < LAST_USED_EVERY:
        return
    with _touched_lock:
        if len(_touched) > 10_000:
            _touched.clear()
        _touched[row.pk] = now
    when = timezone.now()
    ApiToken.objects.filter(pk=row.pk).filter(
        Q(last_used__isnull=True) | Q(last_used__lt=when - timedelta(seconds=LAST_USED_EVERY))
    ).update(last_used=when)


class ApiTokenAuthentication(BaseAuthentication):
    """``Authorization: Token <token>`` (or ``Bearer``): the token's user, with the token as ``request.auth``."""

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        try:
            token = parse_token(request.META.get("HTTP_AUTHORIZATION", ""))
        except ValueError as exc:
            raise AuthenticationFailed(f"Malformed Authorization header: {exc}") from None
        if token is None:
            return None
        attempt = limits.Attempt.of(request, Kind.API, "API token", stage=Stage.KEY)
        try:
            attempt.refuse_if_blocked()
            try:
                row = check_api_token(token)
            except TokenRefused as exc:
                logger.warning("[%s] Management API token refused from %s: %s", attempt.cid, attempt.address,
                               exc.reason)
                if exc.message == "Invalid API token":  # a guess; a real token that has lapsed is not
                    attempt.failed(exc.reason)
                raise AuthenticationFailed(exc.message) from None
            attempt.passed()
        except TooManyRequests as exc:
            raise _throttled(exc) from None
        return row.user, row

    def authenticate_header(self, request: Any) -> str:
        return 'Token realm="Switchboard management API"'


def _throttled(exc: TooManyRequests) -> Throttled:
    return Throttled(wait=int(exc.headers["Retry-After"]), detail="Too many failed attempts.")


class VerifiedSessionAuthentication(SessionAuthentication):
    """The admin's session, but only once it passed the TOTP step when ``ADMIN_REQUIRE_TOTP`` is on."""

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None or not settings.ADMIN_REQUIRE_TOTP:
            return result
        is_verified = getattr(result[0], "is_verified", None)
        if not (callable(is_verified) and is_verified()):
            raise AuthenticationFailed("This browser session has not passed the admin's TOTP step: log in to the "
                                       "admin again with your code, or use an API token.")
        return result


class AdminBasicAuthentication(BasicAuthentication):
    """HTTP Basic with a staff user's password: only with ``MANAGE_API_BASIC_AUTH``, throttled like the admin login.

    Django's password check (PBKDF2, ~0.3 s by design) on every call would make scripted use
    crawl. A successful check is remembered under an HMAC of username and password with a
    per-process random key (never the password itself) for ``TTL`` seconds, next to the user's
    stored password hash, so a changed password, a deactivated user or a different password all
    miss it and go through the full check again. The throttle is asked first, every time.
    """

    TTL = 300.0
    MAX_ENTRIES = 10_000
    _cache: ClassVar[dict[bytes, tuple[int, str, float]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _key: ClassVar[bytes] = secrets.token_bytes(32)

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        credentials = parse_basic(request.META.get("HTTP_AUTHORIZATION", ""))
        if credentials is None:
            return None
        if not settings.MANAGE_API_BASIC_AUTH:
            raise AuthenticationFailed(BASIC_OFF)
        if isinstance(credentials, str):
            raise AuthenticationFailed(f"Invalid HTTP Basic header: {credentials}.")
        return self.check(request, *credentials)

    def check(self, request: Any, username: str, password: str) -> tuple[Any, None]:
        address = throttle.client_address(request)
        wait = throttle.wait_for(username, address)
        if wait:
            logger.warning("[%s] Management API log-in of %r from %s refused: throttled, %d s left",
                           getattr(request._request, "cid", "-"), username[:100], address, wait)
            raise Throttled(wait=wait, detail="Too many failed attempts.")
        key = hmac.new(self._key, f"{len(username)}:{username}:{password}".encode(), "sha256").digest()
        cached = self._cache.get(key)
        if cached is not None and cached[2] > time.monotonic():
            user = get_user_model().objects.filter(pk=cached[0]).first()
            if user is not None and user.is_active and user.is_staff and hmac.compare_digest(user.password,
                                                                                              cached[1]):
                return user, None
        attempt = throttle.begin(request._request, username, kind=Kind.API)
        user = django_authenticate(request._request, username=username, password=password)
        if user is None:
            throttle.finish(attempt, LoginAttempt.Outcome.FAILURE, "wrong password", user=throttle.user_named(username))
            raise AuthenticationFailed("Invalid username or password.")
        if not (user.is_active and user.is_staff):
            throttle.finish(attempt, LoginAttempt.Outcome.FAILURE, "not a staff account", user=user)
            raise AuthenticationFailed("Only staff users may use the management API.")
        throttle.finish(attempt, LoginAttempt.Outcome.SUCCESS, user=user)
        with self._lock:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = (user.pk, user.password, time.monotonic() + self.TTL)
        return user, None


def check_metrics_access(request: Any) -> None:
    """Let a ``/metrics`` scrape through, or raise ``Unauthorized`` / ``TooManyRequests`` (the one error shape)."""
    challenge = {"WWW-Authenticate": 'Bearer realm="metrics"'}
    try:
        token = parse_token(request.META.get("HTTP_AUTHORIZATION", ""))
    except ValueError as exc:
        raise Unauthorized(f"Malformed Authorization header: {exc}. {METRICS_HELP}", headers=challenge) from None
    if token is None:
        raise Unauthorized(f"/metrics needs a token. {METRICS_HELP}", headers=challenge)
    attempt = limits.Attempt.of(request, Kind.API, "metrics", stage=Stage.KEY)
    attempt.refuse_if_blocked()
    expected = settings.METRICS_TOKEN
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        attempt.passed()
        return
    try:
        check_api_token(token)
    except TokenRefused as exc:
        attempt.failed(f"wrong metrics token ({exc.reason})")
        raise Unauthorized(f"Wrong token. {METRICS_HELP}", headers=challenge) from None
    attempt.passed()
