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

Daphne has no command-line option for it, so ``Server.run`` is given a ready callback
(daphne's own hook, called once the WebSocket factory exists and before the reactor
accepts a connection) that sets it on the factory; autobahn copies factory options into
each connection when it is made.
"""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server


class WebSocketServer(Server):
    """Daphne's server, ending WebSocket connections with close frames rather than dropping them."""

    def run(self) -> None:
        ready = self.ready_callable

        def on_ready() -> None:
            self.ws_factory.setProtocolOptions(failByDrop=False)
            if ready is not None:
                ready()

        self.ready_callable = on_ready
        super().run()


class Command(CommandLineInterface):
    server_class: Any = WebSocketServer


if __name__ == "__main__":
    Command.entrypoint()
