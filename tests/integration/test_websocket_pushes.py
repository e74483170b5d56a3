"""WebSocket channels against the real ASGI application: pushes (to the caller, a client, a channel,
a user; from a Celery task), and the rows of connected clients.

Each test gets a channel-layer prefix of its own, so parallel test processes sharing one
Redis database never see each other's groups. Tests are transactional: the consumer's
threads write and read rows on their own database connections. The fixtures (``app``,
``ws_channel``, ``jwt_channel``, ``basic_channel``) are in ``conftest.py``; the demo services
and the communicator helpers in ``ws_helpers.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from integration import push as pushes
from integration.models import DeployedService, WebSocketChannel, WebSocketClient
from tests.integration.ws_helpers import (
    closed_with,
    hang_up,
    nothing_more,
    open_socket,
    receive,
    request,
    run,
    send,
    token_for,
)
from tests.integration.ws_helpers import pushes as received_pushes

pytestmark = pytest.mark.django_db(transaction=True)


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
