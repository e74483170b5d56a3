"""The two wire forms a WebSocket connection may speak: the plain one and Zato's.

Each form parses the messages of its form and builds the frames of its form: replies,
error messages, pushes. The consumer (``integration.channels.websocket``) picks the form
from a connection's first message and delegates to it; until then, frames it sends are the
plain form's (built by ``PlainForm``'s static methods). The forms themselves are described
in ``integration.channels.ws_protocol``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any

from integration.channels.ws_protocol import (
    AUTH_FAILED,
    AUTH_REQUIRED,
    BAD_INPUT,
    FORBIDDEN_TEXT,
    SESSION_ENDED,
    BadMessage,
    Refused,
    authenticate,
    credential_headers,
    dumps,
    now_iso,
    text_value,
    unusable,
    valid_id,
)
from integration.cid import new_cid

if TYPE_CHECKING:
    from integration.channels.websocket import WebSocketChannelConsumer

logger = logging.getLogger("integration.channels.websocket")  # one logger for the whole protocol, as before the split

PLAIN_FIELDS = {
    "auth": frozenset({"type", "id", "token", "username", "password"}),
    "ping": frozenset({"type", "id"}),
    "request": frozenset({"type", "id", "payload", "service"}),
}
ZATO_META_FIELDS = frozenset({
    "action", "id", "timestamp", "token", "client_id", "client_name", "attrs", "in_reply_to", "ctx",
    "username", "secret",
})


class PlainForm:
    """JSON text frames with a ``type``: ``auth``, ``ping`` and requests in; replies, errors, pushes out."""

    name = "plain"

    def __init__(self, conn: WebSocketChannelConsumer) -> None:
        self.conn = conn

    async def handle(self, message: dict[str, Any], raw: str, now: float) -> None:
        conn = self.conn
        kind = message.get("type", "request")
        fields = PLAIN_FIELDS.get(kind) if isinstance(kind, str) else None
        request_id = message.get("id")
        request_id = request_id if valid_id(request_id) else None
        if fields is None:
            if not conn.authenticated:
                raise Refused(AUTH_REQUIRED, "Authenticate first")
            raise BadMessage(f"Unknown message type {str(kind)[:50]!r}: use auth, ping or request", 400, request_id)
        unknown = sorted(set(message) - fields)
        if unknown:
            if not conn.authenticated:
                raise Refused(BAD_INPUT, f"Unknown fields: {', '.join(unknown)}"[:100])
            raise BadMessage(f"Unknown field(s) {', '.join(repr(name[:50]) for name in unknown[:10])}: "
                             f"a {kind} message has {', '.join(sorted(fields))}", 400, request_id)
        if kind == "auth":
            await self._auth(message, request_id)
            return
        if not conn.authenticated:
            raise Refused(AUTH_REQUIRED, "Authenticate first")
        if kind == "ping":
            reply: dict[str, Any] = {"type": "pong"}
            if request_id is not None:
                reply["id"] = request_id
            await conn.send_text(dumps(reply))
            return
        if request_id is None:
            raise BadMessage("A request needs an `id`: a string of 1 to 200 characters, or an integer")
        service = message.get("service")
        if service is not None and not isinstance(service, str):
            raise BadMessage("`service` must be a service name", 400, request_id)
        await conn.start_request(message.get("payload"), service, raw, request_id, self.reply)

    async def _auth(self, message: dict[str, Any], request_id: Any) -> None:
        conn = self.conn
        if conn.authenticated and conn.channel.has_security:
            raise BadMessage("Already authenticated", 400, request_id)
        if conn.channel.has_security:
            if conn.channel.security is None:
                raise unusable(conn.channel)
            headers = credential_headers(
                conn.channel.security, token=text_value(message.get("token"), "token"),
                username=text_value(message.get("username"), "username"),
                password=text_value(message.get("password"), "password"),
            )
            login = await conn.supervisor.in_thread(authenticate, conn.channel, {**conn.meta, **headers}, conn.path)
            await conn.logged_in(login)
        reply: dict[str, Any] = {"type": "authenticated", "client_id": conn.client_id,
                                 "username": conn.login.username if conn.login else None}
        if request_id is not None:
            reply["id"] = request_id
        await conn.send_text(dumps(reply))

    def session_expired(self, now: float) -> bool:
        return False  # the plain form has no session of its own (a JWT's is the login's)

    # Frames (static: a connection that has not chosen its form yet gets these) ----------------------------

    @staticmethod
    def reply(request_id: Any, cid: str, status: int, response: Any = None, error: Any = None) -> str:
        frame: dict[str, Any] = {"type": "reply", "id": request_id, "status": status, "cid": cid}
        if error is not None:
            frame["error"] = error
        else:
            frame["response"] = response
        return dumps(frame)

    @staticmethod
    def error(bad: BadMessage, cid: str, error: Any) -> str:
        """Bad input: a reply to the request it names, else an error about no particular request."""
        if bad.request_id is not None:
            return PlainForm.reply(bad.request_id, cid, bad.status, error=error)
        return dumps({"type": "error", "status": bad.status, "cid": cid, "error": error})

    @staticmethod
    def push(cid_json: str, text: str) -> str:
        """A push; ``cid_json`` and ``text`` are JSON already (a push's text is encoded once for every client)."""
        return f'{{"type":"push","cid":{cid_json},"data":{text}}}'

    @staticmethod
    def closing(code: int) -> str | None:
        """A frame of this form's own before closing with ``code``; None: the one error shape says why."""
        return None


class ZatoForm:
    """``{"meta": ..., "data": ...}`` messages, as ``zato-websocket-client`` sends them, with Zato's session token."""

    name = "zato"

    def __init__(self, conn: WebSocketChannelConsumer) -> None:
        self.conn = conn
        self.token: str | None = None
        self.token_expires = 0.0

    async def handle(self, message: dict[str, Any], raw: str, now: float) -> None:
        conn = self.conn
        meta = message.get("meta")
        if not isinstance(meta, dict):
            raise conn.bad_input("`meta` must be a JSON object")
        unknown = sorted(set(message) - {"meta", "data"}) + sorted(set(meta) - ZATO_META_FIELDS)
        if unknown:
            if not conn.authenticated and not self.token:
                raise Refused(BAD_INPUT, f"Unknown fields: {', '.join(unknown)}"[:100])
            raise BadMessage(f"Unknown field(s) {', '.join(repr(name[:50]) for name in unknown[:10])}", 400,
                             meta.get("id") if valid_id(meta.get("id")) else None)
        action = meta.get("action") or "client-response"  # Zato's default
        msg_id = meta.get("id") if valid_id(meta.get("id")) else None
        if action == "create-session":
            await self._create_session(meta, msg_id, now)
            return
        token = meta.get("token")
        if not self.token:
            await self._forbidden(AUTH_REQUIRED, "Create a session first")
            return
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            await self._forbidden(AUTH_FAILED, "Wrong session token")
            return
        if now > self.token_expires:
            await self._forbidden(SESSION_ENDED, "Session token expired")
            return
        self.token_expires = now + conn.channel.token_ttl
        if action == "client-response":
            logger.debug("WebSocket %s answered %s", conn.client_id, str(meta.get("in_reply_to"))[:100])
            return
        data = message.get("data")
        service = None
        if (conn.channel.allowed_services and isinstance(data, dict) and isinstance(data.get("service"), str)
                and set(data) <= {"service", "request"}):
            service, data = data["service"], data.get("request")
        await conn.start_request(data, service, raw, msg_id, self.reply)

    async def _create_session(self, meta: dict[str, Any], msg_id: Any, now: float) -> None:
        conn = self.conn
        if conn.channel.has_security:
            if conn.channel.security is None:
                raise unusable(conn.channel)
            username, secret = text_value(meta.get("username"), "username"), text_value(meta.get("secret"), "secret")
            try:
                headers = credential_headers(conn.channel.security, token=secret, username=username, password=secret)
                login = await conn.supervisor.in_thread(authenticate, conn.channel, {**conn.meta, **headers},
                                                        conn.path)
            except Refused as refused:
                await self._forbidden(refused.code, refused.reason)
                return
            await conn.logged_in(login)
        self.token = "zwsxt." + secrets.token_hex(16)
        self.token_expires = now + conn.channel.token_ttl
        cid = new_cid()
        await conn.send_text(dumps({
            "meta": {"id": cid, "timestamp": now_iso(), "msg_type": "zwsx.rspa", "status": 200,
                     "in_reply_to": msg_id},
            "data": {"token": self.token},
        }))

    async def _forbidden(self, code: int, reason: str) -> None:
        """Zato's answer to a refused login or session token: a 403 message, then the close."""
        await self.conn.fail(code, reason)

    def session_expired(self, now: float) -> bool:
        """Whether the session token was not used within the channel's ``token_ttl``."""
        return bool(self.token) and now > self.token_expires

    # Frames ----------------------------------------------------------------------------------------------

    @staticmethod
    def reply(request_id: Any, cid: str, status: int, response: Any = None, error: Any = None) -> str:
        ok = error is None and status < 400
        return dumps({
            "meta": {"id": cid, "timestamp": now_iso(), "msg_type": "zwsx.rspok" if ok else "zwsx.rsperr",
                     "status": status, "in_reply_to": request_id},
            "data": response if error is None else error,
        })

    @staticmethod
    def error(bad: BadMessage, cid: str, error: Any) -> str:
        meta: dict[str, Any] = {"id": cid, "timestamp": now_iso(), "msg_type": "zwsx.rsperr", "status": bad.status}
        if bad.request_id is not None:
            meta["in_reply_to"] = bad.request_id
        return dumps({"meta": meta, "data": error})

    @staticmethod
    def push(cid_json: str, text: str) -> str:
        """A push as a server request (``zwsx.rqc``); ``cid_json`` and ``text`` are JSON already."""
        return f'{{"meta":{{"id":{cid_json},"timestamp":"{now_iso()}","msg_type":"zwsx.rqc"}},"data":{text}}}'

    @staticmethod
    def closing(code: int) -> str | None:
        """Session problems are answered as Zato does: ``zwsx.merr`` 403, whatever the close code."""
        if code not in (AUTH_REQUIRED, AUTH_FAILED, SESSION_ENDED):
            return None
        return dumps({
            "meta": {"id": new_cid(), "timestamp": now_iso(), "msg_type": "zwsx.merr", "status": 403},
            "data": FORBIDDEN_TEXT,
        })


Form = PlainForm | ZatoForm
