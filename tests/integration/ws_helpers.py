"""Helpers for WebSocket tests: a communicator on the real ASGI application, and what to expect of it."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator


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
