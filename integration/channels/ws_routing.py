"""WebSocket routing: channels by path, compiled once per configuration version, and the origin policy.

``WebSocketTable.build`` reads every ``WebSocketChannel`` row when the snapshot is rebuilt
and keeps what the consumer needs per connection (the service, the security definition's
authenticator, the limits), so opening a connection costs no configuration query.

``OriginPolicy`` is what ``integration.channels.websocket.websocket_application()`` puts in
front of the one consumer, which refuses unknown paths itself.

Origin policy. Browsers send an ``Origin`` header with every WebSocket handshake, and they
may also attach ambient credentials (cached HTTP Basic Auth) to it, which a hostile page
could ride on. So a handshake that carries an ``Origin`` must come from an allowed one:
``WEBSOCKET_ALLOWED_ORIGINS`` when set (``*`` = any), else the hosts in ``ALLOWED_HOSTS``
(pages served by the platform itself). A handshake without ``Origin`` comes from a
program, not a browser page, and passes: nothing ambient authenticates it, it must
present credentials itself. Channels' own ``AllowedHostsOriginValidator`` refuses such
handshakes, which would lock out Zato's Python client and every server-side client.

The port counts as well as the host: an origin is a scheme, a host and a port, and another
program on the same machine (a development server on another port, say) is another origin.
An entry with a scheme (``https://app.example.com:8443``) matches that scheme, host and port,
the scheme's default port when it names none. An entry without one (``app.example.com``,
``.example.com``, ``app.example.com:8443``) matches either scheme, on the port it names, or
else on the scheme's default port only. Without ``WEBSOCKET_ALLOWED_ORIGINS``, the platform's
own pages are allowed: ``ALLOWED_HOSTS`` on the default port, ``PORT`` or ``WEBSOCKET_PORT``
(https only when ``HTTPS`` is on). An ``Origin`` that cannot be parsed is refused. An ``Origin``
that is a ``ws://`` or ``wss://`` URL passes like none: browsers never send one, programs such as
Zato's client (ws4py) send the address they connect to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain

from integration.channels import security as security_types
from integration.channels.base import BuildContext, ChannelType
from integration.models import WebSocketChannel

if TYPE_CHECKING:
    from integration.channels.security import Authenticator
    from integration.registry import ServiceInfo


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
    security: Authenticator | None  # None with a security_id: see security_problem
    allowed_services: frozenset[str]
    new_token_wait_time: int
    token_ttl: int
    idle_timeout: int
    max_message_size: int
    max_messages_per_second: int
    security_problem: str = ""  # why its definition cannot be used: connections are refused with 4503

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
    def build(cls, context: BuildContext) -> WebSocketTable:
        rows = WebSocketChannel.objects.values_list(
            "id", "name", "is_active", "path", "service__name", "security_id", "security__sec_type",
            "allowed_services", "new_token_wait_time", "token_ttl", "idle_timeout", "max_message_size",
            "max_messages_per_second",
        )
        channels = []
        for (pk, name, is_active, path, service_name, security_id, sec_type, allowed, wait, token_ttl, idle,
             max_size, rate) in rows:
            authenticator, problem = context.authenticator(security_types.WEBSOCKET, security_id, sec_type)
            channels.append(CompiledWebSocketChannel(
                id=pk,
                name=name,
                is_active=is_active,
                path=path,
                service_name=service_name,
                service=context.registry.get(service_name),
                security_id=security_id,
                security=authenticator,
                allowed_services=frozenset(line.strip() for line in allowed.splitlines() if line.strip()),
                new_token_wait_time=wait,
                token_ttl=token_ttl,
                idle_timeout=idle,
                max_message_size=max_size,
                max_messages_per_second=rate,
                security_problem=problem,
            ))
        return cls(channels)


class WebSocketChannelType(ChannelType):
    """WebSocket channels: compiled into a ``WebSocketTable`` (``snap.channels["websocket"]``)."""

    name = security_types.WEBSOCKET
    label = "WebSocket"

    def build(self, context: BuildContext) -> WebSocketTable:
        return WebSocketTable.build(context)


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


class OriginPolicy(OriginValidator):
    """Channels' origin check, comparing ports too; a handshake without ``Origin`` (a program) passes."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = None
        for name, value in scope.get("headers", []):
            if name == b"origin":
                origin = value
        if self.allows(origin):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    def allows(self, origin: bytes | None) -> bool:
        """Whether a handshake with this raw ``Origin`` header (None: none sent) may go on."""
        if origin is None:
            return True
        try:
            # latin-1 decodes any bytes; urlparse and .port raise ValueError on what is no URL.
            parsed = urlparse(origin.decode("latin-1"))
            if parsed.scheme.lower() in ("ws", "wss"):
                # Browsers send the page's origin (http, https, null, an extension's scheme), never
                # a WebSocket URL; programs do: Zato's client sends the address it connects to.
                return True
            return self.validate_origin(parsed)
        except ValueError:
            return False

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)

    def match_allowed_origin(self, parsed_origin: Any, pattern: str) -> bool:
        if parsed_origin is None or parsed_origin.hostname is None:
            return False
        if "://" in pattern:  # scheme, host and port (default ports filled in): Channels' own rule
            return bool(super().match_allowed_origin(parsed_origin, pattern))
        parsed_pattern = urlparse("//" + pattern.lower())
        origin_port = self.get_origin_port(parsed_origin)  # the scheme's default port when none is written
        if parsed_pattern.port is None:  # a page on its scheme's default port (http 80, https 443)
            port_matches = origin_port is not None and origin_port == _DEFAULT_PORTS.get(parsed_origin.scheme)
        else:
            port_matches = origin_port == parsed_pattern.port
        return port_matches and is_same_domain(parsed_origin.hostname, parsed_pattern.hostname or pattern)


def allowed_origins() -> list[str]:
    """``WEBSOCKET_ALLOWED_ORIGINS``, else the platform's own pages: ``ALLOWED_HOSTS`` at its ports."""
    if settings.WEBSOCKET_ALLOWED_ORIGINS:
        return list(settings.WEBSOCKET_ALLOWED_ORIGINS)
    schemes = ("https",) if settings.HTTPS else ("http", "https")
    ports = ("", f":{settings.PORT}", f":{settings.WEBSOCKET_PORT}")
    origins = []
    for host in settings.ALLOWED_HOSTS:
        if host == "*":
            origins.append("*")
            continue
        origins += [f"{scheme}://{host}{port}" for scheme in schemes for port in ports]
    return origins
