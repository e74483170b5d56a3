"""Built-in WebSocket services: a JWT for a WebSocket channel, made on a user's behalf.

The seed on JWT and WebSockets: a frontend application that speaks only request-reply
cannot hold WebSocket connections itself, so browsers connect to the platform directly.
They must not get the frontend's credentials, nor see a password in the page. The
frontend asks ``zato.wsx.create-token`` (over a REST channel secured for the frontend
application) for a token for a channel, and renders the token into the page it serves;
the browser opens the channel with it. The token is opaque (encrypted), its session lives
on the server and slides while the connection is used.

Whoever can invoke this service can connect as the channel's JWT account: bind it only to
a channel secured for the frontend application, as ``manage.py bootstrap`` does for the
demo (``POST /demo/ws-token``, Basic Auth ``demo.frontend``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from integration import snapshot
from integration.errors import BadRequest, NotFound, ServiceUnavailable
from integration.services import Service

FIELDS = frozenset({"channel", "username"})
LOCALHOST = "127.0.0.1"  # where `manage.py serve` binds daphne


class CreateToken(Service):
    """``{"channel": name, "username": optional}`` -> ``{"token", "ttl", "username", "channel", "path", "url"}``.

    ``username``, when given, must be the channel's JWT account: a frontend that names the
    user it asks for learns at once when a channel is secured for someone else.
    """

    name = "zato.wsx.create-token"

    def handle(self) -> None:
        from accounts import tokens
        from accounts.authentication import JWTAuthentication

        channel_name, username = _read_input(self.request.payload)
        channel = snapshot.current().websockets.by_name.get(channel_name)
        if channel is None:
            raise NotFound(f"No WebSocket channel is named `{channel_name[:200]}`")
        if not channel.is_active:
            raise NotFound(f"WebSocket channel `{channel.name}` is inactive")
        if not channel.has_security:
            raise BadRequest(f"WebSocket channel `{channel.name}` is open to anyone: its clients need no token")
        authenticator = channel.security
        if authenticator is None:
            self.logger.error("WebSocket channel %s: its security definition cannot be loaded", channel.name)
            raise ServiceUnavailable("The channel's security definition cannot be loaded; see the server log")
        if not isinstance(authenticator, JWTAuthentication):
            raise BadRequest(f"WebSocket channel `{channel.name}` is not secured with JWT, so it takes no tokens")
        if not authenticator.is_active:
            raise BadRequest(f"The JWT definition `{authenticator.name}` of WebSocket channel `{channel.name}` is "
                             "inactive: its tokens would be refused")
        if username is not None and username != authenticator.username:
            raise BadRequest(f"WebSocket channel `{channel.name}` is for user `{authenticator.username}`, "
                             f"not `{username[:200]}`")
        try:
            token = tokens.issue(authenticator.definition_id, authenticator.username, authenticator.ttl)
        except tokens.SessionStoreUnavailable as exc:
            self.logger.error("JWT session store unavailable: %s", exc)
            raise ServiceUnavailable("Tokens cannot be issued right now; try again later") from None
        self.logger.info("WebSocket token for channel `%s` issued on behalf of `%s`", channel.name,
                         authenticator.username)
        self.response.payload = {
            "token": token,
            "ttl": authenticator.ttl,
            "username": authenticator.username,
            "channel": channel.name,
            "path": channel.path,
            "url": websocket_url(channel.path, self.request.http.headers.get("Host")),
        }


def _read_input(payload: Any) -> tuple[str, str | None]:
    if not isinstance(payload, dict):
        raise BadRequest('Send a JSON object: {"channel": "<WebSocket channel name>", "username": "<optional>"}')
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(name[:50] for name in unknown[:10])}; "
                         "expected `channel` and optionally `username`")
    channel, username = payload.get("channel"), payload.get("username")
    if not isinstance(channel, str) or not channel:
        raise BadRequest("Element missing: channel (the name of a WebSocket channel secured with JWT)")
    if username is not None and not isinstance(username, str):
        raise BadRequest("`username` must be a string")
    return channel, username


def websocket_url(path: str, host: str | None = None) -> str:
    """The URL a browser opens for a channel's ``path``.

    ``WEBSOCKET_PUBLIC_URL`` when it is set (behind a load balancer). Otherwise daphne's own
    port, ``WEBSOCKET_PORT``, on the host the HTTP request named, provided that host is one
    the platform answers to (``ALLOWED_HOSTS``): a forged Host header must not send a
    browser, and its token, elsewhere. Without a usable host, 127.0.0.1.
    """
    if settings.WEBSOCKET_PUBLIC_URL:
        return settings.WEBSOCKET_PUBLIC_URL + path
    scheme = "wss" if settings.HTTPS else "ws"
    return f"{scheme}://{request_host(host) or LOCALHOST}:{settings.WEBSOCKET_PORT}{path}"


def request_host(host: str | None) -> str | None:
    """The host name (no port) of a Host header value, if ``ALLOWED_HOSTS`` admits it."""
    if not host or len(host) > 255:
        return None
    domain, _port = split_domain_port(host.strip().lower())
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return domain
