"""LDAP and Active Directory as an outgoing connection (ldap3): ``self.out.ldap[name]``.

Service code, as the seed writes it::

    with self.out.ldap["My AD Connection"].conn.client() as client:
        with client.get() as conn:             # a bound ldap3.Connection from the pool
            if conn.search(base, filter_, attributes=["uid", "mail"]):
                entry = conn.entries[0]
        is_valid = client.check_credentials("uid=ann,cn=users,dc=example,dc=com", "secret")

``client.get()`` lends one of up to ``pool_size`` connections, bound with the connection's own
user; any ldap3 operation works on it (search, add, modify, delete, extended operations).
It goes back to the pool afterwards, unless the server dropped it or the service rebound it
as someone else, in which case it is unbound and a new one is opened next time.

The servers form a pool: a new connection tries them in the order of the strategy (``FIRST``:
as listed, so the first one that answers is used; ``ROUND_ROBIN``; ``RANDOM``) and moves to the
next on a refused connection, a timeout or a failed TLS handshake. A server that failed is
skipped for ``pool_exhaust_timeout`` seconds, unless every server failed. Wrong credentials
do not move on: every server of a pool shares one directory, and retrying would only lock the
account sooner. The selection is ours rather than ldap3's ``ServerPool``, because ldap3 sleeps
``POOLING_LOOP_TIMEOUT`` (10 s) after a cycle in which no server answered and reports only
"no active server", while this says which server failed and why.

``check_credentials(user, password)`` binds a fresh connection as that user: True if the
directory accepts the password, False if it refuses it (or the password is empty: an
empty-password simple bind is an *unauthenticated* bind that servers accept). Unreachable
servers raise ``LdapUnavailable`` (503) naming the connection and each server's failure; so does a
server that drops or stops answering during an operation in ``client.get()`` (its connection is
discarded, and the next one goes to whichever server answers then).

NTLM (Active Directory) binds send ``DOMAIN\\user`` and the password through ldap3's NTLM
mechanism; SIMPLE sends a DN; ANONYMOUS sends nothing. TLS is either LDAPS (TLS from the first
byte, port 636) or StartTLS on the plain port before the bind, checked against the CA bundle.
Nothing here contacts a server until a service, a ping or a credentials check asks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ldap3
from ldap3.core import exceptions as ldap_errors

from connections.base import Connection, PingResult
from connections.ldap_parsing import LdapServer, parse_servers
from integration.errors import ServiceUnavailable, SwitchboardError

if TYPE_CHECKING:
    from connections.directory_models import LdapConnection

KIND = "ldap"
logger = logging.getLogger(__name__)

#: What means "this server cannot be used now, try the next": no socket, a timeout, TLS failing.
_SERVER_FAILURES = (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPStartTLSError,
                    ldap_errors.LDAPSSLConfigurationError, ldap_errors.LDAPResponseTimeoutError, OSError)
_AUTH = {"SIMPLE": ldap3.SIMPLE, "NTLM": ldap3.NTLM, "ANONYMOUS": ldap3.ANONYMOUS}


class LdapError(SwitchboardError):
    """An LDAP connection could not do what was asked (the message names the connection)."""


class LdapUnavailable(ServiceUnavailable):
    """No server of the pool answered (503): the message names the connection and each server's failure."""


class LdapBindRefused(LdapError):
    """The directory refused the connection's own bind user: its configuration is wrong."""


@dataclass(frozen=True)
class LdapSettings:
    """One LDAP connection's settings, decrypted; ``repr`` never shows the password."""

    name: str
    servers: tuple[LdapServer, ...]
    auth_type: str = "SIMPLE"
    username: str = ""
    password: str = ""
    pool_strategy: str = "FIRST"
    tls_mode: str = "none"
    tls_ca_cert: str = ""
    tls_validate: bool = True
    connect_timeout: float = 10.0
    operation_timeout: float = 30.0
    pool_size: int = 10
    pool_exhaust_timeout: int = 5

    def __repr__(self) -> str:
        return (f"LdapSettings(name={self.name!r}, servers={[s.url for s in self.servers]!r}, "
                f"auth_type={self.auth_type!r}, username={self.username!r})")

    @classmethod
    def from_row(cls, row: LdapConnection) -> LdapSettings:
        return cls(
            name=row.name, servers=tuple(parse_servers(row.servers, row.tls_mode)), auth_type=row.auth_type,
            username=row.username, password=row.get_password(), pool_strategy=row.pool_strategy,
            tls_mode=row.tls_mode, tls_ca_cert=row.tls_ca_cert.strip(), tls_validate=row.tls_validate,
            connect_timeout=row.connect_timeout, operation_timeout=row.operation_timeout, pool_size=row.pool_size,
            pool_exhaust_timeout=row.pool_exhaust_timeout,
        )

    def tls(self) -> ldap3.Tls | None:
        if self.tls_mode == "none":
            return None
        return ldap3.Tls(validate=ssl.CERT_REQUIRED if self.tls_validate else ssl.CERT_NONE,
                         ca_certs_data=self.tls_ca_cert or None, version=ssl.PROTOCOL_TLS_CLIENT)

    def ldap3_server(self, server: LdapServer) -> ldap3.Server:
        return ldap3.Server(server.host, port=server.port, use_ssl=server.use_ssl, tls=self.tls(),
                            get_info=ldap3.NONE, connect_timeout=self.connect_timeout)


def bind_parameters(settings: LdapSettings, user: str | None = None, password: str | None = None) -> dict[str, Any]:
    """The ``ldap3.Connection`` keyword arguments for a bind as the connection's user (or ``user``).

    These are what an Active Directory receives for NTLM: ``authentication=NTLM`` with
    ``DOMAIN\\user``; ldap3 then runs the NTLM negotiate/challenge/authenticate exchange.
    """
    own = user is None
    auth = _AUTH[settings.auth_type] if own else (ldap3.NTLM if settings.auth_type == "NTLM" else ldap3.SIMPLE)
    parameters: dict[str, Any] = {
        "authentication": auth,
        "auto_bind": ldap3.AUTO_BIND_NONE,  # opened, TLS-started and bound by LdapPool.open, one step at a time
        # ldap3 packs it into SO_RCVTIMEO as whole seconds (struct "LL"): a float fails there.
        "receive_timeout": max(1, math.ceil(settings.operation_timeout)),
        "raise_exceptions": False,  # search() answers True/False, as the seed's `if conn.search(...)` expects
        "client_strategy": ldap3.SYNC,
        "check_names": False,  # as Zato: the seed's base "cn=users, dc=example, dc=com" (spaces) must work
        "return_empty_attributes": True,
        "auto_range": True,
        "read_only": False,
    }
    if auth != ldap3.ANONYMOUS:
        parameters["user"] = settings.username if own else user
        parameters["password"] = settings.password if own else password
    return parameters


class LdapPool:
    """Up to ``pool_size`` bound connections to whichever server of the pool answers; thread-safe."""

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self._servers = [settings.ldap3_server(server) for server in settings.servers]
        self._idle: list[ldap3.Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        self._down_until: dict[int, float] = {}
        self._next = 0
        self._closed = False
        self._own_user = bind_parameters(settings).get("user")

    # --- Choosing a server ----------------------------------------------------------------------

    def _order(self) -> list[int]:
        count = len(self._servers)
        if self.settings.pool_strategy == "ROUND_ROBIN":
            with self._lock:
                start, self._next = self._next, (self._next + 1) % count
            order = [(start + i) % count for i in range(count)]
        elif self.settings.pool_strategy == "RANDOM":
            order = random.sample(range(count), count)
        else:
            order = list(range(count))
        now = time.monotonic()
        up = [i for i in order if self._down_until.get(i, 0) <= now]
        # Servers that failed recently go last, not away: if they are all down, try them anyway.
        return up + [i for i in order if i not in up]

    def open(self, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        """A new connection, opened and bound on the first server that answers; raises when none does."""
        parameters = bind_parameters(self.settings, user, password)
        failures: list[str] = []
        for index in self._order():
            server = self.settings.servers[index]
            # ldap3 remembers an address that failed and refuses it for a while ("invalid server address");
            # when to try a server again is this pool's decision (pool_exhaust_timeout), so forget that.
            self._servers[index].reset_availability()
            conn = ldap3.Connection(self._servers[index], **parameters)
            try:
                conn.open()
                if self.settings.tls_mode == "starttls" and not conn.start_tls():
                    raise ldap_errors.LDAPStartTLSError(f"StartTLS refused: {conn.result.get('description')}")
            except _SERVER_FAILURES as exc:
                _quietly_unbind(conn)
                self._down_until[index] = time.monotonic() + self.settings.pool_exhaust_timeout
                failures.append(f"{server.url}: {_reason(exc)}")
                logger.warning("LDAP connection `%s`: server %s failed (%s), trying the next",
                               self.settings.name, server.url, _reason(exc))
                continue
            self._down_until.pop(index, None)
            try:
                bound = conn.bind()
            except _SERVER_FAILURES as exc:
                _quietly_unbind(conn)
                failures.append(f"{server.url}: bind failed: {_reason(exc)}")
                continue
            if not bound:
                result = dict(conn.result or {})
                _quietly_unbind(conn)
                raise LdapBindRefused(
                    f"LDAP connection `{self.settings.name}`: {server.url} refused the bind as "
                    f"`{parameters.get('user') or 'anonymous'}`: {result.get('description', 'refused')}"
                    f" ({result.get('result', '?')})", ) from None
            return conn
        raise LdapUnavailable(f"LDAP connection `{self.settings.name}`: no server answered ("
                              + "; ".join(failures) + ")")

    # --- Lending connections ---------------------------------------------------------------------

    @contextlib.contextmanager
    def get(self) -> Iterator[ldap3.Connection]:
        """A bound connection for the ``with`` block; back to the pool afterwards if still usable."""
        if not self._slots.acquire(timeout=self.settings.operation_timeout):
            raise LdapUnavailable(f"LDAP connection `{self.settings.name}`: all {self.settings.pool_size} pooled "
                                  f"connections stayed busy for {self.settings.operation_timeout:g} s")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self.open()
            try:
                yield conn
            except _SERVER_FAILURES as exc:
                server = f"{conn.server.host}:{conn.server.port}"
                _quietly_unbind(conn)
                conn = None
                raise LdapUnavailable(f"LDAP connection `{self.settings.name}`: {server} stopped answering: "
                                      f"{_reason(exc)}") from exc
            if self._reusable(conn):
                with self._lock:
                    if not self._closed:
                        self._idle.append(conn)
                        conn = None
        finally:
            if conn is not None:
                _quietly_unbind(conn)
            self._slots.release()

    def _reusable(self, conn: ldap3.Connection) -> bool:
        # A service may rebind as someone else or unbind: such a connection is not the pool's any more.
        return conn.bound and not conn.closed and conn.user == self._own_user

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _quietly_unbind(conn)


class LdapClient(Connection):
    """``self.out.ldap[name]``: ``.conn.client()`` (a context manager) gives this object; see the module."""

    kind = KIND

    def __init__(self, settings: LdapSettings, *, is_active: bool = True) -> None:
        self.name = settings.name
        self.settings = settings
        self.is_active = is_active
        self.pool = LdapPool(settings)

    @classmethod
    def from_definition(cls, row: LdapConnection) -> LdapClient:
        return cls(LdapSettings.from_row(row), is_active=row.is_active)

    @property
    def conn(self) -> LdapClient:
        """Zato's spelling: ``self.out.ldap[name].conn.client()``."""
        return self

    @contextlib.contextmanager
    def client(self) -> Iterator[LdapClient]:
        yield self

    def get(self) -> contextlib.AbstractContextManager[ldap3.Connection]:
        return self.pool.get()

    def check_credentials(self, username: str, password: str, raise_on_error: bool = False) -> bool:
        """True if the directory accepts ``password`` for ``username`` (a DN, or DOMAIN\\user with NTLM)."""
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            return False  # an empty password would be an unauthenticated bind, which servers accept
        try:
            conn = self.pool.open(username, password)
        except LdapBindRefused:
            if raise_on_error:
                raise
            return False
        _quietly_unbind(conn)
        return True

    def ping(self) -> PingResult:
        """Open a new connection through the pool and read the root DSE; names the server that answered."""
        started = time.perf_counter()
        try:
            conn = self.pool.open()
        except (LdapError, LdapUnavailable) as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000, str(exc))
        try:
            answered = conn.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["1.1"])
            result = dict(conn.result or {})
            server = f"{'ldaps' if conn.server.ssl else 'ldap'}://{conn.server.host}:{conn.server.port}"
        except _SERVER_FAILURES as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000,
                              f"LDAP connection `{self.name}`: the root DSE search failed: {_reason(exc)}")
        finally:
            _quietly_unbind(conn)
        ms = (time.perf_counter() - started) * 1000
        if not answered:
            return PingResult(False, ms, f"{server} answered the root DSE search with "
                              f"{result.get('description', 'an error')}")
        who = "anonymously" if self.settings.auth_type == "ANONYMOUS" else f"as {self.settings.username}"
        return PingResult(True, ms, f"{server} answered (bound {who})")

    def close(self) -> None:
        self.pool.close()


def _quietly_unbind(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: S110 - a socket already gone cannot be unbound any better
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # ldap3 wraps socket errors as "socket connection error while opening: [Errno 111] Connection refused".
    return text.replace("socket connection error while opening: ", "")[:300]
