"""The group hub's first read of the layer's epoch: once per process, in a slot, shared by a burst.

A fake layer stands in for Redis here so that the count of concurrent layer operations can be
read exactly; the same burst against real Redis is bench/websocket.py's fan-out scenario, which
used to lose connections with 4503 (redis-py's per-loop connection limit) before this was fixed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from integration.channels.ws_groups import LAYER_CONCURRENCY, GroupHub
from integration.errors import PushFailed


class CountingLayer:
    """Counts epoch reads and the most layer operations in flight at once."""

    def __init__(self, fail_first_epochs: int = 0) -> None:
        self.epoch_reads = 0
        self.fail_first_epochs = fail_first_epochs
        self.in_flight = 0
        self.most_in_flight = 0
        self.members: set[tuple[str, str]] = set()

    async def _operation(self, seconds: float) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.in_flight -= 1

    async def epoch(self) -> str:
        self.epoch_reads += 1
        await self._operation(0.05)
        if self.epoch_reads <= self.fail_first_epochs:
            raise ConnectionError("Redis is restarting")
        return "epoch-1"

    async def group_add(self, group: str, channel: str) -> None:
        await self._operation(0.002)
        self.members.add((group, channel))


class Consumer:
    def __init__(self, channel_name: str) -> None:
        self.channel_name = channel_name
        self.shared_groups: list[str] = []


def consumers(count: int) -> list[Any]:
    return [Consumer(f"channel-{n}") for n in range(count)]


def test_a_burst_of_connections_reads_the_epoch_once_and_stays_within_the_slots() -> None:
    layer = CountingLayer()

    async def burst() -> GroupHub:
        hub = GroupHub(layer)
        await asyncio.gather(*(hub.join_connection(c, f"own-{n}", []) for n, c in enumerate(consumers(300))))
        return hub

    hub = asyncio.run(burst())
    assert layer.epoch_reads == 1
    assert hub.epoch == "epoch-1"
    assert layer.most_in_flight <= LAYER_CONCURRENCY
    assert len(layer.members) == 300 and len(hub.own) == 300


def test_a_failed_first_read_fails_its_waiters_and_the_next_connection_reads_again() -> None:
    layer = CountingLayer(fail_first_epochs=1)

    async def scenario() -> GroupHub:
        hub = GroupHub(layer)
        first = await asyncio.gather(*(hub.join_connection(c, f"own-{n}", []) for n, c in enumerate(consumers(20))),
                                     return_exceptions=True)
        assert all(isinstance(result, PushFailed) for result in first)
        assert layer.epoch_reads == 1 and hub.epoch is None and hub.own == {}
        (late,) = consumers(1)
        await hub.join_connection(late, "own-late", [])
        return hub

    hub = asyncio.run(scenario())
    assert layer.epoch_reads == 2 and hub.epoch == "epoch-1" and len(hub.own) == 1


@pytest.mark.parametrize("count", [1, LAYER_CONCURRENCY * 3])
def test_every_connection_of_a_burst_joins_its_own_group(count: int) -> None:
    layer = CountingLayer()

    async def burst() -> None:
        hub = GroupHub(layer)
        await asyncio.gather(*(hub.join_connection(c, f"own-{n}", []) for n, c in enumerate(consumers(count))))

    asyncio.run(burst())
    assert {group for group, _ in layer.members} == {f"own-{n}" for n in range(count)}
