"""WebSocket channels against the real ASGI application (config.asgi) on the Redis channel layer.

Each test gets a channel-layer prefix of its own, so parallel test processes sharing one
Redis database never see each other's groups. Tests are transactional: the consumer's
threads write and read rows on their own database connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from accounts import tokens
from accounts.models import JWTDefinition
from integration import push as pushes
from integration.models import DeployedService, WebSocketChannel, WebSocketClient
from tests.integration.ws_helpers import (
    closed_with,
    hang_up,
    nothing_more,
    open_socket,
    receive,
    refused,
    request,
    send,
)
from tests.integration.ws_helpers import pushes as received_pushes

pytestmark = pytest.mark.django_db(transaction=True)

SERVICES = """
    import time

    from integration.services import BadRequest, Service

    class Echo(Service):
        def handle(self):
            self.response.payload = {
                "echo": self.request.payload, "user": self.channel.username, "channel": self.channel.name,
                "type": self.channel.type, "client_id": self.channel.client_id,
            }

    class Classic(Service):
        class SimpleIO:
            input_required = ("name",)
            output_required = ("greeting",)

        def handle(self):
            self.response.payload = {"greeting": "Hello " + self.request.input.name}

    class Fail(Service):
        def handle(self):
            if self.request.payload == "bad":
                raise BadRequest("Not like that")
            raise RuntimeError("internal detail that callers must not see")

    class Slow(Service):
        def handle(self):
            time.sleep(float(self.request.payload))
            self.response.payload = "slept"

    class Notify(Service):
        def handle(self):
            body = self.request.payload
            self.push(body["data"], **body.get("to", {}))
            self.response.payload = "pushed"
"""


@pytest.fixture
def layer(settings: Any) -> str:
    """The Redis channel layer, under a prefix of this test's own."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (make test sets REDIS_URL)")
    prefix = f"test-ws-{uuid.uuid4().hex[:12]}"
    # The hosts as settings give them (with the socket timeout above channels-redis's 5 s wait).
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": hosts, "prefix": prefix},
        }
    }
    return prefix


@pytest.fixture
def app(transactional_db: None, layer: str, deploy: Any, builtins: None) -> Any:
    """The real ASGI application with the test services deployed."""
    deploy("ws_demo.py", SERVICES)
    from config.asgi import application

    return application


@pytest.fixture
def ws_channel(app: Any) -> Any:
    """``ws_channel(path, service="ws-demo.echo", **fields)`` creates a WebSocket channel."""

    def _make(path: str = "/ws/events", service: str = "ws-demo.echo", **fields: Any) -> WebSocketChannel:
        fields.setdefault("name", f"channel {path}")
        return WebSocketChannel.objects.create(path=path, service=DeployedService.objects.get(name=service), **fields)

    return _make


@pytest.fixture
def jwt_channel(ws_channel: Any) -> tuple[WebSocketChannel, JWTDefinition]:
    definition = JWTDefinition(name="browsers", username="frontend", ttl=60)
    definition.set_password("jwt-secret-1")
    definition.save()
    return ws_channel(security=definition, name="notifications"), definition


@pytest.fixture
def basic_channel(ws_channel: Any, basic_auth: Any) -> WebSocketChannel:
    """A channel for a Basic Auth account, user `crm-user` with password `crm-secret`."""
    return ws_channel("/ws/crm", security=basic_auth(), name="crm")


def token_for(definition: JWTDefinition) -> str:
    return tokens.issue(definition.pk, definition.username, definition.ttl)


def run(scenario: Any) -> Any:
    """Run an async test body on an event loop of its own (the test itself stays synchronous)."""
    return async_to_sync(scenario)()




def test_a_client_authenticates_with_a_bearer_header_and_gets_replies_by_id(app, jwt_channel) -> None:
    _, definition = jwt_channel
    token = token_for(definition)

    async def scenario() -> None:
        socket = await open_socket(app, "/ws/events", {"Authorization": f"Bearer {token}"})
        try:
            first = await request(socket, "a-1", {"n": 1})
            second = await request(socket, 2, [1, 2])
        finally:
            await hang_up(socket)
        assert first["status"] == 200
        assert first["response"]["echo"] == {"n": 1}
        # The service sees who called and how, never the token.
        assert first["response"]["user"] == "frontend"
        assert first["response"]["channel"] == "notifications"
        assert first["response"]["type"] == "websocket"
        assert len(first["response"]["client_id"]) == 32
        assert len(first["cid"]) == 24
        assert second["id"] == 2 and second["response"]["echo"] == [1, 2]
        assert first["cid"] != second["cid"]

    run(scenario)


def test_a_browser_authenticates_with_its_first_message(app, jwt_channel, basic_channel) -> None:
    _, definition = jwt_channel
    token = token_for(definition)

    async def scenario() -> None:
        socket = await open_socket(app, "/ws/events")
        crm = await open_socket(app, "/ws/crm")
        try:
            await send(socket, {"type": "auth", "token": token, "id": "login"})
            welcome = await receive(socket)
            reply = await request(socket, "r1", {"hello": "world"})
            await send(crm, {"type": "auth", "username": "crm-user", "password": "crm-secret"})
            crm_welcome = await receive(crm)
            crm_reply = await request(crm, "r1", "hi")
        finally:
            await hang_up(socket)
            await hang_up(crm)
        assert welcome == {"type": "authenticated", "id": "login", "client_id": reply["response"]["client_id"],
                           "username": "frontend"}
        assert reply["status"] == 200 and reply["response"]["echo"] == {"hello": "world"}
        assert crm_welcome["username"] == "crm-user"
        assert crm_reply["response"]["user"] == "crm-user"

    run(scenario)


def test_bad_tokens_close_the_connection_with_4403(app, jwt_channel) -> None:
    other = JWTDefinition(name="others", username="someone-else", ttl=60)
    other.save()
    other_token = token_for(other)  # a real token, but of another JWT definition: not good here
    attempts = [
        ({"Authorization": "Bearer not-a-token"}, None),
        ({"Authorization": f"Bearer {other_token}"}, None),
        (None, {"type": "auth", "token": "gAAAAnot-a-token"}),
        (None, {"type": "auth", "token": other_token}),
        (None, {"type": "auth", "username": "frontend", "password": "jwt-secret-1"}),  # a JWT channel wants a token
    ]

    async def attempt(headers: dict[str, str] | None, message: dict[str, Any] | None) -> tuple[int, str]:
        socket = await open_socket(app, "/ws/events", headers)
        try:
            if message is not None:
                await send(socket, message)
            return await closed_with(socket)
        finally:
            await hang_up(socket)

    async def scenario() -> list[tuple[int, str]]:
        return [await attempt(headers, message) for headers, message in attempts]

    assert run(scenario) == [(4403, "Unauthorized")] * 4 + [(4403, "This channel expects a JWT token")]


def test_an_expired_or_logged_out_token_closes_with_4440(app, jwt_channel, monkeypatch) -> None:
    _, definition = jwt_channel
    # Issued a TTL and a second ago, unused since: its session has ended by the time it is used.
    monkeypatch.setattr(tokens, "clock", lambda: time.time() - definition.ttl - 1)
    expired = token_for(definition)
    monkeypatch.setattr(tokens, "clock", time.time)
    logged_out = token_for(definition)

    async def scenario() -> list[int]:
        codes = []
        socket = await open_socket(app, "/ws/events", {"Authorization": f"Bearer {expired}"})
        codes.append((await closed_with(socket))[0])
        await hang_up(socket)
        # Logged out while its connection is open: the next message after the recheck window ends it.
        socket = await open_socket(app, "/ws/events")
        await send(socket, {"type": "auth", "token": logged_out})
        assert (await receive(socket))["type"] == "authenticated"
        await sync_to_async(tokens.revoke)(tokens.open_token(logged_out).sid)
        await asyncio.sleep(1.1)
        await send(socket, {"type": "ping"})
        codes.append((await closed_with(socket))[0])
        await hang_up(socket)
        return codes

    assert run(scenario) == [4440, 4440]


def test_a_token_that_expires_while_the_client_is_silent_closes_with_4440(app, jwt_channel) -> None:
    _, definition = jwt_channel
    JWTDefinition.objects.filter(pk=definition.pk).update(ttl=2)
    definition.refresh_from_db()
    definition.save()  # a configuration change: the snapshot takes the new TTL
    token = token_for(definition)

    async def scenario() -> tuple[int, float]:
        started = time.monotonic()
        socket = await open_socket(app, "/ws/events", {"Authorization": f"Bearer {token}"})
        code, _ = await closed_with(socket, timeout=5)
        await hang_up(socket)
        return code, time.monotonic() - started

    code, after = run(scenario)
    assert code == 4440
    assert after < 3.5


def test_a_client_that_never_authenticates_or_asks_first_is_closed_with_4401(app, jwt_channel) -> None:
    channel, _ = jwt_channel
    channel.new_token_wait_time = 1
    channel.save()

    async def scenario() -> list[tuple[int, Any]]:
        results = []
        silent = await open_socket(app, "/ws/events")
        results.append(((await closed_with(silent, timeout=4))[0], None))
        await hang_up(silent)
        eager = await open_socket(app, "/ws/events")
        await send(eager, {"id": 1, "payload": "before logging in"})
        told = await receive(eager)  # why, in the plain form: daphne drops close reasons
        results.append(((await closed_with(eager))[0], told))
        await hang_up(eager)
        zato = await open_socket(app, "/ws/events")
        await send(zato, {"meta": {"action": "invoke-service", "id": "z1", "token": None}, "data": {}})
        refusal = await receive(zato)
        results.append(((await closed_with(zato))[0], refusal))
        await hang_up(zato)
        return results

    (silent, _), (eager, told), (zato, refusal) = run(scenario)
    assert silent == eager == zato == 4401
    assert told["type"] == "error" and told["status"] == 401
    assert told["error"] == {"result": "Error", "cid": told["cid"], "details": "Authenticate first"}
    assert refusal["meta"]["msg_type"] == "zwsx.merr" and refusal["meta"]["status"] == 403
    assert refusal["data"] == "You are not authorized to access this resource"


def test_zato_form_create_session_then_invoke_service(app, jwt_channel, ws_channel, basic_auth) -> None:
    channel, definition = jwt_channel
    channel.allowed_services = "ws-demo.classic"
    channel.save()
    token = token_for(definition)

    def zato(action: str, msg_id: str, session: str | None = None, data: Any = None, **meta: Any) -> dict:
        return {"meta": {"action": action, "id": msg_id, "timestamp": "2024-01-01T00:00:00", "token": session,
                         "client_id": "c1", "client_name": "tests", **meta}, "data": data or {}}

    async def scenario() -> dict[str, Any]:
        found: dict[str, Any] = {}
        socket = await open_socket(app, "/ws/events")
        try:
            await send(socket, zato("create-session", "zato.ws.client.auth.1", username="frontend", secret=token))
            found["session"] = session = await receive(socket)
            session_token = session["data"]["token"]
            await send(socket, zato("invoke-service", "zato.ws.client.invs.1", session_token, {"a": 1}))
            found["reply"] = await receive(socket)
            # Zato's gateway convention: name an allowed service and its request.
            await send(socket, zato("invoke-service", "zato.ws.client.invs.2", session_token,
                                    {"service": "ws-demo.classic", "request": {"name": "Ann"}}))
            found["gateway"] = await receive(socket)
            await send(socket, zato("invoke-service", "zato.ws.client.invs.3", session_token,
                                    {"service": "ws-demo.fail", "request": "bad"}))
            found["not allowed"] = await receive(socket)
            await send(socket, zato("invoke-service", "zato.ws.client.invs.4", "zwsxt.guessed", {}))
            found["wrong token"] = await receive(socket)
            found["close"] = (await closed_with(socket))[0]
        finally:
            await hang_up(socket)
        return found

    found = run(scenario)
    session = found["session"]
    assert session["meta"]["msg_type"] == "zwsx.rspa" and session["meta"]["status"] == 200
    assert session["meta"]["in_reply_to"] == "zato.ws.client.auth.1"
    assert session["data"]["token"].startswith("zwsxt.")
    reply = found["reply"]
    assert reply["meta"]["msg_type"] == "zwsx.rspok" and reply["meta"]["status"] == 200
    assert reply["meta"]["in_reply_to"] == "zato.ws.client.invs.1"
    assert reply["data"]["echo"] == {"a": 1} and reply["data"]["user"] == "frontend"
    # SimpleIO's {"response": ...} wrapper is removed on WebSocket channels, as in Zato.
    assert found["gateway"]["data"] == {"greeting": "Hello Ann"}
    refused_reply = found["not allowed"]
    assert refused_reply["meta"]["msg_type"] == "zwsx.rsperr" and refused_reply["meta"]["status"] == 403
    assert refused_reply["data"] == {"result": "Error", "cid": refused_reply["meta"]["id"],
                                     "details": "Service `ws-demo.fail` is not allowed on this channel"}
    assert found["wrong token"]["meta"]["msg_type"] == "zwsx.merr"
    assert found["close"] == 4403


def test_zato_session_tokens_expire_token_ttl_after_their_last_use(app, ws_channel) -> None:
    ws_channel("/ws/open", name="open", token_ttl=1)

    async def scenario() -> tuple[dict, int, float]:
        socket = await open_socket(app, "/ws/open")
        try:
            await send(socket, {"meta": {"action": "create-session", "id": "s"}, "data": {}})
            session_token = (await receive(socket))["data"]["token"]
            await asyncio.sleep(0.6)
            await send(socket, {"meta": {"action": "invoke-service", "id": "i", "token": session_token},
                                "data": {"x": 1}})
            reply = await receive(socket)  # that use extended the token by another second
            used_at = time.monotonic()
            told = await receive(socket, timeout=3)
            code = (await closed_with(socket))[0]
            return reply, code, time.monotonic() - used_at, told  # type: ignore[return-value]
        finally:
            await hang_up(socket)

    reply, code, after, told = run(scenario)
    assert reply["meta"]["msg_type"] == "zwsx.rspok"
    assert told["meta"]["msg_type"] == "zwsx.merr"
    assert code == 4440 and 0.9 < after < 2.5


def test_zato_form_with_basic_auth_and_a_wrong_password(app, basic_channel) -> None:
    async def session(password: str) -> tuple[dict, int | None]:
        socket = await open_socket(app, "/ws/crm")
        try:
            await send(socket, {"meta": {"action": "create-session", "id": "s", "username": "crm-user",
                                         "secret": password}, "data": {}})
            answer = await receive(socket)
            code = None if answer["meta"]["msg_type"] == "zwsx.rspa" else (await closed_with(socket))[0]
            return answer, code
        finally:
            await hang_up(socket)

    async def scenario() -> list[tuple[dict, int | None]]:
        return [await session("crm-secret"), await session("not-the-password")]

    (good, good_code), (bad, bad_code) = run(scenario)
    assert good["meta"]["msg_type"] == "zwsx.rspa" and good_code is None
    assert bad["meta"] == {**bad["meta"], "msg_type": "zwsx.merr", "status": 403}
    assert bad_code == 4403


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


# --- Pushes ---------------------------------------------------------------------------------------------


def test_push_to_the_caller_to_one_client_to_a_channel_and_to_a_user(app, jwt_channel, basic_channel) -> None:
    channel, definition = jwt_channel
    channel.allowed_services = "ws-demo.notify"
    channel.save()
    bearer = {"Authorization": f"Bearer {token_for(definition)}"}

    async def scenario() -> dict[str, list]:
        alice_1 = await open_socket(app, "/ws/events", bearer)
        alice_2 = await open_socket(app, "/ws/events", bearer)
        crm = await open_socket(app, "/ws/crm")
        sockets = {"alice_1": alice_1, "alice_2": alice_2, "crm": crm}
        try:
            await send(crm, {"type": "auth", "username": "crm-user", "password": "crm-secret"})
            assert (await receive(crm))["type"] == "authenticated"
            alice_2_id = (await request(alice_2, "who", None))["response"]["client_id"]
            # A service invoked over the socket pushes to its caller when it names nobody.
            called = await request(alice_1, "r", {"data": {"to": "the caller"}}, service="ws-demo.notify")
            assert called["response"] == "pushed"
            await sync_to_async(pushes.push)({"to": "the channel"}, channel="notifications")  # the sync API
            await pushes.apush({"to": "the user"}, user="frontend")
            await pushes.apush({"to": "crm-user on crm"}, user="crm-user", channel="crm")
            await pushes.apush({"to": "crm-user on notifications"}, user="crm-user", channel="notifications")
            await pushes.apush({"to": "one client"}, client=alice_2_id)
            await pushes.apush({"to": "a client long gone"}, client=uuid.uuid4().hex)  # dropped, no error
            return {name: await received_pushes(socket) for name, socket in sockets.items()}
        finally:
            for socket in sockets.values():
                await hang_up(socket)

    assert run(scenario) == {
        "alice_1": [{"to": "the caller"}, {"to": "the channel"}, {"to": "the user"}],
        "alice_2": [{"to": "the channel"}, {"to": "the user"}, {"to": "one client"}],
        "crm": [{"to": "crm-user on crm"}],
    }


def test_a_push_names_its_recipients_clearly(app, jwt_channel) -> None:
    with pytest.raises(ValueError, match="No WebSocket channel is named `nope`"):
        pushes.push("x", channel="nope")
    with pytest.raises(ValueError, match="Name who gets the push"):
        pushes.push("x")
    with pytest.raises(ValueError, match="Not a WebSocket client id"):
        pushes.push("x", client="../../etc")
    with pytest.raises(TypeError):
        pushes.push(object(), channel="notifications")


def test_a_push_sent_right_after_the_handshake_reaches_the_client(app, jwt_channel, ws_channel) -> None:
    # The consumer used to accept the handshake first and join the push groups after it, so a push
    # sent as soon as the client saw its connection open (a REST call, a Celery task) reached nobody.
    # Here the push leaves the moment the handshake is accepted, with no message exchanged before it.
    _, definition = jwt_channel
    ws_channel("/ws/open", name="open")
    clients = [("/ws/events", {"Authorization": f"Bearer {token_for(definition)}"}, "notifications"),
               ("/ws/open", {}, "open")]

    async def scenario() -> list[Any]:
        received = []
        for path, headers, channel_name in clients * 3:
            socket = await open_socket(app, path, headers)
            try:
                await pushes.apush({"to": channel_name}, channel=channel_name)
                received.append((await receive(socket))["data"])
            finally:
                await hang_up(socket)
        return received

    assert run(scenario) == [{"to": "notifications"}, {"to": "open"}] * 3


def test_zato_clients_get_pushes_as_server_requests_and_may_answer(app, ws_channel) -> None:
    ws_channel("/ws/open", name="open")

    async def scenario() -> tuple[dict, Any]:
        socket = await open_socket(app, "/ws/open")
        try:
            await send(socket, {"meta": {"action": "create-session", "id": "s1"}, "data": {}})
            session_token = (await receive(socket))["data"]["token"]
            await pushes.apush({"event": "hello"}, channel="open")
            server_request = await receive(socket)
            await send(socket, {"meta": {"action": "client-response", "id": "r1", "token": session_token,
                                         "in_reply_to": server_request["meta"]["id"]},
                                "data": {"response": "thanks"}})
            return server_request, await nothing_more(socket)
        finally:
            await hang_up(socket)

    server_request, quiet = run(scenario)
    assert server_request["meta"]["msg_type"] == "zwsx.rqc" and len(server_request["meta"]["id"]) == 24
    assert server_request["data"] == {"event": "hello"}
    assert quiet  # the client's answer is accepted without a reply


def test_a_push_from_a_celery_task_reaches_the_browser(app, jwt_channel, worker_id) -> None:
    from django.conf import settings

    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs the Redis broker (make test sets REDIS_URL)")
    from celery.contrib.testing.worker import start_worker

    from config.celery import app as celery_app
    from integration.tasks import submit_invocation

    _, definition = jwt_channel
    token = token_for(definition)
    queue = f"test-ws-push-{worker_id}-{uuid.uuid4().hex[:8]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue

    async def scenario() -> tuple[Any, float]:
        socket = await open_socket(app, "/ws/events", {"Authorization": f"Bearer {token}"})
        try:
            started = time.monotonic()
            await sync_to_async(submit_invocation)(
                "ws-demo.notify", {"data": {"job": "done"}, "to": {"channel": "notifications"}})
            message = await receive(socket, timeout=15)
            return message, time.monotonic() - started
        finally:
            await hang_up(socket)

    try:
        with start_worker(celery_app, queues=[queue], perform_ping_check=False, pool="solo", shutdown_timeout=10):
            message, after = run(scenario)
    finally:
        celery_app.conf.task_default_queue = previous
    assert message["type"] == "push" and message["data"] == {"job": "done"}
    assert len(message["cid"]) == 24  # the invocation's CID, which the worker's log lines carry
    assert after < 10


# --- Connected clients, disconnecting, queries ------------------------------------------------------------


def test_connected_clients_are_listed_counted_and_removed(app, jwt_channel, settings) -> None:
    settings.WEBSOCKET_CLIENT_UPDATE_INTERVAL = 0.5
    channel, definition = jwt_channel
    dead = WebSocketClient.objects.create(
        channel=channel, client_id=uuid.uuid4().hex, username="ghost", server_host="gone", server_pid=1,
        last_seen=timezone.now() - dt.timedelta(seconds=60),  # its process died a minute ago
    )
    assert not WebSocketClient.objects.live().filter(pk=dead.pk).exists()

    def rows() -> list[dict]:
        return list(WebSocketClient.objects.values(
            "client_id", "username", "messages_in", "messages_out", "server_pid", "channel__name"))

    async def scenario() -> tuple[list, list, int, list]:
        socket = await open_socket(app, "/ws/events")
        try:
            await send(socket, {"type": "auth", "token": token_for(definition)})
            client_id = (await receive(socket))["client_id"]
            for number in range(3):
                await request(socket, number, None)
            await asyncio.sleep(1.2)  # two supervisor updates
            while_connected = await sync_to_async(rows)()
            await sync_to_async(pushes.disconnect)(client_id)
            code = (await closed_with(socket))[0]
        finally:
            await hang_up(socket)
        return while_connected, await sync_to_async(rows)(), code, [client_id]

    while_connected, after, code, (client_id,) = run(scenario)
    assert while_connected == [{
        "client_id": client_id, "username": "frontend", "messages_in": 4, "messages_out": 4,
        "server_pid": os.getpid(), "channel__name": "notifications",
    }]  # the ghost row was cleaned away by the first update
    assert code == 4005
    assert after == []


def test_connecting_requests_and_pushes_read_no_configuration(app, ws_channel, settings, monkeypatch) -> None:
    """The snapshot answers every lookup: a connection costs its client row (written, removed), a message nothing."""
    from django.db.backends import utils

    settings.WEBSOCKET_CLIENT_UPDATE_INTERVAL = 60  # the periodic row update is not per message
    ws_channel("/ws/open", name="open")
    queries: list[str] = []
    original = utils.CursorWrapper._execute

    def counting(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(sql)
        return original(self, sql, *args, **kwargs)

    async def scenario() -> None:
        warm = await open_socket(app, "/ws/open")  # builds the snapshot, as a server does at start
        await request(warm, "warm-up", None)
        await asyncio.sleep(0.2)  # its client row is written
        monkeypatch.setattr(utils.CursorWrapper, "_execute", counting)  # every thread's connections
        try:
            socket = await open_socket(app, "/ws/open")
            for number in range(20):
                await request(socket, number, {"n": number})
                await send(socket, {"type": "ping"})
                await receive(socket)
            await pushes.apush("to all", channel="open")
            assert await received_pushes(socket) == ["to all"]
            await hang_up(socket)
        finally:
            monkeypatch.setattr(utils.CursorWrapper, "_execute", original)
            await hang_up(warm)

    run(scenario)
    kinds = [sql.split()[0] + " " + sql.split('"')[1] for sql in queries]
    # Deleting loads the row first (Django does when delete signals have receivers); still only that table.
    assert kinds == ["INSERT integration_websocketclient", "SELECT integration_websocketclient",
                     "DELETE integration_websocketclient"]


def test_a_channel_path_is_plain_and_outside_the_reserved_prefixes(db, builtins) -> None:
    from django.core.exceptions import ValidationError

    service = DeployedService.objects.get(name="demo.hello")
    for path, message in [
        ("ws/events", "must start with /"),
        ("/ws/{user}", "not allowed in a URL"),
        ("/ws/a b", "not allowed in a URL"),
        ("/admin/ws", "may not start with /admin/"),
        ("/zato/ws", "may not start with /zato/"),
    ]:
        with pytest.raises(ValidationError, match=message):
            WebSocketChannel.objects.create(name=path, path=path, service=service)
    channel = WebSocketChannel.objects.create(
        name="ok", path=" /ws/events ", service=service, allowed_services="a.b\n\n  c.d \na.b")
    assert (channel.path, channel.allowed_services) == ("/ws/events", "a.b\nc.d")


# --- Zato's own client ------------------------------------------------------------------------------------

ZATO_PYTHON = Path(os.environ.get("ZATO_CLIENT_PYTHON", "var/zato-client-venv/bin/python"))
ZATO_SCRIPT = """
import json, sys
from zato.websocket.client import Client, Config

address, username, secret, wait = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
pushed = []

def on_request(request):
    pushed.append(request.data)
    return {"thanks": True}

config = Config(client_name="switchboard-test", client_id="t1", address=address, username=username,
                secret=secret, on_request_callback=on_request, wait_time=wait)
client = Client(config)
client.run(max_wait=wait)
if not client.is_authenticated:
    print(json.dumps({"authenticated": False}))
    sys.exit(0)
first = client.invoke({"n": 1})
second = client.invoke({"service": "ws-demo.classic", "request": {"name": "Zato"}})
failed = client.invoke({"service": "ws-demo.slow", "request": 0})
client.invoke({"service": "ws-demo.notify", "request": {"data": {"pushed": 1}}})
from gevent import sleep
for _ in range(100):
    if pushed:
        break
    sleep(0.05)
print(json.dumps({
    "authenticated": True,
    "first": [first.status, first.data, first.in_reply_to.split(".")[3]],
    "second": [second.status, second.data],
    "failed": [failed.status, failed.is_ok, failed.data],
    "pushed": pushed,
}))
client.stop()
"""


@pytest.fixture
def server_env_ws(transactional_db: None, layer: str, tmp_path: Path, settings: Any) -> dict[str, str]:
    """The environment for a daphne process on this test's database and channel-layer prefix."""
    from tests.servers.web import database_url

    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "VAR_DIR": str(var_dir),
        "PICKUP_DIR": str(tmp_path / "pickup"),
        "SECRET_KEY": settings.SECRET_KEY,
        "CHANNEL_LAYER_PREFIX": layer,
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def daphne(env: dict[str, str], tmp_path: Path) -> Any:
    """A daphne process serving config.asgi on a free port of 127.0.0.1; yields the port, stops it after."""
    import socket

    from tests.servers.procs import ManagedProcess, free_port, wait_for

    port = free_port()
    process = ManagedProcess([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                              "config.asgi:application"], env=env, log_path=tmp_path / "daphne.log").start()

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited: {process.log_tail()}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(serving, 30, message=lambda: process.log_tail())
        yield port
    finally:
        process.stop()


@pytest.mark.e2e
def test_zatos_own_websocket_client_works_unchanged(app, jwt_channel, server_env_ws, tmp_path) -> None:
    """zato-websocket-client 1.6.1, from a virtualenv of its own, against a real daphne process."""
    python = ZATO_PYTHON if ZATO_PYTHON.is_absolute() else Path(__file__).resolve().parents[2] / ZATO_PYTHON
    if not python.exists():
        pytest.skip(f"zato-websocket-client's virtualenv is not at {python} (`make test` builds it; "
                    "or set ZATO_CLIENT_PYTHON)")
    channel, definition = jwt_channel
    channel.allowed_services = "ws-demo.classic\nws-demo.notify"
    channel.save()
    token = token_for(definition)
    script = tmp_path / "zato_client.py"
    script.write_text(textwrap.dedent(ZATO_SCRIPT))
    with daphne(server_env_ws, tmp_path) as port:
        address = f"ws://127.0.0.1:{port}/ws/events"
        done = subprocess.run([str(python), str(script), address, "frontend", token, "10"],
                              capture_output=True, text=True, timeout=60, check=False)
        # A wrong secret: the client waits its `wait_time` for an answer to create-session, in vain.
        bad = subprocess.run([str(python), str(script), address, "frontend", "wrong", "1"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["authenticated"] is True
    assert result["first"][0] == 200 and result["first"][1]["echo"] == {"n": 1}
    assert result["first"][1]["user"] == "frontend" and result["first"][2] == "invs"
    assert result["second"] == [200, {"greeting": "Hello Zato"}]
    assert result["failed"][0] == 403 and result["failed"][1] is False
    assert result["failed"][2]["details"] == "Service `ws-demo.slow` is not allowed on this channel"
    assert result["pushed"] == [{"pushed": 1}]
    assert json.loads(bad.stdout.strip().splitlines()[-1]) == {"authenticated": False}
