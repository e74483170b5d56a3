"""Server push to WebSocket clients, from any process: a web server, a Celery worker, a script.

``push(data, client=..., channel=..., user=...)`` hands one message to the channel layer
(Redis, or the embedded SQLite layer), which delivers it to every process serving a
matching connection; each connection's consumer sends it to its client. Services call
``self.push(...)`` and never see the layer.

Who receives a push:

* ``client``: the one connection with that client id (``self.channel.client_id`` in a
  service invoked over WebSocket; the admin's list of connected clients shows it);
* ``channel``: every client of the WebSocket channel of that name;
* ``user``: every client authenticated as that username, on any channel (with
  ``channel`` too: only on that channel).

A push is fire and forget. Clients that are not connected when it is sent never get it:
there is no queue for them, and the call does not fail. A client whose inbox is full
(``CHANNEL_LAYER_CAPACITY`` messages it has not taken yet) loses the extra messages.

A push is bounded in time. When the layer cannot be reached (Redis stopped, refusing
connections, or paused so that nothing answers; the SQLite file locked) ``push``, ``apush``
and ``disconnect`` give up after ``PUSH_TIMEOUT`` seconds (2 by default) and raise
``PushFailed``, a 503 in the one error shape when it leaves a service, instead of holding a
web worker: the caller learns that nobody got the message. The timeout covers the whole
call (connecting included), so redis-py's own socket timeouts need not be short. A push
that timed out may still have reached some clients (Redis may have taken it just before it
stopped answering); one that failed on a refused connection reached nobody. When Redis
comes back, empty or not, the WebSocket servers join their groups again within a few
seconds (``integration.channels.ws_groups``), so later pushes reach every client again.

Each connection belongs to three groups of the layer, named here: its own, its channel's
and its user's. Group names must be ASCII letters, digits, ``-``, ``_`` and ``.`` and
shorter than 100 characters, so user names are hashed; channels are named by their id,
so renaming a channel keeps its clients reachable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from integration.cid import new_cid
from integration.errors import PushFailed
from integration.jsonio import json_default

__all__ = ["PushFailed", "apush", "disconnect", "layer_call", "push"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

PUSH_EVENT = "ws.push"  # handled by WebSocketChannelConsumer.ws_push
DISCONNECT_EVENT = "ws.disconnect"  # handled by WebSocketChannelConsumer.ws_disconnect
_CLIENT_ID = re.compile(r"^[0-9a-f]{32}$")


def client_group(client_id: str) -> str:
    return f"sb-ws.client.{client_id}"


def channel_group(channel_id: int) -> str:
    return f"sb-ws.channel.{channel_id}"


def user_group(username: str) -> str:
    return "sb-ws.user." + hashlib.sha256(username.encode()).hexdigest()[:40]


def push(
    data: Any,
    *,
    client: str | None = None,
    channel: str | None = None,
    user: str | None = None,
    cid: str | None = None,
) -> None:
    """Send ``data`` (anything JSON can carry) to connected clients; see the module docstring for who gets it.

    Raises ``ValueError`` when no recipient is named, the client id is malformed or no
    WebSocket channel has that name, ``TypeError`` when ``data`` cannot be JSON, and
    ``PushFailed`` when the channel layer does not take the push within ``PUSH_TIMEOUT``
    seconds. Clients not connected are skipped silently.
    """
    group, event = push_event(data, client=client, channel=channel, user=user, cid=cid)
    async_to_sync(_group_send)(group, event)


async def apush(
    data: Any,
    *,
    client: str | None = None,
    channel: str | None = None,
    user: str | None = None,
    cid: str | None = None,
) -> None:
    """``push`` for code running on an event loop; raises the same errors."""
    from asgiref.sync import sync_to_async

    from integration import snapshot

    snap = snapshot.peek()
    if channel is not None and snap is None:  # building the snapshot queries: not on the event loop
        snap = await sync_to_async(snapshot.current, thread_sensitive=False)()
    group, event = push_event(data, client=client, channel=channel, user=user, cid=cid, snap=snap)
    await _group_send(group, event)


def disconnect(client_id: str) -> None:
    """Ask the connection with this client id to close (code 4005), wherever it is served; no-op if gone.

    Raises ``PushFailed`` when the channel layer does not take the request within ``PUSH_TIMEOUT``.
    """
    async_to_sync(_group_send)(client_group(_checked_client_id(client_id)), {"type": DISCONNECT_EVENT})


def push_event(
    data: Any,
    *,
    client: str | None = None,
    channel: str | None = None,
    user: str | None = None,
    cid: str | None = None,
    snap: Any = None,
) -> tuple[str, dict[str, Any]]:
    """The group and layer event for a push. The data is encoded to JSON once, here, not per recipient."""
    text = json.dumps(data, default=json_default, separators=(",", ":"))
    event: dict[str, Any] = {"type": PUSH_EVENT, "text": text, "cid": cid or new_cid()}
    if client is not None:
        if channel is not None or user is not None:
            raise ValueError("Name a client alone: a client id already says which channel and user")
        return client_group(_checked_client_id(client)), event
    channel_id = _channel_id(channel, snap) if channel is not None else None
    if user is not None:
        if not isinstance(user, str) or not user:
            raise ValueError("`user` must be a non-empty username")
        if channel_id is not None:
            event["only_channel"] = channel_id  # the user's group, filtered by each connection
        return user_group(user), event
    if channel_id is not None:
        return channel_group(channel_id), event
    raise ValueError("Name who gets the push: client=, channel= or user=")


def _checked_client_id(client_id: Any) -> str:
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise ValueError(f"Not a WebSocket client id: {str(client_id)[:80]!r} (32 hexadecimal characters)")
    return client_id


def _channel_id(name: Any, snap: Any = None) -> int:
    from integration import snapshot

    if not isinstance(name, str):
        raise ValueError("`channel` must be a WebSocket channel's name")
    snap = snap or snapshot.peek() or snapshot.current()
    compiled = snap.websockets.by_name.get(name)
    if compiled is None:
        raise ValueError(f"No WebSocket channel is named `{name[:200]}`")
    return compiled.id


async def layer_call(operation: Awaitable[T], what: str, timeout: float | None = None) -> T:
    """Await one channel-layer operation for at most ``timeout`` (``PUSH_TIMEOUT``) seconds.

    Any failure of the layer (a refused or reset connection, a Redis error, an SQLite error,
    the timeout) becomes ``PushFailed``, whose message names only the exception's type: the
    layer's own messages may carry host names, and callers show this one to clients.
    ``what`` says what was attempted, for the log and the message.
    """
    limit = settings.PUSH_TIMEOUT if timeout is None else timeout
    try:
        return await asyncio.wait_for(operation, limit)
    except TimeoutError:
        raise PushFailed(f"The channel layer did not answer within {limit:g} s ({what}); try again later") from None
    except (ValueError, TypeError):
        raise  # a programming error (a bad group or channel name, a message that is not a dict), not the layer's
    except Exception as exc:
        logger.debug("Channel layer error (%s): %r", what, exc)  # callers log the failure once, with context
        raise PushFailed(f"The channel layer cannot be reached ({what}: {type(exc).__name__}); "
                         "try again later") from exc


async def _group_send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("No channel layer is configured (settings.CHANNEL_LAYERS)")
    cid = event.get("cid", "-")
    try:
        await layer_call(layer.group_send(group, event), "push" if event["type"] == PUSH_EVENT else "disconnect")
    except PushFailed as exc:
        logger.warning("[%s] Push to %s failed: %s", cid, group, exc.details)
        raise
    logger.debug("[%s] Pushed %d characters to %s", cid, len(event.get("text", "")), group)
