"""The SQLite channel layer of the embedded default (integration/channel_layers/).

First the Channels layer contract, in the spirit of Channels' own tests of its in-memory layer
(send/receive, order, process-local channels, capacity, groups, expiry, flush, names), then
what only this layer promises: a receive is cancellable without losing a message, the event
loop never waits for SQLite and one poller serves every consumer of a process. That messages
cross real processes within a bounded time, and what a lost file does, is in
test_channel_layer_processes.py. No database or Redis: each test has its own file under ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from channels.exceptions import ChannelFull

from integration.channel_layers import SQLiteChannelLayer

from .channel_layer_helpers import finish, nothing_arrives, peer, rows, run

pytestmark = pytest.mark.usefixtures("_no_peer_outlives_its_test")


# --- The contract ---------------------------------------------------------------------------------


def test_a_message_is_received_whole_and_only_once(path: str) -> None:
    message = {"type": "test.message", "text": "Ahoy-hoy!", "n": 7, "raw": b"\x00\xff", "list": [1, None, True]}

    async def test(layer: SQLiteChannelLayer) -> None:
        await layer.send("test-channel-1", message)
        assert await layer.receive("test-channel-1") == message
        assert await nothing_arrives(layer, "test-channel-1")

    run(path, test)


def test_messages_on_a_channel_arrive_in_the_order_sent(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        waiting = asyncio.ensure_future(layer.receive("test-channel-3"))
        for n in range(1, 5):
            await layer.send("test-channel-3", {"type": f"message.{n}"})
        assert (await waiting)["type"] == "message.1"
        assert [(await layer.receive("test-channel-3"))["type"] for _ in range(3)] == [
            "message.2",
            "message.3",
            "message.4",
        ]

    run(path, test)


def test_process_local_channels_are_distinct_and_only_their_process_receives_them(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        first, second = await layer.new_channel(), await layer.new_channel("custom")
        assert first != second and "!" in first and second.startswith("custom.")
        layer.require_valid_channel_name(first)
        await layer.send(first, {"type": "to.first"})
        await layer.send(second, {"type": "to.second"})
        assert (await layer.receive(second))["type"] == "to.second"
        assert (await layer.receive(first))["type"] == "to.first"
        other_process = SQLiteChannelLayer(path=path)  # another key, as another process would have
        with pytest.raises(ValueError, match="not made by new_channel"):
            await other_process.receive(first)

    run(path, test)


def test_a_channel_at_capacity_refuses_more_until_a_message_is_taken(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        for _ in range(3):
            await layer.send("test-channel-1", {"type": "test.message"})
        with pytest.raises(ChannelFull):
            await layer.send("test-channel-1", {"type": "test.message"})
        # The count is in the file, so another process's sends see the same capacity.
        with pytest.raises(ChannelFull):
            await SQLiteChannelLayer(path=path, capacity=3).send("test-channel-1", {"type": "test.message"})
        await layer.receive("test-channel-1")
        await layer.send("test-channel-1", {"type": "test.message"})
        # channel_capacity overrides the default by glob.
        for _ in range(5):
            await layer.send("big.one", {"type": "test.message"})
        with pytest.raises(ChannelFull):
            await layer.send("big.one", {"type": "test.message"})

    run(path, test, capacity=3, channel_capacity={"big.*": 5})


def test_group_send_reaches_the_members_and_not_those_discarded(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        for channel in ("test-gr-chan-1", "test-gr-chan-2", "test-gr-chan-3"):
            await layer.group_add("test-group", channel)
        await layer.group_add("test-group", "test-gr-chan-1")  # joining twice is still one membership
        await layer.group_discard("test-group", "test-gr-chan-2")
        await layer.group_discard("test-group", "never-joined")  # not an error
        await layer.group_send("test-group", {"type": "message.1"})
        await layer.group_send("empty-group", {"type": "message.0"})  # not an error either
        assert (await layer.receive("test-gr-chan-1"))["type"] == "message.1"
        assert (await layer.receive("test-gr-chan-3"))["type"] == "message.1"
        assert await nothing_arrives(layer, "test-gr-chan-1")
        assert await nothing_arrives(layer, "test-gr-chan-2")

    run(path, test)


def test_group_send_skips_members_at_capacity_without_raising(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        await layer.group_add("g", "busy")
        await layer.group_add("g", "idle")
        await layer.send("busy", {"type": "already.there"})
        await layer.group_send("g", {"type": "news"})
        assert (await layer.receive("idle"))["type"] == "news"
        assert (await layer.receive("busy"))["type"] == "already.there"
        assert await nothing_arrives(layer, "busy")

    run(path, test, capacity=1)


def test_expired_messages_are_dropped_and_their_channel_leaves_its_groups(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        await layer.group_add("g", "gone")
        await layer.group_add("g", "alive")
        for n in (1, 2, 3):
            await layer.send("gone", {"type": f"message.{n}"})
        assert (await layer.receive("gone"))["type"] == "message.1"
        await asyncio.sleep(0.5)
        await layer.send("alive", {"type": "fresh"})  # a write after the expiry runs the cleanup
        assert (await layer.receive("alive"))["type"] == "fresh"
        assert await nothing_arrives(layer, "gone")  # messages 2 and 3 expired
        assert rows(path, "layer_message") == 0
        # Like the in-memory layer: a channel that let messages expire is taken out of its groups.
        await layer.group_send("g", {"type": "news"})
        assert (await layer.receive("alive"))["type"] == "news"
        assert await nothing_arrives(layer, "gone")

    run(path, test, expiry=0.3, cleanup_interval=0.1)


def test_group_memberships_expire(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        await layer.group_add("g", "member")
        await asyncio.sleep(0.4)
        await layer.group_send("g", {"type": "news"})
        assert await nothing_arrives(layer, "member")
        assert rows(path, "layer_group") == 0
        await layer.group_add("g", "member")  # a fresh join counts again
        await layer.group_send("g", {"type": "news"})
        assert (await layer.receive("member"))["type"] == "news"

    run(path, test, group_expiry=0.3, cleanup_interval=0.1)


def test_flush_removes_every_message_and_group(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        local = await layer.new_channel()
        await layer.group_add("g", local)
        await layer.send(local, {"type": "old"})
        await layer.send("plain", {"type": "old"})
        await layer.flush()
        await layer.group_send("g", {"type": "after.flush"})
        assert await nothing_arrives(layer, local)
        assert await nothing_arrives(layer, "plain")
        assert rows(path, "layer_message") == rows(path, "layer_group") == 0

    run(path, test)


@pytest.mark.parametrize("name", ["bad name", "x" * 100, "emoji-\u2603", "", 42])
def test_invalid_channel_names_are_refused(path: str, name: Any) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        for call in (
            lambda: layer.send(name, {"type": "t"}),
            lambda: layer.receive(name),
            lambda: layer.group_add("g", name),
            lambda: layer.group_discard("g", name),
        ):
            with pytest.raises(TypeError, match="name must be a valid unicode string"):
                await call()

    run(path, test)


def test_invalid_group_names_and_messages_are_refused(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        await layer.group_add("g", "member")
        with pytest.raises(TypeError, match="Group name"):
            await layer.group_add("group!local", "channel")
        with pytest.raises(TypeError, match="Group name"):
            await layer.group_send("g" * 100, {"type": "t"})
        with pytest.raises(TypeError, match="must be a dict"):
            await layer.send("channel", ["type", "t"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="cannot be serialized"):
            await layer.group_send("g", {"type": "t", "when": datetime.now()})
        assert rows(path, "layer_message") == 0

    run(path, test)
    with pytest.raises(ValueError, match="file path"):
        SQLiteChannelLayer(path=":memory:")


# --- Cancellation, the event loop, one poller -----------------------------------------------------


def test_a_cancelled_receive_leaves_the_next_message_for_the_next_receive(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await layer.send(channel, {"type": "after.cancel"})
        assert (await layer.receive(channel))["type"] == "after.cancel"

    run(path, test)


@pytest.mark.parametrize("local", [True, False], ids=["process-local", "normal"])
def test_a_message_handed_to_a_receive_as_it_is_cancelled_goes_to_the_next_receive(path: str, local: bool) -> None:
    """The narrow race, made certain: the poller thread resolves the receive while the event
    loop is busy, and the receive is cancelled before the loop sees the result."""

    async def send_elsewhere(channel: str) -> None:
        other = SQLiteChannelLayer(path=path)
        await other.send(channel, {"type": "caught.in.between"})
        await other.close()

    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel() if local else "work-queue"
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.05)
        # From here the loop is blocked: a thread sends, the poller claims and hands the
        # message to the waiting receive, which is cancelled before the loop runs again.
        sender = threading.Thread(target=asyncio.run, args=(send_elsewhere(channel),))
        sender.start()
        sender.join(10)
        time.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "caught.in.between"

    run(path, test)


@pytest.mark.parametrize("local", [True, False], ids=["process-local", "normal"])
def test_receives_cancelled_at_any_moment_lose_and_duplicate_nothing(path: str, local: bool) -> None:
    """Receivers give up after random short waits while messages flow: every message still
    arrives exactly once and in order (a message the poller handed to a receive being
    cancelled goes back to the front of the line)."""
    count = 300

    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel() if local else "work-queue"

        async def sender() -> None:
            for i in range(count):
                await layer.send(channel, {"type": "job", "i": i})
                if i % 7 == 0:
                    await asyncio.sleep(0.001)

        sending = asyncio.ensure_future(sender())
        got: list[int] = []
        attempt = 0
        while len(got) < count:
            attempt += 1
            try:
                message = await asyncio.wait_for(layer.receive(channel), (attempt % 5) * 0.0007)
            except TimeoutError:
                continue
            got.append(message["i"])
        await sending
        assert got == list(range(count))
        assert await nothing_arrives(layer, channel)
        assert attempt > count  # receives really were cancelled along the way

    run(path, test, capacity=count)


def test_close_cancels_waiting_receives_and_the_layer_reopens_with_the_same_channels(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.05)
        await layer.close()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 5)
        await layer.send(channel, {"type": "after.close"})
        assert (await layer.receive(channel))["type"] == "after.close"

    run(path, test)


def test_a_waiting_receive_never_blocks_the_event_loop(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        waiting = asyncio.ensure_future(layer.receive(channel))
        for _ in range(50):  # writes and a waiting receive in the background
            await layer.send("elsewhere", {"type": "noise"})
        await asyncio.sleep(0.5)
        ticking.cancel()
        assert not waiting.done()
        waiting.cancel()
        # ~100 ticks fit in the time; a loop blocked by SQLite calls would see only a few.
        assert ticks >= 40, ticks

    run(path, test, capacity=1000)


def test_one_poller_thread_serves_every_consumer_of_the_process(path: str) -> None:
    def pollers() -> int:
        return sum(t.name == "sqlite-layer-poller" and t.is_alive() for t in threading.enumerate())

    before = pollers()

    async def test(layer: SQLiteChannelLayer) -> None:
        channels = [await layer.new_channel() for _ in range(200)]
        for channel in channels:
            await layer.group_add("everyone", channel)
        receiving = [asyncio.ensure_future(layer.receive(c)) for c in channels]
        await asyncio.sleep(0.05)
        await layer.group_send("everyone", {"type": "broadcast"})
        done = await asyncio.wait_for(asyncio.gather(*receiving), 10)
        assert [m["type"] for m in done] == ["broadcast"] * 200
        assert pollers() - before == 1

    run(path, test)
    assert pollers() == before  # close() ends it


def test_a_consumer_gets_group_pushes_and_leaves_nothing_waiting_after_disconnect(path: str, settings: Any) -> None:
    """Through Channels itself: a WebSocket consumer in a group on this layer gets a group_send
    made by another process; on disconnect Channels cancels its receive and discards its groups."""
    from channels.generic.websocket import AsyncJsonWebsocketConsumer
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "integration.channel_layers.SQLiteChannelLayer", "CONFIG": {"path": path}}
    }

    class Newsreader(AsyncJsonWebsocketConsumer):
        groups = ["news"]

        async def news_item(self, event: dict[str, Any]) -> None:
            await self.send_json({"headline": event["headline"], "i": event["i"]})

    async def main() -> None:
        layer = get_channel_layer()
        assert isinstance(layer, SQLiteChannelLayer)
        try:
            communicator = WebsocketCommunicator(Newsreader.as_asgi(), "/news/")
            connected, _ = await communicator.connect(timeout=5)
            assert connected
            proc = await asyncio.to_thread(
                peer,
                {"path": path},
                {"op": "group_send", "target": "news", "message": {"type": "news.item", "headline": "Hi"}},
            )
            await asyncio.to_thread(finish, proc)
            assert await communicator.receive_json_from(timeout=5) == {"headline": "Hi", "i": 0}
            await communicator.disconnect(timeout=5)
            state = layer._process()
            with state.poller.lock:
                assert state.poller.waiters == {}
            assert rows(path, "layer_group") == 0
        finally:
            await layer.close()

    asyncio.run(main())

