"""One DRF authentication class per security definition type.

They keep DRF's contract: ``authenticate()`` returns ``None`` when the request carries no
credentials of this kind, raises ``AuthenticationFailed`` when it carries wrong ones, and
returns ``(identity, definition_name)`` on success; ``authenticate_header()`` gives the
``WWW-Authenticate`` challenge for the 401. Each instance is built once per snapshot from
a definition's row (``from_definition``), so authenticating makes no queries.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from rest_framework.authentication import BaseAuthentication, BasicAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from accounts import crypto

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallerIdentity:
    """Who called a channel, as far as its security definition can tell."""

    username: str
    definition: str
    sec_type: str
    is_authenticated: bool = True


class DefinitionAuthentication(BaseAuthentication):
    """Base of the per-type classes; ``sec_type`` names the type it handles."""

    sec_type: ClassVar[str]

    def __init__(self, name: str, is_active: bool) -> None:
        self.name = name
        self.is_active = is_active

    @classmethod
    def from_definition(cls, definition: Any) -> DefinitionAuthentication:
        raise NotImplementedError

    def fail(self, reason_for_log: str, request: Any, message: str = "Unauthorized") -> AuthenticationFailed:
        """A 401 whose body says little; the precise reason goes to the log under the CID."""
        cid = getattr(request, "cid", "-")
        logger.warning("[%s] Security definition `%s` rejected the caller: %s", cid, self.name, reason_for_log)
        return AuthenticationFailed(message)


class BasicAuthDefinitionAuthentication(DefinitionAuthentication):
    """HTTP Basic Auth against one definition's username and (hashed) password."""

    sec_type = "basic_auth"

    def __init__(self, name: str, is_active: bool, username: str, password_hash: str, realm: str) -> None:
        super().__init__(name, is_active)
        self.username = username
        self.password_hash = password_hash
        self.realm = realm

    @classmethod
    def from_definition(cls, definition: Any) -> BasicAuthDefinitionAuthentication:
        return cls(definition.name, definition.is_active, definition.username, definition.password_hash,
                   definition.realm)

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str] | None:
        # Read the one header directly: DRF's helper builds request.headers from the whole environ.
        header = request.META.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace").split()
        if not header or header[0].lower() != b"basic":
            return None
        if len(header) != 2:
            raise self.fail("malformed Authorization header", request)
        try:
            decoded = base64.b64decode(header[1], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise self.fail("Authorization header is not valid base64 UTF-8", request) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise self.fail("no ':' between username and password", request)
        # Both comparisons always run, so timing does not tell which one failed.
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = crypto.verify_secret(password, self.password_hash)
        if not (user_ok and password_ok):
            raise self.fail(f"invalid username or password (username given: {username!r})", request)
        if not self.is_active:
            raise self.fail("the definition is inactive", request)
        return CallerIdentity(username, self.name, self.sec_type), self.name

    def authenticate_header(self, request: Any) -> str:
        return f'Basic realm="{self.realm}"'


class AdminBasicAuthentication(BasicAuthentication):
    """HTTP Basic for the management API, with verified credentials remembered for a while.

    Django's password check (PBKDF2, ~0.3 s by design) on every call makes scripted use of
    the API crawl. A successful check is remembered under an HMAC of username and password
    (never the password itself) for ``TTL`` seconds, next to the user's stored password
    hash, so a changed password, a deactivated user or a different password all miss the
    cache and go through the full check again.
    """

    TTL = 300.0
    MAX_ENTRIES = 10_000
    _cache: ClassVar[dict[str, tuple[int, str, float]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"basic" or len(header) != 2:
            return super().authenticate(request)
        key = hmac.new(_cache_key(), header[1], "sha256").hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[2] > time.monotonic():
            user = get_user_model().objects.filter(pk=cached[0]).first()
            if user is not None and user.is_active and hmac.compare_digest(user.password, cached[1]):
                return user, None
        result = super().authenticate(request)
        if result is not None:
            with self._lock:
                if len(self._cache) >= self.MAX_ENTRIES:
                    self._cache.clear()
                self._cache[key] = (result[0].pk, result[0].password, time.monotonic() + self.TTL)
        return result


def _cache_key() -> bytes:
    return crypto.derived_key("admin-basic-cache")
