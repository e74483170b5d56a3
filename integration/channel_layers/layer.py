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

The modules of this package: ``store`` (the schema, the SQL, serialization), ``doorbells``,
``process`` (the writer and poller threads of one process) and this one, the layer itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from .process import ProcessState
from .store import (
    FileIdentity,
    Row,
    add_member,
    decode,
    delete_all,
    encode,
    file_identity,
    insert_group_message,
    insert_message,
    open_file,
    read_epoch,
    remove_member,
)

logger = logging.getLogger(__name__)

# The process key in a process-local inbox: "<prefix>.<key>!".
_INBOX_KEY = re.compile(r"\.([0-9a-f]{16})!\Z")


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
