"""Outgoing connections: the contract every connection type meets, their registry, and the compiled table.

A *connection type* (Vault today; REST, FHIR, LDAP, SFTP, FTP next) is registered by the app
that owns it, in ``AppConfig.ready()``::

    base.register(ConnectionType(kind="vault", label="Vault", model="connections.VaultConnection",
                                 build=VaultClient.from_definition))

``build(row)`` turns one row into a ``Connection``: a client or pool ready to use, built without
contacting the other side. The snapshot holds an ``OutgoingTable`` of every registered type's
rows; when the configuration changes, a connection whose row did not change is carried over as
it is (its pool stays warm), the others are built again and the old ones closed once the new
snapshot is in place. Services reach them through ``self.out.<kind>[name]``
(``connections.outgoing``), which raises a clear error naming the kind and the connection when it
does not exist (``ConnectionNotFound``, 500: the service's configuration is wrong) or is
inactive or broken (``ConnectionUnavailable``, 503).

A connection that can be pinged answers ``ping() -> PingResult``: whether the other side
answered as it should, how long that took, and a line for the administrator (the server's
version on success; on failure the exact reason, such as ``cannot connect to Vault at
http://10.0.0.5:8200: Connection refused``). ``ping()`` reports failures in its result and
raises nothing it can foresee; secrets never appear in ``info``. The admin's Ping buttons are
``connections.admin_base.PingAdminMixin``.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from connections.outgoing import Namespace
from integration.errors import ServiceUnavailable, SwitchboardError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PingResult:
    """The outcome of one ping: ``ok``, the round-trip time in ms, and a line for people."""

    ok: bool
    ms: float
    info: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "ms": round(self.ms, 3), "info": self.info}


class Pingable(Protocol):
    def ping(self) -> PingResult: ...


def timed(check: Callable[[], tuple[bool, str]]) -> PingResult:
    """Run ``check`` (returning ok and info) and time it: a helper for ``ping()`` implementations."""
    started = time.perf_counter()
    ok, info = check()
    return PingResult(ok, (time.perf_counter() - started) * 1000, info)


class ConnectionNotFound(SwitchboardError):
    """``self.out.<kind>[name]`` with no such connection: the service's configuration is wrong (500)."""

    status_code = 500


class ConnectionUnavailable(ServiceUnavailable):
    """The connection exists but cannot be used: inactive, or its definition cannot be loaded (503)."""


class Connection:
    """One outgoing connection, compiled: what ``self.out.<kind>[name]`` returns.

    Types subclass it (or meet the same contract): ``kind``, ``name``, ``is_active``;
    ``ping()``; ``close()``, called when a new snapshot no longer uses it.
    """

    kind: str = ""
    name: str = ""
    is_active: bool = True

    def ping(self) -> PingResult:
        return PingResult(False, 0.0, f"{self.kind} connections cannot be pinged")

    def close(self) -> None:
        """Release sockets and pools; the default holds none."""


def row_fingerprint(row: Any) -> str:
    """A digest of every stored field of a row: a connection is rebuilt only when this changes."""
    values = [(f.attname, getattr(row, f.attname)) for f in row._meta.concrete_fields]
    return hashlib.sha256(repr(values).encode()).hexdigest()


@dataclass(frozen=True)
class ConnectionType:
    """One kind of outgoing connection, as its app registers it.

    ``kind`` is how services name it (``self.out.vault``; a dotted kind such as ``hl7.fhir``
    reads ``self.out.hl7.fhir``), ``aliases`` Zato's other spellings (``plain_http`` for
    ``rest``), ``model`` the row's model (``"app_label.ModelName"``), ``build`` the connection
    of one row (no network), ``active`` which rows are used (all by default: an inactive one is
    compiled so that using it says it is inactive). ``kind_api``, optional, gives ``self.out.<kind>``
    more than lookups by name: it takes the kind's view (``connections.outgoing.Kind``, which does
    ``[name]``, ``get``, ``in``, ``keys``) and returns what ``self.out.<kind>`` (and each alias)
    should be, such as an object that keeps those and adds Zato's ``send(msg, out_name, ...)``.
    """

    kind: str
    label: str
    model: str
    build: Callable[[Any], Connection] | str
    aliases: tuple[str, ...] = ()
    fingerprint: Callable[[Any], str] = row_fingerprint
    kind_api: Callable[[Any], Any] | None = None


_types: dict[str, ConnectionType] = {}

#: Seconds a replaced connection stays open before it is closed: requests that looked it up in the
#: previous snapshot finish on it (a snapshot swap never fails a request in flight).
RETIRE_AFTER = 60.0


def builder(connection_type: ConnectionType) -> Callable[[Any], Connection]:
    """The type's ``build``; a ``"module:attribute.path"`` string is imported on first use.

    A string keeps a kind's client library (paramiko, ldap3, fhirpy: a few hundred ms of imports
    together) out of every process's start-up: it is imported when a row of that kind is first
    compiled, which a platform that has none of them never does.
    """
    build = connection_type.build
    if not isinstance(build, str):
        return build
    resolved = _resolved.get(build)
    if resolved is None:
        module_name, _, path = build.partition(":")
        resolved = importlib.import_module(module_name)
        for part in path.split("."):
            resolved = getattr(resolved, part)
        _resolved[build] = resolved
    return resolved


_resolved: dict[str, Callable[[Any], Connection]] = {}


def register(connection_type: ConnectionType) -> ConnectionType:
    """Add a type (from ``AppConfig.ready()``); a kind or alias registered twice is an error at start-up."""
    names = (connection_type.kind, *connection_type.aliases)
    for known in _types.values():
        clash = set(names) & {known.kind, *known.aliases}
        if clash:
            raise ImproperlyConfigured(f"Connection type `{sorted(clash)[0]}` is registered twice "
                                       f"(by {known.model} and {connection_type.model})")
    _types[connection_type.kind] = connection_type
    return connection_type


def unregister(kind: str) -> None:
    """Remove a type (tests that play a removed plug-in)."""
    _types.pop(kind, None)


def types() -> list[ConnectionType]:
    return list(_types.values())


class BrokenConnection(Connection):
    """A row whose connection cannot be built (a secret no key decrypts): using it is a 503."""

    def __init__(self, kind: str, name: str, reason: str) -> None:
        self.kind, self.name, self.reason, self.is_active = kind, name, reason, False

    def ping(self) -> PingResult:
        return PingResult(False, 0.0, self.reason)


def _close(connections: list[Connection]) -> None:
    for connection in connections:
        try:
            connection.close()
        except Exception:
            logger.exception("Closing outgoing %s connection `%s` failed", connection.kind, connection.name)


class OutgoingTable:
    """Every registered type's connections, by kind and name, for one configuration version."""

    def __init__(self, by_kind: dict[str, dict[str, tuple[str, Connection]]]) -> None:
        self.by_kind = by_kind
        self.aliases = {alias: t.kind for t in _types.values() for alias in t.aliases}
        self.apis = {t.kind: t.kind_api for t in _types.values() if t.kind_api is not None}
        self._namespace: Any = None

    @classmethod
    def build(cls, previous: OutgoingTable | None = None, registered: Iterable[ConnectionType] | None = None,
              ) -> OutgoingTable:
        by_kind: dict[str, dict[str, tuple[str, Connection]]] = {}
        for connection_type in list(registered if registered is not None else _types.values()):
            old = previous.by_kind.get(connection_type.kind, {}) if previous else {}
            compiled: dict[str, tuple[str, Connection]] = {}
            for row in apps.get_model(connection_type.model).objects.all():
                fingerprint = connection_type.fingerprint(row)
                kept = old.get(row.name)
                if kept is not None and kept[0] == fingerprint:
                    compiled[row.name] = kept  # unchanged: the same client, its pool still warm
                    continue
                try:
                    connection = builder(connection_type)(row)
                except Exception as exc:
                    logger.exception("Outgoing %s connection `%s` cannot be loaded", connection_type.kind, row.name)
                    connection = BrokenConnection(connection_type.kind, row.name,
                                                  f"the connection cannot be loaded ({type(exc).__name__})")
                compiled[row.name] = (fingerprint, connection)
            by_kind[connection_type.kind] = compiled
        return cls(by_kind)

    def retire_unused(self, successor: OutgoingTable) -> None:
        """Close, ``RETIRE_AFTER`` seconds from now, the connections ``successor`` does not carry over."""
        kept = {id(entry[1]) for connections in successor.by_kind.values() for entry in connections.values()}
        retired = [connection for connections in self.by_kind.values() for _, connection in connections.values()
                   if id(connection) not in kept]
        if not retired:
            return
        if RETIRE_AFTER <= 0:
            _close(retired)
            return
        timer = threading.Timer(RETIRE_AFTER, _close, args=(retired,))
        timer.daemon = True
        timer.start()

    def kinds(self) -> list[str]:
        return list(self.by_kind)

    def get(self, kind: str, name: str) -> Connection:
        """The connection, usable; ``ConnectionNotFound`` or ``ConnectionUnavailable`` naming both otherwise."""
        kind = self.aliases.get(kind, kind)
        connections = self.by_kind.get(kind)
        if connections is None:
            raise ConnectionNotFound(f"No outgoing connection type `{kind}` is installed")
        entry = connections.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ConnectionNotFound(f"No outgoing {kind} connection is named `{str(name)[:200]}`")
        connection = entry[1]
        if isinstance(connection, BrokenConnection):
            raise ConnectionUnavailable(f"Outgoing {kind} connection `{name}` cannot be used: {connection.reason}")
        if not connection.is_active:
            raise ConnectionUnavailable(f"Outgoing {kind} connection `{name}` is inactive")
        return connection

    def kind_api(self, kind: str) -> Callable[[Any], Any] | None:
        """The type's ``kind_api`` hook for ``kind`` (or an alias of it), if it has one."""
        return self.apis.get(self.aliases.get(kind, kind))

    def names(self, kind: str) -> list[str]:
        return sorted(self.by_kind.get(self.aliases.get(kind, kind), {}))

    @property
    def namespace(self) -> Any:
        """``self.out`` for services (``connections.outgoing.Namespace``), made once per table."""
        if self._namespace is None:
            self._namespace = Namespace.over(self)
        return self._namespace

    def __len__(self) -> int:
        return sum(len(connections) for connections in self.by_kind.values())
