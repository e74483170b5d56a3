"""The SQLite channel layer across real processes, and when its file is lost (deleted or replaced).

A peer is a plain Python subprocess using the same file (``channel_layer_helpers.peer``); the
contract, cancellation and the one poller per process are in test_channel_layer.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from integration.channel_layers import SQLiteChannelLayer
from integration.channel_layers import process as process_module
from integration.channel_layers import store as store_module

from .channel_layer_helpers import finish, peer, rows, run

pytestmark = pytest.mark.usefixtures("_no_peer_outlives_its_test")


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
    monkeypatch.setattr(process_module, "FALLBACK_INTERVAL", 60.0)

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
        conn.executescript(store_module.SCHEMA.split("CREATE TABLE IF NOT EXISTS layer_meta")[0]
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
