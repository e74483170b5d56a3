"""Hypothesis: WebSocket messages, plain and Zato form, through the real consumer (``config.asgi``).

Properties, for any sequence of text frames a client may send:

* on an open channel, speaking the plain form: every bad message is answered (an error in
  the one shape) and the connection stays open; a ping sent last is still answered;
* on any channel, before authenticating, in either form: the connection either goes on or
  closes with a code that says the client was at fault (4001 bad input, 4401 not
  authenticated, 4403 refused), never 4003 (a server error);
* and nothing is logged as an error: no traceback.

The consumer runs as in production on the Redis channel layer, driven by channels'
``WebsocketCommunicator``; each example opens a fresh connection.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from accounts.models import JWTDefinition
from integration.models import DeployedService, WebSocketChannel
from tests.integration.layer_helpers import use_test_layer
from tests.integration.ws_helpers import hang_up, open_socket
from tests.strategies import json_ish, json_values, scalars

pytestmark = pytest.mark.django_db(transaction=True)

SOCKETS = settings(max_examples=40, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PROBE = json.dumps({"type": "ping", "id": "probe"})
CLIENTS_FAULT = {4001, 4401, 4403}

ids = st.one_of(st.integers(), st.text(max_size=210), st.none(), st.booleans(), st.floats(allow_nan=False),
                st.lists(st.integers(), max_size=2))
plain_messages = st.fixed_dictionaries({}, optional={
    "type": st.one_of(st.sampled_from(["request", "ping", "auth", "subscribe", ""]), scalars),
    "id": ids,
    "payload": json_values,
    "service": st.one_of(st.sampled_from(["demo.hello", "demo.echo", "no.such", "zato.ping"]), scalars),
    "token": scalars,
    "username": scalars,
    "password": scalars,
    "extra": json_values,
})
zato_messages = st.fixed_dictionaries({
    "meta": st.one_of(
        st.fixed_dictionaries({}, optional={
            "action": st.one_of(st.sampled_from(["create-session", "invoke-service", "client-response"]), scalars),
            "id": ids, "token": st.one_of(st.just("zwsxt.0"), scalars), "username": scalars, "secret": scalars,
            "timestamp": scalars, "bogus": scalars,
        }),
        json_values,
    ),
}, optional={"data": json_values, "other": scalars})
raw_frames = st.one_of(json_ish, st.text(max_size=100), json_values.map(json.dumps),
                       st.integers(1, 3).map(lambda n: "[" * (300 * n) + "]" * (300 * n)))


def as_frame(message: Any) -> str:
    return message if isinstance(message, str) else json.dumps(message)


def speaks_zato(frame: str) -> bool:
    try:
        message = json.loads(frame)
    except ValueError:
        return False
    return isinstance(message, dict) and "meta" in message


@pytest.fixture
def app(transactional_db: None, settings: Any, builtins: None) -> Any:
    """The real ASGI application on the Redis layer: an open channel (demo.echo, demo.hello allowed) and a JWT one."""
    use_test_layer(settings, "test-wsfuzz")
    definition = JWTDefinition(name="browsers", username="frontend", ttl=60)
    definition.set_password("jwt-secret-1")
    definition.save()
    echo = DeployedService.objects.get(name="demo.echo")
    WebSocketChannel.objects.create(name="open", path="/ws/open", service=echo, allowed_services="demo.hello")
    WebSocketChannel.objects.create(name="jwt", path="/ws/jwt", service=echo, security=definition)
    from config.asgi import application

    return application


async def converse(app: Any, path: str, frames: list[str]) -> tuple[list[dict[str, Any]], int | None]:
    """Send the frames, then the probe; read until the probe's pong, a close or half a second of quiet.

    Returns what came back and the close code (None: still open).
    """
    socket = await open_socket(app, path)
    received: list[dict[str, Any]] = []
    try:
        for frame in [*frames, PROBE]:
            # As the server hands frames over; send_to() would refuse an empty one, which clients may send.
            await socket.send_input({"type": "websocket.receive", "text": frame})
        while True:
            if await socket.receive_nothing(0.5):
                return received, None
            output = await socket.receive_output(1.0)
            if output["type"] == "websocket.close":
                return received, output.get("code", 1000)
            message = json.loads(output["text"])
            received.append(message)
            if message.get("type") == "pong" and message.get("id") == "probe":
                return received, None
    finally:
        await hang_up(socket)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@SOCKETS
@given(st.lists(st.one_of(plain_messages.map(as_frame), raw_frames), min_size=1, max_size=6))
@example(["[" * 1000 + "]" * 1000, "1" * 5000, "{}", '{"id": 1, "payload": 1e400}'])
def test_plain_form_bad_input_is_answered_and_the_connection_stays_open(app, caplog, frames: list[str]) -> None:
    assume(not any(speaks_zato(frame) for frame in frames))  # one form per connection: this is the plain one
    received, code = async_to_sync(converse)(app, "/ws/open", frames)
    assert code is None, (code, received)
    assert received and received[-1] == {"type": "pong", "id": "probe"}
    for message in received:
        if message.get("status", 200) >= 400:
            error = message["error"]
            assert error["result"] == "Error" and error["cid"] == message["cid"] and error["details"]
            assert message["status"] != 500 or message.get("type") == "reply"  # a 500 only from a service
    assert not no_errors_logged(caplog)


@SOCKETS
@given(st.sampled_from(["/ws/jwt", "/ws/open"]),
       st.lists(st.one_of(plain_messages.map(as_frame), zato_messages.map(as_frame), raw_frames), min_size=1,
                max_size=4))
@example("/ws/jwt", ["[" * 1000 + "]" * 1000])
@example("/ws/jwt", ['{"meta": {"action": "create-session", "username": "frontend", "secret": "' + "9" * 5000 + '"}}'])
@example("/ws/open", ['{"meta": {"action": "create-session"}}', '{"meta": {"token": 1}, "data": ' + "1" * 5000 + "}"])
def test_any_form_closes_only_for_the_clients_fault_never_with_4003(app, caplog, path: str,
                                                                    frames: list[str]) -> None:
    received, code = async_to_sync(converse)(app, path, frames)
    assert code is None or code in CLIENTS_FAULT, (code, received)
    assert not no_errors_logged(caplog)
