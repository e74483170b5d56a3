"""WebSocket channels against the real ASGI application (config.asgi) on the Redis channel layer:
authentication, and the plain and Zato forms.

Each test gets a channel-layer prefix of its own, so parallel test processes sharing one
Redis database never see each other's groups. Tests are transactional: the consumer's
threads write and read rows on their own database connections. The fixtures (``app``,
``ws_channel``, ``jwt_channel``, ``basic_channel``) are in ``conftest.py``; the demo services
and the communicator helpers in ``ws_helpers.py``.

Also: ``test_websocket_limits.py`` (errors, bad input, limits, handshakes, configuration
changes), ``test_websocket_pushes.py`` (pushes, the rows of connected clients) and
``test_websocket_zato_client.py`` (zato-websocket-client against daphne).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from accounts import tokens
from accounts.models import JWTDefinition
from tests.integration.ws_helpers import (
    closed_with,
    hang_up,
    open_socket,
    receive,
    request,
    run,
    send,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


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
