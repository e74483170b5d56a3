"""The thread that keeps each process's snapshot fresh, and the check before its first request.

A daemon thread in each server and worker process polls the configuration version (one tiny
query every ``CONFIG_POLL_INTERVAL`` seconds, not per request) and the pickup directory, and
has ``integration.snapshot`` swap in a new snapshot when something changed.

A process never answers its first request from a snapshot it did not check: a snapshot
built before a fork (a pre-loading server), or at import some time before a server started
taking requests, may be older than the configuration the database already holds.
``ensure_poller()``, called before every request, compares the version once per process
(the first call after start or fork) before it starts that process's poller; from then on
the poller keeps the snapshot within ``CONFIG_POLL_INTERVAL`` of the database.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connections

from integration import metrics
from integration.deploy import PickupWatcher
from integration.snapshot import refresh

logger = logging.getLogger(__name__)
_lock = threading.RLock()


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
