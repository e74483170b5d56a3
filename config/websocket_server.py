"""Daphne, as Switchboard runs it for WebSocket channels: ``python -m config.websocket_server ARGS``.

The arguments are daphne's own (``manage.py serve`` builds them in ``daphne_argv``); the
one difference from ``python -m daphne`` is how a connection that breaks the WebSocket
rules ends. Daphne's WebSocket layer (autobahn) is left with autobahn's default
``failByDrop=True``, so a message over ``--websocket-max-message-size`` (or a frame over
``--websocket-max-frame-size``) makes it cut the TCP connection: the client sees 1006 and
learns nothing. Here that option is off, so autobahn sends the close frame the protocol
asks for instead: 1009 (message too big), 1002 (protocol error) or 1007 (invalid UTF-8),
waits for the client's close frame (autobahn's ``closeHandshakeTimeout``, 1 s), and only
then closes the socket. Dead peers are still dropped: the ping timeout and the opening
handshake timeout do not go through this option.

Second difference: channels-redis starts fire-and-forget tasks of its own (cleaning a
connection's receive backup when it closes) that fail with a connection error while Redis is
down; asyncio then logs "Task exception was never retrieved" with a whole traceback for each
closing connection. The platform already reports the outage in one line per tick
(``integration.channels.ws_groups``), so such failures of a network kind are logged here as
one warning line without the traceback; every other unretrieved exception keeps asyncio's
default report.

Daphne has no command-line option for it, so ``Server.run`` is given a ready callback
(daphne's own hook, called once the WebSocket factory exists and before the reactor
accepts a connection) that sets it on the factory; autobahn copies factory options into
each connection when it is made.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("config.websocket_server")


def _network_error(exc: BaseException | None) -> bool:
    """A connection-level failure (redis-py's ConnectionError and TimeoutError derive from these)."""
    return isinstance(exc, (OSError, asyncio.TimeoutError, RedisConnectionError, RedisTimeoutError))


def _report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    if _network_error(exc) and "never retrieved" in str(context.get("message", "")):
        task = context.get("task") or context.get("future")
        name = getattr(getattr(task, "get_coro", lambda: None)(), "__qualname__", "a background task")
        logger.warning("%s failed: %s (%s)", name, type(exc).__name__, str(exc)[:200])
        return
    loop.default_exception_handler(context)


class WebSocketServer(Server):
    """Daphne's server, ending WebSocket connections with close frames rather than dropping them."""

    def run(self) -> None:
        ready = self.ready_callable

        def on_ready() -> None:
            self.ws_factory.setProtocolOptions(failByDrop=False)
            asyncio.get_event_loop().set_exception_handler(_report)
            if ready is not None:
                ready()

        self.ready_callable = on_ready
        super().run()


class Command(CommandLineInterface):
    server_class: Any = WebSocketServer


if __name__ == "__main__":
    Command.entrypoint()
