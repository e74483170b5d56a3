"""Helpers for WebSocket tests: a communicator on the real ASGI application, and what to expect of it.

Also the fixtures of the test_websocket*.py modules (``layer``, ``app``, ``ws_channel``,
``jwt_channel``, ``basic_channel``), which ``conftest.py`` makes visible to the folder.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from accounts import tokens
from accounts.models import JWTDefinition
from integration.models import DeployedService, WebSocketChannel

# The services the ``app`` fixture (below) deploys as ``ws_demo.py``.
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


def token_for(definition: JWTDefinition) -> str:
    return tokens.issue(definition.pk, definition.username, definition.ttl)


def run(scenario: Any) -> Any:
    """Run an async test body on an event loop of its own (the test itself stays synchronous)."""
    return async_to_sync(scenario)()


async def open_socket(application: Any, path: str, headers: dict[str, str] | None = None,
                      timeout: float = 5) -> WebsocketCommunicator:
    """A connected communicator; fails the test if the handshake is refused."""
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    communicator = WebsocketCommunicator(application, path, headers=raw)
    connected, code = await communicator.connect(timeout=timeout)
    assert connected, f"the handshake for {path} was refused ({code})"
    return communicator


async def hang_up(communicator: WebsocketCommunicator) -> None:
    """Close from the client's side and let the consumer clean up.

    The consumer's own ``disconnect()`` takes milliseconds; what channels-redis does after
    it (cancelling a blocked BZPOPMIN) can take seconds, so the wait is cut short: the
    communicator's default would add a second to every test.
    """
    await communicator.disconnect(timeout=0.2)


async def refused(application: Any, path: str, headers: dict[str, str] | None = None) -> bool:
    """Whether the handshake is refused (the consumer closes before accepting)."""
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    communicator = WebsocketCommunicator(application, path, headers=raw)
    connected, _ = await communicator.connect(timeout=5)
    await hang_up(communicator)
    return not connected


async def send(communicator: WebsocketCommunicator, message: Any) -> None:
    await communicator.send_to(text_data=json.dumps(message))


async def receive(communicator: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    """The next frame, as JSON; fails if the server closed instead."""
    output = await communicator.receive_output(timeout)
    assert output["type"] == "websocket.send", f"expected a message, got {output}"
    return json.loads(output["text"])


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5) -> tuple[int, str]:
    """Skip messages until the server closes; the close code and reason."""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output.get("code", 1000), output.get("reason", "")


async def nothing_more(communicator: WebsocketCommunicator, timeout: float = 0.3) -> bool:
    return await communicator.receive_nothing(timeout)


async def request(communicator: WebsocketCommunicator, request_id: Any, payload: Any = None,
                  **fields: Any) -> dict[str, Any]:
    """Send a plain-form request and wait for the reply with its id; other messages are kept for ``pushes``."""
    await send(communicator, {"id": request_id, "payload": payload, **fields})
    while True:
        message = await receive(communicator)
        if message.get("type") == "reply" and message.get("id") == request_id:
            return message
        _kept(communicator).append(message)


async def pushes(communicator: WebsocketCommunicator, quiet: float = 0.3) -> list[Any]:
    """The data of every push received until the connection has been quiet for ``quiet`` seconds."""
    received = _kept(communicator)
    while not await communicator.receive_nothing(quiet):
        received.append(await receive(communicator))
    found = [message["data"] for message in received if message.get("type") == "push"]
    received.clear()
    return found


def _kept(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    if not hasattr(communicator, "kept"):
        communicator.kept = []  # type: ignore[attr-defined]
    return communicator.kept  # type: ignore[attr-defined]


# --- Fixtures: WebSocket channels on the real ASGI application ------------------------------------------


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
