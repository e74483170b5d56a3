"""The compiled per-process snapshot of configuration.

Request handling reads ``current()`` (a module global: no queries). The snapshot holds
the service registry, the compiled security definitions, the outgoing connections and one
table per registered channel type (``channels["rest"]``, ``channels["websocket"]``...), all
built from the database at one ``ConfigVersion``; it names no type of either itself, it
asks the registries (``integration.channels.base``, ``integration.channels.security``,
``connections.base``). A daemon
thread in each server and worker process polls that version (``integration.poller``) and
swaps in a new snapshot when something changed. Requests already running keep the objects they
looked up, so a swap never fails them. Writes made in this process refresh it at once,
on commit.

The thread that keeps it fresh, and the check before a process's first request, are in
``integration.poller``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections, transaction

from connections.base import OutgoingTable
from integration.channels import base as channel_types
from integration.channels.security import SecurityTable
from integration.models import ConfigVersion, ServiceModule
from integration.registry import DeploymentError, LoadedModule, Registry, load_builtin, load_source, recall

if TYPE_CHECKING:
    from integration.channels.routing import RoutingTable
    from integration.channels.ws_routing import WebSocketTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    version: int
    registry: Registry
    security: SecurityTable
    outgoing: OutgoingTable
    channels: dict[str, Any]  # channel type name -> its compiled table
    built_at: float

    # The two kinds the platform's own code looks up on every request, named for readability.
    @property
    def routes(self) -> RoutingTable:
        return self.channels["rest"]

    @property
    def websockets(self) -> WebSocketTable:
        return self.channels["websocket"]


_current: Snapshot | None = None
_dirty = False  # set by changed(): this process wrote configuration, rebuild before next use
_lock = threading.RLock()


def _after_fork_in_child() -> None:
    # A fork copies the lock in whatever state another thread of the parent left it; that
    # thread does not exist in the child, so a held lock would never be released there.
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def current() -> Snapshot:
    snap = _current
    if snap is None or _dirty:
        return refresh(force=_dirty)
    return snap


def peek() -> Snapshot | None:
    """The current snapshot if it is up to date, else None; never queries (for async code).

    Code on an event loop must not touch the database: when this answers None it calls
    ``current()`` in a thread instead.
    """
    snap = _current
    return None if snap is None or _dirty else snap


def refresh(*, force: bool = False) -> Snapshot:
    """Rebuild the snapshot if the configuration version moved (or when forced)."""
    global _current, _dirty
    with _lock:
        _dirty = False
        version = ConfigVersion.current()
        snap = _current
        if snap is not None and snap.version == version and not force:
            return snap
        _current = _build(version, snap)
        return _current


def _build(version: int, previous: Snapshot | None) -> Snapshot:
    started = time.perf_counter()
    old_modules = dict(previous.registry.modules) if previous else {}
    modules: list[LoadedModule] = []
    for dotted in settings.BUILTIN_SERVICE_MODULES:
        modules.append(old_modules.get(dotted) or load_builtin(dotted))
    rows = ServiceModule.objects.exclude(origin=ServiceModule.Origin.BUILTIN).exclude(source="")
    hashes = list(rows.values_list("name", "source_hash"))
    # Reuse modules this process already imported at that hash (earlier snapshot, or a
    # deployment made here); fetch source text only for the others.
    stale = []
    for name, digest in hashes:
        if getattr(old_modules.get(name), "source_hash", None) == digest:
            continue
        recalled = recall(name, digest)
        if recalled is not None:
            old_modules[name] = recalled
        else:
            stale.append(name)
    fresh = {name: (source, filename)
             for name, source, filename in rows.filter(name__in=stale).values_list("name", "source", "filename")}
    for name, _ in hashes:
        old = old_modules.get(name)
        if name not in fresh:
            if old is not None:
                modules.append(old)  # unchanged: no re-import
            continue
        source, filename = fresh[name]
        try:
            modules.append(load_source(name, source, filename))
        except DeploymentError as exc:
            # Stored source was accepted once; if it fails now (a missing library on this
            # machine, say), keep the previous version in this process and say so.
            logger.error("Module %s cannot be loaded in this process: %s", name, exc)
            if old is not None:
                modules.append(old)
    registry = Registry(modules)
    security = SecurityTable.build()
    outgoing = OutgoingTable.build(previous.outgoing if previous else None)
    context = channel_types.BuildContext(registry, security, outgoing)
    channels = {channel_type.name: channel_type.build(context) for channel_type in channel_types.types()}
    snap = Snapshot(version, registry, security, outgoing, channels, time.time())
    if previous is not None:
        previous.outgoing.retire_unused(outgoing)  # clients of changed or deleted connections: closed
    logger.debug(
        "Configuration version %s loaded: %d services, %s, %d outgoing connections in %.1f ms",
        version, len(registry), ", ".join(f"{len(table)} {name} channels" for name, table in channels.items()),
        len(outgoing), (time.perf_counter() - started) * 1000,
    )
    return snap


def changed() -> None:
    """Record a configuration change: bump the version now, refresh this process on commit.

    Models and other apps call ``integration.signals.changed()``, which calls this.
    """
    global _dirty
    ConfigVersion.bump()
    _dirty = True
    transaction.on_commit(_refresh_quietly)


def reset() -> None:
    """Forget the snapshot (tests: rolled-back transactions can reuse version numbers)."""
    global _current, _dirty
    with _lock:
        _current, _dirty = None, False


def _refresh_quietly() -> None:
    try:
        refresh()
    except Exception:
        logger.exception("Could not refresh the configuration snapshot")


def warm() -> Any:
    """Build the snapshot now (server start) and drop DB connections so forks get their own."""
    snap = refresh(force=True)
    connections.close_all()
    return snap
