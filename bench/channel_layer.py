"""Channel layers: the embedded SQLite layer against channels_redis, across two processes.

The receiver is this process; every message comes from a sender subprocess (this file run
with ``--sender``), as a push from a Celery worker reaches daphne. Three layers, in rounds
interleaved so that background load affects them alike:

* ``redis``: ``channels_redis.core.RedisChannelLayer`` on the local Redis (database 2 of
  ``REDIS_URL``'s server, ``BENCH_REDIS_URL`` overrides), the baseline;
* ``sqlite``: ``integration.channel_layers.SQLiteChannelLayer`` as configured by default
  (doorbells on), on a fresh file under ``$VAR_DIR/bench``;
* ``sqlite-poll``: the same without doorbells, polling every ``poll_interval`` (10 ms): what
  it costs where FIFOs do not exist.

Scenarios, each timed from the sender's ``time.time()`` stamp in the message to its receipt:

1. latency: ``BENCH_LAYER_MESSAGES`` (500) messages 2 ms apart to one process-local channel;
   p50 and p99 of the one-way latency;
2. throughput: ``BENCH_LAYER_BURST`` (5,000) messages sent back to back (each ``send``
   awaited, as a service does) to one channel; messages/s from the first send to the last
   receipt;
3. fan-out: ``BENCH_LAYER_FANOUT`` (200) consumers in one group (one process-local channel
   each, all in this process), ``BENCH_LAYER_PUSHES`` (20) ``group_send`` calls 50 ms apart;
   p50 and p99 over all receipts, and the time until the slowest consumer of a push had it;
4. idle CPU: the receiver's CPU time while one receive waits 2 s with nothing coming.

Printed: the medians over ``BENCH_LAYER_ROUNDS`` (3) rounds and the ratios sqlite / redis.
Targets for the embedded layer: one-message p99 under 100 ms and fan-out p99 under 250 ms
(the issue's fan-out goal). No database is used (PostgreSQL only holds the lock that keeps
benchmarks from running at the same time).

    .venv/bin/python bench/channel_layer.py
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

MESSAGES = common.env_int("BENCH_LAYER_MESSAGES", 500)
BURST = common.env_int("BENCH_LAYER_BURST", 5000)
FANOUT = common.env_int("BENCH_LAYER_FANOUT", 200)
PUSHES = common.env_int("BENCH_LAYER_PUSHES", 20)
ROUNDS = common.env_int("BENCH_LAYER_ROUNDS", 3)
LATENCY_TARGET = 0.100
FANOUT_TARGET = 0.250
KINDS = ("redis", "sqlite", "sqlite-poll")
SQLITE_PATH = common.VAR_DIR / "channel-layer-bench.sqlite3"
TIMEOUT = 60.0


def layer_config(kind: str) -> dict[str, Any]:
    capacity = BURST + 100  # the throughput burst may sit in the channel; no ChannelFull in the figures
    if kind == "redis":
        return {"kind": kind, "hosts": [common.bench_redis_url()], "prefix": "bench-layer", "capacity": capacity}
    return {"kind": kind, "path": str(SQLITE_PATH), "capacity": capacity, "doorbells": kind == "sqlite"}


def make_layer(config: dict[str, Any]) -> Any:
    options = {k: v for k, v in config.items() if k != "kind"}
    if config["kind"] == "redis":
        from channels_redis.core import RedisChannelLayer

        return RedisChannelLayer(**options)
    from integration.channel_layers import SQLiteChannelLayer

    return SQLiteChannelLayer(**options)


async def close_layer(layer: Any) -> None:
    if hasattr(layer, "close"):
        await layer.close()
    else:
        await layer.close_pools()


# --- The sender process -------------------------------------------------------------------------


async def sender(spec: dict[str, Any]) -> None:
    """Send ``count`` stamped messages (``send`` or ``group_send``), ``interval`` s apart."""
    layer = make_layer(spec["layer"])
    method = getattr(layer, spec["op"])
    for i in range(spec["count"]):
        await method(spec["target"], {"type": "bench.message", "i": i, "sent": time.time()})
        if spec["interval"]:
            await asyncio.sleep(spec["interval"])
    await close_layer(layer)


@contextmanager
def sending(config: dict[str, Any], op: str, target: str, count: int, interval: float) -> Iterator[None]:
    """A sender subprocess for the duration of the block; its whole process group is stopped after."""
    spec = json.dumps({"layer": config, "op": op, "target": target, "count": count, "interval": interval})
    proc = subprocess.Popen(
        [common.PYTHON, __file__, "--sender", spec], cwd=common.REPO, start_new_session=True, stderr=subprocess.PIPE
    )
    try:
        yield
        _, err = proc.communicate(timeout=TIMEOUT)
        if proc.returncode:
            raise RuntimeError(f"sender failed: {err.decode(errors='replace')[-2000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --- The receiver's scenarios ---------------------------------------------------------------------


async def receive_stamped(layer: Any, channel: str, count: int) -> list[tuple[float, int]]:
    """(latency, index) of ``count`` messages; they must come in order."""
    got = []
    for expected in range(count):
        message = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
        if message["i"] != expected:
            raise RuntimeError(f"message {message['i']} arrived where {expected} was due")
        got.append((time.time() - message["sent"], expected))
    return got


async def latency(layer: Any, config: dict[str, Any]) -> dict[str, float]:
    channel = await layer.new_channel()
    with sending(config, "send", channel, MESSAGES, 0.002):
        got = await receive_stamped(layer, channel, MESSAGES)
    values = [lat for lat, _ in got]
    return {"p50 ms": common.percentile(values, 50) * 1000, "p99 ms": common.percentile(values, 99) * 1000}


async def throughput(layer: Any, config: dict[str, Any]) -> dict[str, float]:
    channel = await layer.new_channel()
    with sending(config, "send", channel, BURST, 0.0):
        first = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
        started = first["sent"]
        await receive_stamped_rest(layer, channel, BURST - 1)
        ended = time.time()
    return {"msg/s": BURST / (ended - started)}


async def receive_stamped_rest(layer: Any, channel: str, count: int) -> None:
    for _ in range(count):
        await asyncio.wait_for(layer.receive(channel), TIMEOUT)


async def fanout(layer: Any, config: dict[str, Any]) -> dict[str, float]:
    group = f"bench-fanout-{os.getpid()}"
    channels = [await layer.new_channel() for _ in range(FANOUT)]
    for channel in channels:
        await layer.group_add(group, channel)
    try:
        receivers = [asyncio.ensure_future(receive_stamped(layer, c, PUSHES)) for c in channels]
        await asyncio.sleep(0.2)  # every consumer is waiting before the first push
        with sending(config, "group_send", group, PUSHES, 0.05):
            results = await asyncio.wait_for(asyncio.gather(*receivers), TIMEOUT)
    finally:
        for channel in channels:
            await layer.group_discard(group, channel)
    values = [lat for got in results for lat, _ in got]
    slowest = [max(got[i][0] for got in results) for i in range(PUSHES)]
    return {
        "p50 ms": common.percentile(values, 50) * 1000,
        "p99 ms": common.percentile(values, 99) * 1000,
        "all ms": common.median(slowest) * 1000,
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle(layer: Any, config: dict[str, Any]) -> dict[str, float]:
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.3)
    before, started = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(2.0)
    used = (cpu_seconds() - before) / (time.perf_counter() - started)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    return {"% core": used * 100}


SCENARIOS = {"latency": latency, "throughput": throughput, "fan-out": fanout, "idle": idle}


async def one_round(kind: str) -> dict[tuple[str, str], float]:
    config = layer_config(kind)
    layer = make_layer(config)
    figures: dict[tuple[str, str], float] = {}
    try:
        await layer.flush()
        for name, scenario in SCENARIOS.items():
            for metric, value in (await scenario(layer, config)).items():
                figures[(name, metric)] = value
    finally:
        await close_layer(layer)
    return figures


def fresh_sqlite_file() -> None:
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(f"{SQLITE_PATH}.bells", ignore_errors=True)


def main() -> tuple[str, bool]:
    print(
        f"== channel layers across two processes: sqlite (doorbells), sqlite-poll (10 ms) against redis; "
        f"{MESSAGES} messages for latency, {BURST} for throughput, {FANOUT} consumers x {PUSHES} pushes, "
        f"{ROUNDS} rounds =="
    )
    # One benchmark at a time (the same PostgreSQL advisory lock as the others): they share two CPUs.
    common.hold_bench_lock()
    fresh_sqlite_file()
    print(common.wait_for_quiet())
    collected: dict[str, dict[tuple[str, str], list[float]]] = {kind: {} for kind in KINDS}
    for _round in range(ROUNDS):
        for kind in KINDS:
            for key, value in asyncio.run(one_round(kind)).items():
                collected[kind].setdefault(key, []).append(value)
    medians = {kind: {key: common.median(v) for key, v in figures.items()} for kind, figures in collected.items()}
    rows = []
    for key in medians["redis"]:
        redis, sqlite, poll = (medians[kind][key] for kind in KINDS)
        comparable = redis and key[0] != "idle"  # idle CPU near zero on both: a ratio would say nothing
        rows.append(
            [
                f"{key[0]} {key[1]}",
                f"{redis:,.2f}",
                f"{sqlite:,.2f}",
                f"{poll:,.2f}",
                f"{sqlite / redis:.2f}" if comparable else "-",
                f"{poll / redis:.2f}" if comparable else "-",
            ]
        )
    print(
        common.table(
            ["figure (median of rounds)", "redis", "sqlite", "sqlite-poll", "sqlite/redis", "poll/redis"], rows
        )
    )
    sqlite = medians["sqlite"]
    reached = (
        sqlite[("latency", "p99 ms")] < LATENCY_TARGET * 1000 and sqlite[("fan-out", "p99 ms")] < FANOUT_TARGET * 1000
    )
    ratio = sqlite[("throughput", "msg/s")] / medians["redis"][("throughput", "msg/s")]
    fresh_sqlite_file()
    return (
        f"sqlite {sqlite[('throughput', 'msg/s')]:,.0f} msg/s ({ratio:.2f} x redis), latency p99 "
        f"{sqlite[('latency', 'p99 ms')]:.1f} ms (redis {medians['redis'][('latency', 'p99 ms')]:.1f}), "
        f"fan-out to {FANOUT} p99 {sqlite[('fan-out', 'p99 ms')]:.1f} ms "
        f"(targets: p99 < {LATENCY_TARGET * 1000:.0f} ms, fan-out p99 < {FANOUT_TARGET * 1000:.0f} ms)",
        reached,
    )


def sender_main(config: str) -> None:
    """``--sender CONFIG``: the sending process (``sending`` starts it); CONFIG is its JSON."""
    asyncio.run(sender(json.loads(config)))


if __name__ == "__main__":
    common.run(main, helpers={"--sender": sender_main})
