"""Pushes when the channel layer cannot be reached: bounded by PUSH_TIMEOUT, reported, never a hang or a 200.

Each test has a private ``redis-server`` (``tests/servers/redis_server.py``) that it kills
(connections refused at once) or pauses with SIGSTOP (connections accepted, nothing answers:
the case that used to hold a web worker for 15 s and more), so the machine's shared Redis is
never touched. PUSH_TIMEOUT is 0.5 s here to keep the tests short; the bounds below allow 1.5 s
of scheduling noise on a busy machine, far below the unbounded waits they replace.
The end-to-end test (tests/e2e/test_push_recovery.py) does the same against a real daphne.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.utils import timezone

from accounts import tokens
from accounts.models import JWTDefinition
from integration import push as pushes
from integration.errors import PushFailed
from integration.models import DeployedService, WebSocketChannel, WebSocketClient
from tests.conftest import basic_header
from tests.integration.layer_helpers import received_by_group
from tests.integration.ws_helpers import closed_with, hang_up, open_socket, receive, send
from tests.servers.redis_server import RedisServer

TIMEOUT = 0.5  # PUSH_TIMEOUT in these tests
SLACK = 1.5  # what a busy 2-core machine may add to it (unbounded, a paused Redis held callers 15 s and more)


@pytest.fixture
def redis(tmp_path: Path, settings: Any) -> Iterator[RedisServer]:
    """A private Redis as the channel layer, PUSH_TIMEOUT = 0.5 s; stopped (resumed first) at the end."""
    server = RedisServer(log_dir=tmp_path).start()
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # as settings.py configures it: a socket timeout far above PUSH_TIMEOUT, which must cut in first
        "CONFIG": {"hosts": [{"address": server.url(0), "socket_timeout": 15}], "prefix": "test-outage"},
    }}
    settings.PUSH_TIMEOUT = TIMEOUT
    try:
        yield server
    finally:
        server.stop()


def timed_failure(call: Callable[[], Any]) -> tuple[PushFailed, float]:
    started = time.monotonic()
    with pytest.raises(PushFailed) as raised:
        call()
    return raised.value, time.monotonic() - started


def every_kind_of_push() -> dict[str, Callable[[], Any]]:
    client_id = uuid.uuid4().hex
    return {
        "push": lambda: pushes.push({"n": 1}, user="ann"),
        "apush": lambda: async_to_sync(pushes.apush)({"n": 2}, client=client_id),
        "disconnect": lambda: pushes.disconnect(client_id),
    }


# --- push, apush, disconnect ------------------------------------------------------------------------------------


def test_a_push_to_a_paused_redis_fails_after_push_timeout_instead_of_hanging(redis: RedisServer) -> None:
    redis.pause()
    for name, call in every_kind_of_push().items():
        failure, took = timed_failure(call)
        assert TIMEOUT - 0.05 <= took < TIMEOUT + SLACK, f"{name} took {took:.2f} s"
        assert failure.status_code == 503
        assert failure.details == f"The channel layer did not answer within 0.5 s ({name.removeprefix('a')}); " \
                                  "try again later", failure.details


def test_a_push_to_a_stopped_redis_fails_at_once_and_works_again_once_redis_is_back(redis: RedisServer) -> None:
    redis.kill()
    for name, call in every_kind_of_push().items():
        failure, took = timed_failure(call)
        assert took < TIMEOUT, f"{name}: a refused connection needs no waiting ({took:.2f} s)"
        # Only the exception's type: redis-py's message names the host and port.
        assert re.fullmatch(r"The channel layer cannot be reached \((push|disconnect): ConnectionError\); "
                            r"try again later", failure.details), failure.details
    redis.start()
    _, event = received_by_group(pushes.user_group("ann"), lambda: pushes.push({"n": 3}, user="ann"))
    assert event is not None and json.loads(event["text"]) == {"n": 3}


def test_a_push_through_the_sqlite_layer_fails_after_push_timeout_while_its_file_is_locked(
    tmp_path: Path, settings: Any,
) -> None:
    path = tmp_path / "layer.sqlite3"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "integration.channel_layers.SQLiteChannelLayer",
                                           "CONFIG": {"path": str(path)}}}
    settings.PUSH_TIMEOUT = TIMEOUT
    layer = get_channel_layer()
    # A member, so that the push has a row to write (a push to nobody only reads, which WAL never blocks).
    async_to_sync(layer.group_add)(pushes.user_group("ann"), "specific.listener")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, stuck: the layer's busy timeout is 10 s
    try:
        failure, took = timed_failure(lambda: pushes.push({"n": 2}, user="ann"))
        assert TIMEOUT - 0.05 <= took < TIMEOUT + SLACK, took
        assert failure.details == "The channel layer did not answer within 0.5 s (push); try again later"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _, event = received_by_group(pushes.user_group("ann"), lambda: pushes.push({"n": 3}, user="ann"))
    assert event is not None and json.loads(event["text"]) == {"n": 3}


# --- What callers answer: the demo's notify service, the API, the admin --------------------------------------


@pytest.fixture
def demo(builtins: None, settings: Any) -> None:
    """``manage.py bootstrap``'s demo: /demo/notify for the `backend` Basic Auth account."""
    settings.ADMIN_PASSWORD, settings.ADMIN_REQUIRE_TOTP = "admin-password-1", False
    settings.DEMO_FRONTEND_PASSWORD, settings.DEMO_BACKEND_PASSWORD = "fe-demo-secret", "be-demo-secret"
    call_command("bootstrap", stdout=io.StringIO())


@pytest.mark.django_db
def test_demo_notify_answers_503_in_the_one_error_shape_when_redis_is_paused(
    client: Any, demo: None, redis: RedisServer,
) -> None:
    redis.pause()
    started = time.monotonic()
    response = client.post("/demo/notify", json.dumps({"text": "Order 1001 shipped"}), content_type="application/json",
                           HTTP_AUTHORIZATION=basic_header("backend", "be-demo-secret"))
    took = time.monotonic() - started
    assert response.status_code == 503, response.content  # it was a 200 for a notification nobody got
    body = response.json()
    assert body == {"result": "Error", "cid": response["X-Zato-CID"],
                    "details": "The channel layer did not answer within 0.5 s (push); try again later"}
    assert took < TIMEOUT + SLACK, took


def live_client(channel: WebSocketChannel, username: str = "ann") -> WebSocketClient:
    return WebSocketClient.objects.create(channel=channel, client_id=uuid.uuid4().hex, username=username,
                                          server_host="web-1", server_pid=4242, server_id="a" * 32,
                                          last_seen=timezone.now())


@pytest.fixture
def orders(builtins: None) -> WebSocketChannel:
    return WebSocketChannel.objects.create(name="orders", path="/ws/orders",
                                           service=DeployedService.objects.get(name="demo.echo"))


@pytest.mark.django_db
def test_the_apis_disconnect_answers_503_with_retry_after_when_redis_is_paused(
    api: Any, orders: WebSocketChannel, redis: RedisServer,
) -> None:
    ann = live_client(orders)
    redis.pause()
    started = time.monotonic()
    response = api.delete(f"/manage/api/v1/channels/websocket/{orders.pk}/clients/{ann.client_id}/")
    took = time.monotonic() - started
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["result"] == "Error" and body["cid"] == response["X-Zato-CID"]
    assert body["details"] == ("The channel layer did not answer within 0.5 s (disconnect); try again later; "
                               "the client was not disconnected")
    assert response["Retry-After"] == "5"
    assert took < TIMEOUT + SLACK, took


@pytest.mark.django_db
def test_the_admins_disconnect_action_stops_at_the_first_failure_instead_of_waiting_for_each_client(
    admin_client_alice: Any, orders: WebSocketChannel, redis: RedisServer,
) -> None:
    selected = [live_client(orders, f"user-{n}").pk for n in range(10)]  # one timeout each would be 5 s
    redis.pause()
    started = time.monotonic()
    response = admin_client_alice.post("/admin/integration/websocketclient/",
                                       {"action": "disconnect", "_selected_action": selected}, follow=True)
    took = time.monotonic() - started
    assert response.status_code == 200
    (message,) = get_messages(response.wsgi_request)
    assert message.level_tag == "error"
    assert str(message) == ("Could not reach the channel layer for 10 of 10 clients: The channel layer did not "
                            "answer within 0.5 s (disconnect); try again later")
    assert took < TIMEOUT + SLACK, f"{took:.2f} s: one PUSH_TIMEOUT, not one per client"


# --- WebSocket connections while the layer is down -----------------------------------------------------------


@pytest.fixture
def app(transactional_db: None, redis: RedisServer, builtins: None) -> Any:
    from config.asgi import application

    return application


@pytest.fixture
def jwt_channel(app: Any) -> tuple[WebSocketChannel, str]:
    """A JWT channel and a token for it (its session store is the shared Redis of the test settings)."""
    definition = JWTDefinition(name="browsers", username="frontend", ttl=60)
    definition.set_password("jwt-secret-1")
    definition.save()
    channel = WebSocketChannel.objects.create(name="notifications", path="/ws/events", security=definition,
                                              service=DeployedService.objects.get(name="demo.echo"))
    return channel, tokens.issue(definition.pk, definition.username, definition.ttl)


def test_a_connection_to_an_open_channel_is_told_and_closed_with_4503_while_redis_is_down(
    app: Any, orders: WebSocketChannel, redis: RedisServer,
) -> None:
    redis.kill()

    async def scenario() -> None:
        socket = await open_socket(app, "/ws/orders")  # accepted, then refused: it could never get a push
        error = await receive(socket)
        assert error["type"] == "error" and error["status"] == 503
        assert error["error"] == {"result": "Error", "cid": error["cid"], "details":
                                  "Pushes cannot be set up now: the channel layer cannot be reached. "
                                  "Reconnect in a few seconds"}
        assert (await closed_with(socket))[0] == 4503  # not 1011: the browser snippet reconnects on it
        await hang_up(socket)

    async_to_sync(scenario)()


def test_logging_in_with_a_message_while_redis_is_paused_is_503_and_4503_not_4003(
    app: Any, jwt_channel: tuple[WebSocketChannel, str], redis: RedisServer,
) -> None:
    _, token = jwt_channel
    redis.pause()

    async def scenario() -> None:
        socket = await open_socket(app, "/ws/events")
        started = time.monotonic()
        await send(socket, {"type": "auth", "token": token})
        error = await receive(socket, timeout=TIMEOUT + 5)
        assert error["type"] == "error" and error["status"] == 503, error
        assert (await closed_with(socket))[0] == 4503
        assert time.monotonic() - started < TIMEOUT + SLACK
        await hang_up(socket)

    async_to_sync(scenario)()


def test_a_zato_client_creating_a_session_while_redis_is_down_gets_a_503_answer_then_4503(
    app: Any, jwt_channel: tuple[WebSocketChannel, str], redis: RedisServer,
) -> None:
    _, token = jwt_channel
    redis.kill()

    async def scenario() -> None:
        socket = await open_socket(app, "/ws/events")
        await send(socket, {"meta": {"action": "create-session", "id": "s1", "username": "frontend",
                                     "secret": token}, "data": None})
        answer = await receive(socket)
        assert answer["meta"]["msg_type"] == "zwsx.rsperr" and answer["meta"]["status"] == 503, answer
        assert answer["data"]["result"] == "Error" and "channel layer" in answer["data"]["details"]
        assert (await closed_with(socket))[0] == 4503
        await hang_up(socket)

    async_to_sync(scenario)()
