"""The WebSocket benchmark's baseline: a WebSocket echo ASGI app with no Django and no Channels.

``bench/websocket.py`` serves it with the same daphne command line as the platform
(``bench.websocket_echo:echo_application``), so the difference between the two is the
platform's own cost. Nothing here imports Django.
"""

from __future__ import annotations

from typing import Any

_sockets: set[Any] = set()  # the echo app's open connections (their ASGI send callables)


async def echo_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baselines: a WebSocket echo ASGI app with no Django and no Channels, served by the same daphne.

    ``POST /broadcast`` sends its body as a text frame to every connection of the process, one
    ``send`` after the other: daphne's own cost of a fan-out, without a channel layer or consumers.
    """
    if scope["type"] == "http":
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        if scope["path"] == "/broadcast":
            text = body.decode()
            for target in list(_sockets):
                await target({"type": "websocket.send", "text": text})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                _sockets.add(send)
            elif event["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": event.get("text") or ""})
            else:
                return
    finally:
        _sockets.discard(send)
