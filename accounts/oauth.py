"""OAuth 2.0 client credentials for outgoing connections: getting, sharing and refreshing tokens.

An ``OAuthDefinition`` becomes a ``ClientConfig`` (no network); ``token_source(config)`` gives
the process's one ``TokenSource`` for it, and ``BearerAuth(source)`` is a ``requests`` auth
that REST and FHIR connections hand to every request. What it guarantees:

* **One cache for every process.** Tokens are kept in Redis (``REDIS_URL``; in memory, per
  process, without it) under a key made of the token URL, the client id, a hash of the secret,
  the scopes and the extra parameters: two definitions, or one whose secret changed, never
  share a token. Each process also remembers the token it last used, so a cache hit costs a
  dictionary look-up and a clock read, not a Redis round trip.
* **Refresh before expiry.** A token is used until ``REFRESH_SHARE`` of its ``expires_in`` has
  passed (at most ``REFRESH_MARGIN`` seconds early), then a new one is asked for; while that
  request is under way, callers keep using the old one, which is still valid.
* **One token request for many callers.** Within a process a lock lets one thread ask; across
  processes a lock in Redis (``SET NX PX``, released only by its owner) lets one process ask
  while the others wait for its token in the cache, bounded by the definition's timeout.
* **A 401 means the token is dead.** ``BearerAuth`` then drops it from both caches (only if
  the cache still holds that very token: another process may already have replaced it) and
  sends the request once more with a fresh one. A second 401 is the backend's answer.
* **Never a hang.** Every token request has the definition's timeout; a token server that is
  down or refuses raises ``TokenUnavailable`` (503) naming the definition, and the threads
  that waited on that attempt get the same error at once instead of trying again one by one.

Secrets never appear in messages or logs; neither do tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from requests.auth import AuthBase

from integration.channels.security import Authenticator
from integration.errors import ServiceUnavailable

if TYPE_CHECKING:
    from accounts.models import OAuthDefinition

logger = logging.getLogger(__name__)

REFRESH_SHARE = 0.8  # of a token's lifetime, after which a new one is asked for
REFRESH_MARGIN = 60.0  # seconds: never refresh earlier than this before expiry
DEFAULT_LIFETIME = 300.0  # seconds, for a token server that does not say (expires_in is only RECOMMENDED)
MAX_LIFETIME = 86400.0 * 30
WAIT_STEP = 0.01  # seconds between looks at the cache while another process asks for the token
KEY_PREFIX = "switchboard:oauth:"


class TokenUnavailable(ServiceUnavailable):
    """No token could be had for an OAuth definition: the token server is down, slow or refused the client."""

    def __init__(self, definition: str, reason: str) -> None:
        super().__init__(f"OAuth definition `{definition}`: no token: {reason}")
        self.definition = definition
        self.reason = reason


@dataclass(frozen=True)
class ClientConfig:
    """What a token request needs, from one definition (and the scopes a connection asks for)."""

    name: str
    token_url: str
    client_id: str
    secret: str
    scopes: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    credentials_in: str = "basic"
    timeout: float = 10.0
    verify: bool | str = True

    def __repr__(self) -> str:  # never print the secret
        return f"ClientConfig(name={self.name!r}, token_url={self.token_url!r}, client_id={self.client_id!r})"

    @classmethod
    def from_definition(cls, definition: OAuthDefinition, scopes: list[str] | None = None,
                        verify: bool | str | None = None) -> ClientConfig:
        return cls(definition.name, definition.token_url, definition.client_id, definition.get_secret(),
                   tuple(definition.scope_list if scopes is None else scopes),
                   tuple(sorted(definition.extra_dict.items())), definition.credentials_in,
                   float(definition.timeout), definition.tls_verify if verify is None else verify)

    @property
    def cache_key(self) -> str:
        """Token URL, client id, a hash of the secret, scopes and extra parameters: one token per combination."""
        secret_hash = hashlib.sha256(self.secret.encode()).hexdigest()
        parts = [self.token_url, self.client_id, secret_hash, " ".join(sorted(self.scopes)),
                 json.dumps(self.extra)]
        return KEY_PREFIX + hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    """An access token (opaque) and when to stop using it: ``refresh_at`` before ``expires_at``."""

    access_token: str
    token_type: str
    expires_at: float
    refresh_at: float

    def __repr__(self) -> str:
        return f"Token(type={self.token_type!r}, expires_at={self.expires_at:.0f})"

    @property
    def header(self) -> str:
        return f"{self.token_type} {self.access_token}"

    def fresh(self, now: float) -> bool:
        return now < self.refresh_at

    def valid(self, now: float) -> bool:
        return now < self.expires_at - 1.0

    def dumps(self) -> str:
        return json.dumps([self.access_token, self.token_type, self.expires_at, self.refresh_at])

    @classmethod
    def loads(cls, raw: bytes | str) -> Token | None:
        try:
            access, kind, expires, refresh = json.loads(raw)
            return cls(str(access), str(kind), float(expires), float(refresh))
        except (ValueError, TypeError):
            return None


def parse_token_response(body: Any, now: float) -> Token:
    """A token endpoint's JSON answer (RFC 6749 §5.1) as a ``Token``; ``ValueError`` saying what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    access = body.get("access_token")
    if not isinstance(access, str) or not access or any(ch in access for ch in "\r\n"):
        raise ValueError("the answer has no usable access_token")
    kind = body.get("token_type", "Bearer")
    if not isinstance(kind, str) or not kind.isascii() or not kind.isalnum():
        raise ValueError("the answer's token_type is not a token type")
    if kind.lower() == "bearer":
        kind = "Bearer"  # RFC 6750 says the scheme is case-insensitive; some servers do not agree
    lifetime = body.get("expires_in")
    if lifetime is None:
        seconds = DEFAULT_LIFETIME
    else:
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            raise ValueError("the answer's expires_in is not a number") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError("the answer's expires_in is not a positive number")
        seconds = min(seconds, MAX_LIFETIME)
    margin = min(REFRESH_MARGIN, seconds * (1 - REFRESH_SHARE))
    return Token(access, kind, now + seconds, now + seconds - margin)


# --- The shared cache ---------------------------------------------------------------------------------


class RedisStore:
    """Tokens and token-request locks in Redis, shared by every process."""

    # Delete KEYS[1] only if it still holds ARGV[1] (a token, or a lock owner's id).
    _DELETE_IF = """
    local value = redis.call('GET', KEYS[1])
    if value and string.find(value, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    def __init__(self, url: str) -> None:
        import redis

        self.errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._delete_if = self.client.register_script(self._DELETE_IF)

    def get(self, key: str) -> Token | None:
        raw = self.client.get(key)
        return Token.loads(raw) if raw else None

    def put(self, key: str, token: Token, now: float) -> None:
        ttl_ms = int((token.expires_at - now) * 1000)
        if ttl_ms > 0:
            self.client.set(key, token.dumps(), px=ttl_ms)

    def invalidate(self, key: str, access_token: str) -> None:
        self._delete_if(keys=[key], args=[json.dumps(access_token)])

    def lock(self, key: str, ttl: float) -> str | None:
        owner = secrets.token_hex(8)
        return owner if self.client.set(key + ":lock", owner, nx=True, px=int(ttl * 1000)) else None

    def unlock(self, key: str, owner: str) -> None:
        self._delete_if(keys=[key + ":lock"], args=[owner])


class MemoryStore:
    """The same in this process's memory: without REDIS_URL (the embedded default) each process has its own."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> Token | None:
        token = self._tokens.get(key)
        return token if token is not None and time.time() < token.expires_at else None

    def put(self, key: str, token: Token, now: float) -> None:
        self._tokens[key] = token

    def invalidate(self, key: str, access_token: str) -> None:
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.access_token == access_token:
                del self._tokens[key]

    def lock(self, key: str, ttl: float) -> str | None:
        with self._lock:
            held = self._locks.get(key)
            if held is not None and held[1] > time.monotonic():
                return None
            owner = secrets.token_hex(8)
            self._locks[key] = (owner, time.monotonic() + ttl)
            return owner

    def unlock(self, key: str, owner: str) -> None:
        with self._lock:
            if self._locks.get(key, ("",))[0] == owner:
                del self._locks[key]


@lru_cache(maxsize=1)
def store() -> RedisStore | MemoryStore:
    return RedisStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryStore()


# --- One source of tokens per definition and scopes, per process ---------------------------------------


class TokenSource:
    """Tokens for one ``ClientConfig``: the process's last one, the shared cache, the token server."""

    def __init__(self, config: ClientConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self.key = config.cache_key
        self._local: Token | None = None
        self._lock = threading.Lock()
        self._failure: tuple[float, TokenUnavailable] | None = None
        self._session = session or requests.Session()
        self.requests_made = 0  # token requests this process sent (tests and the admin read it)

    def token(self) -> Token:
        """A token to send now: fresh from this process's memory, else from the cache or the token server."""
        local = self._local
        now = time.time()
        if local is not None and local.fresh(now):
            return local
        if local is not None and local.valid(now) and not self._lock.acquire(blocking=False):
            return local  # another thread is refreshing it; this one is still good
        if not (local is not None and local.valid(now)) and not self._lock.acquire(timeout=self._wait_limit()):
            raise TokenUnavailable(self.config.name, "timed out waiting for another thread's token request")
        try:
            local = self._local
            if local is not None and local.fresh(time.time()):
                return local
            failure = self._failure
            if failure is not None and failure[0] >= now:
                raise failure[1]  # the attempt this thread waited on failed: no second try behind it
            try:
                token = self._shared(local)
            except TokenUnavailable as exc:
                self._failure = (time.time(), exc)
                raise
            self._local = token
            return token
        finally:
            self._lock.release()

    def invalidate(self, access_token: str) -> None:
        """The backend refused ``access_token`` (401): forget it here and in the shared cache."""
        local = self._local
        if local is not None and local.access_token == access_token:
            self._local = None
        try:
            store().invalidate(self.key, access_token)
        except store().errors as exc:
            logger.warning("OAuth definition `%s`: the token cache cannot be reached (%s)", self.config.name,
                           type(exc).__name__)

    def _wait_limit(self) -> float:
        return self.config.timeout * 2 + 1

    def _shared(self, stale: Token | None) -> Token:
        """From the cache, or asked for by this process while holding the cross-process lock."""
        shared = store()
        deadline = time.monotonic() + self._wait_limit()
        pause = WAIT_STEP
        while True:
            try:
                cached = shared.get(self.key)
                if cached is not None and cached.fresh(time.time()):
                    return cached
                owner = shared.lock(self.key, self.config.timeout + 5)
            except shared.errors as exc:
                logger.warning("OAuth definition `%s`: the token cache cannot be reached (%s); asking the token "
                               "server directly", self.config.name, type(exc).__name__)
                return self.fetch()
            if owner is not None:
                try:
                    cached = shared.get(self.key)  # put there between our look and our lock?
                    if cached is not None and cached.fresh(time.time()):
                        return cached
                    token = self.fetch()
                    shared.put(self.key, token, time.time())
                    return token
                finally:
                    try:
                        shared.unlock(self.key, owner)
                    except shared.errors:
                        pass  # it expires by itself
            now = time.time()
            usable = cached if cached is not None and cached.valid(now) else stale
            if usable is not None and usable.valid(now):
                return usable  # another process is refreshing; this one still works
            if time.monotonic() >= deadline:
                raise TokenUnavailable(self.config.name, "timed out waiting for another process's token request")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)

    def fetch(self) -> Token:
        """One token request (RFC 6749 §4.4.2); ``TokenUnavailable`` with the reason when it fails."""
        config = self.config
        form = {"grant_type": "client_credentials"}
        if config.scopes:
            form["scope"] = " ".join(config.scopes)
        form.update(config.extra)
        auth = None
        if config.credentials_in == "form":
            form.update(client_id=config.client_id, client_secret=config.secret)
        else:
            auth = (config.client_id, config.secret)
        self.requests_made += 1
        started = time.time()
        try:
            response = self._session.post(config.token_url, data=form, auth=auth, timeout=config.timeout,
                                          verify=config.verify, allow_redirects=False,
                                          headers={"Accept": "application/json", "Cache-Control": "no-cache"})
        except requests.Timeout:
            raise TokenUnavailable(config.name, f"the token server at {config.token_url} did not answer within "
                                   f"{config.timeout:g} s") from None
        except requests.exceptions.SSLError:
            raise TokenUnavailable(config.name, f"TLS with the token server at {config.token_url} failed") from None
        except requests.RequestException as exc:
            raise TokenUnavailable(config.name, f"cannot reach the token server at {config.token_url} "
                                   f"({type(exc).__name__})") from None
        if response.status_code != 200:
            raise TokenUnavailable(config.name, f"the token server at {config.token_url} answered "
                                   f"{response.status_code}{_oauth_error(response)}")
        try:
            token = parse_token_response(response.json(), started)
        except ValueError as exc:
            raise TokenUnavailable(config.name, f"the token server at {config.token_url} answered 200 but "
                                   f"{exc}") from None
        logger.info("OAuth definition `%s`: new token from %s, valid %.0f s", config.name, config.token_url,
                    token.expires_at - started)
        return token


def _oauth_error(response: requests.Response) -> str:
    """``: invalid_client (Client authentication failed)`` from an RFC 6749 §5.2 error answer, cut short."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return ""
    text = f": {body['error'][:60]}"
    if isinstance(body.get("error_description"), str):
        text += f" ({body['error_description'][:160]})"
    return text


_sources: dict[ClientConfig, TokenSource] = {}
_sources_lock = threading.Lock()


def token_source(config: ClientConfig) -> TokenSource:
    """This process's one source for ``config``: connections with the same definition and scopes share it."""
    source = _sources.get(config)
    if source is None:
        with _sources_lock:
            source = _sources.setdefault(config, TokenSource(config))
    return source


def forget_sources() -> None:
    """Drop every process-local token (tests; a changed definition makes a new config, so a new source)."""
    with _sources_lock:
        _sources.clear()


@receiver(setting_changed)
def _forget_store(setting: str, **kwargs: object) -> None:
    if setting == "REDIS_URL":
        store.cache_clear()
        forget_sources()


class BearerAuth(AuthBase):
    """``requests`` auth: ``Authorization: Bearer <token>``; on a 401, one retry with a fresh token."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.source.token()
        request.headers["Authorization"] = token.header
        request.sb_token = token.access_token  # type: ignore[attr-defined]
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        sent = response.request
        if response.status_code != 401 or getattr(sent, "sb_retried", False) or response.connection is None:
            return response
        self.source.invalidate(getattr(sent, "sb_token", ""))
        token = self.source.token()
        response.content  # noqa: B018 - read the body so the connection goes back to the pool
        response.close()
        retry = sent.copy()
        retry.headers["Authorization"] = token.header
        retry.sb_token = token.access_token  # type: ignore[attr-defined]
        retry.sb_retried = True  # type: ignore[attr-defined]
        second = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second


class OutgoingOnly(Authenticator):
    """What the security registry compiles for an OAuth definition: nothing a channel could use.

    The type is registered with no channel kinds, so no channel can point at one; should a row
    ever be reached anyway, it recognises no caller's credentials.
    """

    sec_type = "oauth"

    def __init__(self, name: str, is_active: bool) -> None:
        self.name, self.is_active = name, is_active

    @classmethod
    def from_definition(cls, definition: OAuthDefinition) -> OutgoingOnly:
        return cls(definition.name, definition.is_active)

    def authenticate(self, request: Any) -> None:
        return None
