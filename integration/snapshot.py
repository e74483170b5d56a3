"""The compiled per-process snapshot of configuration, and the thread that keeps it fresh.

Request handling reads ``current()`` (a module global: no queries). The snapshot holds
the service registry, the REST routing table, the WebSocket channels by path and the
security authenticators, all built from the database at one ``ConfigVersion``. A daemon
thread in each server and worker process polls that version (one tiny query every
``CONFIG_POLL_INTERVAL`` seconds, not per request) and the pickup directory, and swaps in
a new snapshot when something changed. Requests already running keep the objects they
looked up, so a swap never fails them. Writes made in this process refresh it at once,
on commit.

A process never answers its first request from a snapshot it did not check: a snapshot
built before a fork (gunicorn's ``preload_app``), or at import some time before a server
started taking requests, may be older than the configuration the database already holds.
``ensure_poller()``, called before every request, compares the version once per process
(the first call after start or fork) before it starts that process's poller; from then on
the poller keeps the snapshot within ``CONFIG_POLL_INTERVAL`` of the database.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections, connections

from integration import metrics
from integration.registry import DeploymentError, LoadedModule, Registry, load_builtin, load_source, recall

if TYPE_CHECKING:
    from accounts.security import SecurityTable
    from integration.channels.routing import RoutingTable
    from integration.channels.ws_routing import WebSocketTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    version: int
    registry: Registry
    routes: RoutingTable
    security: SecurityTable
    websockets: WebSocketTable
    built_at: float


_current: Snapshot | None = None
_dirty = False  # set by changed(): this process wrote configuration, rebuild before next use
_lock = threading.RLock()


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
    from integration.models import ConfigVersion

    with _lock:
        _dirty = False
        version = ConfigVersion.current()
        snap = _current
        if snap is not None and snap.version == version and not force:
            return snap
        _current = _build(version, snap)
        return _current


def _build(version: int, previous: Snapshot | None) -> Snapshot:
    from accounts.security import SecurityTable
    from integration.channels.routing import RoutingTable
    from integration.channels.ws_routing import WebSocketTable
    from integration.models import ServiceModule

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
    routes = RoutingTable.build(registry, security)
    websockets = WebSocketTable.build(registry, security)
    snap = Snapshot(version, registry, routes, security, websockets, time.time())
    logger.debug(
        "Configuration version %s loaded: %d services, %d REST channels, %d WebSocket channels in %.1f ms",
        version, len(registry), len(routes), len(websockets), (time.perf_counter() - started) * 1000,
    )
    return snap


def changed() -> None:
    """Record a configuration change: bump the version now, refresh this process on commit."""
    from django.db import transaction

    from integration.models import ConfigVersion

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


# --- The background poller ----------------------------------------------------------------------

_poller_pid: int | None = None


def ensure_poller() -> None:
    """Before a request: once per process, check the configuration version, then start the poller.

    The pid comparison is the only per-request cost. The first call in a process (after start
    or after a fork: threads and the parent's checks do not carry over) refreshes the snapshot
    before the request it precedes is served, so a restarted worker cannot answer from the
    configuration its parent, or its own import, loaded earlier. If the database cannot be
    reached just then, the process serves what it has (it can see no newer version) and the
    poller keeps trying.
    """
    global _poller_pid
    if _poller_pid == os.getpid():
        return
    with _lock:
        pid = os.getpid()
        if _poller_pid == pid:
            return
        try:
            refresh()
        except Exception as exc:
            logger.warning("Configuration version check before the first request failed: %s", exc)
            connections.close_all()
        _poller_pid = pid
        if not settings.CONFIG_POLLER:
            return
        thread = threading.Thread(target=_poll_forever, name="switchboard-config-poller", daemon=True)
        thread.start()
        metrics.install_exit_flush()


def _after_fork_in_child() -> None:
    # A fork copies the lock in whatever state another thread of the parent left it; that
    # thread does not exist in the child, so a held lock would never be released there.
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _poll_forever() -> None:
    from integration.deploy import PickupWatcher

    watcher = PickupWatcher(settings.PICKUP_DIR) if settings.PICKUP_WATCH else None
    interval = settings.CONFIG_POLL_INTERVAL
    while True:
        time.sleep(interval)
        try:
            close_old_connections()
            if watcher is not None:
                watcher.scan()
            refresh()
        except Exception as exc:  # keep polling whatever happens; the database may come back
            logger.warning("Configuration poll failed: %s", exc)
            connections.close_all()
        _flush_metrics()


def _flush_metrics() -> None:
    """Write this process's invocation statistics when they are due (they stay pending if that fails)."""
    try:
        metrics.recorder.maybe_flush()
    except Exception as exc:
        logger.warning("Writing invocation statistics failed: %s", exc)
        connections.close_all()


def warm() -> Any:
    """Build the snapshot now (server start) and drop DB connections so forks get their own."""
    snap = refresh(force=True)
    connections.close_all()
    return snap
