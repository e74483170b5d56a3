"""WebSocket routing: channels by path, compiled once per configuration version, and the origin policy.

``WebSocketTable.build`` reads every ``WebSocketChannel`` row when the snapshot is rebuilt
and keeps what the consumer needs per connection (the service, the security definition's
authenticator, the limits), so opening a connection costs no configuration query.

``websocket_application()`` is what ``config/asgi.py`` mounts for the ``websocket`` protocol:
the origin policy in front of the one consumer, which refuses unknown paths itself.

Origin policy. Browsers send an ``Origin`` header with every WebSocket handshake, and they
may also attach ambient credentials (cached HTTP Basic Auth) to it, which a hostile page
could ride on. So a handshake that carries an ``Origin`` must come from an allowed one:
``WEBSOCKET_ALLOWED_ORIGINS`` when set (``*`` = any), else the hosts in ``ALLOWED_HOSTS``
(pages served by the platform itself). A handshake without ``Origin`` comes from a
program, not a browser page, and passes: nothing ambient authenticates it, it must
present credentials itself. Channels' own ``AllowedHostsOriginValidator`` refuses such
handshakes, which would lock out Zato's Python client and every server-side client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from channels.security.websocket import OriginValidator

if TYPE_CHECKING:
    from accounts.authentication import DefinitionAuthentication
    from accounts.security import SecurityTable
    from integration.registry import Registry, ServiceInfo


@dataclass(frozen=True)
class CompiledWebSocketChannel:
    """One WebSocket channel, as a connection needs it."""

    id: int
    name: str
    is_active: bool
    path: str
    service_name: str
    service: ServiceInfo | None  # None: the service is not deployed in this process
    security_id: int | None
    security: DefinitionAuthentication | None  # None with a security_id: the definition failed to load
    allowed_services: frozenset[str]
    new_token_wait_time: int
    token_ttl: int
    idle_timeout: int
    max_message_size: int
    max_messages_per_second: int

    @property
    def has_security(self) -> bool:
        return self.security_id is not None


class WebSocketTable:
    """Path -> compiled channel, for one configuration version."""

    def __init__(self, channels: list[CompiledWebSocketChannel]) -> None:
        self.by_path = {channel.path: channel for channel in channels}
        self.by_name = {channel.name: channel for channel in channels}

    def __len__(self) -> int:
        return len(self.by_path)

    def get(self, path: str) -> CompiledWebSocketChannel | None:
        return self.by_path.get(path)

    @classmethod
    def build(cls, registry: Registry, security: SecurityTable) -> WebSocketTable:
        from integration.models import WebSocketChannel

        rows = WebSocketChannel.objects.values_list(
            "id", "name", "is_active", "path", "service__name", "security_id", "allowed_services",
            "new_token_wait_time", "token_ttl", "idle_timeout", "max_message_size", "max_messages_per_second",
        )
        channels = [
            CompiledWebSocketChannel(
                id=pk,
                name=name,
                is_active=is_active,
                path=path,
                service_name=service_name,
                service=registry.get(service_name),
                security_id=security_id,
                security=security.get(security_id),
                allowed_services=frozenset(line.strip() for line in allowed.splitlines() if line.strip()),
                new_token_wait_time=wait,
                token_ttl=token_ttl,
                idle_timeout=idle,
                max_message_size=max_size,
                max_messages_per_second=rate,
            )
            for (pk, name, is_active, path, service_name, security_id, allowed, wait, token_ttl, idle, max_size,
                 rate) in rows
        ]
        return cls(channels)


class OriginPolicy(OriginValidator):
    """Channels' origin check, except that a handshake without ``Origin`` (a program, not a page) passes."""

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def allowed_origins() -> list[str]:
    from django.conf import settings

    return list(settings.WEBSOCKET_ALLOWED_ORIGINS or settings.ALLOWED_HOSTS)


def websocket_application() -> Any:
    """The ASGI application for the ``websocket`` protocol: origin policy, then the one consumer."""
    from integration.channels.websocket import WebSocketChannelConsumer

    return OriginPolicy(WebSocketChannelConsumer.as_asgi(), allowed_origins())
