"""WebSocket channels: one consumer serves every channel, found by path in the snapshot.

The protocol (the two forms, authentication, close codes, limits, what happens when the
channel layer goes away, daphne's own limits, concurrency) is described in
``integration.channels.ws_protocol``, which also holds the close codes and authentication.
The two wire forms are ``integration.channels.ws_forms``; the supervisor (timers, threads,
configuration changes, the rows of connected clients) is ``integration.channels.ws_supervisor``;
the push groups shared by a process's connections are ``integration.channels.ws_groups``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import close_old_connections

from integration import jsonio
from integration import push as pushes
from integration import snapshot as snapshots
from integration.channels.ws_forms import Form, PlainForm, ZatoForm
from integration.channels.ws_groups import RECEIVE_RETRY, RECEIVE_RETRY_MAX
from integration.channels.ws_protocol import (  # the protocol's names, importable from here as before the split
    AUTH_FAILED,
    AUTH_REQUIRED,
    BAD_INPUT,
    CHANNEL_CLOSED,
    DISCONNECTED,
    FLOOD,
    IDLE,
    SERVER_ERROR,
    SESSION_ENDED,
    STATUS_FOR_CLOSE,
    THROTTLED,
    TOO_BIG,
    UNAVAILABLE,
    AuthRequest,
    BadMessage,
    Login,
    Refused,
    authenticate,
    credential_headers,
    unusable,
)
from integration.channels.ws_routing import CompiledWebSocketChannel, OriginPolicy, allowed_origins
from integration.channels.ws_supervisor import delete_client_row, insert_client_row, supervisor
from integration.cid import new_cid
from integration.errors import (
    Forbidden,
    InternalError,
    PushFailed,
    ServiceNotFound,
    SwitchboardError,
    error_body,
)
from integration.invoke import invoke_info
from integration.services import ChannelInfo, Headers, HTTPRequestInfo

__all__ = [
    "AUTH_FAILED", "AUTH_REQUIRED", "BAD_INPUT", "CHANNEL_CLOSED", "DISCONNECTED", "FLOOD", "IDLE", "SERVER_ERROR",
    "SESSION_ENDED", "STATUS_FOR_CLOSE", "THROTTLED", "TOO_BIG", "UNAVAILABLE", "AuthRequest", "BadMessage", "Login",
    "Refused", "WebSocketChannelConsumer", "authenticate", "credential_headers", "unusable", "websocket_application",
]

logger = logging.getLogger(__name__)  # also the protocol's other modules' logger: one name, as before the split

# --- The consumer -------------------------------------------------------------------------------------


class WebSocketChannelConsumer(AsyncWebsocketConsumer):
    """One WebSocket connection to one channel: authentication, requests, pushes, limits.

    Everything blocking (authentication, invocations, the clients' rows) runs in the
    supervisor's threads; the event loop only parses, checks and sends.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' ``AsyncConsumer.__call__``, with a receive from the layer that outlives an outage.

        Channels' own awaits the layer's ``receive`` directly, so the first error from an
        unreachable Redis ends the consumer and daphne closes the connection with 1011. Here
        the connection stays open (requests do not need the layer) and ``_layer_receive``
        tries again until the layer answers.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is None:
            raise RuntimeError("No channel layer is configured (settings.CHANNEL_LAYERS)")
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch([receive, self._layer_receive], self.dispatch)

    async def _layer_receive(self) -> dict[str, Any]:
        """The next event on this connection's layer channel, waiting out a layer that cannot be reached.

        Tries again after ``RECEIVE_RETRY`` seconds, doubling up to ``RECEIVE_RETRY_MAX``; the
        supervisor's group hub logs the outage once and joins the groups again when the layer
        comes back empty.
        """
        delay = RECEIVE_RETRY
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except Exception as exc:
                logger.debug("WebSocket %s: receive from the channel layer failed (%s); again in %.2f s",
                             getattr(self, "client_id", "-"), type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECEIVE_RETRY_MAX)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' default closes stale database connections around every message, which costs
        # a thread hop each time; this consumer never touches the database on the loop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # Connection ------------------------------------------------------------------------------------

    async def connect(self) -> None:
        self.closing = False
        self.authenticated = False
        self.login: Login | None = None
        self.form: Form | None = None  # the plain form or Zato's, fixed by the first message
        self.session_valid_until = 0.0
        self.session_checked_at = 0.0
        self.client_id = uuid.uuid4().hex
        self.shared_groups: list[str] = []  # the GroupHub's groups this connection joined
        self.row_id: int | None = None
        self.row_task: asyncio.Task | None = None
        self.messages_in = self.messages_out = 0
        self.flushed_counters = (0, 0)
        self.window_start = 0.0
        self.window_count = 0
        self.tasks: set[asyncio.Task] = set()
        self.connected_at = self.last_activity = time.monotonic()
        self.supervisor = supervisor()
        self.supervisor.add(self)  # from the start: its threads must end with the last connection, refused ones too
        self.slots = asyncio.Semaphore(settings.WEBSOCKET_MAX_CONCURRENT_REQUESTS)

        self.snap = snapshots.peek() or await self.supervisor.in_thread(snapshots.current)
        self.path = self.scope.get("path", "")
        channel = self.snap.websockets.get(self.path)
        if channel is None or not channel.is_active:
            # Refused before accepting: the ASGI server answers the handshake with 403.
            logger.info("WebSocket handshake for %s refused: %s", self.path[:200],
                        "no such channel" if channel is None else f"channel {channel.name} is inactive")
            self.closing = True
            await self.close()
            return
        self.channel: CompiledWebSocketChannel = channel
        self.meta = self._request_meta()
        self.http = HTTPRequestInfo(
            path=self.path, headers=Headers.from_environ(self.meta), remote_addr=self.meta.get("REMOTE_ADDR", ""),
            query=_query(self.scope.get("query_string", b"")),
        )
        # An open channel's client, or one sending credentials in headers, joins its push groups
        # before the handshake is accepted: a client that sees its connection open can be pushed to
        # at once (accepting first let a push sent right after, by a REST call or a Celery task, reach
        # nobody). Pushes that arrive meanwhile wait: the consumer handles one event at a time.
        refusal: Refused | None = None
        try:
            if not channel.has_security:
                await self.logged_in(Login(None, None))
            elif channel.security is None or channel.security.has_header_credentials(self.meta):
                login = await self.supervisor.in_thread(authenticate, channel, self.meta, self.path)
                await self.logged_in(login)
        except Refused as refused:
            refusal = refused
        if self.closing:  # the supervisor closed it meanwhile (channel changed): the handshake is refused
            return
        await self.accept()
        if refusal is not None:
            # Header credentials: a plain-form client. An open channel's client has said nothing yet; the
            # plain error message still tells a person watching the frames why (4503: try again later).
            await self.fail(refusal.code, refusal.reason)

    def _request_meta(self) -> dict[str, str]:
        meta: dict[str, str] = {}
        for name, value in self.scope.get("headers", []):
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            meta[key] = f"{meta[key]},{text}" if key in meta else text
        client = self.scope.get("client")
        meta["REMOTE_ADDR"] = str(client[0]) if client else ""
        return meta

    async def logged_in(self, login: Login) -> None:
        """Mark the connection authenticated: join the push groups, record the client.

        Raises ``Refused(UNAVAILABLE)`` (close 4503 after an error message) when the channel
        layer does not answer within ``PUSH_TIMEOUT``: a connection that could never get a push
        is closed, and its client reconnects later, rather than kept open deaf.
        """
        first = not self.authenticated
        self.authenticated = True
        self.login = login
        now = time.monotonic()
        if login.session is not None:
            self.session_checked_at = now
            self.session_valid_until = now + login.session.ttl - settings.JWT_SESSION_RECHECK
        if not first:
            return
        shared = [pushes.channel_group(self.channel.id)]
        if login.username:
            shared.append(pushes.user_group(login.username))
        hub = self.supervisor.group_hub(self.channel_layer)
        try:
            await hub.join_connection(self, pushes.client_group(self.client_id), shared)
        except PushFailed as exc:
            logger.warning("WebSocket %s on %s: %s", self.client_id, self.channel.name, exc.details)
            raise Refused(UNAVAILABLE, "Pushes cannot be set up now: the channel layer cannot be reached. "
                          "Reconnect in a few seconds") from None
        self.row_task = asyncio.ensure_future(self._insert_row())

    async def _insert_row(self) -> None:
        try:
            self.row_id = await self.supervisor.in_thread(
                insert_client_row, self.channel.id, self.client_id, (self.login.username if self.login else "") or "",
                self.meta.get("REMOTE_ADDR", ""))
        except Exception as exc:
            logger.warning("Could not record WebSocket client %s: %s", self.client_id, exc)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if not hasattr(self, "supervisor"):
            return
        for task in list(getattr(self, "tasks", ())):
            task.cancel()
        hub = self.supervisor.hub
        if hub is not None:
            await hub.leave_connection(self)  # bounded by PUSH_TIMEOUT; never raises
        row_task = getattr(self, "row_task", None)
        if row_task is not None:
            with contextlib.suppress(Exception):
                await row_task
        if getattr(self, "row_id", None) is not None:
            try:
                await self.supervisor.in_thread(delete_client_row, self.row_id)
            except Exception as exc:
                logger.warning("Could not delete the row of WebSocket client %s: %s", self.client_id, exc)
        # Last: the supervisor ends its threads once it has no connections, and the row's deletion needed one.
        self.supervisor.discard(self)

    async def fail(self, code: int, reason: str, *, frame: bool = True) -> None:
        """Say why in the connection's form (the one error shape; Zato's 403 for its session), then close.

        Daphne does not pass a close reason on, so the message is where a client reads it.
        ``frame=False`` skips it for connections whose form is not known yet (a silent client
        may be Zato's, which would take a plain message for a request).
        """
        if self.closing:
            return
        own = self.form.closing(code) if self.form is not None else None
        if own is not None:
            await self.send_text(own)
        elif frame or self.form is not None:
            await self._refuse(BadMessage(reason, STATUS_FOR_CLOSE.get(code, 400)))
        await self.close_with(code, reason)

    async def close_with(self, code: int, reason: str) -> None:
        """Close from the server's side once (later calls do nothing)."""
        if self.closing:
            return
        self.closing = True
        logger.info("WebSocket %s on %s closed by the server: %s %s", self.client_id,
                    getattr(getattr(self, "channel", None), "name", "-"), code, reason)
        await self.close(code=code, reason=reason.encode("utf-8")[:120].decode("utf-8", "ignore"))

    # Timers and configuration (called by the supervisor) -----------------------------------------------

    def tick(self, now: float, snap: Any) -> None:
        if self.closing or not hasattr(self, "channel"):  # closed, or still looking its channel up
            return
        if snap is not None:
            self._config_changed(snap)
            if self.closing:
                return
        channel = self.channel
        verdict: tuple[int, str] | None = None
        if not self.authenticated:
            if now - self.connected_at > channel.new_token_wait_time:
                verdict = (AUTH_REQUIRED, f"No credentials within {channel.new_token_wait_time} s")
        elif self.login and self.login.session is not None and now > self.session_valid_until:
            verdict = (SESSION_ENDED, "Token expired")
        elif self.form is not None and self.form.session_expired(now):
            verdict = (SESSION_ENDED, "Session token expired")
        if verdict is None and channel.idle_timeout and now - self.last_activity > channel.idle_timeout:
            verdict = (IDLE, f"Idle for {channel.idle_timeout} s")
        if verdict is not None:
            self._spawn(self.fail(*verdict, frame=False))

    def _config_changed(self, snap: Any) -> None:
        fresh = snap.websockets.get(self.path)
        old = self.channel
        if fresh is None or fresh.id != old.id or not fresh.is_active or fresh.security_id != old.security_id:
            self._spawn(self.fail(CHANNEL_CLOSED, "Channel changed or closed", frame=False))
            return
        if self.authenticated and fresh.security is not None and not fresh.security.is_active:
            self._spawn(self.fail(AUTH_FAILED, "Security definition deactivated", frame=False))
            return
        self.channel = fresh  # new limits, a redeployed service
        self.snap = snap

    def counters_moved(self) -> bool:
        counters = (self.messages_in, self.messages_out)
        if counters == self.flushed_counters:
            return False
        self.flushed_counters = counters
        return True

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # Layer events ------------------------------------------------------------------------------------

    async def ws_push(self, event: dict[str, Any]) -> None:
        if self.closing or not self.authenticated:
            return
        only = event.get("only_channel")
        if only is not None and only != self.channel.id:
            return
        await self.send_text((self.form or PlainForm).push(json.dumps(event.get("cid", "")), event["text"]))

    async def ws_disconnect(self, event: dict[str, Any]) -> None:
        await self.fail(DISCONNECTED, "Disconnected by the server", frame=False)

    # Client messages ---------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        self.messages_in += 1
        now = time.monotonic()
        self.last_activity = now
        try:
            if not self._within_rate(now):
                return
            await self._receive(text_data, bytes_data, now)
        except Refused as refused:
            await self.fail(refused.code, refused.reason)
        except BadMessage as bad:
            await self._refuse(bad)
        except Exception:
            logger.exception("WebSocket %s on %s: unexpected error", self.client_id, self.channel.name)
            await self.fail(SERVER_ERROR, "Internal server error")

    def _within_rate(self, now: float) -> bool:
        limit = self.channel.max_messages_per_second
        if not limit:
            return True
        if now - self.window_start >= 1.0:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        if self.window_count <= limit:
            return True
        if self.window_count > 2 * limit:
            self._spawn(self.fail(FLOOD, f"More than {2 * limit} messages in a second"))
        else:
            self._spawn(self._refuse(BadMessage(
                f"Too many messages: at most {limit} a second; the connection closes at {2 * limit}", 429)))
        return False

    async def _receive(self, text: str | None, data: bytes | None, now: float) -> None:
        if text is None:
            raise self.bad_input("Binary frames are not accepted: send JSON text frames")
        limit = self.channel.max_message_size
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode("utf-8")) > limit):
            raise Refused(TOO_BIG, f"Message larger than {limit} bytes")
        try:
            message = jsonio.loads(text, "message")  # nesting and number limits: a 400, never a 4003
        except jsonio.InvalidJSON as exc:
            raise self.bad_input(str(exc.details)) from None
        if not isinstance(message, dict):
            raise self.bad_input("A message must be a JSON object")
        kind = ZatoForm if "meta" in message else PlainForm
        if self.form is None:
            self.form = kind(self)
        elif kind is not type(self.form):
            raise BadMessage("This connection speaks the " + ("Zato form ({\"meta\": ..., \"data\": ...})"
                             if self.form.name == "zato" else "plain form ({\"id\": ..., \"payload\": ...})"))
        if self.login and self.login.session is not None:
            await self._keep_session(now)
        await self.form.handle(message, text, now)

    def bad_input(self, details: str) -> Exception:
        """Before authentication bad input closes the connection; after, it is answered and forgiven."""
        if not self.authenticated:
            return Refused(BAD_INPUT, details[:100])
        return BadMessage(details)

    async def _keep_session(self, now: float) -> None:
        """Extend the login's session (a JWT's) while the connection is used (at most about once a second)."""
        login = self.login
        if login is None or login.session is None or (
                now - self.session_checked_at < max(settings.JWT_SESSION_RECHECK, 1.0)):
            return
        self.session_checked_at = now
        live = await self.supervisor.in_thread(login.session.keep_alive)
        if live is None:
            # The store cannot say: the session was live until session_valid_until; keep to that rather
            # than drop every client at once.
            return
        if not live:
            raise Refused(SESSION_ENDED, "Token expired or logged out")
        self.session_valid_until = now + login.session.ttl - settings.JWT_SESSION_RECHECK

    # Requests ----------------------------------------------------------------------------------------

    async def start_request(self, payload: Any, service: str | None, raw: str, request_id: Any,
                            reply: Any) -> None:
        """Run the request in a thread; at most WEBSOCKET_MAX_CONCURRENT_REQUESTS at once per connection.

        ``reply(request_id, cid, status, response=None, error=None)`` builds the reply's frame (the form's).
        """
        await self.slots.acquire()
        if self.closing:
            self.slots.release()
            return
        self._spawn(self._run_request(payload, service, raw, request_id, reply))

    async def _run_request(self, payload: Any, service: str | None, raw: str, request_id: Any, reply: Any) -> None:
        cid = new_cid()
        try:
            info = self._service_for(service)
            channel = ChannelInfo(
                type="websocket", name=self.channel.name, security=self.login.definition if self.login else None,
                username=self.login.username if self.login else None, client_id=self.client_id,
            )
            result = await self.supervisor.in_thread(_invoke, info, payload, cid, self.snap, channel, raw, self.http)
            cid = result.cid
            await self.send_text(reply(request_id, cid, result.status_code, _unwrapped(info, result.payload)))
        except SwitchboardError as exc:
            await self.send_text(reply(request_id, cid, exc.status_code, error=error_body(cid, exc.details)))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("[%s] WebSocket request on %s failed", cid, self.channel.name)
            with contextlib.suppress(Exception):
                await self.send_text(reply(request_id, cid, 500, error=error_body(cid, InternalError.default_details)))
        finally:
            self.slots.release()

    def _service_for(self, name: str | None) -> Any:
        channel = self.channel
        if name is None or name == channel.service_name:
            if channel.service is None:
                logger.error("WebSocket channel %s points to service %s, which is not deployed", channel.name,
                             channel.service_name)
                raise ServiceNotFound(channel.service_name)
            return channel.service
        if name not in channel.allowed_services:
            raise Forbidden(f"Service `{name[:200]}` is not allowed on this channel")
        info = self.snap.registry.get(name)
        if info is None:
            raise ServiceNotFound(name)
        return info

    # Sending -----------------------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send one frame, counted for the client's row; nothing once the connection is closing."""
        if self.closing:
            return
        self.messages_out += 1
        await self.send(text_data=text)

    async def _refuse(self, bad: BadMessage) -> None:
        """Answer bad input in the connection's form with the one error shape."""
        cid = new_cid()
        await self.send_text((self.form or PlainForm).error(bad, cid, error_body(cid, bad.details)))


def _invoke(info: Any, payload: Any, cid: str, snap: Any, channel: ChannelInfo, raw: str,
            http: HTTPRequestInfo) -> Any:
    """One invocation, in a supervisor thread; database connections are tidied as after an HTTP request."""
    try:
        return invoke_info(info, payload, cid=cid, snap=snap, channel=channel, raw=raw, http=http)
    finally:
        close_old_connections()


def _unwrapped(info: Any, payload: Any) -> Any:
    """The response without SimpleIO's single wrapper element, as Zato replies on WebSocket channels."""
    elem = getattr(info.io, "response_elem", None)
    if elem and isinstance(payload, dict) and len(payload) == 1 and elem in payload:
        payload = payload[elem]
    if isinstance(payload, bytes):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise SwitchboardError("The service answered binary data, which a JSON message cannot carry") from None
    return payload


def _query(raw: bytes) -> dict[str, Any]:
    from urllib.parse import parse_qs

    if not raw:
        return {}
    parsed = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    return {key: values[0] if len(values) == 1 else values for key, values in parsed.items()}


def websocket_application() -> Any:
    """The ASGI application for the ``websocket`` protocol (``config/asgi.py``): origin policy, then the consumer."""
    return OriginPolicy(WebSocketChannelConsumer.as_asgi(), allowed_origins())
