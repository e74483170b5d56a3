"""The push groups of a WebSocket server process, and how they come back after the layer lost them.

**Groups.** Each connection belongs to three groups of the channel layer
(``integration.push``): its own (a push to one client, the admin's disconnect), on the
connection's own layer channel, and its channel's and its user's, which the process joins
once for all its local members (``GroupHub``, below, says why). All of it is kept in one
``GroupHub`` per event loop, which the WebSocket supervisor drives.

**The layer forgets.** channels-redis keeps group memberships as sorted sets in Redis, and
the SQLite layer as rows in its file. When Redis restarts empty (or is flushed), or the file
is deleted, every membership is gone while every connection is still open: pushes reach
nobody, and nothing fails, since a push to an empty group is a success. So each process
notices and joins its groups again:

* **How it notices: an epoch marker.** The layer holds a random token, the *epoch*: for
  Redis the key ``<prefix>:epoch``, read and, when missing, set by one Lua script (one round
  trip, atomic, so the first process to find it missing sets it and every other one reads
  that value); for SQLite a row written when the file is set up (``layer.epoch()``). Each
  process remembers the epoch it joined under and reads it again every ``TICK`` (0.5 s).
  A different value means the memberships it made are gone: it joins all its groups again,
  then remembers the new epoch (after a failure it keeps the old one, so the next tick tries
  again). Reading the epoch before its first join makes a process's first memberships
  covered too.
* **Why a marker.** It catches every way Redis loses data: a restart without persistence, a
  ``FLUSHALL``/``FLUSHDB``, a failover to a replica that was behind, a new Redis behind the
  same address. Redis' ``run_id`` (``INFO server``) would change on restarts only, and also
  on restarts that kept the data; a receive error followed by success would miss a flush,
  and a restart that happened between two receives. Groups evicted one by one under memory
  pressure (a ``volatile-*`` maxmemory policy) are not caught: give the layer's Redis
  ``noeviction`` or an ``allkeys-*`` policy. On several Redis hosts (sharding) each has its
  own marker and the epoch is all of them.
* **What it costs.** One ``EVAL`` (Redis) or one indexed ``SELECT`` on the writer thread
  (SQLite) per event loop every 0.5 s, whatever the number of connections, never one per
  push. The check runs as a task of its own, bounded by ``PUSH_TIMEOUT``, so a paused Redis
  cannot hold up the supervisor's timers. A rejoin is one ``group_add`` per connection and
  per shared group (two round trips each on Redis), ``LAYER_CONCURRENCY`` at a time: 10,000
  took 2.5 s on this project's busy 2-core machine with Redis local. Memberships are thus
  restored within one tick plus the rejoin of the layer answering again: the end-to-end test
  (``tests/e2e/test_push_recovery.py``) measures about 1 s from Redis answering again to
  every client holding a push, against the 5 s promised.

While the layer cannot be reached, connections stay open: requests and replies do not need
it. Each connection's receive from its layer channel waits and tries again (``RECEIVE_RETRY``
up to ``RECEIVE_RETRY_MAX`` seconds apart) instead of failing the connection, and the hub
logs the outage once, not once per connection. A connection that cannot join its groups
(it connects or authenticates during the outage) is told and closed with 4503, so that its
client reconnects later. Every layer operation is bounded by ``PUSH_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from channels_redis.core import RedisChannelLayer

from integration import push as pushes
from integration.push import PushFailed, layer_call

logger = logging.getLogger(__name__)

GROUP_REFRESH = 6 * 3600.0  # re-join every group this often (channels-redis forgets members after a day)
# Layer group changes in flight per event loop. channels-redis uses redis-py's asyncio pool, which holds
# at most 100 connections per loop and raises MaxConnectionsError beyond that instead of waiting: a burst
# of connections would close with 4003 and a burst of disconnections would leave stale group members.
LAYER_CONCURRENCY = 50
RECEIVE_RETRY = 0.05  # seconds before a connection's failed receive from the layer is tried again, doubling...
RECEIVE_RETRY_MAX = 1.0  # ...up to this: at most one attempt a second per connection while Redis is down
EPOCH_KEY = ":epoch"  # after the layer's prefix; channel and group names cannot contain ":"

_REDIS_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
    redis.call('SET', KEYS[1], ARGV[1])
    epoch = ARGV[1]
end
return epoch
"""


async def layer_epoch(layer: Any) -> str:
    """The layer's epoch (see the module docstring); "" for a layer that cannot lose groups on its own.

    Unbounded: callers wrap it in ``layer_call``.
    """
    own = getattr(layer, "epoch", None)
    if callable(own):
        return str(await own())
    if isinstance(layer, RedisChannelLayer):
        parts = []
        for index in range(layer.ring_size):
            value = await layer.connection(index).eval(
                _REDIS_EPOCH, 1, layer.prefix + EPOCH_KEY, secrets.token_hex(8))
            parts.append(value.decode() if isinstance(value, bytes) else str(value))
        return ",".join(parts)
    return ""  # an in-memory layer lives and dies with this process


@dataclass(eq=False)
class SharedGroup:
    """A group this process has joined once for all its local members, with its own layer channel."""

    layer_channel: str
    members: set[Any]
    joined: asyncio.Future
    task: asyncio.Task | None = None


class GroupHub:
    """One layer channel per channel group and per user group in a process, fanning pushes out locally.

    Channels' way, each connection receives its pushes on a layer channel of its own: a push
    to the 1,000 clients of a channel is 1,000 receives in channels-redis (each a task, an
    ``asyncio.wait`` and a lock waiter) and 1,000 consumer dispatches, about four times what
    daphne itself spends sending the 1,000 frames (``bench/websocket.py``). Here the process
    joins a channel's or a user's group once, receives each push to it once, and hands it to
    its local members in one loop. A connection's own group (push to one client, the admin's
    disconnect) stays on the connection's layer channel; the hub records it too, to join it
    again when the layer lost it.

    ``slots`` bounds the layer operations in flight on this event loop (``LAYER_CONCURRENCY``).
    """

    def __init__(self, layer: Any, slots: asyncio.Semaphore | None = None) -> None:
        self.layer = layer
        self.slots = slots or asyncio.Semaphore(LAYER_CONCURRENCY)
        self.groups: dict[str, SharedGroup] = {}
        self.own: dict[Any, str] = {}  # connection -> its own group, joined on its layer channel
        self.refreshed_at = time.monotonic()
        self.epoch: str | None = None  # the layer's epoch the groups were joined under
        self.epoch_reading: asyncio.Future[str] | None = None  # the one first read, shared by waiters
        self.reachable = True
        self.check_task: asyncio.Task | None = None

    # Connections -----------------------------------------------------------------------------------

    async def join_connection(self, consumer: Any, own: str, shared: list[str]) -> None:
        """Join a connection's groups; ``PushFailed`` when the layer does not answer within ``PUSH_TIMEOUT``.

        The connection is recorded before its first ``group_add``, so a rejoin that starts
        meanwhile covers it. Its ``shared_groups`` list says which shared groups to leave.
        """
        if self.epoch is None:  # the baseline, before the first membership: see the module docstring
            epoch = await self._first_epoch()
            if self.epoch is None:
                self.epoch = epoch
        self.own[consumer] = own
        async with self.slots:
            await layer_call(self.layer.group_add(own, consumer.channel_name), "joining a push group")
            for group in shared:
                consumer.shared_groups.append(group)
                await self.join(group, consumer)

    async def _first_epoch(self) -> str:
        """Read the layer's epoch once for every connection arriving before it is known.

        A burst of connections on a fresh process (a thousand at once after a restart) used to
        read it once each, outside the slots: more Redis connections than redis-py's pool allows
        for one event loop, so some connections failed with 4503. One read, in a slot, is shared;
        a failed read is not kept, so the next connection tries again.
        """
        reading = self.epoch_reading
        if reading is None or (reading.done() and (reading.cancelled() or reading.exception() is not None)):
            reading = self.epoch_reading = asyncio.ensure_future(self._read_epoch())
        return await asyncio.shield(reading)

    async def _read_epoch(self) -> str:
        async with self.slots:
            return await layer_call(layer_epoch(self.layer), "reading the layer's epoch")

    async def leave_connection(self, consumer: Any) -> None:
        """Leave a connection's groups, bounded by ``PUSH_TIMEOUT``; a layer out of reach is only logged.

        channels-redis drops members after ``group_expiry``, and the SQLite layer members whose
        messages expire, so a membership left behind costs little and ends on its own.
        """
        own = self.own.pop(consumer, None)
        steps = [self.leave(group, consumer) for group in getattr(consumer, "shared_groups", ())]
        if own is not None:
            steps.append(layer_call(self.layer.group_discard(own, consumer.channel_name), "leaving a push group"))
        async with self.slots:
            results = await asyncio.gather(*steps, return_exceptions=True)
        failed = [result for result in results if isinstance(result, Exception)]
        if failed:
            logger.info("WebSocket %s could not leave %d push groups: %s", getattr(consumer, "client_id", "?"),
                        len(failed), failed[0])

    # Shared groups ---------------------------------------------------------------------------------

    async def join(self, group: str, consumer: Any) -> None:
        """Add a local member; the first one joins the layer group (pushes reach it once this returns)."""
        shared = self.groups.get(group)
        if shared is None:
            name = await self.layer.new_channel()
            shared = self.groups[group] = SharedGroup(name, set(), asyncio.get_running_loop().create_future())
            shared.task = asyncio.ensure_future(self._deliver(group, shared))
            try:
                await layer_call(self.layer.group_add(group, name), "joining a push group")
            except BaseException as exc:
                if self.groups.get(group) is shared:
                    del self.groups[group]
                shared.task.cancel()
                shared.joined.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
                shared.joined.exception()  # retrieved: members waiting below re-raise it
                raise
            shared.joined.set_result(True)
        shared.members.add(consumer)
        await asyncio.shield(shared.joined)

    async def leave(self, group: str, consumer: Any) -> None:
        """Remove a local member; the last one leaves the layer group."""
        shared = self.groups.get(group)
        if shared is None or consumer not in shared.members:
            return
        shared.members.discard(consumer)
        if shared.members:
            return
        del self.groups[group]
        with contextlib.suppress(Exception):
            await asyncio.shield(shared.joined)  # a join still on its way would add the channel after
        if shared.task is not None:
            shared.task.cancel()
        await layer_call(self.layer.group_discard(group, shared.layer_channel), "leaving a push group")

    async def _deliver(self, group: str, shared: SharedGroup) -> None:
        while True:
            try:
                event = await self.layer.receive(shared.layer_channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The layer is unreachable; the hub's check says so once. Members stay; pushes resume with it.
                logger.debug("Receiving pushes for %s failed (%s); trying again in a second", group, exc)
                await asyncio.sleep(RECEIVE_RETRY_MAX)
                continue
            if event.get("type") != pushes.PUSH_EVENT:
                logger.warning("Unexpected %r event in the WebSocket push group %s", event.get("type"), group)
                continue
            for consumer in list(shared.members):
                try:
                    await consumer.ws_push(event)
                except Exception:
                    logger.exception("A push to WebSocket %s failed", getattr(consumer, "client_id", "?"))

    # Recovery --------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Called by the supervisor every TICK: check the layer's epoch in a task, unless a check still runs."""
        if self.check_task is None or self.check_task.done():
            self.check_task = asyncio.ensure_future(self.check(now))

    async def check(self, now: float) -> None:
        """Read the epoch; join every group again when it changed, or every ``GROUP_REFRESH``. Never raises."""
        try:
            epoch = await layer_call(layer_epoch(self.layer), "checking the layer")
        except PushFailed as exc:
            if self.reachable and (self.own or self.groups):
                logger.warning("WebSocket pushes: %s. %d connections stay open and get pushes again once it is back",
                               exc.details, len(self.own))
            self.reachable = False
            return
        if not self.reachable:
            logger.info("WebSocket pushes: the channel layer answers again")
            self.reachable = True
        if self.epoch is None:
            self.epoch = epoch  # nothing joined yet
            return
        lost = epoch != self.epoch
        if not lost and now - self.refreshed_at < GROUP_REFRESH:
            return
        if lost:
            logger.warning("WebSocket pushes: the channel layer lost its group memberships (Redis restarted empty "
                           "or was flushed, or the layer's file was deleted); joining %d connections and %d shared "
                           "groups again", len(self.own), len(self.groups))
        started = time.monotonic()
        try:
            count = await self.rejoin()
        except PushFailed as exc:
            logger.warning("WebSocket pushes: joining the groups again failed (%s); trying again at the next tick",
                           exc.details)
            return
        self.epoch, self.refreshed_at = epoch, now
        if lost:
            logger.warning("WebSocket pushes: %d push groups joined again in %.0f ms", count,
                           (time.monotonic() - started) * 1000)

    async def rejoin(self) -> int:
        """Join every group again (a ``group_add`` of a member only renews it); how many. ``PushFailed`` on failure.

        ``LAYER_CONCURRENCY`` at a time, each bounded by ``PUSH_TIMEOUT``. A connection that
        closes meanwhile is skipped; one that closes between its check and its add leaves a
        membership that ends on its own (see ``leave_connection``).
        """
        pairs: list[tuple[str, str, Any]] = [(group, shared.layer_channel, None)
                                             for group, shared in self.groups.items()]
        pairs += [(group, consumer.channel_name, consumer) for consumer, group in self.own.items()]

        async def add(group: str, channel: str, consumer: Any) -> None:
            if consumer is not None and (getattr(consumer, "closing", False) or consumer not in self.own):
                return
            async with self.slots:
                await layer_call(self.layer.group_add(group, channel), "joining a push group again")

        for start in range(0, len(pairs), LAYER_CONCURRENCY):
            results = await asyncio.gather(*(add(*pair) for pair in pairs[start:start + LAYER_CONCURRENCY]),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return len(pairs)

    def close(self) -> None:
        """Stop the check and the shared groups' receivers (the event loop is ending)."""
        for task in [self.check_task, *(shared.task for shared in self.groups.values())]:
            if task is not None:
                task.cancel()
