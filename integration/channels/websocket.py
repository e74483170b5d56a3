"""WebSocket channels: one consumer serves every channel, found by path in the snapshot.

A client connects to a channel's path, authenticates with the channel's security
definition, sends requests that invoke the channel's service through the one invocation
path (``integration.invoke``), and receives what services push (``integration.push``).
The first message a client sends fixes which of two forms the connection speaks.

**Zato's form** (what ``zato-websocket-client`` sends): every message is
``{"meta": {...}, "data": ...}``.

* ``meta.action = "create-session"`` with ``meta.username`` and ``meta.secret`` (a JWT
  channel: the token is the secret; Basic Auth and technical accounts: username and
  password; API key: the key; Vault: a token, or username and password), within the
  channel's ``new_token_wait_time``. Answered ``{"meta": {"msg_type": "zwsx.rspa",
  "status": 200, "in_reply_to": <id>, ...}, "data": {"token": "zwsxt.<hex>"}}``.
* Every later message carries that token in ``meta.token``. ``invoke-service`` (or any
  action but ``client-response``) invokes the channel's service with ``data``; on a
  channel with allowed services, ``data = {"service": name, "request": payload}``
  invokes that service instead (Zato's gateway convention). Answered ``zwsx.rspok``
  (``status`` 200, ``data`` the response) or ``zwsx.rsperr`` (``status`` the error's,
  ``data`` the one error shape), with ``in_reply_to``; ``meta.id`` is the CID.
* Pushes arrive as server requests, ``{"meta": {"msg_type": "zwsx.rqc", "id": <cid>,
  ...}, "data": ...}``; the client's ``client-response`` answers are accepted and dropped.
* A missing or wrong session token: ``zwsx.merr`` with status 403, then close 4403.

**The plain form** (browser code): JSON text frames.

* Authenticate with ``Authorization: Bearer <token>`` (or the definition's own headers)
  on the upgrade request, or with a first message ``{"type": "auth", "token": "..."}``
  (``"username"`` and ``"password"`` for Basic Auth and technical accounts), answered
  ``{"type": "authenticated", "client_id": ..., "username": ...}``. Channels without
  security need neither.
* Requests: ``{"id": "1", "payload": {...}, "service": "optional allowed service"}``.
  Replies: ``{"type": "reply", "id": "1", "status": 200, "cid": ..., "response": ...}``
  or ``{"type": "reply", "id": "1", "status": 4xx/5xx, "cid": ..., "error": {"result":
  "Error", "cid": ..., "details": ...}}``. Errors about no particular request come as
  ``{"type": "error", "status": ..., "cid": ..., "error": {...}}``.
* ``{"type": "ping"}`` (optionally with an ``id``) is answered ``{"type": "pong"}``: it
  keeps an idle connection (and a JWT session) alive.
* Pushes: ``{"type": "push", "cid": ..., "data": ...}``.

A classic SimpleIO response wrapper (``{"response": {...}}``) is removed from replies, as
Zato does on WebSocket channels.

**Close codes.** Before accepting, an unknown or inactive path is refused (the ASGI
server answers the handshake with HTTP 403). After it:

====  =====================================================================================
4001  bad input before authentication: a binary frame, text that is not a JSON object
4003  unexpected server error
4004  the channel was deleted, deactivated or given another security definition
4005  disconnected on purpose (``integration.push.disconnect``: the admin's action)
4008  idle: no message from the client for the channel's ``idle_timeout`` seconds
4009  a message larger than the channel's ``max_message_size``
4029  flood: more than twice ``max_messages_per_second`` messages in one second
4401  not authenticated: no credentials within ``new_token_wait_time``, or a request first
4403  credentials refused: bad token, wrong password, inactive definition, wrong session token
4429  throttled: too many failed credential checks for this definition from this address
      (``CREDENTIAL_MAX_FAILURES`` within ``CREDENTIAL_FAILURE_WINDOW``); refused before any
      check, right credentials included, until the window ends (``accounts.limits``)
4440  session ended: the JWT expired or was logged out, or Zato's session token expired
4503  a system the connection needs cannot be reached: the channel layer (Redis, or the
      embedded layer's file) while connecting or authenticating, so that the connection
      could not join its push groups within ``PUSH_TIMEOUT``, or the security backend (the
      JWT session store, Vault); reconnect a few seconds later
====  =====================================================================================

A close caused by what the client sent, or by its credentials, is preceded by an error
message in the connection's form saying why (Zato's form: ``zwsx.merr`` 403 for session
problems), since daphne does not pass close reasons on; so is 4503 (status 503). Closes
by a timer (idle, no credentials in time, expiry) or by the server's side (4004, 4005)
come without one.

After authentication, other bad input (invalid JSON, binary frames, unknown fields, a
message over the rate limit) gets an error message (status 400, or 429) and the
connection stays open; a second second's worth of messages over the limit closes it.

**When the channel layer goes away.** A connection that is open already stays open while
Redis is down or paused: requests and replies do not need the layer, and the connection's
receive from it waits and tries again instead of ending the connection (Channels' own
would, with 1011). Pushes reach it again once the layer is back, also when Redis came back
empty or the SQLite layer's file was deleted: each process notices within a tick and joins
its groups again (``integration.channels.ws_groups``).

**Daphne's own limits.** Daphne sends WebSocket ping frames itself after
``--ping-interval`` seconds (default 20) without a message from the client, and drops a
connection whose pong does not come within ``--ping-timeout`` (default 30); the client
then sees 1006. ASGI applications never see pings or pongs, so Zato's per-channel
``ping_interval`` and ``pings_missed_threshold`` (and its close code 4002) have no
per-channel equivalent here: daphne's two options apply to every channel of the process.
Pongs do not count as activity for ``idle_timeout``; messages do. Daphne also refuses
messages over ``--websocket-max-message-size`` (default 1 MiB, close 1009) before this
consumer sees them, so set it above the largest ``max_message_size``, and closes every
connection after ``--websocket_timeout`` seconds (default 86400; -1 = never).

**Concurrency.** Requests run in threads (``WEBSOCKET_THREADS`` per process), so a slow
service holds up neither the event loop nor other connections; one connection runs at
most ``WEBSOCKET_MAX_CONCURRENT_REQUESTS`` at a time, and replies may come out of order
(match them by id). Timers (new-token wait, idle, session expiry), the check for changed
configuration and the rows of connected clients are driven by one supervisor task per
event loop, not one per connection. Pushes to a channel or a user arrive once per process
and are handed to its connections there (``ws_groups.GroupHub``); pushes to one client
arrive on its connection's own layer channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import close_old_connections, connections
from rest_framework.exceptions import AuthenticationFailed

from integration import jsonio
from integration import push as pushes
from integration import snapshot as snapshots
from integration.channels.security import Authenticator, CredentialsRefused, Session
from integration.channels.ws_groups import LAYER_CONCURRENCY, RECEIVE_RETRY, RECEIVE_RETRY_MAX, GroupHub
from integration.channels.ws_routing import CompiledWebSocketChannel, OriginPolicy, allowed_origins
from integration.cid import new_cid
from integration.errors import (
    Forbidden,
    InternalError,
    PushFailed,
    ServiceNotFound,
    ServiceUnavailable,
    SwitchboardError,
    TooManyRequests,
    error_body,
)
from integration.invoke import call_service, invoke_info
from integration.services import ChannelInfo, Headers, HTTPRequestInfo

logger = logging.getLogger(__name__)

# Close codes (see the module docstring).
BAD_INPUT = 4001
SERVER_ERROR = 4003
CHANNEL_CLOSED = 4004
DISCONNECTED = 4005
IDLE = 4008
TOO_BIG = 4009
FLOOD = 4029
AUTH_REQUIRED = 4401
AUTH_FAILED = 4403
THROTTLED = 4429
SESSION_ENDED = 4440
UNAVAILABLE = 4503

# The status of the error message sent (in the connection's form) just before closing with a code.
STATUS_FOR_CLOSE = {
    BAD_INPUT: 400, SERVER_ERROR: 500, CHANNEL_CLOSED: 410, DISCONNECTED: 410, IDLE: 408, TOO_BIG: 413,
    FLOOD: 429, AUTH_REQUIRED: 401, AUTH_FAILED: 403, THROTTLED: 429, SESSION_ENDED: 401, UNAVAILABLE: 503,
}

TICK = 0.5  # seconds between the supervisor's checks of timers, configuration and the layer's epoch
MAX_ID_LENGTH = 200
MAX_CREDENTIAL_LENGTH = 8192
FORBIDDEN_TEXT = "You are not authorized to access this resource"  # Zato's words

PLAIN_FIELDS = {
    "auth": frozenset({"type", "id", "token", "username", "password"}),
    "ping": frozenset({"type", "id"}),
    "request": frozenset({"type", "id", "payload", "service"}),
}
ZATO_META_FIELDS = frozenset({
    "action", "id", "timestamp", "token", "client_id", "client_name", "attrs", "in_reply_to", "ctx",
    "username", "secret",
})


class Refused(Exception):
    """Authentication said no; ``code`` is the close code, ``reason`` the client-facing text."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class BadMessage(Exception):
    """A message this connection cannot act on; answered with the one error shape."""

    def __init__(self, details: str, status: int = 400, request_id: Any = None) -> None:
        super().__init__(details)
        self.details = details
        self.status = status
        self.request_id = request_id


@dataclass(frozen=True)
class Login:
    """A successful authentication: who, and the session (a JWT's) the connection keeps alive, if any."""

    username: str | None
    definition: str | None
    session: Session | None = None


@dataclass
class AuthRequest:
    """The parts of an HTTP request that security types read (``integration.channels.security``)."""

    META: dict[str, str]
    cid: str
    path_info: str
    body: bytes = b""
    call_service: Any = call_service  # for types that invoke a service (Vault's chooser)


# --- Credentials: only through the security type's contract -----------------------------------------


def credential_headers(
    authenticator: Authenticator, *, token: str | None = None, username: str | None = None,
    password: str | None = None,
) -> dict[str, str]:
    """The request headers carrying credentials sent in a message; ``Refused`` if the type needs others."""
    try:
        return authenticator.websocket_credentials(token=token, username=username, password=password)
    except CredentialsRefused as exc:
        raise Refused(AUTH_FAILED, str(exc.detail)) from None


def unusable(channel: CompiledWebSocketChannel) -> Refused:
    """A channel whose definition cannot be used refuses everyone: 4503, the platform's fault, not the client's."""
    logger.error("WebSocket channel %s refuses every client: %s", channel.name,
                 channel.security_problem or "its security definition cannot be loaded")
    return Refused(UNAVAILABLE, "The channel's security definition cannot be used")


def authenticate(channel: CompiledWebSocketChannel, meta: dict[str, str], path: str) -> Login:
    """Check credentials with the channel's definition (blocking: runs in a thread). Raises ``Refused``."""
    authenticator = channel.security
    if authenticator is None:
        raise unusable(channel)
    request = AuthRequest(meta, new_cid(), path)
    try:
        result = authenticator.authenticate(request)
    except AuthenticationFailed:
        if authenticator.session_ended(request):
            raise Refused(SESSION_ENDED, "Token expired or logged out") from None
        raise Refused(AUTH_FAILED, "Unauthorized") from None
    except ServiceUnavailable as exc:
        raise Refused(UNAVAILABLE, str(exc.details)[:100]) from None
    except TooManyRequests as exc:
        raise Refused(THROTTLED, str(exc.details)[:100]) from None
    except SwitchboardError as exc:
        raise Refused(AUTH_FAILED, str(exc.details)[:100]) from None
    if result is None:
        raise Refused(AUTH_FAILED, "Unauthorized")
    identity = result[0]
    return Login(identity.username, identity.definition, authenticator.session(request))


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CREDENTIAL_LENGTH:
        raise Refused(AUTH_FAILED, f"`{name}` must be a string")
    return value


# --- Per-process plumbing ---------------------------------------------------------------------------

SERVER_HOST = socket.gethostname()[:255]
SERVER_ID = uuid.uuid4().hex  # this process's run; rows of an earlier run with the same pid are dead


class Supervisor:
    """One per event loop: timers of every connection, configuration changes, the clients' rows,
    and (through its ``GroupHub``) the check that the channel layer still holds its push groups.

    A task per connection would wake thousands of times a second on a busy server; one
    task looking at every connection twice a second costs a few microseconds each. The
    threads that run invocations live here too; when the last connection of the loop has
    gone they close their database connections and end.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.consumers: set[WebSocketChannelConsumer] = set()
        self.task: asyncio.Task | None = None
        self.snap: Any = None
        self.flushed_at = time.monotonic()
        self.cleaned_at = 0.0
        self.executor: ThreadPoolExecutor | None = None
        self.started: list[int] = [0]  # threads the current executor has started
        self.layer_slots = asyncio.Semaphore(LAYER_CONCURRENCY)  # see LAYER_CONCURRENCY
        self.hub: GroupHub | None = None

    def add(self, consumer: WebSocketChannelConsumer) -> None:
        self.consumers.add(consumer)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run())

    def discard(self, consumer: WebSocketChannelConsumer) -> None:
        self.consumers.discard(consumer)

    def in_thread(self, func: Any, *args: Any) -> Any:
        """Run blocking work (invocations, authentication, rows) in this loop's threads; an awaitable."""
        if self.executor is None:
            started, lock = [0], threading.Lock()

            def count() -> None:
                with lock:
                    started[0] += 1

            self.started = started
            self.executor = ThreadPoolExecutor(max_workers=settings.WEBSOCKET_THREADS,
                                               thread_name_prefix="switchboard-ws", initializer=count)
        return sync_to_async(func, thread_sensitive=False, executor=self.executor)(*args)

    def retire(self) -> None:
        """End the threads, each closing its database connections first."""
        executor, threads = self.executor, self.started[0]
        if executor is None:
            return
        self.executor = None
        barrier = threading.Barrier(max(threads, 1))

        def close_here() -> None:
            connections.close_all()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)  # so that each thread takes one of these, not two

        for _ in range(threads):
            executor.submit(close_here)
        executor.shutdown(wait=False)

    async def _run(self) -> None:
        try:
            while self.consumers:
                await asyncio.sleep(TICK)
                try:
                    await self._check(time.monotonic())
                except Exception:
                    logger.exception("WebSocket supervisor: a check failed; trying again at the next tick")
        except asyncio.CancelledError:
            self.retire()  # the loop is ending
            if self.hub is not None:
                self.hub.close()
            raise
        finally:
            self.task = None
            if not self.consumers:
                self.retire()

    async def _check(self, now: float) -> None:
        snap = snapshots.peek()
        changed = snap is not None and snap is not self.snap
        if changed:
            self.snap = snap
        for consumer in list(self.consumers):
            consumer.tick(now, snap if changed else None)
        if self.hub is not None:
            self.hub.tick(now)  # the layer's epoch: push groups lost with Redis' data are joined again
        if now - self.flushed_at >= settings.WEBSOCKET_CLIENT_UPDATE_INTERVAL:
            self.flushed_at = now
            await self.flush(now)

    def group_hub(self, layer: Any) -> GroupHub:
        if self.hub is None:
            self.hub = GroupHub(layer, self.layer_slots)
        return self.hub

    async def flush(self, now: float) -> None:
        """Report this process's connections alive and write the counters that moved (one batch)."""
        changed = []
        for consumer in self.consumers:
            if consumer.row_id is not None and consumer.counters_moved():
                changed.append((consumer.row_id, consumer.messages_in, consumer.messages_out))
        clean = now - self.cleaned_at >= 60.0
        if clean:
            self.cleaned_at = now
        try:
            await self.in_thread(write_client_rows, changed, clean)
        except Exception as exc:
            logger.warning("Could not update the rows of connected WebSocket clients: %s", exc)


_supervisors: dict[asyncio.AbstractEventLoop, Supervisor] = {}


def supervisor() -> Supervisor:
    loop = asyncio.get_running_loop()
    found = _supervisors.get(loop)
    if found is None or found.loop.is_closed():
        for old in [key for key in _supervisors if key.is_closed()]:
            _supervisors.pop(old).retire()
        found = _supervisors[loop] = Supervisor(loop)
    return found


def write_client_rows(changed: list[tuple[int, int, int]], clean: bool) -> None:
    from django.utils import timezone

    from integration.models import WebSocketClient

    now = timezone.now()
    try:
        WebSocketClient.objects.filter(server_id=SERVER_ID).update(last_seen=now)
        for start in range(0, len(changed), COUNTER_BATCH):
            write_counters(changed[start:start + COUNTER_BATCH])
        if clean:
            # Rows of processes that died (no update for several intervals), and of an earlier run of this pid.
            WebSocketClient.objects.stale().delete()
            (WebSocketClient.objects.filter(server_host=SERVER_HOST, server_pid=os.getpid())
             .exclude(server_id=SERVER_ID).delete())
    finally:
        close_old_connections()


COUNTER_BATCH = 500  # rows per UPDATE: 2,500 parameters, well under SQLite's limit


def write_counters(rows: list[tuple[int, int, int]]) -> None:
    """Set (pk, messages_in, messages_out) of these rows in one UPDATE with two CASE expressions.

    Django's ``bulk_update`` writes the same statement but compiles an expression object per
    row: about 250 µs each, in a thread that holds the GIL against the event loop, so a push to
    1,000 clients followed by the periodic flush stalled the next push by a quarter of a second
    (``bench/websocket.py``). Built as text here it is a few microseconds a row.
    """
    from django.db import connection

    from integration.models import WebSocketClient

    if not rows:
        return
    meta, quote = WebSocketClient._meta, connection.ops.quote_name
    pk = quote(meta.pk.column)
    whens = " ".join(["WHEN %s THEN CAST(%s AS BIGINT)"] * len(rows))
    sql = (
        f"UPDATE {quote(meta.db_table)} SET "  # noqa: S608 - names from the model, values as parameters
        f"{quote(meta.get_field('messages_in').column)} = CASE {pk} {whens} END, "
        f"{quote(meta.get_field('messages_out').column)} = CASE {pk} {whens} END "
        f"WHERE {pk} IN ({', '.join(['%s'] * len(rows))})"
    )
    params: list[int] = [value for row_id, count_in, _ in rows for value in (row_id, count_in)]
    params += [value for row_id, _, count_out in rows for value in (row_id, count_out)]
    params += [row_id for row_id, _, _ in rows]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def insert_client_row(channel_id: int, client_id: str, username: str, remote_addr: str) -> int | None:
    from django.db import IntegrityError

    from integration.models import WebSocketClient

    try:
        row = WebSocketClient.objects.create(
            channel_id=channel_id, client_id=client_id, username=username[:200], remote_addr=remote_addr[:100],
            server_host=SERVER_HOST, server_pid=os.getpid(), server_id=SERVER_ID,
        )
        return row.pk
    except IntegrityError:
        return None  # the channel was deleted meanwhile; the supervisor closes the connection
    finally:
        close_old_connections()


def delete_client_row(row_id: int) -> None:
    from integration.models import WebSocketClient

    try:
        WebSocketClient.objects.filter(pk=row_id).delete()
    finally:
        close_old_connections()


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()


def _dumps(value: Any) -> str:
    from integration.jsonio import json_default

    return json.dumps(value, default=json_default, separators=(",", ":"))


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


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
        self.mode: str | None = None  # "zato" or "plain", fixed by the first message
        self.zato_token: str | None = None
        self.zato_token_expires = 0.0
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
                await self._logged_in(Login(None, None))
            elif channel.security is None or channel.security.has_header_credentials(self.meta):
                login = await self.supervisor.in_thread(authenticate, channel, self.meta, self.path)
                await self._logged_in(login)
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

    async def _logged_in(self, login: Login) -> None:
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
        if self.mode == "zato" and code in (AUTH_REQUIRED, AUTH_FAILED, SESSION_ENDED):
            await self._send_text(_dumps({
                "meta": {"id": new_cid(), "timestamp": _now_iso(), "msg_type": "zwsx.merr", "status": 403},
                "data": FORBIDDEN_TEXT,
            }))
        elif frame or self.mode is not None:
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
        elif self.zato_token and now > self.zato_token_expires:
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
        cid = json.dumps(event.get("cid", ""))
        if self.mode == "zato":
            frame = (f'{{"meta":{{"id":{cid},"timestamp":"{_now_iso()}","msg_type":"zwsx.rqc"}},'
                     f'"data":{event["text"]}}}')
        else:
            frame = f'{{"type":"push","cid":{cid},"data":{event["text"]}}}'
        await self._send_text(frame)

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
            raise self._bad_input("Binary frames are not accepted: send JSON text frames")
        limit = self.channel.max_message_size
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode("utf-8")) > limit):
            raise Refused(TOO_BIG, f"Message larger than {limit} bytes")
        try:
            message = jsonio.loads(text, "message")  # nesting and number limits: a 400, never a 4003
        except jsonio.InvalidJSON as exc:
            raise self._bad_input(str(exc.details)) from None
        if not isinstance(message, dict):
            raise self._bad_input("A message must be a JSON object")
        mode = "zato" if "meta" in message else "plain"
        if self.mode is None:
            self.mode = mode
        elif mode != self.mode:
            raise BadMessage("This connection speaks the " + ("Zato form ({\"meta\": ..., \"data\": ...})"
                             if self.mode == "zato" else "plain form ({\"id\": ..., \"payload\": ...})"))
        if self.login and self.login.session is not None:
            await self._keep_session(now)
        if mode == "zato":
            await self._zato(message, text, now)
        else:
            await self._plain(message, text)

    def _bad_input(self, details: str) -> Exception:
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

    # The plain form ----------------------------------------------------------------------------------

    async def _plain(self, message: dict[str, Any], raw: str) -> None:
        kind = message.get("type", "request")
        fields = PLAIN_FIELDS.get(kind) if isinstance(kind, str) else None
        request_id = message.get("id")
        request_id = request_id if _valid_id(request_id) else None
        if fields is None:
            if not self.authenticated:
                raise Refused(AUTH_REQUIRED, "Authenticate first")
            raise BadMessage(f"Unknown message type {str(kind)[:50]!r}: use auth, ping or request", 400, request_id)
        unknown = sorted(set(message) - fields)
        if unknown:
            if not self.authenticated:
                raise Refused(BAD_INPUT, f"Unknown fields: {', '.join(unknown)}"[:100])
            raise BadMessage(f"Unknown field(s) {', '.join(repr(name[:50]) for name in unknown[:10])}: "
                             f"a {kind} message has {', '.join(sorted(fields))}", 400, request_id)
        if kind == "auth":
            await self._plain_auth(message, request_id)
            return
        if not self.authenticated:
            raise Refused(AUTH_REQUIRED, "Authenticate first")
        if kind == "ping":
            reply: dict[str, Any] = {"type": "pong"}
            if request_id is not None:
                reply["id"] = request_id
            await self._send_text(_dumps(reply))
            return
        if request_id is None:
            raise BadMessage("A request needs an `id`: a string of 1 to 200 characters, or an integer")
        service = message.get("service")
        if service is not None and not isinstance(service, str):
            raise BadMessage("`service` must be a service name", 400, request_id)
        await self._start_request(message.get("payload"), service, raw, request_id, self._plain_reply)

    async def _plain_auth(self, message: dict[str, Any], request_id: Any) -> None:
        if self.authenticated and self.channel.has_security:
            raise BadMessage("Already authenticated", 400, request_id)
        if self.channel.has_security:
            if self.channel.security is None:
                raise unusable(self.channel)
            headers = credential_headers(
                self.channel.security, token=_text(message.get("token"), "token"),
                username=_text(message.get("username"), "username"),
                password=_text(message.get("password"), "password"),
            )
            login = await self.supervisor.in_thread(authenticate, self.channel, {**self.meta, **headers}, self.path)
            await self._logged_in(login)
        reply: dict[str, Any] = {"type": "authenticated", "client_id": self.client_id,
                                 "username": self.login.username if self.login else None}
        if request_id is not None:
            reply["id"] = request_id
        await self._send_text(_dumps(reply))

    async def _plain_reply(self, request_id: Any, cid: str, status: int, response: Any = None,
                           error: Any = None) -> None:
        frame: dict[str, Any] = {"type": "reply", "id": request_id, "status": status, "cid": cid}
        if error is not None:
            frame["error"] = error
        else:
            frame["response"] = response
        await self._send_text(_dumps(frame))

    # Zato's form -------------------------------------------------------------------------------------

    async def _zato(self, message: dict[str, Any], raw: str, now: float) -> None:
        meta = message.get("meta")
        if not isinstance(meta, dict):
            raise self._bad_input("`meta` must be a JSON object")
        unknown = sorted(set(message) - {"meta", "data"}) + sorted(set(meta) - ZATO_META_FIELDS)
        if unknown:
            if not self.authenticated and not self.zato_token:
                raise Refused(BAD_INPUT, f"Unknown fields: {', '.join(unknown)}"[:100])
            raise BadMessage(f"Unknown field(s) {', '.join(repr(name[:50]) for name in unknown[:10])}", 400,
                             meta.get("id") if _valid_id(meta.get("id")) else None)
        action = meta.get("action") or "client-response"  # Zato's default
        msg_id = meta.get("id") if _valid_id(meta.get("id")) else None
        if action == "create-session":
            await self._zato_create_session(meta, msg_id, now)
            return
        token = meta.get("token")
        if not self.zato_token:
            await self._zato_forbidden(AUTH_REQUIRED, "Create a session first")
            return
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.zato_token.encode()):
            await self._zato_forbidden(AUTH_FAILED, "Wrong session token")
            return
        if now > self.zato_token_expires:
            await self._zato_forbidden(SESSION_ENDED, "Session token expired")
            return
        self.zato_token_expires = now + self.channel.token_ttl
        if action == "client-response":
            logger.debug("WebSocket %s answered %s", self.client_id, str(meta.get("in_reply_to"))[:100])
            return
        data = message.get("data")
        service = None
        if (self.channel.allowed_services and isinstance(data, dict) and isinstance(data.get("service"), str)
                and set(data) <= {"service", "request"}):
            service, data = data["service"], data.get("request")
        await self._start_request(data, service, raw, msg_id, self._zato_reply)

    async def _zato_create_session(self, meta: dict[str, Any], msg_id: Any, now: float) -> None:
        if self.channel.has_security:
            if self.channel.security is None:
                raise unusable(self.channel)
            username, secret = _text(meta.get("username"), "username"), _text(meta.get("secret"), "secret")
            try:
                headers = credential_headers(self.channel.security, token=secret, username=username, password=secret)
                login = await self.supervisor.in_thread(authenticate, self.channel, {**self.meta, **headers},
                                                        self.path)
            except Refused as refused:
                await self._zato_forbidden(refused.code, refused.reason)
                return
            await self._logged_in(login)
        self.zato_token = "zwsxt." + secrets.token_hex(16)
        self.zato_token_expires = now + self.channel.token_ttl
        cid = new_cid()
        await self._send_text(_dumps({
            "meta": {"id": cid, "timestamp": _now_iso(), "msg_type": "zwsx.rspa", "status": 200,
                     "in_reply_to": msg_id},
            "data": {"token": self.zato_token},
        }))

    async def _zato_forbidden(self, code: int, reason: str) -> None:
        """Zato's answer to a refused login or session token: a 403 message, then the close."""
        await self.fail(code, reason)

    async def _zato_reply(self, request_id: Any, cid: str, status: int, response: Any = None,
                          error: Any = None) -> None:
        ok = error is None and status < 400
        await self._send_text(_dumps({
            "meta": {"id": cid, "timestamp": _now_iso(), "msg_type": "zwsx.rspok" if ok else "zwsx.rsperr",
                     "status": status, "in_reply_to": request_id},
            "data": response if error is None else error,
        }))

    # Requests ----------------------------------------------------------------------------------------

    async def _start_request(self, payload: Any, service: str | None, raw: str, request_id: Any,
                             reply: Any) -> None:
        """Run the request in a thread; at most WEBSOCKET_MAX_CONCURRENT_REQUESTS at once per connection."""
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
            await reply(request_id, cid, result.status_code, _unwrapped(info, result.payload))
        except SwitchboardError as exc:
            await reply(request_id, cid, exc.status_code, error=error_body(cid, exc.details))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("[%s] WebSocket request on %s failed", cid, self.channel.name)
            with contextlib.suppress(Exception):
                await reply(request_id, cid, 500, error=error_body(cid, InternalError.default_details))
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

    async def _send_text(self, text: str) -> None:
        if self.closing:
            return
        self.messages_out += 1
        await self.send(text_data=text)

    async def _refuse(self, bad: BadMessage) -> None:
        """Answer bad input in the connection's form with the one error shape."""
        cid = new_cid()
        error = error_body(cid, bad.details)
        if self.mode == "zato":
            meta: dict[str, Any] = {"id": cid, "timestamp": _now_iso(), "msg_type": "zwsx.rsperr",
                                    "status": bad.status}
            if bad.request_id is not None:
                meta["in_reply_to"] = bad.request_id
            await self._send_text(_dumps({"meta": meta, "data": error}))
        elif bad.request_id is not None:
            await self._plain_reply(bad.request_id, cid, bad.status, error=error)
        else:
            await self._send_text(_dumps({"type": "error", "status": bad.status, "cid": cid, "error": error}))


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
