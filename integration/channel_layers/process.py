"""One process's side of the layer: the writer thread and the poller thread, made per process.

What they share with the event loops and why they exist: the module docstring of ``layer``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .doorbells import Doorbell, Ringer
from .store import FileIdentity, Row, claim, cleanup, data_version, forget_channels, restore

if TYPE_CHECKING:
    from .layer import SQLiteChannelLayer

logger = logging.getLogger(__name__)

T = TypeVar("T")

# At most this many rows are claimed in one statement; a full batch makes the poller go again at once.
CLAIM_BATCH = 500
# After a claim the poller waits this long (seconds) before the next, so a burst is claimed in batches.
CLAIM_GAP = 0.001
# With doorbells, the poller still looks this often (seconds) in case a ring was missed.
FALLBACK_INTERVAL = 1.0


class Writer:
    """One thread and one connection that run this process's sends and group operations in turn.

    A single connection is enough: SQLite lets one writer in at a time anyway, and keeping the
    work off the event loop is the point. It also deletes expired rows now and then, so a
    process that only sends (a Celery worker) keeps the file clean too.
    """

    def __init__(self, layer: SQLiteChannelLayer) -> None:
        self.layer = layer
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-layer-writer")
        self.conn: sqlite3.Connection | None = None
        self.file: FileIdentity | None = None  # which file self.conn has open
        self.next_cleanup = 0.0
        self.ringer = Ringer(layer.bell_directory) if layer.bell_directory is not None else None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        layer = self.layer
        try:
            if self.conn is not None and layer.lost(self.file):
                self._close()  # the file was deleted or replaced: write to the one at the path now
            if self.conn is None:
                self.conn, self.file = layer.open()
            now = time.time()
            if now >= self.next_cleanup:
                self.next_cleanup = now + layer.cleanup_interval
                cleanup(self.conn, now, now - layer.group_expiry)
            return fn(self.conn, *args)
        except sqlite3.Error:
            self._close()  # the next call reconnects
            raise

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.ringer is not None:
            self.ringer.close()

    def close(self) -> None:
        self.executor.submit(self._close).result(timeout=30)
        self.executor.shutdown(wait=True)


class Poller:
    """The one thread per process that fetches messages for every ``receive()`` waiting here.

    State shared with the event loop(s) (waiting futures, buffers) is guarded by one lock; the
    futures are ``concurrent.futures`` ones, so any event loop can wait on them.
    """

    def __init__(self, layer: SQLiteChannelLayer, key: str) -> None:
        self.layer = layer
        self.key = key
        self.lock = threading.Lock()
        self.waiters: dict[str, deque[concurrent.futures.Future[Row]]] = {}
        self.buffers: dict[str, deque[Row]] = {}
        self.giveback: list[Row] = []  # claimed from normal channels but not handed out
        self.dead: set[str] = set()  # channels that let a buffered message expire
        self.bell: Doorbell | None = None
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.planned: frozenset[str] = frozenset()  # inboxes the last claim covered

    # -- called from event loops and the writer thread -----------------------------------------

    def wait_for(self, channel: str) -> Row | concurrent.futures.Future[Row]:
        """A buffered message for the channel, or a future the poller will resolve with one."""
        with self.lock:
            row = self._take(channel, time.time())
            if row is not None:
                return row
            future: concurrent.futures.Future[Row] = concurrent.futures.Future()
            self.waiters.setdefault(channel, deque()).append(future)
            if self.thread is None:
                self._start()
            # A normal channel's claims are cut to the receives waiting, so more may be there already.
            wake = "!" not in channel or self.layer.inbox(channel) not in self.planned
        if wake:
            self.kick()
        return future

    def abandon(self, channel: str, future: concurrent.futures.Future[Row]) -> None:
        """A receive was cancelled: withdraw its future, or keep the message it was just given."""
        with self.lock:
            if future.cancel():
                waiting = self.waiters.get(channel)
                if waiting is not None:
                    with contextlib.suppress(ValueError):
                        waiting.remove(future)
                    if not waiting:
                        del self.waiters[channel]
                return
            row = future.result()
            self.buffers.setdefault(channel, deque()).appendleft(row)
            self._hand_out(channel, time.time())
            self._give_back_unwanted(channel)
        self.kick()

    def kick(self) -> None:
        """Something changed for this process (a local write, a new waiter): look now."""
        bell = self.bell
        if bell is not None:
            bell.ring()

    def stop(self) -> None:
        """End the thread; receives still waiting are cancelled (nobody would resolve them)."""
        self.stopping = True
        with self.lock:
            for waiting in self.waiters.values():
                for future in waiting:
                    future.cancel()
            self.waiters.clear()
        self.kick()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)
        if self.bell is not None:
            self.bell.close()

    # -- under the lock ------------------------------------------------------------------------

    def _start(self) -> None:
        """The doorbell exists before the first claim, so a ring cannot fall between the two."""
        self.bell = Doorbell(self.layer.bell_directory, self.key)
        self.thread = threading.Thread(target=self._loop, name="sqlite-layer-poller", daemon=True)
        self.thread.start()

    def _take(self, channel: str, now: float) -> Row | None:
        buffer = self.buffers.get(channel)
        while buffer:
            was_full = len(buffer) >= self.layer.get_capacity(channel)
            row = buffer.popleft()
            if not buffer:
                del self.buffers[channel]
            if was_full:
                self.kick()  # its rows were left out of claims: include them again
            if row.expires > now:
                return row
            self.dead.add(channel)
        return None

    def _hand_out(self, channel: str, now: float) -> None:
        buffer, waiting = self.buffers.get(channel), self.waiters.get(channel)
        while buffer and waiting:
            row = buffer[0]
            if row.expires <= now:
                buffer.popleft()
                self.dead.add(channel)
                continue
            future = waiting.popleft()
            if future.set_running_or_notify_cancel():
                buffer.popleft()
                future.set_result(row)
        if not buffer:
            self.buffers.pop(channel, None)
        if not waiting:
            self.waiters.pop(channel, None)

    def _give_back_unwanted(self, channel: str) -> None:
        """Messages of a normal channel that nobody here waits for go back to the file for others."""
        if "!" not in channel and channel not in self.waiters and channel in self.buffers:
            self.giveback.extend(self.buffers.pop(channel))

    def _deliver(self, rows: list[Row], now: float) -> None:
        touched = []
        for row in rows:
            buffer = self.buffers.get(row.channel)
            if buffer is None:
                buffer = self.buffers[row.channel] = deque()
                touched.append(row.channel)
            buffer.append(row)
        for channel in touched:
            self._hand_out(channel, now)
            self._give_back_unwanted(channel)

    def _plan(self) -> tuple[list[str], dict[str, int], list[str]]:
        """What to claim: the inboxes of waiting process-local channels, waiting normal channels
        (with how many receives wait on each) and the process-local channels whose buffer is full."""
        inboxes, normal = set(), {}
        for channel, waiting in self.waiters.items():
            if "!" in channel:
                inboxes.add(self.layer.inbox(channel))
            else:
                normal[channel] = len(waiting)
        capacity = self.layer.get_capacity
        full = [c for c, buffer in self.buffers.items() if "!" in c and len(buffer) >= capacity(c)]
        return sorted(inboxes), normal, full

    def _purge(self, now: float) -> None:
        """Drop expired buffered messages of channels nobody waits on (their consumers left)."""
        for channel in [c for c in self.buffers if c not in self.waiters]:
            buffer = self.buffers[channel]
            while buffer and buffer[0].expires <= now:
                buffer.popleft()
                self.dead.add(channel)
            if not buffer:
                del self.buffers[channel]

    # -- the thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        conn: sqlite3.Connection | None = None
        seen = (-1, frozenset[str](), 0.0)  # data_version, plan, time of the last claim
        next_cleanup = 0.0
        bell = self.bell or Doorbell(None, self.key)  # always set by _start(); this keeps the types exact
        file: FileIdentity | None = None
        while not self.stopping:
            try:
                if conn is not None and self.layer.lost(file):
                    conn.close()  # the file was deleted or replaced: look in the one at the path now
                    conn, seen = None, (-1, frozenset[str](), 0.0)
                if conn is None:
                    conn, file = self.layer.open()
                claimed_at = seen[2]
                seen, next_cleanup, timeout = self._tick(conn, seen, next_cleanup)
                if seen[2] != claimed_at and CLAIM_GAP:
                    time.sleep(CLAIM_GAP)  # let a burst gather: one claim for many messages
            except Exception:  # the thread must outlive any error, or every receive here would hang
                logger.exception("channel layer poller failed; retrying in 1 s")
                if conn is not None:
                    conn.close()
                    conn = None
                timeout = 1.0
            if timeout:
                bell.wait(timeout)
        if conn is not None:
            conn.close()

    def _sleep(self, normal_waiting: bool) -> float:
        if normal_waiting or self.bell is None or not self.bell.remote:
            return self.layer.poll_interval
        return FALLBACK_INTERVAL

    def _tick(
        self, conn: sqlite3.Connection, seen: tuple[int, frozenset[str], float], next_cleanup: float
    ) -> tuple[tuple[int, frozenset[str], float], float, float]:
        """One round: housekeeping, then a claim if anything may have arrived.

        Returns the new state and how long to sleep unless rung (0: a full batch came, go on).
        """
        layer, now = self.layer, time.time()
        housekeeping = now >= next_cleanup
        with self.lock:
            if housekeeping:
                self._purge(now)
            inboxes, normal, full = self._plan()
            if not inboxes and not normal:
                self.planned = frozenset()  # the next receive must wake the thread
            giveback, self.giveback = self.giveback, []
            dead, self.dead = self.dead, set()
        if giveback:
            restore(conn, giveback)
        if dead:
            forget_channels(conn, dead)
        if housekeeping:
            cleanup(conn, now, now - layer.group_expiry)
            next_cleanup = now + layer.cleanup_interval
        if not inboxes and not normal:
            return seen, next_cleanup, layer.cleanup_interval  # nobody waits: nothing to look for
        key = frozenset([*inboxes, *normal, *(f"full:{c}" for c in full)])
        version = data_version(conn)
        unchanged = (version, key) == seen[:2] and now - seen[2] < FALLBACK_INTERVAL
        if unchanged and not normal:  # normal channels are looked at every time: see wait_for()
            return seen, next_cleanup, self._sleep(False)
        with self.lock:
            self.planned = frozenset(inboxes) | frozenset(normal)
        rows = claim(conn, inboxes, full, CLAIM_BATCH, now) if inboxes else []
        for channel, count in normal.items():
            rows.extend(claim(conn, [channel], [], count, now))
        if rows:
            with self.lock:
                self._deliver(rows, now)
        return (version, key, now), next_cleanup, 0.0 if len(rows) >= CLAIM_BATCH else self._sleep(bool(normal))


class ProcessState:
    """Everything that belongs to one process: its key in channel names, writer and poller."""

    def __init__(self, layer: SQLiteChannelLayer, key: str) -> None:
        self.pid = os.getpid()
        self.key = key
        self.writer = Writer(layer)
        self.poller = Poller(layer, self.key)

    def close(self) -> None:
        self.poller.stop()
        self.writer.close()
