"""WebSocket message limits against a real daphne, started with ``manage.py serve``'s own command line.

Reproduced before the fix (issue 11, item 6): a message over daphne's
``--websocket-max-message-size`` made daphne (autobahn, ``failByDrop``) cut the TCP
connection, so the client saw 1006 and no reason. Now it gets a close frame with 1009
(message too big), while a message over the channel's own ``max_message_size`` (but within
daphne's limit) still reaches the channel, which answers with an error message and 4009.
Hostile JSON over the real server is a 400 error message, never a 4003, and daphne goes
on serving.

aiohttp (a dependency of fhirpy) is the client; it answers a close frame and reports the
code it received, or 1006 when the connection is dropped.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from integration.management.commands.serve import daphne_argv
from integration.models import DeployedService, WebSocketChannel
from tests.servers import client
from tests.servers.procs import ManagedProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DAPHNE_LIMIT = 64 * 1024  # daphne's own limit in this test (serve passes WEBSOCKET_MAX_MESSAGE_SIZE or more)
CHANNEL_LIMIT = 1000  # the channel's max_message_size, under daphne's


@pytest.fixture
def daphne(server_env: dict[str, str], tmp_path: Path, builtins: None, settings: Any) -> Iterator[str]:
    """One daphne as ``manage.py serve`` starts it, with two open channels on demo.echo: ``/ws/limits``
    (``max_message_size`` CHANNEL_LIMIT) and ``/ws/open`` (the default 64 KiB); yields ``ws://host:port``."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (make test sets REDIS_URL)")
    echo = DeployedService.objects.get(name="demo.echo")
    WebSocketChannel.objects.create(name="limits", path="/ws/limits", max_message_size=CHANNEL_LIMIT, service=echo)
    WebSocketChannel.objects.create(name="open", path="/ws/open", service=echo)
    port = free_port()
    env = {**server_env, "CHANNEL_LAYER_PREFIX": f"test-limits-{uuid.uuid4().hex[:12]}"}
    process = ManagedProcess(daphne_argv(sys.executable, port, DAPHNE_LIMIT), env=env,
                             log_path=tmp_path / "daphne.log").start()
    try:
        deadline = time.monotonic() + 45
        while True:  # /healthz: the database answers and the snapshot (with the channel) is loaded
            assert process.poll() is None, f"daphne exited:\n{process.log_tail()}"
            reply = client.try_get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if reply is not None and reply.status == 200:
                break
            assert time.monotonic() < deadline, f"daphne did not serve in time:\n{process.log_tail()}"
            time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.stop(grace=8)
        print(f"--- daphne, end of its log:\n{process.log_tail()}")  # shown on failure


async def exchange(url: str, *texts: str) -> tuple[list[Any], int | None]:
    """Send each text frame, collect what comes back until the server closes or falls quiet; (messages, close code)."""
    received: list[Any] = []
    async with aiohttp.ClientSession() as session:
        socket = await session.ws_connect(url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        async with socket:
            for text in texts:
                await socket.send_str(text)
            while True:
                try:
                    message = await socket.receive(timeout=3)
                except TimeoutError:
                    return received, None  # still open
                if message.type == aiohttp.WSMsgType.TEXT:
                    received.append(message.json())
                    continue
                # CLOSE carries the code the server sent; CLOSED/ERROR mean no close frame came (1006).
                return received, message.data if message.type == aiohttp.WSMsgType.CLOSE else socket.close_code


def test_a_message_over_daphnes_limit_gets_a_close_frame_1009(daphne: str) -> None:
    message = '{"id": 1, "payload": "' + "x" * (2 * DAPHNE_LIMIT) + '"}'
    received, code = asyncio.run(exchange(daphne + "/ws/open", message))
    assert code == 1009, (received, code)  # before the fix: 1006, the TCP connection dropped
    assert received == []  # daphne refuses it before the channel sees it, so no error message comes


def test_a_message_over_the_channels_limit_still_reaches_the_channel_which_closes_with_4009(daphne: str) -> None:
    message = '{"id": 1, "payload": "' + "x" * (2 * CHANNEL_LIMIT) + '"}'
    received, code = asyncio.run(exchange(daphne + "/ws/limits", message))
    assert code == 4009
    assert [(error["status"], error["error"]["details"]) for error in received] == [
        (413, f"Message larger than {CHANNEL_LIMIT} bytes")]


def test_hostile_json_over_a_real_daphne_is_an_error_message_and_the_connection_goes_on(daphne: str) -> None:
    deep, huge = "[" * 1000 + "]" * 1000, "9" * 5000  # the two reproduced crashes (close 4003 before the fix)
    received, code = asyncio.run(exchange(daphne + "/ws/open", deep, huge, '{"id": "after", "payload": "fine"}'))
    assert code is None  # still open
    errors, replies = received[:2], received[2:]
    assert [(error["type"], error["status"], error["error"]["details"]) for error in errors] == [
        ("error", 400, "Invalid JSON in message: arrays and objects are nested more than 100 levels deep"),
        ("error", 400, "Invalid JSON in message: an integer has more than 4300 digits"),
    ]
    assert replies == [{"type": "reply", "id": "after", "status": 200, "cid": replies[0]["cid"],
                        "response": "fine"}]


def test_daphne_keeps_serving_after_each_of_them(daphne: str) -> None:
    asyncio.run(exchange(daphne + "/ws/open", "x" * (2 * DAPHNE_LIMIT)))
    asyncio.run(exchange(daphne + "/ws/limits", "x" * (2 * CHANNEL_LIMIT)))
    asyncio.run(exchange(daphne + "/ws/open", "[" * 1000 + "]" * 1000))
    received, code = asyncio.run(exchange(daphne + "/ws/open", '{"id": 7, "payload": {"ok": true}}'))
    assert code is None and received == [{"type": "reply", "id": 7, "status": 200, "cid": received[0]["cid"],
                                           "response": {"ok": True}}]


def test_a_text_frame_that_is_not_utf8_gets_a_close_frame_1007(daphne: str) -> None:
    async def scenario() -> Any:
        async with aiohttp.ClientSession() as session:
            socket = await session.ws_connect(daphne + "/ws/open", timeout=aiohttp.ClientWSTimeout(ws_close=5))
            async with socket:
                await socket.send_frame(b"\xff\xfe not UTF-8", aiohttp.WSMsgType.TEXT)
                message = await socket.receive(timeout=5)
                return message.data if message.type == aiohttp.WSMsgType.CLOSE else socket.close_code

    assert asyncio.run(scenario()) == 1007  # autobahn's invalid-payload close, sent rather than a dropped socket
