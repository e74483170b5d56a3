"""WebSocket channels against the real ASGI application: errors in the one shape, bad input, the
limits (size, idle, flood, slow services), refused handshakes and channels that change.

Each test gets a channel-layer prefix of its own, so parallel test processes sharing one
Redis database never see each other's groups. Tests are transactional: the consumer's
threads write and read rows on their own database connections. The fixtures (``app``,
``ws_channel``, ``jwt_channel``, ``basic_channel``) are in ``conftest.py``; the demo services
and the communicator helpers in ``ws_helpers.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.integration.ws_helpers import (
    closed_with,
    hang_up,
    open_socket,
    receive,
    refused,
    request,
    run,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_errors_come_in_the_one_shape_with_the_request_id(app, ws_channel, caplog) -> None:
    ws_channel("/ws/open", "ws-demo.fail", name="open", allowed_services="ws-demo.echo\nws-demo.classic")

    async def scenario() -> dict[str, Any]:
        socket = await open_socket(app, "/ws/open")
        try:
            return {
                "bad": await request(socket, 1, "bad"),
                "crash": await request(socket, 2, "boom"),
                "not allowed": await request(socket, 3, None, service="ws-demo.slow"),
                "invalid input": await request(socket, 4, {"nom": "x"}, service="ws-demo.classic"),
                "allowed": await request(socket, 5, "x", service="ws-demo.echo"),
            }
        finally:
            await hang_up(socket)

    replies = run(scenario)
    for reply in replies.values():
        assert reply["type"] == "reply"
        if "error" in reply:
            assert reply["error"]["result"] == "Error" and reply["error"]["cid"] == reply["cid"]
    assert (replies["bad"]["status"], replies["bad"]["error"]["details"]) == (400, "Not like that")
    assert (replies["crash"]["status"], replies["crash"]["error"]["details"]) == (500, "Internal server error")
    assert "internal detail" in caplog.text and replies["crash"]["cid"] in caplog.text  # logged, not sent
    assert replies["not allowed"]["status"] == 403
    assert replies["invalid input"]["status"] == 400
    assert "name" in replies["invalid input"]["error"]["details"]
    assert replies["allowed"]["status"] == 200 and replies["allowed"]["response"]["echo"] == "x"


def test_bad_input_after_authentication_is_answered_and_the_connection_goes_on(app, ws_channel) -> None:
    ws_channel("/ws/open", name="open")

    async def scenario() -> tuple[list[dict], dict]:
        socket = await open_socket(app, "/ws/open")
        try:
            answers = []
            await socket.send_to(bytes_data=b"\x00\x01binary")
            answers.append(await receive(socket))
            await socket.send_to(text_data="{not json")
            answers.append(await receive(socket))
            await send(socket, ["a", "list"])
            answers.append(await receive(socket))
            await send(socket, {"id": 1, "payload": 1, "extra": True})
            answers.append(await receive(socket))
            await send(socket, {"payload": "no id"})
            answers.append(await receive(socket))
            await send(socket, {"type": "subscribe", "id": 9})
            answers.append(await receive(socket))
            still = await request(socket, 10, "still here")
            return answers, still
        finally:
            await hang_up(socket)

    answers, still = run(scenario)
    details = [answer["error"]["details"] for answer in answers]
    assert all(answer["status"] == 400 for answer in answers)
    assert details[0] == "Binary frames are not accepted: send JSON text frames"
    assert details[1].startswith("Invalid JSON")
    assert details[2] == "A message must be a JSON object"
    assert details[3].startswith("Unknown field(s) 'extra'") and answers[3]["id"] == 1
    assert details[4].startswith("A request needs an `id`")
    assert details[5].startswith("Unknown message type 'subscribe'") and answers[5]["id"] == 9
    assert still["status"] == 200


def test_bad_input_before_authentication_closes_with_4001(app, jwt_channel) -> None:
    async def first_frame(**frame: Any) -> int:
        socket = await open_socket(app, "/ws/events")
        try:
            await socket.send_to(**frame)
            return (await closed_with(socket))[0]
        finally:
            await hang_up(socket)

    async def scenario() -> list[int]:
        return [await first_frame(bytes_data=b"\x00"), await first_frame(text_data="nope"),
                await first_frame(text_data='{"type": "auth", "token": "x", "admin": true}')]

    assert run(scenario) == [4001, 4001, 4001]


def test_an_oversized_message_closes_with_4009(app, ws_channel) -> None:
    ws_channel("/ws/open", name="open", max_message_size=100)

    async def scenario() -> tuple[dict, dict, int]:
        socket = await open_socket(app, "/ws/open")
        try:
            fits = await request(socket, 1, "x" * 50)
            await send(socket, {"id": 2, "payload": "é" * 60})  # 60 characters, but more than 100 bytes
            error = await receive(socket)
            return fits, error, (await closed_with(socket))[0]
        finally:
            await hang_up(socket)

    fits, error, code = run(scenario)
    assert fits["status"] == 200
    assert error["status"] == 413 and error["error"]["details"] == "Message larger than 100 bytes"
    assert code == 4009


def test_an_idle_connection_is_closed_with_4008_and_pings_keep_it_open(app, ws_channel) -> None:
    ws_channel("/ws/open", name="open", idle_timeout=1)

    async def scenario() -> tuple[list[dict], int, float]:
        socket = await open_socket(app, "/ws/open")
        try:
            pongs = []
            for _ in range(3):  # 1.8 s in all, never silent for a whole second
                await asyncio.sleep(0.6)
                await send(socket, {"type": "ping", "id": "p"})
                pongs.append(await receive(socket))
            silent_from = time.monotonic()
            code = (await closed_with(socket, timeout=4))[0]
            return pongs, code, time.monotonic() - silent_from
        finally:
            await hang_up(socket)

    pongs, code, after = run(scenario)
    assert pongs == [{"type": "pong", "id": "p"}] * 3
    assert code == 4008
    assert 0.9 < after < 3.0


def test_a_flood_is_refused_then_closed_while_other_connections_keep_working(app, ws_channel) -> None:
    ws_channel("/ws/open", name="open", max_messages_per_second=5)

    async def scenario() -> tuple[list[dict], int, dict]:
        flooder = await open_socket(app, "/ws/open")
        calm = await open_socket(app, "/ws/open")
        try:
            for _ in range(20):
                await send(flooder, {"type": "ping"})
            answers = []
            while True:
                output = await flooder.receive_output(5)
                if output["type"] == "websocket.close":
                    code = output["code"]
                    break
                answers.append(json.loads(output["text"]))
            return answers, code, await request(calm, 1, "fine")
        finally:
            await hang_up(flooder)
            await hang_up(calm)

    answers, code, calm_reply = run(scenario)
    assert answers[:5] == [{"type": "pong"}] * 5
    refusals = answers[5:]
    assert len(refusals) == 6  # messages 6-10 are refused; the 11th closes the connection, saying why
    assert all(answer["status"] == 429 for answer in refusals)
    assert refusals[0]["error"]["details"] == "Too many messages: at most 5 a second; the connection closes at 10"
    assert refusals[-1]["error"]["details"] == "More than 10 messages in a second"
    assert code == 4029
    assert calm_reply["status"] == 200


def test_a_slow_service_holds_up_neither_its_connection_nor_others(app, ws_channel) -> None:
    ws_channel("/ws/slow", "ws-demo.slow", name="slow", allowed_services="ws-demo.echo")

    async def scenario() -> tuple[float, float, dict, dict]:
        slow = await open_socket(app, "/ws/slow")
        other = await open_socket(app, "/ws/slow")
        try:
            started = time.monotonic()
            await send(slow, {"id": "slow", "payload": 1.5})
            quick_elsewhere = await request(other, "quick", "x", service="ws-demo.echo")
            other_after = time.monotonic() - started
            await send(slow, {"type": "ping", "id": "ping"})
            pong = await receive(slow)
            pong_after = time.monotonic() - started
            slow_reply = await receive(slow)
            return other_after, pong_after, pong, {**slow_reply, "quick": quick_elsewhere}
        finally:
            await hang_up(slow)
            await hang_up(other)

    other_after, pong_after, pong, slow_reply = run(scenario)
    assert other_after < 1.0 and pong_after < 1.0
    assert pong == {"type": "pong", "id": "ping"}
    assert slow_reply["id"] == "slow" and slow_reply["response"] == "slept"
    assert slow_reply["quick"]["status"] == 200


def test_handshakes_for_unknown_or_inactive_paths_and_foreign_pages_are_refused(app, ws_channel) -> None:
    ws_channel("/ws/open", name="open")
    ws_channel("/ws/off", name="off", is_active=False)

    async def scenario() -> list[bool]:
        return [
            await refused(app, "/ws/nothing-here"),
            await refused(app, "/ws/off"),
            await refused(app, "/ws/open/"),  # paths match exactly
            # Browsers send Origin: pages from hosts outside ALLOWED_HOSTS are refused ...
            await refused(app, "/ws/open", {"Origin": "https://evil.example"}),
            await refused(app, "/ws/open", {"Origin": "http://127.0.0.1:8000"}),
            # ... and programs, which send none, are not: nothing ambient authenticates them.
            await refused(app, "/ws/open"),
        ]

    assert run(scenario) == [True, True, True, True, False, False]


def test_deactivating_a_channel_closes_its_connections_with_4004(app, ws_channel) -> None:
    channel = ws_channel("/ws/open", name="open")

    async def scenario() -> int:
        socket = await open_socket(app, "/ws/open")
        try:
            assert (await request(socket, 1, "x"))["status"] == 200
            channel.is_active = False
            await sync_to_async(channel.save)()
            return (await closed_with(socket, timeout=3))[0]
        finally:
            await hang_up(socket)

    assert run(scenario) == 4004
