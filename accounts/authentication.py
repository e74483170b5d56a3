"""One DRF authentication class per security definition type, behind the brute-force limits.

They keep DRF's contract: ``authenticate()`` returns ``None`` when the request carries no
credentials of this kind, raises ``AuthenticationFailed`` when it carries wrong ones, and
returns ``(identity, definition_name)`` on success; ``authenticate_header()`` gives the
``WWW-Authenticate`` challenge for the 401. Each instance is built once per snapshot from
a definition's row (``from_definition``), so authenticating makes no queries.

``DefinitionAuthentication.authenticate`` wraps each type's own ``check`` in the limits of
``accounts.limits``: a key blocked after too many failures is refused (429) before any check,
wrong credentials are counted, and a success is refused all the same if its key is blocked.

**Verified credentials are remembered.** Passwords are stored with a slow hash (~0.3-0.5 s;
``accounts.crypto``). Each process remembers the credentials it has verified, keyed by a MAC
(keyed BLAKE2b) with a random key of its own (made at start and again in every forked child,
never stored) over the stored hash, the username and the password: never the plaintext. A
changed password changes the stored hash, so its entries never match again; a deactivated
definition is checked on every call. A remembered credential costs one MAC instead of a slow hash.

**The hot path.** Each authenticator (one per definition per snapshot) also remembers the calls it
let through: a MAC of the credential headers as sent (``memo_key``; keyed BLAKE2b with the same
per-process key) maps to the result. A caller sending the same headers again, from an address the
brute-force limits have recently said is clear (``limits.recently_clear``), gets the same answer
for one MAC and three dict lookups: no parsing, no Attempt, no new identity. Anything else takes
the full path above. The memo goes with the authenticator, so a changed definition starts afresh;
entries never outlive what they stand for (``memo_expiry``: a Vault login's cache entry).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from django.apps import apps
from django.db import DatabaseError
from rest_framework.authentication import BaseAuthentication

from accounts import crypto, limits, tokens
from accounts.throttle import client_address
from integration import signals
from integration.channels.security import (  # the contract these classes meet
    Authenticator,
    CallerIdentity,
    CredentialsRefused,
    Session,
    wsgi,
)
from integration.errors import ServiceUnavailable

__all__ = [
    "ApiKeyAuthentication", "BasicAuthDefinitionAuthentication", "CallerIdentity", "CredentialsRefused",
    "DefinitionAuthentication", "JWTAuthentication", "TechAccountAuthentication",
]

logger = logging.getLogger(__name__)

Kind = limits.Kind
Stage = limits.Stage
CHANNEL = Kind.CHANNEL.value  # a plain str: read on every request, where enum attribute access costs

MAX_REMEMBERED = 10_000
FOREVER = float("inf")
_process_key = secrets.token_bytes(32)
_verified: set[bytes] = set()
_upgraded: set[str] = set()


def _new_process_key() -> None:
    """A forked worker gets a key of its own, and forgets what its parent had verified."""
    global _process_key
    _process_key = secrets.token_bytes(32)
    _verified.clear()


os.register_at_fork(after_in_child=_new_process_key)


def _fingerprint(stored: str, *parts: str) -> bytes:
    """A MAC naming one verified credential; each part length-prefixed, so parts cannot run together.

    Keyed BLAKE2b is a MAC in its own right and costs less than half of an HMAC-SHA256; this
    runs on every request.
    """
    chunks = [stored.encode()]
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        chunks += (len(raw).to_bytes(4, "big"), raw)
    return hashlib.blake2b(b"".join(chunks), key=_process_key, digest_size=32).digest()


def header_fingerprint(value: str) -> bytes:
    """A MAC naming the credential headers a caller sent (``memo_key``): one C call on the hot path.

    Several headers are passed as the ``repr`` of their tuple, which quotes each value, so values
    cannot run together.
    """
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), key=_process_key, digest_size=16).digest()


class DefinitionAuthentication(BaseAuthentication, Authenticator):
    """Base of the per-type classes; ``sec_type`` names the type, ``model`` its definition model."""

    sec_type: ClassVar[str]
    model: ClassVar[str]  # "app_label.ModelName"
    stage: ClassVar[str] = Stage.PASSWORD.value  # what the audit list calls the check

    def __init__(self, name: str, is_active: bool) -> None:
        self.name = name
        self.is_active = is_active
        self._memo: dict[bytes | str, tuple[tuple[CallerIdentity, str], float]] = {}  # see the module docstring

    @classmethod
    def from_definition(cls, definition: Any) -> DefinitionAuthentication:
        raise NotImplementedError

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str] | None:
        """DRF's contract, with the brute-force limits of ``accounts.limits`` around the type's ``check``.

        A call this authenticator let through before, with the very same credential headers, from
        an address the limits recently found clear, is answered from the memo (module docstring).
        """
        address = client_address(request)
        memo = self.memo_key(request.META)
        if memo is not None:
            known = self._memo.get(memo)
            if known is not None and known[1] > time.monotonic() and limits.recently_clear(
                    (CHANNEL, self.name, address)):
                return known[0]
        attempt = limits.Attempt(CHANNEL, self.name, address, request, stage=self.stage)
        attempt.refuse_if_blocked()
        try:
            result = self.check(request, attempt)
        except CredentialsRefused as exc:
            if exc.counts:
                attempt.failed(exc.reason, username=exc.username)
            raise
        if result is not None:
            attempt.passed()
            if memo is not None:
                self._remember(memo, result)
        return result

    def memo_key(self, meta: Mapping[str, str]) -> bytes | str | None:
        """A MAC of the headers that decide this type's answer (``header_fingerprint``); None: never memoised."""
        return None

    def memo_expiry(self, memo: bytes | str) -> float:
        """Until when (``time.monotonic``) a success may be answered from the memo; 0 for not at all."""
        return FOREVER

    def _remember(self, memo: bytes | str, result: tuple[CallerIdentity, str]) -> None:
        expiry = self.memo_expiry(memo)
        if expiry <= 0:
            return
        if len(self._memo) >= MAX_REMEMBERED:
            self._memo.clear()
        self._memo[memo] = (result, expiry)

    def check(self, request: Any, attempt: limits.Attempt) -> tuple[CallerIdentity, str] | None:
        """The type's own check (DRF's contract); ``attempt.before_slow_check()`` before anything slow."""
        raise NotImplementedError

    def fail(self, reason_for_log: str, request: Any, message: str = "Unauthorized", *, counts: bool = True,
             username: str = "") -> CredentialsRefused:
        """A 401 whose body says little; the precise reason goes to the log under the CID.

        ``counts=False`` for refusals that are not guesses (an inactive definition, an expired
        JWT session): they do not count towards the brute-force limits.
        """
        cid = getattr(request, "cid", "-")
        logger.warning("[%s] Security definition `%s` rejected the caller: %s", cid, self.name, reason_for_log)
        return CredentialsRefused(message, reason=reason_for_log, counts=counts, username=username)

    def password_matches(self, attempt: limits.Attempt, stored: str, password: str, *, username: str = "",
                         remember: bool = True) -> bool:
        """Check ``password`` against ``stored`` (a slow hash), unless this process has verified it already.

        ``remember=False`` when the check as a whole fails anyway (a wrong username), so that only
        credentials that passed are ever remembered.
        """
        fingerprint = _fingerprint(stored, username, password)
        if fingerprint in _verified:
            return True
        attempt.before_slow_check()
        result = crypto.check_password(password, stored)
        if result.ok and remember:
            if len(_verified) >= MAX_REMEMBERED:
                _verified.clear()
            _verified.add(fingerprint)
        if result.ok and result.upgrade:
            self.store_upgrade("password_hash", stored, crypto.hash_password(password))
        return result.ok

    def store_upgrade(self, field_name: str, stored: str, new: str) -> None:
        """Replace an old-format hash after a successful check; every process then reloads the definition.

        The UPDATE only applies while the row still holds ``stored``, so a password changed meanwhile
        is never overwritten, and racing processes upgrade it once.
        """
        if stored in _upgraded:
            return
        _upgraded.add(stored)
        try:
            updated = apps.get_model(self.model).objects.filter(name=self.name, **{field_name: stored}).update(
                **{field_name: new})
            if updated:
                logger.info("Security definition `%s`: stored hash upgraded to the current format", self.name)
                signals.changed()
        except DatabaseError:
            logger.exception("Security definition `%s`: the upgraded hash could not be stored", self.name)


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

    def memo_key(self, meta: Mapping[str, str]) -> bytes | None:
        header = meta.get("HTTP_AUTHORIZATION")
        return header_fingerprint(header) if header else None

    def check(self, request: Any, attempt: limits.Attempt) -> tuple[CallerIdentity, str] | None:
        credentials = parse_basic(request.META.get("HTTP_AUTHORIZATION", ""))
        if credentials is None:
            return None
        if isinstance(credentials, str):
            raise self.fail(credentials, request, counts=False)  # no password was checked: not a guess
        username, password = credentials
        # Both comparisons always run, so timing does not tell which one failed.
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = self.password_matches(attempt, self.password_hash, password, username=username,
                                            remember=user_ok)
        if not (user_ok and password_ok):
            raise self.fail(f"invalid username or password (username given: {_shown(username)!r})", request,
                            username=username)
        if not self.is_active:
            raise self.fail("the definition is inactive", request, counts=False, username=username)
        return CallerIdentity(username, self.name, self.sec_type), self.name

    def authenticate_header(self, request: Any) -> str:
        return f'Basic realm="{self.realm}"'

    def has_header_credentials(self, meta: Mapping[str, str]) -> bool:
        return meta.get("HTTP_AUTHORIZATION", "").lstrip().lower().startswith("basic ")

    def websocket_credentials(self, *, token: str | None = None, username: str | None = None,
                              password: str | None = None) -> dict[str, str]:
        if username is None or password is None:
            raise CredentialsRefused("This channel expects a username and password")
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return {"HTTP_AUTHORIZATION": "Basic " + encoded}


def parse_basic(header: str) -> tuple[str, str] | str | None:
    """An ``Authorization`` header as WSGI hands it over: (username, password), a reason it is bad, or None.

    None means "not Basic" (another scheme, or no header). Usernames and passwords are UTF-8; the
    password may contain ':' (only the first one separates).
    """
    parts = header.encode("latin-1", "replace").split()
    if not parts or parts[0].lower() != b"basic":
        return None
    if len(parts) != 2:
        return "malformed Authorization header"
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "Authorization header is not valid base64 UTF-8"
    username, sep, password = decoded.partition(":")
    if not sep:
        return "no ':' between username and password"
    return username, password


def header_text(meta: Any, key: str) -> str | None:
    """A header's value as text. WSGI hands headers over as latin-1; clients send UTF-8.

    Raises ``ValueError`` for bytes that are not UTF-8 or hold control characters.
    """
    value = meta.get(key)
    if value is None:
        return None
    text = value.encode("latin-1", "replace").decode("utf-8")
    if _CONTROL.search(text):
        raise ValueError("control characters")
    return text


_CONTROL = re.compile("[\x00-\x1f\x7f]")  # C0 and DEL: one regex search, not a lookup per character


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

    def memo_key(self, meta: Mapping[str, str]) -> bytes | None:
        username, password = meta.get("HTTP_X_ZATO_USER"), meta.get("HTTP_X_ZATO_PASSWORD")
        return header_fingerprint(repr((username, password))) if username and password is not None else None

    def check(self, request: Any, attempt: limits.Attempt) -> tuple[CallerIdentity, str]:
        meta = request.META
        try:
            username = header_text(meta, "HTTP_X_ZATO_USER")
            password = header_text(meta, "HTTP_X_ZATO_PASSWORD")
        except (UnicodeDecodeError, ValueError):
            raise self._reject(request, "A header is not valid UTF-8 text", meta.get("HTTP_X_ZATO_USER"),
                               counts=False) from None
        # Malformed or missing headers check no password: they are refused, but are not guesses.
        if not username:
            raise self._reject(request, "The header X-Zato-User is missing or empty", username, counts=False)
        if password is None:
            raise self._reject(request, "The header X-Zato-Password is missing", username, counts=False)
        # Both checks always run, so timing does not tell which one failed.
        user_ok = hmac.compare_digest(username.encode(), self.name.encode())
        password_ok = self.password_matches(attempt, self.password_hash, password, username=username,
                                            remember=user_ok)
        if not user_ok:
            raise self._reject(request, "The username is incorrect", username)
        if not password_ok:
            raise self._reject(request, "The password is incorrect", username)
        if not self.is_active:
            raise self._reject(request, "The definition is inactive", username, counts=False)
        return CallerIdentity(username, self.name, self.sec_type), self.name

    def _reject(self, request: Any, reason: str, username: str | None, *,
                counts: bool = True) -> CredentialsRefused:
        where = f"URI:[{_shown(request.path_info, 500)}], X_ZATO_USER:[{_shown(username)}]"
        return self.fail(f"{reason}, {where}", request, f"The username or password is incorrect, {where}",
                         counts=counts, username=_shown(username))

    def authenticate_header(self, request: Any) -> str:
        return "zato-tech-acc"

    def has_header_credentials(self, meta: Mapping[str, str]) -> bool:
        return "HTTP_X_ZATO_USER" in meta

    def websocket_credentials(self, *, token: str | None = None, username: str | None = None,
                              password: str | None = None) -> dict[str, str]:
        if username is None or password is None:
            raise CredentialsRefused("This channel expects a username and password")
        return {"HTTP_X_ZATO_USER": wsgi(username), "HTTP_X_ZATO_PASSWORD": wsgi(password)}


class ApiKeyAuthentication(DefinitionAuthentication):
    """An API key in a header (``X-API-Key`` unless the definition names another).

    The stored prefix and keyed hash are both compared in constant time, always both. A key
    random enough not to be guessed needs no slow hash; a hash made with an older key of
    ``HMAC_KEYS`` is rewritten with the newest on its next successful use.
    """

    sec_type = "apikey"
    model = "accounts.ApiKey"
    stage = Stage.KEY.value

    def __init__(self, name: str, is_active: bool, header: str, key_prefix: str, key_hash: str) -> None:
        super().__init__(name, is_active)
        self.header = header
        self.environ_key = "HTTP_" + header.upper().replace("-", "_")
        self.key_prefix = key_prefix.encode()
        self.key_hash = key_hash
        self.key_matches = crypto.secret_checker(key_hash)  # resolved once per snapshot
        self.rehash = crypto.needs_rehash(key_hash)  # made with an older key: rewrite on the next success

    @classmethod
    def from_definition(cls, definition: Any) -> ApiKeyAuthentication:
        return cls(definition.name, definition.is_active, definition.header, definition.key_prefix,
                   definition.key_hash)

    def memo_key(self, meta: Mapping[str, str]) -> bytes | None:
        value = meta.get(self.environ_key)
        return header_fingerprint(value) if value else None

    def check(self, request: Any, attempt: limits.Attempt) -> tuple[CallerIdentity, str] | None:
        value = request.META.get(self.environ_key)
        if not value:
            return None
        key = value.strip().encode("latin-1", "replace")
        prefix_ok = hmac.compare_digest(key[: len(self.key_prefix)], self.key_prefix)
        key_ok = self.key_matches(key)
        if not (prefix_ok and key_ok):
            raise self.fail(f"invalid key in {self.header} (prefix given: {_shown(value[:4])!r}...)", request)
        if not self.is_active:
            raise self.fail("the definition is inactive", request, counts=False)
        if self.rehash:
            self.store_upgrade("key_hash", self.key_hash, crypto.hash_secret(key))
        return CallerIdentity(self.name, self.name, self.sec_type), self.name

    def authenticate_header(self, request: Any) -> str:
        return "zato-apikey"

    def has_header_credentials(self, meta: Mapping[str, str]) -> bool:
        return bool(meta.get(self.environ_key))

    def websocket_credentials(self, *, token: str | None = None, username: str | None = None,
                              password: str | None = None) -> dict[str, str]:
        key = token or password
        if not key:
            raise CredentialsRefused("This channel expects an API key (as the token)")
        return {self.environ_key: wsgi(key)}


class JWTAuthentication(DefinitionAuthentication):
    """``Authorization: Bearer <token>`` with a token from /zato/jwt/log-in (or made on someone's behalf).

    A token is good for the definition it was issued for, while its server-side session
    lives; every good use extends the session by the definition's TTL.
    """

    sec_type = "jwt"
    model = "accounts.JWTDefinition"
    stage = Stage.KEY.value

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

    def check(self, request: Any, attempt: limits.Attempt) -> tuple[CallerIdentity, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # Not a token at all (a browser may attach Basic credentials it has cached): not a guess.
            raise self.fail("the Authorization header is not `Bearer <token>`", request, counts=False)
        try:
            claims = tokens.open_token(token.strip())
        except tokens.InvalidToken as exc:
            raise self.fail(f"the token {exc}", request) from None
        if claims.definition_id != self.definition_id or claims.username != self.username:
            raise self.fail(f"the token was issued for another definition (user {_shown(claims.username)!r})",
                            request, username=_shown(claims.username))
        if not self.is_active:
            raise self.fail("the definition is inactive", request, counts=False, username=self.username)
        try:
            live = tokens.use(claims.sid, self.ttl)
        except tokens.SessionStoreUnavailable as exc:
            logger.error("[%s] JWT session store unavailable: %s", getattr(request, "cid", "-"), exc)
            raise ServiceUnavailable("Tokens cannot be checked right now; try again later") from None
        if not live:
            # A token of ours that has run its course is no guess: it does not count towards the limits.
            raise self.fail("the token has expired or was revoked (logged out)", request, counts=False,
                            username=self.username)
        return CallerIdentity(self.username, self.name, self.sec_type), self.name

    def check_password(self, password: str, attempt: limits.Attempt) -> bool:
        """The definition's password, for /zato/jwt/log-in (remembered once verified, like Basic Auth's)."""
        return self.password_matches(attempt, self.password_hash, password, username=self.username)

    def authenticate_header(self, request: Any) -> str:
        return "Bearer"

    def has_header_credentials(self, meta: Mapping[str, str]) -> bool:
        # Only a Bearer token counts: a browser may attach Basic credentials it has cached for the
        # host to a JWT channel's handshake, and those are not the client's intent.
        return meta.get("HTTP_AUTHORIZATION", "").lstrip().lower().startswith("bearer ")

    def websocket_credentials(self, *, token: str | None = None, username: str | None = None,
                              password: str | None = None) -> dict[str, str]:
        if not token:
            raise CredentialsRefused("This channel expects a JWT token")
        return {"HTTP_AUTHORIZATION": "Bearer " + wsgi(token)}

    def session(self, request: Any) -> TokenSession | None:
        """After a success: the token's server-side session, which a WebSocket connection keeps alive."""
        try:
            claims = tokens.open_token(_bearer(request.META))
        except tokens.InvalidToken:
            return None
        return TokenSession(claims.sid, self.ttl)

    def session_ended(self, request: Any) -> bool:
        """After a refusal: was the token itself good (ours, this definition's), so its session has ended?"""
        try:
            claims = tokens.open_token(_bearer(request.META))
        except tokens.InvalidToken:
            return False
        return self.is_active and claims.definition_id == self.definition_id and claims.username == self.username


def _bearer(meta: Mapping[str, str]) -> str:
    return meta.get("HTTP_AUTHORIZATION", "").strip().partition(" ")[2].strip()


class TokenSession(Session):
    """A JWT's server-side session (``accounts.tokens``): each use extends it by the definition's TTL."""

    def __init__(self, sid: str, ttl: int) -> None:
        self.sid = sid
        self.ttl = ttl

    def keep_alive(self) -> bool | None:
        try:
            return tokens.use(self.sid, self.ttl)
        except tokens.SessionStoreUnavailable as exc:
            logger.warning("JWT session store unavailable: %s", exc)
            return None
