"""Platform services available in every deployment."""

from __future__ import annotations

from integration.services import Service


class Ping(Service):
    """Answers ``{"pong": "zato"}``; Zato clients use it to check a server is up."""

    name = "zato.ping"

    def handle(self) -> None:
        self.response.payload = {"pong": "zato"}


class PubPing(Ping):
    name = "pub.zato.ping"
