"""Brute-force limits on every credential check: channels, JWT log-in, API tokens, ``/metrics``.

**The rule.** After ``CREDENTIAL_MAX_FAILURES`` (default 10) failed checks for one key, that is
(kind of check, security definition or user, client address), within
``CREDENTIAL_FAILURE_WINDOW`` seconds (default 300) of the first of them, every further attempt
with that key is refused until the window ends: 429 with ``Retry-After`` and the CID in the one
error shape (WebSocket: close 4429), in every process, the right credentials included. Refused
attempts do not count, so a client that keeps knocking does not lengthen its own block. A
success does not reset the count either: otherwise an attacker who shares an address (a NAT,
a proxy) with a working client would get unlimited guesses between its calls. The client
address is ``accounts.throttle.client_address`` (``TRUST_X_FORWARDED_FOR`` applies). Admin
log-ins, and management API log-ins with a password, keep their own throttle
(``accounts.throttle``: per username and per address, with growing delays).

Why this matters more now: passwords are stored with a slow hash (``accounts.crypto``), so every
wrong password costs 0.3-0.5 s of CPU. Refused attempts cost no hash at all, which is what keeps
a flood of guesses from becoming a denial of service.

**Counting across processes.** Failures go to a shared store, atomically, in one round trip:
Redis when ``REDIS_URL`` is set (a Lua script on one hash per key, namespaced by the database so
deployments sharing a Redis keep apart), else the database (one
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` on ``CredentialFailures``). A count that has
reached the limit is the block itself: there is no second flag to keep consistent. Times come
from ``clock`` (Unix time; tests replace it), so machines need synchronised clocks, as for JWT
sessions. If the store cannot be reached, this process counts on its own until it can (logged):
an outage of the counter neither locks every caller out nor lets guessing run unlimited.

**Keeping successes cheap.** Each process keeps two small maps:

* ``_blocked``: key -> when its block ends, learnt from the store. A refusal is a dict lookup.
* ``_clear``: key -> until when this process trusts that the key is not blocked
  (``CREDENTIAL_RECHECK`` seconds, default 1, after the store last said so).

A caller whose credentials this process has already verified (the hot path, see
``accounts.authentication``) pays a lookup in each map, and one read of the store per key per
``CREDENTIAL_RECHECK`` seconds. Credentials not yet verified here are about to cost a slow hash
(or a Vault call): the store is asked first (``before_slow_check``), so a blocked key is refused
before any hashing, and that round trip is nothing next to the hash. A failure counts in the
store, drops the key from ``_clear`` and, at the limit, enters ``_blocked``.

**Across processes.** An attacker fails in process A until the key is blocked, then sends the
right password to process B. B has no fresh ``_clear`` entry for that (definition, address)
unless B itself accepted a call from that same address in the last ``CREDENTIAL_RECHECK``
seconds, so B asks the store and refuses. The only remaining window: an attacker sharing an
address with a working client whose call B accepted just before the block may get the right
password accepted by B for at most ``CREDENTIAL_RECHECK`` seconds. ``CREDENTIAL_RECHECK=0``
closes it, at one store read per successful call.

**Audit.** Failures are recorded in the admin's Login attempts list (``LoginAttempt``) up to the
limit of each window, the last one saying that the block starts; refusals beyond it are only
logged (CID, definition, address), so the table stays bounded whatever an attacker sends.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, connection, transaction
from django.dispatch import receiver

from accounts.models import CredentialFailures, LoginAttempt
from accounts.throttle import client_address, message
from integration.errors import TooManyRequests

logger = logging.getLogger("accounts.limits")

Kind = LoginAttempt.Kind
Stage = LoginAttempt.Stage
clock = time.time

_MAX_REMEMBERED = 50_000
_lock = threading.Lock()
_blocked: dict[tuple[str, str, str], float] = {}
_clear: dict[tuple[str, str, str], float] = {}


class StoreUnavailable(Exception):
    """The shared store cannot be reached; this process counts on its own meanwhile."""


class Attempt:
    """One credential check, by ``kind`` of check, for ``definition``, from ``address``.

    Made for every check, so kept small: the key is computed once, and what only a failure
    needs (CID, User-Agent) is read from ``request`` when a failure happens.
    """

    __slots__ = ("key", "request", "stage", "username")

    def __init__(self, kind: str, definition: str, address: str, request: Any = None, *, username: str = "",
                 stage: str = Stage.PASSWORD) -> None:
        # Plain strings in the key: hashing an enum member goes through Python code, a str's does not.
        self.key = (kind.value if isinstance(kind, Kind) else kind, definition, address)
        self.request = request
        self.username = username
        self.stage = stage

    @property
    def kind(self) -> str:
        return self.key[0]

    @property
    def definition(self) -> str:
        return self.key[1]

    @property
    def address(self) -> str:
        return self.key[2]

    @classmethod
    def of(cls, request: Any, kind: str, definition: str, *, username: str = "",
           stage: str = Stage.PASSWORD) -> Attempt:
        return cls(kind, definition, client_address(request), request, username=username, stage=stage)

    @property
    def cid(self) -> str:
        return str(getattr(self.request, "cid", None) or "-")

    def refuse_if_blocked(self) -> None:
        """Refuse at once if this process knows the key is blocked (no round trip)."""
        ends = _blocked.get(self.key)
        if ends is None:
            return
        now = clock()
        if ends > now:
            raise self._refusal(ends - now)
        with _lock:
            _blocked.pop(self.key, None)

    def before_slow_check(self) -> None:
        """Before a slow check (a password hash, a Vault call): ask the store unless recently told all clear."""
        if _clear.get(self.key, 0.0) > clock():
            return
        self._ask_store()

    def passed(self) -> None:
        """After a successful check: refused all the same if the key turns out to be blocked."""
        if _clear.get(self.key, 0.0) > clock():
            return
        self._ask_store()

    def failed(self, reason: str, *, username: str | None = None) -> None:
        """Count a failure (one atomic round trip); audit it while under the limit; block at the limit."""
        if username is not None:
            self.username = username
        now = clock()
        window = settings.CREDENTIAL_FAILURE_WINDOW
        limit = settings.CREDENTIAL_MAX_FAILURES
        try:
            count, ends = store().add(_store_key(self.key), now, window)
        except StoreUnavailable as exc:
            _store_down(exc)
            count, ends = _local.add(_store_key(self.key), now, window)
        with _lock:
            _clear.pop(self.key, None)
            if count >= limit:
                _remember(_blocked, self.key, ends)
        if count < limit:
            self._audit(reason)
        elif count == limit:
            self._audit(f"{reason}; limit reached, blocked {math.ceil(ends - now)} s")
            logger.warning("[%s] %s `%s` from %s: %d failed checks in %d s; refusing this address for %d s",
                           self.cid, Kind(self.kind).label, self.definition, self.address, count, window,
                           math.ceil(ends - now))

    def _ask_store(self) -> None:
        now = clock()
        try:
            count, ends = store().peek(_store_key(self.key), now)
        except StoreUnavailable as exc:
            _store_down(exc)
            count, ends = _local.peek(_store_key(self.key), now)
        if count >= settings.CREDENTIAL_MAX_FAILURES:
            with _lock:
                _remember(_blocked, self.key, ends)
            raise self._refusal(ends - now)
        recheck = settings.CREDENTIAL_RECHECK
        if recheck > 0:
            with _lock:
                _remember(_clear, self.key, now + recheck)

    def _refusal(self, seconds: float) -> TooManyRequests:
        wait = max(1, math.ceil(seconds))
        logger.warning("[%s] Refused: too many failed credential checks (%s `%s`) from %s; %d s left",
                       self.cid, Kind(self.kind).label, self.definition, self.address, wait)
        return TooManyRequests(message(wait), headers={"Retry-After": str(wait)})

    def _audit(self, reason: str) -> None:
        try:
            with transaction.atomic():
                meta = getattr(self.request, "META", {})
                LoginAttempt.objects.create(
                    kind=self.kind, definition=self.definition[: LoginAttempt.DEFINITION_LENGTH],
                    username=self.username[: LoginAttempt.USERNAME_LENGTH], address=self.address,
                    user_agent=str(meta.get("HTTP_USER_AGENT", ""))[: LoginAttempt.USER_AGENT_LENGTH],
                    stage=self.stage, outcome=LoginAttempt.Outcome.FAILURE,
                    reason=reason[: LoginAttempt.REASON_LENGTH],
                )
        except DatabaseError:
            logger.exception("[%s] A failed credential check could not be recorded in the audit list", self.cid)


def recently_clear(key: tuple[str, str, str]) -> bool:
    """Whether the store said within ``CREDENTIAL_RECHECK`` that ``key`` is not blocked, and nothing since.

    The whole of the limits on an authenticator's hot path (``accounts.authentication``): two dict
    lookups. A failure counted in this process drops the key from ``_clear``; a block learnt puts it
    in ``_blocked``; either sends the next call down the full path (``Attempt``).
    """
    return _clear.get(key, 0.0) > clock() and key not in _blocked


def _remember(table: dict[tuple[str, str, str], float], key: tuple[str, str, str], until: float) -> None:
    if len(table) >= _MAX_REMEMBERED:
        table.clear()
    table[key] = until


def _store_key(key: tuple[str, str, str]) -> str:
    """A fixed-length key for the store: definition names and addresses may be long or odd."""
    return hashlib.sha256("\0".join(key).encode()).hexdigest()


# --- Stores -----------------------------------------------------------------------------------------


class FailureStore(Protocol):
    def add(self, key: str, now: float, window: float) -> tuple[int, float]:
        """Count one failure; returns (failures in the current window, when it ends)."""

    def peek(self, key: str, now: float) -> tuple[int, float]:
        """(failures in the current window, when it ends); (0, now) when there is none."""


class RedisFailures:
    """One Redis hash per key: ``n`` failures, window ``e``nds; Redis drops it after the window.

    Keys are namespaced by the database (``namespace``), so deployments sharing one Redis keep
    their counts apart, while every process of one deployment shares them.
    """

    # KEYS[1]; ARGV: now, end of a new window, Redis TTL. Returns {count, end} (the end as text: Lua
    # numbers handed back to Redis lose their fraction).
    _ADD = """
    local ends = redis.call('HGET', KEYS[1], 'e')
    if (not ends) or tonumber(ends) <= tonumber(ARGV[1]) then
      redis.call('HSET', KEYS[1], 'n', 1, 'e', ARGV[2])
      redis.call('EXPIRE', KEYS[1], ARGV[3])
      return {1, ARGV[2]}
    end
    return {redis.call('HINCRBY', KEYS[1], 'n', 1), ends}
    """
    GRACE = 60  # seconds Redis keeps a key past its window (clock skew between machines)

    def __init__(self, url: str, namespace: str) -> None:
        import redis

        self._errors = (redis.RedisError,)
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._add = self.client.register_script(self._ADD)
        self.prefix = f"switchboard:credfail:{namespace}:"

    def _key(self, key: str) -> str:
        return self.prefix + key

    def add(self, key: str, now: float, window: float) -> tuple[int, float]:
        try:
            count, ends = self._add(keys=[self._key(key)], args=[repr(now), repr(now + window),
                                                                 math.ceil(window) + self.GRACE])
        except self._errors as exc:
            raise StoreUnavailable(f"Redis: {exc}") from None
        return int(count), float(ends)

    def peek(self, key: str, now: float) -> tuple[int, float]:
        try:
            count, ends = self.client.hmget(self._key(key), "n", "e")
        except self._errors as exc:
            raise StoreUnavailable(f"Redis: {exc}") from None
        if count is None or ends is None or float(ends) <= now:
            return 0, now
        return int(count), float(ends)


class DatabaseFailures:
    """``CredentialFailures`` rows, counted by one upsert; rows of ended windows deleted now and then."""

    CLEAN_EVERY = 60.0

    def __init__(self) -> None:
        self._cleaned_at = 0.0

    def add(self, key: str, now: float, window: float) -> tuple[int, float]:
        quote = connection.ops.quote_name
        table, key_, failures, ends = (quote(name) for name in (
            CredentialFailures._meta.db_table, "key", "failures", "window_ends"))
        # Both SET expressions see the row as it was: a window that has ended starts again at 1.
        # The only interpolations are the model's own table and column names, quoted; values are parameters.
        sql = (
            f"INSERT INTO {table} ({key_}, {failures}, {ends}) VALUES (%s, 1, %s) "  # noqa: S608
            f"ON CONFLICT ({key_}) DO UPDATE SET "
            f"{failures} = CASE WHEN {table}.{ends} <= %s THEN 1 ELSE {table}.{failures} + 1 END, "
            f"{ends} = CASE WHEN {table}.{ends} <= %s THEN %s ELSE {table}.{ends} END "
            f"RETURNING {failures}, {ends}"
        )
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [key, now + window, now, now, now + window])
                count, ends = cursor.fetchone()
            if now - self._cleaned_at > self.CLEAN_EVERY:
                self._cleaned_at = now
                with transaction.atomic():
                    CredentialFailures.objects.filter(window_ends__lt=now - self.CLEAN_EVERY).delete()
        except DatabaseError as exc:
            raise StoreUnavailable(f"database: {exc}") from None
        return int(count), float(ends)

    def peek(self, key: str, now: float) -> tuple[int, float]:
        try:
            row = CredentialFailures.objects.filter(key=key, window_ends__gt=now).values_list(
                "failures", "window_ends").first()
        except DatabaseError as exc:
            raise StoreUnavailable(f"database: {exc}") from None
        return (int(row[0]), float(row[1])) if row else (0, now)


class LocalFailures:
    """This process's own counts: the fallback while the shared store cannot be reached."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, float]] = {}

    def add(self, key: str, now: float, window: float) -> tuple[int, float]:
        with _lock:
            count, ends = self.counts.get(key, (0, now))
            count, ends = (count + 1, ends) if ends > now else (1, now + window)
            if len(self.counts) >= _MAX_REMEMBERED:
                self.counts.clear()
            self.counts[key] = (count, ends)
        return count, ends

    def peek(self, key: str, now: float) -> tuple[int, float]:
        count, ends = self.counts.get(key, (0, now))
        return (count, ends) if ends > now else (0, now)


_local = LocalFailures()
_down_logged_at = 0.0


def _store_down(exc: Exception) -> None:
    """Log (at most once a minute) that failures are counted per process for now."""
    global _down_logged_at
    now = time.monotonic()
    if now - _down_logged_at > 60:
        _down_logged_at = now
        logger.error("Credential failure counts cannot be shared right now (%s); counting in this process only",
                     exc)


@lru_cache(maxsize=1)
def store() -> FailureStore:
    if not settings.REDIS_URL:
        return DatabaseFailures()
    database = connection.settings_dict
    identity = f"{database.get('HOST')}:{database.get('PORT')}/{database.get('NAME')}"
    return RedisFailures(settings.REDIS_URL, hashlib.sha256(identity.encode()).hexdigest()[:12])


def forget() -> None:
    """Drop what this process remembers (tests; a changed limit)."""
    with _lock:
        _blocked.clear()
        _clear.clear()
        _local.counts.clear()


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: object) -> None:
    if setting == "REDIS_URL":
        store.cache_clear()
    if setting in ("REDIS_URL", "CREDENTIAL_MAX_FAILURES", "CREDENTIAL_FAILURE_WINDOW", "CREDENTIAL_RECHECK"):
        forget()
