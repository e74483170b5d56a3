"""A Channels layer kept in one SQLite file, shared by every process on the machine.

Why: the embedded default (``make run``, nothing installed) runs daphne, granian and Celery
workers as separate processes, and a push from a Celery worker must reach a browser whose
socket lives in daphne. The in-memory layer cannot cross processes; this one needs only the
standard library (and msgpack, which channels-redis already brings). With Redis configured,
the platform uses channels_redis instead.

How it works:

* Two tables in a file of their own (not Django's database, so pushes never wait behind ORM
  writes): ``layer_message``, one row per undelivered message (the full channel name, its
  *inbox*, an expiry time and the msgpack body), and ``layer_group`` (group, channel, joined).
* Every write is one SQL statement, hence one short transaction. ``send`` is an
  ``INSERT ... SELECT`` that inserts only while the channel holds fewer than ``capacity`` live
  messages, so ``ChannelFull`` is decided atomically however many processes send;
  ``group_send`` writes one row per member in one statement; receivers claim rows with
  ``DELETE ... RETURNING``, so a message is delivered once even when processes race. WAL
  journal (readers never wait for the writer), ``synchronous=NORMAL`` (messages are
  ephemeral: a power cut may lose the newest ones but never corrupts the file), a busy timeout.
* SQLite calls block, so none runs on the event loop: sends and group operations go to one
  writer thread per process (one connection), receives are served by one poller thread per
  process (its own connection).
* Receiving. Consumers receive on process-local channels from ``new_channel()``:
  ``specific.<process key>!<random>``. All of a process's channels share one inbox,
  ``specific.<process key>!``, so the poller fetches the messages of every waiting consumer with
  one indexed query however many there are. It runs when woken, reads ``PRAGMA data_version``
  (about 5 µs; it moves only when another connection committed), looks read-only for rows in
  its inboxes and only when there are some claims them with a write. Claimed messages go to
  the waiting ``receive()`` calls (first come, first served) or to a per-channel buffer; a
  channel whose buffer holds ``capacity`` messages is left out of claims, so its rows stay in
  the file and senders get ``ChannelFull`` (a slow consumer may thus hold up to twice
  ``capacity``: its buffer and its rows). A process with nobody waiting does not poll.
* Waking. Each poller owns a doorbell, a FIFO ``<path>.bells/<process key>.fifo``; a sender,
  once its statement committed, writes one byte to the doorbell of every process it queued
  messages for (the key is in the inbox), so a push crosses processes in about a millisecond
  and an idle process spends no CPU. Stale doorbells of dead processes are removed. A missed
  ring costs latency, never a message: the poller also looks every ``FALLBACK_INTERVAL`` (1 s).
  Where FIFOs do not exist (Windows), and for normal channels (no ``!``, which any process
  may receive, so no doorbell names the receiver), it polls every ``poll_interval`` instead.
  For normal channels it claims at most one message per waiting receive and puts back, under
  its original id (so order holds), any it could not hand out.
* ``receive()`` awaits a future that the poller resolves under a lock, so it is cancellable
  (consumers cancel theirs on disconnect) and a message never falls between the two: a
  cancelled receive either withdraws its future or, if the poller got there first, returns
  the message to the front of the buffer (normal channels: to the file).
* Expiry: an expired message is never delivered; every ``cleanup_interval`` a process using
  the layer deletes expired rows and, as ``InMemoryChannelLayer`` does, removes a channel that
  let a message expire from all its groups (its consumer is gone: a killed process cannot
  ``group_discard``). Memberships older than ``group_expiry`` are ignored, then deleted.
* After a fork (gunicorn with preload) the child gets its own process key, connections,
  threads and doorbell.
* A lost file. Deleted (``rm var/channel-layer.sqlite3*``, a cleaner) or replaced while
  processes run, the old file lives on for the processes holding it open, and they would
  keep talking to each other through it while a new process talks to a new file. So each
  connection remembers which file (device, inode) it opened, and the writer (before every
  call) and the poller (before every look, at least once a second while anyone waits)
  compare it with the file now at the path, one ``stat`` each: on a difference they move to
  that file, creating it if it is missing (SQLite itself discards a lost file's leftover
  WAL). The messages and group memberships of the lost file are gone; each file holds a
  random *epoch* (``layer_meta``), and ``epoch()`` tells WebSocket servers to join their
  groups again (``integration.channels.ws_groups``). Replace the file only together with its
  ``-wal`` and ``-shm`` (or delete all three): SQLite ties a WAL to a path, not to a file.
  A deleted ``<path>.bells`` directory is not made again: pollers then look once a second
  (``FALLBACK_INTERVAL``) instead of being woken.

Measured with ``bench/channel_layer.py`` on this project's 2-core machine (busy with other
work at the time), sender and receiver in separate processes, channels_redis on the local
Redis in the same run (details in ``bench/README.md``): one-message latency p50 0.65 ms and
p99 5.6 ms (Redis 0.9 and 7.4 ms); 5,100 messages/s sent back to back (Redis 1,250: four
round trips per send); a group_send to 200 consumers in one process reached all of them in
9 ms at the median, p99 20 ms over all receipts (Redis 9.5 and 16 ms); a process waiting for
messages uses 0.04 % of a core. Without doorbells (polling every 10 ms) latency is 6.5 ms at
the median and a waiting process spends about 1.5 % of a core on polling (a thread wake-up
costs 60-90 µs of CPU here), which is why the doorbells exist.

CONFIG keys: ``path`` (default ``VAR_DIR/channel-layer.sqlite3``), ``expiry`` (60 s),
``group_expiry`` (86,400 s), ``capacity`` (100), ``channel_capacity`` (glob -> capacity),
``poll_interval`` (0.01 s), ``cleanup_interval`` (5 s), ``busy_timeout`` (10 s),
``doorbells`` (True). ``poll_interval`` matters only without doorbells and for normal
channels: 10 ms gives about 5 ms of added latency on average for about 1.5 % of a core per
waiting process; 20 ms halves both the CPU and the number of claims and doubles the latency.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import errno
import logging
import os
import re
import secrets
import selectors
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgpack
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 2
# Formatted with a fresh random epoch (hexadecimal) when a file is set up; see ``read_epoch``.
SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS layer_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    inbox TEXT NOT NULL,
    expires REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS layer_message_inbox ON layer_message (inbox, id);
CREATE INDEX IF NOT EXISTS layer_message_channel ON layer_message (channel, expires);
CREATE INDEX IF NOT EXISTS layer_message_expires ON layer_message (expires);
CREATE TABLE IF NOT EXISTS layer_group (
    grp TEXT NOT NULL,
    channel TEXT NOT NULL,
    inbox TEXT NOT NULL,
    joined REAL NOT NULL,
    PRIMARY KEY (grp, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS layer_group_channel ON layer_group (channel);
CREATE INDEX IF NOT EXISTS layer_group_joined ON layer_group (joined);
CREATE TABLE IF NOT EXISTS layer_meta (epoch TEXT NOT NULL);
INSERT INTO layer_meta (epoch) SELECT '{epoch}' WHERE NOT EXISTS (SELECT 1 FROM layer_meta);
PRAGMA user_version = 2;
COMMIT;
"""


# At most this many rows are claimed in one statement; a full batch makes the poller go again at once.
CLAIM_BATCH = 500
# After a claim the poller waits this long (seconds) before the next, so a burst is claimed in batches.
CLAIM_GAP = 0.001
# With doorbells, the poller still looks this often (seconds) in case a ring was missed.
FALLBACK_INTERVAL = 1.0
# The process key in a process-local inbox: "<prefix>.<key>!".
_INBOX_KEY = re.compile(r"\.([0-9a-f]{16})!\Z")


class Row(NamedTuple):
    """One claimed message, as stored."""

    id: int
    channel: str
    inbox: str
    expires: float
    body: bytes


# --- The store: plain functions on one connection, each statement a short transaction --------


def _set_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """WAL mode; SQLite answers "locked" at once (no busy handler) while another connection
    opening the same new file switches it too, so retry within the busy timeout."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open the layer's file (creating it and its tables if needed) in WAL mode."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        _set_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            try:
                conn.executescript(SCHEMA.format(epoch=secrets.token_hex(8)))
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
    except BaseException:
        conn.close()
        raise
    return conn


FileIdentity = tuple[int, int]  # (device, inode)


def file_identity(path: str) -> FileIdentity | None:
    """Which file ``path`` names now (device and inode), or None when there is none: one stat, about 1 µs."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def open_file(path: str, busy_timeout: float) -> tuple[sqlite3.Connection, FileIdentity | None]:
    """Connect to the layer's file (creating it if missing), and say which file that is, to notice its loss.

    A lost file's ``-wal`` and ``-shm`` need no cleaning up: SQLite deletes a WAL it finds
    beside an empty database file instead of reading it, and never checkpoints into, nor
    deletes the WAL of, a file that was unlinked under an open connection.
    """
    conn = connect(path, busy_timeout)
    return conn, file_identity(path)


def read_epoch(conn: sqlite3.Connection) -> str:
    """The random token written when this file was set up: a new file (the old one lost) has another."""
    row = conn.execute("SELECT epoch FROM layer_meta LIMIT 1").fetchone()
    return row[0] if row else ""


def insert_message(
    conn: sqlite3.Connection, channel: str, inbox: str, body: bytes, capacity: int, now: float, expires: float
) -> bool:
    """Queue one message unless the channel already holds ``capacity`` live ones; False when full."""
    cursor = conn.execute(
        "INSERT INTO layer_message (channel, inbox, expires, body) SELECT ?1, ?2, ?3, ?4 "
        "WHERE (SELECT COUNT(*) FROM layer_message WHERE channel = ?1 AND expires > ?5) < ?6",
        (channel, inbox, expires, body, now, capacity),
    )
    return cursor.rowcount == 1


def insert_group_message(
    conn: sqlite3.Connection, group: str, body: bytes, now: float, expires: float, joined_after: float
) -> tuple[int, int, set[str]]:
    """Queue the message for every live member of the group that has room for it.

    Returns the number of members, of messages queued and the inboxes written to (whose
    processes to wake).
    """
    members = conn.execute(
        "SELECT COUNT(*) FROM layer_group WHERE grp = ? AND joined > ?", (group, joined_after)
    ).fetchone()[0]
    if not members:
        return 0, 0, set()
    rows = conn.execute(
        "INSERT INTO layer_message (channel, inbox, expires, body) "
        "SELECT g.channel, g.inbox, ?3, ?4 FROM layer_group AS g WHERE g.grp = ?1 AND g.joined > ?2 "
        "AND (SELECT COUNT(*) FROM layer_message AS m WHERE m.channel = g.channel AND m.expires > ?5) "
        "< layer_capacity(g.channel) RETURNING inbox",
        (group, joined_after, expires, body, now),
    ).fetchall()
    return members, len(rows), {row[0] for row in rows}


def add_member(conn: sqlite3.Connection, group: str, channel: str, inbox: str, now: float) -> None:
    conn.execute(
        "INSERT INTO layer_group (grp, channel, inbox, joined) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (grp, channel) DO UPDATE SET joined = excluded.joined",
        (group, channel, inbox, now),
    )


def remove_member(conn: sqlite3.Connection, group: str, channel: str) -> None:
    conn.execute("DELETE FROM layer_group WHERE grp = ? AND channel = ?", (group, channel))


def _inbox_filter(inboxes: list[str], exclude: list[str], now: float) -> tuple[str, list[Any]]:
    where = f"inbox IN ({','.join('?' * len(inboxes))}) AND expires > ?"
    params: list[Any] = [*inboxes, now]
    if exclude:
        where += f" AND channel NOT IN ({','.join('?' * len(exclude))})"
        params.extend(exclude)
    return where, params


def claim(conn: sqlite3.Connection, inboxes: list[str], exclude: list[str], limit: int, now: float) -> list[Row]:
    """Take (delete and return, oldest first) up to ``limit`` live messages addressed to these inboxes.

    A read-only look comes first: most polls find nothing, and a read takes no write lock.
    """
    where, params = _inbox_filter(inboxes, exclude, now)
    if conn.execute(f"SELECT 1 FROM layer_message WHERE {where} LIMIT 1", params).fetchone() is None:  # noqa: S608
        return []
    rows = conn.execute(
        f"DELETE FROM layer_message WHERE id IN (SELECT id FROM layer_message WHERE {where} "  # noqa: S608
        "ORDER BY id LIMIT ?) RETURNING id, channel, inbox, expires, body",
        [*params, limit],
    ).fetchall()
    return sorted(Row._make(row) for row in rows)


def restore(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Put claimed messages back under their original ids, so they keep their place in line."""
    conn.executemany(
        "INSERT OR IGNORE INTO layer_message (id, channel, inbox, expires, body) VALUES (?, ?, ?, ?, ?)", list(rows)
    )


def forget_channels(conn: sqlite3.Connection, channels: Iterable[str]) -> None:
    conn.executemany("DELETE FROM layer_group WHERE channel = ?", [(c,) for c in channels])


def cleanup(conn: sqlite3.Connection, now: float, joined_after: float) -> None:
    """Delete expired messages and memberships; a channel that let a message expire leaves its groups."""
    expired = conn.execute("DELETE FROM layer_message WHERE expires <= ? RETURNING channel", (now,)).fetchall()
    if expired:
        forget_channels(conn, {row[0] for row in expired})
    conn.execute("DELETE FROM layer_group WHERE joined <= ?", (joined_after,))


def delete_all(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM layer_message")
    conn.execute("DELETE FROM layer_group")


def data_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA data_version").fetchone()[0]


# --- Serialization ------------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    """msgpack, as channels_redis uses: the types a Channels message may carry, bytes kept as bytes."""
    try:
        return msgpack.packb(message, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"message cannot be serialized for the channel layer: {exc}") from exc


def decode(body: bytes) -> dict[str, Any]:
    return msgpack.unpackb(body, raw=False)


# --- Doorbells: waking another process's poller ----------------------------------------------


def open_bell(directory: Path, key: str) -> int | None:
    """A write end of the doorbell of the process with this key, or None when there is nobody to wake.

    No FIFO: that process has no poller (nobody there waits), or FIFOs are off. No reader
    (ENXIO): the process died; its doorbell goes.
    """
    path = directory / f"{key}.fifo"
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            with contextlib.suppress(OSError):
                path.unlink()
        return None


def ring_fd(fd: int) -> bool:
    """One byte into a doorbell; never blocks. False when its reader is gone (EPIPE)."""
    try:
        os.write(fd, b"\0")
    except BlockingIOError:
        pass  # the pipe is full: it is being rung already
    except OSError:
        return False
    return True


def ring(directory: Path, key: str) -> None:
    """Ring a doorbell once (opening and closing it)."""
    fd = open_bell(directory, key)
    if fd is not None:
        ring_fd(fd)
        os.close(fd)


class Ringer:
    """Rings other processes' doorbells from the writer thread, keeping each one open between rings
    (one ``write`` per push instead of open, write and close)."""

    MAX_OPEN = 64

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fds: dict[str, int] = {}

    def ring(self, key: str) -> None:
        fd = self.fds.get(key)
        if fd is None:
            fd = open_bell(self.directory, key)
            if fd is None:
                return
            if len(self.fds) >= self.MAX_OPEN:
                os.close(self.fds.pop(next(iter(self.fds))))
            self.fds[key] = fd
        if not ring_fd(fd):  # that process died since: its doorbell goes
            os.close(self.fds.pop(key))
            with contextlib.suppress(OSError):
                (self.directory / f"{key}.fifo").unlink()

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


class Doorbell:
    """What a poller sleeps on: a FIFO other processes can write to, or a plain Event without one.

    The poller keeps a write end open itself, so the FIFO never reads as closed and this
    process's own threads ring through it too.
    """

    def __init__(self, directory: Path | None, key: str) -> None:
        self.pid = os.getpid()
        self.event = threading.Event()
        self.path: Path | None = None
        self.read_fd = self.write_fd = -1
        self.selector: selectors.BaseSelector | None = None
        if directory is not None and hasattr(os, "mkfifo"):
            try:
                self._open(directory, key)
            except OSError as exc:
                logger.warning("channel layer: no doorbell at %s (%s); polling instead", directory, exc)
                self.close()

    def _open(self, directory: Path, key: str) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("*.fifo"):  # processes that died without closing theirs
            ring(directory, stale.name.removesuffix(".fifo"))
        self.path = directory / f"{key}.fifo"
        os.mkfifo(self.path, 0o600)
        atexit.register(self.unlink)
        self.read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.write_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        # epoll or kqueue: select() would fail on a descriptor above 1,024 (daphne holding many sockets).
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.read_fd, selectors.EVENT_READ)

    @property
    def remote(self) -> bool:
        """True when other processes can wake this one."""
        return self.read_fd >= 0

    def ring(self) -> None:
        if self.write_fd < 0:
            self.event.set()
            return
        with contextlib.suppress(OSError):  # a full pipe is rung already
            os.write(self.write_fd, b"\0")

    def wait(self, timeout: float) -> None:
        """Sleep until rung or ``timeout`` seconds passed; swallows the rings that came."""
        if self.read_fd < 0:
            self.event.wait(timeout)
            self.event.clear()
            return
        if self.selector is not None and self.selector.select(timeout):
            with contextlib.suppress(BlockingIOError):
                while os.read(self.read_fd, 4096):
                    pass

    def unlink(self) -> None:
        if self.path is not None and os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def close(self) -> None:
        self.unlink()
        atexit.unregister(self.unlink)
        if self.selector is not None:
            self.selector.close()
            self.selector = None
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.read_fd = self.write_fd = -1


# --- One process's side: the writer thread and the poller -----------------------------------


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


# --- The layer -----------------------------------------------------------------------------------


class SQLiteChannelLayer(BaseChannelLayer):
    """The Channels 4 layer interface on one SQLite file; see the module docstring."""

    extensions = ["groups", "flush"]

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
        poll_interval: float = 0.01,
        cleanup_interval: float = 5.0,
        busy_timeout: float = 10.0,
        doorbells: bool = True,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.path = os.fspath(path) if path is not None else _default_path()
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ValueError("SQLiteChannelLayer needs a file path that several processes can open")
        self.bell_directory = Path(self.path + ".bells") if doorbells else None
        self.group_expiry = group_expiry
        self.poll_interval = poll_interval
        self.cleanup_interval = cleanup_interval
        self.busy_timeout = busy_timeout
        self._state: ProcessState | None = None
        self._state_lock = threading.Lock()
        self._key = (0, "")  # (process id, this process's key in channel names)

    def __str__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"

    # -- plumbing ----------------------------------------------------------------------------

    def open(self) -> tuple[sqlite3.Connection, FileIdentity | None]:
        """A connection to the file at the path (created if missing), and which file that is."""
        conn, file = open_file(self.path, self.busy_timeout)
        conn.create_function("layer_capacity", 1, self.get_capacity, deterministic=True)
        return conn, file

    def lost(self, file: FileIdentity | None) -> bool:
        """Whether the file a connection has open is no longer the one at the path (deleted or replaced).

        Checked before every write and every poll (a stat, about 1 µs), so a process moves to
        a new file as soon as it next uses the layer or, when waiting for messages, within
        ``FALLBACK_INTERVAL``. What the old file held (queued messages, group memberships)
        is gone with it; the WebSocket servers notice from ``epoch()`` and join their groups again.
        """
        now = file_identity(self.path)
        if now == file:
            return False
        logger.warning("channel layer: %s was deleted or replaced; using the file now at that path", self.path)
        return True

    def _process(self) -> ProcessState:
        """This process's state, made anew in a forked child (threads and connections do not survive a fork)."""
        state = self._state
        if state is None or state.pid != os.getpid():
            with self._state_lock:
                state = self._state
                if state is None or state.pid != os.getpid():
                    # The key stays for the life of the process, so channel names outlive a close().
                    if self._key[0] != os.getpid():
                        self._key = (os.getpid(), secrets.token_hex(8))
                    state = self._state = ProcessState(self, self._key[1])
        return state

    def inbox(self, channel: str) -> str:
        """Where a channel's messages are filed: the name up to and with ``!``, or the whole name."""
        return self.non_local_name(channel)

    def _wake(self, state: ProcessState, inboxes: Iterable[str]) -> None:
        """After a commit: ring the pollers of the processes that own these inboxes (in the writer thread).

        A normal channel (or a process-local one not in the key format) names no process; this
        process's own poller is woken for it, others find it at their next poll.
        """
        for inbox in inboxes:
            match = _INBOX_KEY.search(inbox)
            if match is None or match.group(1) == state.key:
                state.poller.kick()
            elif state.writer.ringer is not None:
                state.writer.ringer.ring(match.group(1))

    def _send_sync(self, conn: sqlite3.Connection, state: ProcessState, channel: str, body: bytes) -> bool:
        now, inbox = time.time(), self.inbox(channel)
        queued = insert_message(conn, channel, inbox, body, self.get_capacity(channel), now, now + self.expiry)
        if queued:
            self._wake(state, [inbox])
        return queued

    def _group_send_sync(
        self, conn: sqlite3.Connection, state: ProcessState, group: str, body: bytes
    ) -> tuple[int, int]:
        now = time.time()
        members, queued, inboxes = insert_group_message(
            conn, group, body, now, now + self.expiry, now - self.group_expiry
        )
        self._wake(state, inboxes)
        return members, queued

    @staticmethod
    def _require_dict(message: Any) -> None:
        if not isinstance(message, dict):
            raise TypeError(f"a channel layer message must be a dict, not {type(message).__name__}")

    # -- the channel layer API ----------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue a message on a channel; ChannelFull when it already holds its capacity."""
        self._require_dict(message)
        self.require_valid_channel_name(channel)
        state = self._process()
        if not await state.writer.run(self._send_sync, state, channel, encode(message)):
            raise ChannelFull(channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message on the channel; waits (cancellably) until one arrives."""
        self.require_valid_channel_name(channel)
        state = self._process()
        if "!" in channel and not self.inbox(channel).endswith(f".{state.key}!"):
            raise ValueError(f"channel {channel!r} was not made by new_channel() in this process; it cannot receive it")
        waited = state.poller.wait_for(channel)
        if isinstance(waited, Row):
            return decode(waited.body)
        try:
            row = await asyncio.wrap_future(waited)
        except asyncio.CancelledError:
            state.poller.abandon(channel, waited)
            raise
        return decode(row.body)

    async def new_channel(self, prefix: str = "specific") -> str:
        """A fresh process-local channel name that only this process can receive on."""
        name = f"{prefix}.{self._process().key}!{secrets.token_hex(8)}"
        self.require_valid_channel_name(name)
        return name

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._process().writer.run(add_member, group, channel, self.inbox(channel), time.time())

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._process().writer.run(remove_member, group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Queue the message for every member; members at capacity miss it (logged, not raised)."""
        self._require_dict(message)
        self.require_valid_group_name(group)
        state = self._process()
        members, queued = await state.writer.run(self._group_send_sync, state, group, encode(message))
        if queued < members:
            logger.info(
                "%s of %s channels in group %s are over capacity and miss a message", members - queued, members, group
            )

    async def epoch(self) -> str:
        """A token that changes when the file is lost (deleted or replaced) and set up anew.

        Group memberships live in the file, so a WebSocket server that sees another epoch
        joins its groups again (``integration.channels.ws_groups``). Read on the writer
        thread, which first moves to the file now at the path if its own was lost.
        """
        return await self._process().writer.run(read_epoch)

    async def flush(self) -> None:
        """Delete every message and group membership (all processes'), and this process's buffers."""
        state = self._process()
        await state.writer.run(delete_all)
        with state.poller.lock:
            state.poller.buffers.clear()
            state.poller.giveback.clear()

    async def close(self) -> None:
        """Stop this process's threads and close its connections; the layer reopens them if used again."""
        with self._state_lock:
            state, self._state = self._state, None
        if state is not None and state.pid == os.getpid():
            await asyncio.get_running_loop().run_in_executor(None, state.close)


def _default_path() -> str:
    from django.conf import settings

    return str(Path(settings.VAR_DIR) / "channel-layer.sqlite3")
