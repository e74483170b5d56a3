"""What the SQLite channel layer tests share: a peer process on the same file, a bounded run, counts.

Its fixtures, ``path`` and ``_no_peer_outlives_its_test`` (which the channel layer test modules
use on every test), reach them through this folder's conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from integration.channel_layers import SQLiteChannelLayer

REPO = Path(__file__).resolve().parents[2]

# A separate process that uses the layer on the same file: runs the steps of a JSON spec, in order.
PEER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[2])
from integration.channel_layers import SQLiteChannelLayer

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


@pytest.fixture
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

