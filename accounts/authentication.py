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
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from rest_framework.authentication import BaseAuthentication, BasicAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from accounts import crypto, tokens
from integration.errors import PayloadTooLarge, ServiceUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallerIdentity:
    """Who called a channel, as far as its security definition can tell.

    ``response_headers`` are added to the channel's response (Vault hands back a token).
    """

    username: str
    definition: str
    sec_type: str
    is_authenticated: bool = True
    response_headers: dict[str, str] = field(default_factory=dict)


class DefinitionAuthentication(BaseAuthentication):
    """Base of the per-type classes; ``sec_type`` names the type, ``model`` its definition model."""

    sec_type: ClassVar[str]
    model: ClassVar[str]  # "app_label.ModelName"

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
    model = "accounts.BasicAuth"

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


def header_text(meta: Any, key: str) -> str | None:
    """A header's value as text. WSGI hands headers over as latin-1; clients send UTF-8.

    Raises ``ValueError`` for bytes that are not UTF-8 or hold control characters.
    """
    value = meta.get(key)
    if value is None:
        return None
    text = value.encode("latin-1", "replace").decode("utf-8")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("control characters")
    return text


def _shown(value: str | None, limit: int = 100) -> str:
    """A caller-supplied value, safe to echo in a message (truncated, printable)."""
    value = value or ""
    return "".join(char if char.isprintable() else "?" for char in value[:limit])


class TechAccountAuthentication(DefinitionAuthentication):
    """Technical accounts: ``X-Zato-User`` and ``X-Zato-Password`` in clear text (Zato 2.0's wire format).

    The caller is only told that the username or password is incorrect, with the CID, the
    URI and the username it gave; the log says which it was, under the same CID.
    """

    sec_type = "tech_acc"
    model = "accounts.TechAccount"

    def __init__(self, name: str, is_active: bool, password_hash: str) -> None:
        super().__init__(name, is_active)
        self.password_hash = password_hash

    @classmethod
    def from_definition(cls, definition: Any) -> TechAccountAuthentication:
        return cls(definition.name, definition.is_active, definition.password_hash)

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str]:
        meta = request.META
        try:
            username = header_text(meta, "HTTP_X_ZATO_USER")
            password = header_text(meta, "HTTP_X_ZATO_PASSWORD")
        except (UnicodeDecodeError, ValueError):
            raise self._reject(request, "A header is not valid UTF-8 text", meta.get("HTTP_X_ZATO_USER")) from None
        if not username:
            raise self._reject(request, "The header X-Zato-User is missing or empty", username)
        if password is None:
            raise self._reject(request, "The header X-Zato-Password is missing", username)
        # Both checks always run, so timing does not tell which one failed.
        user_ok = hmac.compare_digest(username.encode(), self.name.encode())
        password_ok = crypto.verify_secret(password, self.password_hash)
        if not user_ok:
            raise self._reject(request, "The username is incorrect", username)
        if not password_ok:
            raise self._reject(request, "The password is incorrect", username)
        if not self.is_active:
            raise self._reject(request, "The definition is inactive", username)
        return CallerIdentity(username, self.name, self.sec_type), self.name

    def _reject(self, request: Any, reason: str, username: str | None) -> AuthenticationFailed:
        where = f"URI:[{_shown(request.path_info, 500)}], X_ZATO_USER:[{_shown(username)}]"
        return self.fail(f"{reason}, {where}", request, f"The username or password is incorrect, {where}")

    def authenticate_header(self, request: Any) -> str:
        return "zato-tech-acc"


class ApiKeyAuthentication(DefinitionAuthentication):
    """An API key in a header (``X-API-Key`` unless the definition names another).

    The stored prefix and keyed hash are both compared in constant time, always both.
    """

    sec_type = "apikey"
    model = "accounts.ApiKey"

    def __init__(self, name: str, is_active: bool, header: str, key_prefix: str, key_hash: str) -> None:
        super().__init__(name, is_active)
        self.header = header
        self.environ_key = "HTTP_" + header.upper().replace("-", "_")
        self.key_prefix = key_prefix.encode()
        self.key_hash = key_hash

    @classmethod
    def from_definition(cls, definition: Any) -> ApiKeyAuthentication:
        return cls(definition.name, definition.is_active, definition.header, definition.key_prefix,
                   definition.key_hash)

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str] | None:
        value = request.META.get(self.environ_key)
        if not value:
            return None
        key = value.strip().encode("latin-1", "replace")
        prefix_ok = hmac.compare_digest(key[: len(self.key_prefix)], self.key_prefix)
        key_ok = crypto.verify_secret(key, self.key_hash)
        if not (prefix_ok and key_ok):
            raise self.fail(f"invalid key in {self.header} (prefix given: {_shown(value[:4])!r}...)", request)
        if not self.is_active:
            raise self.fail("the definition is inactive", request)
        return CallerIdentity(self.name, self.name, self.sec_type), self.name

    def authenticate_header(self, request: Any) -> str:
        return "zato-apikey"


class JWTAuthentication(DefinitionAuthentication):
    """``Authorization: Bearer <token>`` with a token from /zato/jwt/log-in (or made on someone's behalf).

    A token is good for the definition it was issued for, while its server-side session
    lives; every good use extends the session by the definition's TTL.
    """

    sec_type = "jwt"
    model = "accounts.JWTDefinition"

    def __init__(self, name: str, is_active: bool, definition_id: int, username: str, password_hash: str,
                 ttl: int) -> None:
        super().__init__(name, is_active)
        self.definition_id = definition_id
        self.username = username
        self.password_hash = password_hash
        self.ttl = ttl

    @classmethod
    def from_definition(cls, definition: Any) -> JWTAuthentication:
        return cls(definition.name, definition.is_active, definition.pk, definition.username,
                   definition.password_hash, definition.ttl)

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self.fail("the Authorization header is not `Bearer <token>`", request)
        try:
            claims = tokens.open_token(token.strip())
        except tokens.InvalidToken as exc:
            raise self.fail(f"the token {exc}", request) from None
        if claims.definition_id != self.definition_id or claims.username != self.username:
            raise self.fail(f"the token was issued for another definition (user {_shown(claims.username)!r})",
                            request)
        if not self.is_active:
            raise self.fail("the definition is inactive", request)
        try:
            live = tokens.use(claims.sid, self.ttl)
        except tokens.SessionStoreUnavailable as exc:
            logger.error("[%s] JWT session store unavailable: %s", getattr(request, "cid", "-"), exc)
            raise ServiceUnavailable("Tokens cannot be checked right now; try again later") from None
        if not live:
            raise self.fail("the token has expired or was revoked (logged out)", request)
        return CallerIdentity(self.username, self.name, self.sec_type), self.name

    def check_password(self, password: str) -> bool:
        return crypto.verify_secret(password, self.password_hash)

    def authenticate_header(self, request: Any) -> str:
        return "Bearer"


class VaultAuthentication(DefinitionAuthentication):
    """Callers authenticated by a Vault server (``connections.vault``): token, userpass or GitHub.

    Vault saying no is a 401; Vault not answering is a 503. Nobody passes without a yes.
    """

    sec_type = "vault_conn_sec"
    model = "connections.VaultConnection"
    message = "Failed to authenticate"

    def __init__(self, name: str, is_active: bool, gate: Any) -> None:
        super().__init__(name, is_active)
        self.gate = gate

    @classmethod
    def from_definition(cls, definition: Any) -> VaultAuthentication:
        from connections.vault import VaultGate

        return cls(definition.name, definition.is_active, VaultGate.from_definition(definition))

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str]:
        from connections.vault import VaultDenied, VaultUnavailable

        cid = getattr(request, "cid", "-")
        if not self.is_active:
            raise self.fail("the definition is inactive", request, self.message)
        try:
            login = self.gate.login(request.META, lambda: request.body, cid)
        except RequestDataTooBig:
            raise PayloadTooLarge("Request body too large") from None
        except VaultDenied as exc:
            raise self.fail(f"Vault: {exc}", request, self.message) from None
        except VaultUnavailable as exc:
            logger.error("[%s] Vault for `%s` is unavailable: %s", cid, self.name, exc)
            raise ServiceUnavailable("The security backend cannot be reached; try again later") from None
        if login is None:
            raise self.fail("no Vault credentials in the request", request, self.message)
        headers = {"X-Zato-Vault-Token": login.client_token}
        if login.lease_duration is not None:
            headers["X-Zato-Vault-Token-Lease-Duration"] = str(login.lease_duration)
        return CallerIdentity(login.username, self.name, self.sec_type, response_headers=headers), self.name

    def authenticate_header(self, request: Any) -> str:
        return "zato-vault"


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
