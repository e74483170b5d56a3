"""The SQLite channel layer of the embedded default (integration/channels/layer.py).

First the Channels layer contract, in the spirit of Channels' own tests of its in-memory layer
(send/receive, order, process-local channels, capacity, groups, expiry, flush, names), then
what only this layer promises: a receive is cancellable without losing a message, the event
loop never waits for SQLite, one poller serves every consumer of a process, and messages
cross real processes (a plain Python subprocess using the same file) within a bounded time.
No database or Redis: each test has its own file under ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from channels.exceptions import ChannelFull

from integration.channels import layer as layer_module
from integration.channels.layer import SQLiteChannelLayer

REPO = Path(__file__).resolve().parents[2]

# A separate process that uses the layer on the same file: runs the steps of a JSON spec, in order.
PEER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[2])
from integration.channels.layer import SQLiteChannelLayer

async def main(spec):
    layer = SQLiteChannelLayer(**spec["config"])
    for step in spec["steps"]:
        op = step["op"]
        if op == "receive":
            message = await asyncio.wait_for(layer.receive(step["channel"]), step.get("timeout", 20))
            print(json.dumps(message), flush=True)
        elif op == "wait_forever_on_new_channel":
            channel = await layer.new_channel()
            print(channel, flush=True)
            await layer.receive(channel)
        else:
            for i in range(step.get("count", 1)):
                message = dict(step["message"], i=i, sent=time.time())
                await getattr(layer, op)(step["target"], message)
                if step.get("interval"):
                    await asyncio.sleep(step["interval"])
    await layer.close()

asyncio.run(main(json.loads(sys.argv[1])))
"""


_peers: list[subprocess.Popen[str]] = []


def peer(config: dict[str, Any], *steps: dict[str, Any]) -> subprocess.Popen[str]:
    """Start a peer process running ``steps`` with a layer built from ``config``."""
    spec = json.dumps({"config": config, "steps": list(steps)})
    proc = subprocess.Popen(
        [sys.executable, "-c", PEER, spec, str(REPO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _peers.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_peer_outlives_its_test() -> Any:
    yield
    while _peers:
        proc = _peers.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """Wait for a peer (bounded), kill it if it overstays, and return its output; it must succeed."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"peer process did not finish in {timeout} s: {err}")
    assert proc.returncode == 0, err
    return out


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "layer.sqlite3")


def run(path: str, test: Callable[[SQLiteChannelLayer], Awaitable[None]], **config: Any) -> None:
    """Run ``test(layer)`` on a fresh event loop, bounded in time; the layer is closed afterwards."""

    async def main() -> None:
        layer = SQLiteChannelLayer(path=path, **config)
        try:
            await asyncio.wait_for(test(layer), 60)
        finally:
            await layer.close()

    asyncio.run(main())


async def nothing_arrives(layer: SQLiteChannelLayer, channel: str, within: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), within)
    except TimeoutError:
        return True
    return False


def rows(path: str, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed table names


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
        "default": {"BACKEND": "integration.channels.layer.SQLiteChannelLayer", "CONFIG": {"path": path}}
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


# --- Across processes -------------------------------------------------------------------------------


@pytest.mark.parametrize("local", [True, False], ids=["process-local", "normal"])
def test_a_message_sent_by_another_process_is_received_here(path: str, local: bool) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel() if local else "inbound-work"
        waiting = asyncio.ensure_future(layer.receive(channel))
        proc = peer({"path": path}, {"op": "send", "target": channel, "message": {"type": "hello", "from": "peer"}})
        message = await asyncio.wait_for(waiting, 20)
        await asyncio.to_thread(finish, proc)
        assert (message["type"], message["from"], message["i"]) == ("hello", "peer", 0)

    run(path, test)


def test_another_process_receives_a_message_sent_here(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        proc = peer({"path": path}, {"op": "receive", "channel": "outbound-work"})
        await layer.send("outbound-work", {"type": "job", "n": 1})
        out = await asyncio.to_thread(finish, proc)
        assert json.loads(out) == {"type": "job", "n": 1}

    run(path, test)


def test_group_send_from_another_process_reaches_two_receivers_here(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        first, second = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("browsers", first)
        await layer.group_add("browsers", second)
        await layer.group_add("browsers", "a-channel-nobody-reads")
        waiting = [asyncio.ensure_future(layer.receive(c)) for c in (first, second)]
        proc = peer({"path": path}, {"op": "group_send", "target": "browsers", "message": {"type": "push"}})
        got = await asyncio.wait_for(asyncio.gather(*waiting), 20)
        await asyncio.to_thread(finish, proc)
        assert [m["type"] for m in got] == ["push", "push"]

    run(path, test)


@pytest.mark.parametrize("doorbells", [True, False], ids=["doorbells", "polling"])
def test_messages_from_another_process_arrive_in_order_woken_by_doorbells(
    path: str, doorbells: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 messages from another process, 2 ms apart, all arrive, in order.

    With doorbells the receiver's fallback poll is pushed out to a minute: if a ring did not wake
    it, the messages would not arrive within the test's bound. How fast they arrive is measured by
    bench/channel_layer.py, not asserted here (a loaded CI machine makes any latency bound flaky).
    """
    count = 300
    monkeypatch.setattr(layer_module, "FALLBACK_INTERVAL", 60.0)

    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel()
        ready = asyncio.ensure_future(layer.receive(channel))  # the poller runs before the peer starts
        await asyncio.sleep(0.05)
        config = {"path": path, "doorbells": doorbells, "capacity": count}
        proc = peer(
            config, {"op": "send", "target": channel, "message": {"type": "tick"}, "count": count, "interval": 0.002}
        )
        order = []
        message = await asyncio.wait_for(ready, 20)
        while True:
            order.append(message["i"])
            if len(order) == count:
                break
            message = await asyncio.wait_for(layer.receive(channel), 20)
        await asyncio.to_thread(finish, proc)
        assert order == list(range(count))

    run(path, test, doorbells=doorbells, capacity=count)


def test_a_killed_process_leaves_no_doorbell_behind_once_someone_rings_it(path: str) -> None:
    """A process killed while receiving leaves its FIFO; the first send to its channel finds
    nobody reading it and removes it (and new pollers sweep such leftovers at start)."""
    proc = peer({"path": path}, {"op": "wait_forever_on_new_channel"})
    try:
        assert proc.stdout is not None
        channel = proc.stdout.readline().strip()
        key = channel.split(".", 1)[1].split("!")[0]
        bell = Path(path + ".bells") / f"{key}.fifo"
        deadline = time.monotonic() + 20
        while not bell.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bell.exists(), "the peer's poller never made its doorbell"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)

    async def test(layer: SQLiteChannelLayer) -> None:
        await layer.send(channel, {"type": "to.the.dead"})

    run(path, test)
    assert not bell.exists()


# --- A lost file ----------------------------------------------------------------------------------------


def delete_layer_files(path: str) -> None:
    """As ``rm var/channel-layer.sqlite3*`` would, while processes still hold the file open."""
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def test_the_epoch_stays_while_the_file_stays_and_every_process_reads_the_same(path: str) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        epoch = await layer.epoch()
        assert re.fullmatch(r"[0-9a-f]{16}", epoch)
        await layer.send("test-channel-1", {"type": "test.message"})
        assert await layer.epoch() == epoch
        other = SQLiteChannelLayer(path=path)  # another process's view: its own connections
        try:
            assert await other.epoch() == epoch
        finally:
            await other.close()

    run(path, test)


def test_a_file_version_1_gets_an_epoch_and_keeps_its_rows(path: str) -> None:
    """Files made before epochs existed (user_version 1) are upgraded in place by the first process."""
    with sqlite3.connect(path) as conn:
        conn.executescript(layer_module.SCHEMA.split("CREATE TABLE IF NOT EXISTS layer_meta")[0]
                           + "PRAGMA user_version = 1; COMMIT;")
        conn.execute("INSERT INTO layer_group VALUES ('g', 'test-channel-1', 'test-channel-1', 9e9)")

    async def test(layer: SQLiteChannelLayer) -> None:
        assert re.fullmatch(r"[0-9a-f]{16}", await layer.epoch())
        await layer.group_send("g", {"type": "still.a.member"})
        assert (await layer.receive("test-channel-1"))["type"] == "still.a.member"

    run(path, test)


def test_a_deleted_file_is_made_again_with_another_epoch_by_the_writer_and_the_poller(path: str) -> None:
    """Memberships go with the file; the new epoch says so, and groups joined again work across processes."""

    async def test(layer: SQLiteChannelLayer) -> None:
        channel = await layer.new_channel()
        await layer.group_add("orders", channel)
        receiving = asyncio.ensure_future(layer.receive(channel))  # the poller runs, on the old file
        await asyncio.sleep(0.1)
        before = await layer.epoch()
        await asyncio.to_thread(delete_layer_files, path)

        # The poller alone notices (within FALLBACK_INTERVAL) and makes the file again, empty.
        deadline = time.monotonic() + 5
        while not Path(path).exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert Path(path).exists(), "the waiting poller did not make the lost file again"
        after = await layer.epoch()
        assert after != before
        assert rows(path, "layer_group") == 0  # the membership went with the old file

        # A process that starts now pushes into the new file: nobody gets it until the group is joined again.
        finish(peer({"path": path}, {"op": "group_send", "target": "orders", "message": {"type": "lost"}}))
        assert not receiving.done()
        await layer.group_add("orders", channel)
        finish(peer({"path": path}, {"op": "group_send", "target": "orders", "message": {"type": "found"}}))
        assert (await asyncio.wait_for(receiving, 5))["type"] == "found"

    run(path, test)


def test_a_replaced_file_is_used_by_a_process_that_held_the_old_one(path: str, tmp_path: Path) -> None:
    async def test(layer: SQLiteChannelLayer) -> None:
        await layer.send("test-channel-1", {"type": "into.the.old.file"})
        other_path = str(tmp_path / "other.sqlite3")
        other = SQLiteChannelLayer(path=other_path)
        await other.send("test-channel-1", {"type": "from.the.new.file"})
        replacement_epoch = await other.epoch()
        await other.close()  # checkpoints: its WAL is gone, the file stands alone
        await asyncio.to_thread(delete_layer_files, path)
        os.replace(other_path, path)

        assert await layer.epoch() == replacement_epoch
        assert (await layer.receive("test-channel-1"))["type"] == "from.the.new.file"

    run(path, test)
