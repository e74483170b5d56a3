"""The WebSocket channels' protocol: close codes, limits, authentication, and this reference.

One consumer serves every channel, found by path in the snapshot
(``integration.channels.websocket``); the two wire forms are ``integration.channels.ws_forms``,
the per-process timers, threads and clients' rows ``integration.channels.ws_supervisor``,
the push groups ``integration.channels.ws_groups``.

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

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from rest_framework.exceptions import AuthenticationFailed

from integration.channels.security import Authenticator, CredentialsRefused, Session
from integration.channels.ws_routing import CompiledWebSocketChannel
from integration.cid import new_cid
from integration.errors import ServiceUnavailable, SwitchboardError, TooManyRequests
from integration.invoke import call_service

logger = logging.getLogger("integration.channels.websocket")  # one logger for the whole protocol, as before the split

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

MAX_ID_LENGTH = 200
MAX_CREDENTIAL_LENGTH = 8192
FORBIDDEN_TEXT = "You are not authorized to access this resource"  # Zato's words


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


def text_value(value: Any, name: str) -> str | None:
    """A credential sent in a message: absent, or a string of at most ``MAX_CREDENTIAL_LENGTH``; else ``Refused``."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CREDENTIAL_LENGTH:
        raise Refused(AUTH_FAILED, f"`{name}` must be a string")
    return value


# --- Small helpers of both forms --------------------------------------------------------------------


def now_iso() -> str:
    """A time stamp as Zato's messages carry it: UTC, without an offset."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()


def dumps(value: Any) -> str:
    """Compact JSON text for a frame."""
    from integration.jsonio import json_default

    return json.dumps(value, default=json_default, separators=(",", ":"))


def valid_id(value: Any) -> bool:
    """Whether a message's id may be echoed back: an integer, or a string of 1 to ``MAX_ID_LENGTH`` characters."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH

