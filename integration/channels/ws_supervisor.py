"""The per-process side of WebSocket channels: one supervisor per event loop, and the clients' rows.

The ``Supervisor`` drives the timers of every connection (new-token wait, idle, session
expiry), hands each a changed configuration, owns the threads that run invocations and
authentication, and (through its ``ws_groups.GroupHub``) checks that the channel layer still
holds the push groups. The rows of connected clients (``WebSocketClient``) are inserted and
deleted one per connection and refreshed in one batch per interval. The protocol itself is
described in ``integration.channels.ws_protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections

from integration import snapshot as snapshots
from integration.channels.ws_groups import LAYER_CONCURRENCY, GroupHub

if TYPE_CHECKING:
    from integration.channels.websocket import WebSocketChannelConsumer

logger = logging.getLogger("integration.channels.websocket")  # one logger for the whole protocol, as before the split

TICK = 0.5  # seconds between the supervisor's checks of timers, configuration and the layer's epoch

SERVER_HOST = socket.gethostname()[:255]
SERVER_ID = uuid.uuid4().hex  # this process's run; rows of an earlier run with the same pid are dead


class Supervisor:
    """One per event loop: timers of every connection, configuration changes, the clients' rows,
    and (through its ``GroupHub``) the check that the channel layer still holds its push groups.

    A task per connection would wake thousands of times a second on a busy server; one
    task looking at every connection twice a second costs a few microseconds each. The
    threads that run invocations live here too; when the last connection of the loop has
    gone they close their database connections and end.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.consumers: set[WebSocketChannelConsumer] = set()
        self.task: asyncio.Task | None = None
        self.snap: Any = None
        self.flushed_at = time.monotonic()
        self.cleaned_at = 0.0
        self.executor: ThreadPoolExecutor | None = None
        self.started: list[int] = [0]  # threads the current executor has started
        self.layer_slots = asyncio.Semaphore(LAYER_CONCURRENCY)  # see LAYER_CONCURRENCY
        self.hub: GroupHub | None = None

    def add(self, consumer: WebSocketChannelConsumer) -> None:
        self.consumers.add(consumer)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run())

    def discard(self, consumer: WebSocketChannelConsumer) -> None:
        self.consumers.discard(consumer)

    def in_thread(self, func: Any, *args: Any) -> Any:
        """Run blocking work (invocations, authentication, rows) in this loop's threads; an awaitable."""
        if self.executor is None:
            started, lock = [0], threading.Lock()

            def count() -> None:
                with lock:
                    started[0] += 1

            self.started = started
            self.executor = ThreadPoolExecutor(max_workers=settings.WEBSOCKET_THREADS,
                                               thread_name_prefix="switchboard-ws", initializer=count)
        return sync_to_async(func, thread_sensitive=False, executor=self.executor)(*args)

    def retire(self) -> None:
        """End the threads, each closing its database connections first."""
        executor, threads = self.executor, self.started[0]
        if executor is None:
            return
        self.executor = None
        barrier = threading.Barrier(max(threads, 1))

        def close_here() -> None:
            connections.close_all()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)  # so that each thread takes one of these, not two

        for _ in range(threads):
            executor.submit(close_here)
        executor.shutdown(wait=False)

    async def _run(self) -> None:
        try:
            while self.consumers:
                await asyncio.sleep(TICK)
                try:
                    await self._check(time.monotonic())
                except Exception:
                    logger.exception("WebSocket supervisor: a check failed; trying again at the next tick")
        except asyncio.CancelledError:
            self.retire()  # the loop is ending
            if self.hub is not None:
                self.hub.close()
            raise
        finally:
            self.task = None
            if not self.consumers:
                self.retire()

    async def _check(self, now: float) -> None:
        snap = snapshots.peek()
        changed = snap is not None and snap is not self.snap
        if changed:
            self.snap = snap
        for consumer in list(self.consumers):
            consumer.tick(now, snap if changed else None)
        if self.hub is not None:
            self.hub.tick(now)  # the layer's epoch: push groups lost with Redis' data are joined again
        if now - self.flushed_at >= settings.WEBSOCKET_CLIENT_UPDATE_INTERVAL:
            self.flushed_at = now
            await self.flush(now)

    def group_hub(self, layer: Any) -> GroupHub:
        if self.hub is None:
            self.hub = GroupHub(layer, self.layer_slots)
        return self.hub

    async def flush(self, now: float) -> None:
        """Report this process's connections alive and write the counters that moved (one batch)."""
        changed = []
        for consumer in self.consumers:
            if consumer.row_id is not None and consumer.counters_moved():
                changed.append((consumer.row_id, consumer.messages_in, consumer.messages_out))
        clean = now - self.cleaned_at >= 60.0
        if clean:
            self.cleaned_at = now
        try:
            await self.in_thread(write_client_rows, changed, clean)
        except Exception as exc:
            logger.warning("Could not update the rows of connected WebSocket clients: %s", exc)


_supervisors: dict[asyncio.AbstractEventLoop, Supervisor] = {}


def supervisor() -> Supervisor:
    """The running event loop's supervisor (made on first use; those of closed loops are retired)."""
    loop = asyncio.get_running_loop()
    found = _supervisors.get(loop)
    if found is None or found.loop.is_closed():
        for old in [key for key in _supervisors if key.is_closed()]:
            _supervisors.pop(old).retire()
        found = _supervisors[loop] = Supervisor(loop)
    return found


# --- The rows of connected clients (blocking: run in the supervisor's threads) -----------------------


def write_client_rows(changed: list[tuple[int, int, int]], clean: bool) -> None:
    """Mark this process's rows alive, write the counters that moved, and (``clean``) delete dead rows."""
    from django.utils import timezone

    from integration.models import WebSocketClient

    now = timezone.now()
    try:
        WebSocketClient.objects.filter(server_id=SERVER_ID).update(last_seen=now)
        for start in range(0, len(changed), COUNTER_BATCH):
            write_counters(changed[start:start + COUNTER_BATCH])
        if clean:
            # Rows of processes that died (no update for several intervals), and of an earlier run of this pid.
            WebSocketClient.objects.stale().delete()
            (WebSocketClient.objects.filter(server_host=SERVER_HOST, server_pid=os.getpid())
             .exclude(server_id=SERVER_ID).delete())
    finally:
        close_old_connections()


COUNTER_BATCH = 500  # rows per UPDATE: 2,500 parameters, well under SQLite's limit


def write_counters(rows: list[tuple[int, int, int]]) -> None:
    """Set (pk, messages_in, messages_out) of these rows in one UPDATE with two CASE expressions.

    Django's ``bulk_update`` writes the same statement but compiles an expression object per
    row: about 250 µs each, in a thread that holds the GIL against the event loop, so a push to
    1,000 clients followed by the periodic flush stalled the next push by a quarter of a second
    (``bench/websocket.py``). Built as text here it is a few microseconds a row.
    """
    from django.db import connection

    from integration.models import WebSocketClient

    if not rows:
        return
    meta, quote = WebSocketClient._meta, connection.ops.quote_name
    pk = quote(meta.pk.column)
    whens = " ".join(["WHEN %s THEN CAST(%s AS BIGINT)"] * len(rows))
    sql = (
        f"UPDATE {quote(meta.db_table)} SET "  # noqa: S608 - names from the model, values as parameters
        f"{quote(meta.get_field('messages_in').column)} = CASE {pk} {whens} END, "
        f"{quote(meta.get_field('messages_out').column)} = CASE {pk} {whens} END "
        f"WHERE {pk} IN ({', '.join(['%s'] * len(rows))})"
    )
    params: list[int] = [value for row_id, count_in, _ in rows for value in (row_id, count_in)]
    params += [value for row_id, _, count_out in rows for value in (row_id, count_out)]
    params += [row_id for row_id, _, _ in rows]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def insert_client_row(channel_id: int, client_id: str, username: str, remote_addr: str) -> int | None:
    """Record a connected client; its row's id, or None when its channel is gone."""
    from django.db import IntegrityError

    from integration.models import WebSocketClient

    try:
        row = WebSocketClient.objects.create(
            channel_id=channel_id, client_id=client_id, username=username[:200], remote_addr=remote_addr[:100],
            server_host=SERVER_HOST, server_pid=os.getpid(), server_id=SERVER_ID,
        )
        return row.pk
    except IntegrityError:
        return None  # the channel was deleted meanwhile; the supervisor closes the connection
    finally:
        close_old_connections()


def delete_client_row(row_id: int) -> None:
    """Forget a client that disconnected."""
    from integration.models import WebSocketClient

    try:
        WebSocketClient.objects.filter(pk=row_id).delete()
    finally:
        close_old_connections()
