"""Tokens for JWT security definitions: issued, opened, extended and revoked on the server.

A token is a compact JWT (HS256, claims ``sid``, ``def``, ``sub``, ``iat``, ``exp``) that is
then encrypted with the platform's MultiFernet keys (``FERNET_KEYS``), so to clients it
is an opaque string and only this server can read it. Rotating keys: put a new key in
front of ``FERNET_KEYS``; tokens made with a key that is removed stop working.

What a token does not carry is whether it is still valid. That lives on the server, in a
session store shared by every process, keyed by the token's ``sid``: each successful use
extends the expiry by the definition's TTL (sliding expiry), and logging out deletes the
session. ``RedisSessionStore`` does a use in one atomic round trip (a Lua script);
``DatabaseSessionStore`` (the embedded default, no Redis) in one UPDATE.

Checking the shared store on every request would cost a network round trip each time (a
JWT channel would keep about half the throughput of an open one). So each process
remembers, for ``JWT_SESSION_RECHECK`` seconds (default 1), the sessions it has just seen
live, and a use within that window neither asks the store nor extends the session; the
next use after it does both. A log-out in this process takes effect here at once and in
other processes within that window, like any configuration change; sliding expiry is at
most that much early. ``JWT_SESSION_RECHECK=0`` asks the store on every use.

``clock`` is the time source for every expiry decision; tests replace it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from accounts import crypto

clock = time.time
MAX_TOKEN_LENGTH = 4096
# Canonical urlsafe base64 only: a lenient decoder would accept the same token with junk after its padding.
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_\-]+={0,2}$")
_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


class InvalidToken(Exception):
    """The string is not a token this server made with a key it still has (the reason is for the log)."""


class SessionStoreUnavailable(Exception):
    """The session store cannot be reached: callers must be refused, not let through."""


@dataclass(frozen=True)
class Claims:
    sid: str
    definition_id: int
    username: str
    issued_at: float


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _sign(message: bytes) -> bytes:
    return hmac.new(crypto.derived_key("jwt-signing"), message, hashlib.sha256).digest()


def issue(definition_id: int, username: str, ttl: int) -> str:
    """A new token and its server-side session, valid for ``ttl`` seconds after each use."""
    now = clock()
    sid = uuid.uuid4().hex
    claims = {"sid": sid, "def": definition_id, "sub": username, "iat": int(now), "exp": int(now + ttl)}
    signing_input = _HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
    jwt = signing_input + b"." + _b64(_sign(signing_input))
    session_store().create(sid, definition_id, now + ttl, ttl)
    return crypto.encrypt(jwt.decode())


# Tokens this process has opened: the same string always opens to the same claims, so the
# Fernet decryption and signature check are done once per token, not once per request.
_opened: dict[str, Claims] = {}
# Sessions seen live lately: sid -> (when checked, expiry then), by ``clock``.
_recent: dict[str, tuple[float, float]] = {}
_MAX_REMEMBERED = 50_000


def open_token(token: str) -> Claims:
    """Decrypt and verify a token (remembered per process); says nothing about expiry (``use`` does)."""
    claims = _opened.get(token)
    if claims is None:
        claims = _open(token)
        if len(_opened) >= _MAX_REMEMBERED:
            _opened.clear()
        _opened[token] = claims
    return claims


def use(sid: str, ttl: int) -> bool:
    """True if the session is live, extending it by ``ttl`` (see the module docstring for the recheck window)."""
    now = clock()
    seen = _recent.get(sid)
    if seen is not None and now - seen[0] < settings.JWT_SESSION_RECHECK and now < seen[1]:
        return True
    live = session_store().use(sid, ttl)
    if live:
        if len(_recent) >= _MAX_REMEMBERED:
            _recent.clear()
        _recent[sid] = (now, now + ttl)
    else:
        _recent.pop(sid, None)
    return live


def revoke(sid: str) -> bool:
    """End a session (log-out): at once in this process, within the recheck window elsewhere."""
    _recent.pop(sid, None)
    return session_store().revoke(sid)


def _open(token: str) -> Claims:
    if not token or len(token) > MAX_TOKEN_LENGTH or len(token) % 4 or not _TOKEN_CHARS.match(token):
        raise InvalidToken("not a token (wrong characters or length)")
    try:
        jwt = crypto.decrypt(token).encode()
    except ValueError:
        raise InvalidToken("cannot be decrypted: tampered with, or made with a key no longer configured") from None
    try:
        signing_input, _, signature = jwt.rpartition(b".")
        if not hmac.compare_digest(_unb64(signature), _sign(signing_input)):
            raise InvalidToken("bad signature")
        payload = json.loads(_unb64(signing_input.split(b".")[1]))
        return Claims(str(payload["sid"]), int(payload["def"]), str(payload["sub"]), float(payload["iat"]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise InvalidToken("malformed claims") from None


# --- Session stores -------------------------------------------------------------------------------


class SessionStore(Protocol):
    def create(self, sid: str, definition_id: int, expires_at: float, ttl: int) -> None: ...

    def use(self, sid: str, ttl: int) -> bool:
        """True if the session is live, extending it by ``ttl``; False if expired or revoked."""

    def revoke(self, sid: str) -> bool: ...


class RedisSessionStore:
    """Sessions as Redis hashes; Redis also drops them itself a while after they expire."""

    # KEYS[1] session; ARGV now, new expiry, Redis TTL. Returns 1 when live (and extended).
    _USE = """
    local exp = redis.call('HGET', KEYS[1], 'exp')
    if not exp then return 0 end
    if tonumber(exp) <= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return 0 end
    redis.call('HSET', KEYS[1], 'exp', ARGV[2])
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return 1
    """
    GRACE = 60  # seconds Redis keeps a session past its expiry (clock skew between machines)

    def __init__(self, url: str) -> None:
        import redis

        self._errors = (redis.RedisError,)
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._use = self.client.register_script(self._USE)

    @staticmethod
    def _key(sid: str) -> str:
        return f"switchboard:jwt:{sid}"

    def create(self, sid: str, definition_id: int, expires_at: float, ttl: int) -> None:
        try:
            pipe = self.client.pipeline()
            pipe.hset(self._key(sid), mapping={"exp": repr(expires_at), "def": definition_id})
            pipe.expire(self._key(sid), ttl + self.GRACE)
            pipe.execute()
        except self._errors as exc:
            raise SessionStoreUnavailable(f"Redis: {exc}") from None

    def use(self, sid: str, ttl: int) -> bool:
        now = clock()
        try:
            return bool(self._use(keys=[self._key(sid)], args=[repr(now), repr(now + ttl), ttl + self.GRACE]))
        except self._errors as exc:
            raise SessionStoreUnavailable(f"Redis: {exc}") from None

    def revoke(self, sid: str) -> bool:
        try:
            return bool(self.client.delete(self._key(sid)))
        except self._errors as exc:
            raise SessionStoreUnavailable(f"Redis: {exc}") from None


class DatabaseSessionStore:
    """Sessions as ``JWTSession`` rows; expired rows are deleted now and then by ``create``."""

    CLEAN_EVERY = 60.0

    def __init__(self) -> None:
        self._cleaned_at = 0.0

    def create(self, sid: str, definition_id: int, expires_at: float, ttl: int) -> None:
        from accounts.models import JWTSession

        now = clock()
        if now - self._cleaned_at > self.CLEAN_EVERY:
            self._cleaned_at = now
            JWTSession.objects.filter(expires_at__lte=now).delete()
        JWTSession.objects.create(sid=sid, definition_id=definition_id, expires_at=expires_at)

    def use(self, sid: str, ttl: int) -> bool:
        from accounts.models import JWTSession

        now = clock()
        if JWTSession.objects.filter(sid=sid, expires_at__gt=now).update(expires_at=now + ttl) == 1:
            return True
        JWTSession.objects.filter(sid=sid).delete()  # expired: gone for good, as in Redis
        return False

    def revoke(self, sid: str) -> bool:
        from accounts.models import JWTSession

        return JWTSession.objects.filter(sid=sid).delete()[0] > 0


@lru_cache(maxsize=1)
def session_store() -> Any:
    if settings.JWT_SESSION_STORE == "redis":
        return RedisSessionStore(settings.REDIS_URL)
    return DatabaseSessionStore()


@receiver(setting_changed)
def _forget_store(setting: str, **kwargs: object) -> None:
    if setting in ("JWT_SESSION_STORE", "REDIS_URL"):
        session_store.cache_clear()
        _recent.clear()
    if setting in ("FERNET_KEYS", "SECRET_KEY"):
        _opened.clear()  # tokens made with a removed key must stop opening
