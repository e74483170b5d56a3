"""Demo services, deployed with the platform so a fresh install has something to call.

``make run`` binds ``demo.hello`` to ``GET /demo/hello``; the others show the features
the README describes (SimpleIO, dataclass models, handle_VERB, Accept routing). The last
two are the WebSocket demo (the seed on JWT and WebSockets): ``demo.notify`` is what a
backend system calls to raise a notification, ``demo.notifications-page`` the page that
shows notifications as they arrive (``manage.py bootstrap`` binds both).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.html import escape

from integration.errors import BadRequest, NotFound
from integration.services import Int, Service


class Hello(Service):
    """Greets whoever calls: ``GET /demo/hello?name=Ann`` -> ``{"hello": "Ann"}``."""

    name = "demo.hello"

    def handle(self) -> None:
        self.response.payload = {"hello": self.request.input.get("name") or "world", "cid": self.cid}


class Echo(Service):
    """Returns the request payload unchanged."""

    name = "demo.echo"

    def handle(self) -> None:
        self.response.payload = self.request.payload


class GetCustomer(Service):
    """SimpleIO: a required integer input and declared output, wrapped in ``response``."""

    name = "demo.get-customer"

    class SimpleIO:
        input_required = (Int("customer_id"),)
        output_required = ("customer_id", "name")
        output_optional = ("email",)

    def handle(self) -> None:
        customer_id = self.request.input.customer_id
        self.response.payload = {"customer_id": customer_id, "name": f"Customer {customer_id}", "email": None}


@dataclass
class NewCustomer:
    name: str
    email: str
    age: int | None = None


@dataclass
class CreatedCustomer:
    customer_id: int
    name: str


class CreateCustomer(Service):
    """Dataclass models as input and output."""

    name = "demo.create-customer"
    input = NewCustomer
    output = CreatedCustomer

    def handle(self) -> None:
        new = self.request.input
        self.response.payload = CreatedCustomer(customer_id=1000 + len(new.name), name=new.name)
        self.response.status_code = 201


class Resource(Service):
    """One service for several verbs: ``handle_GET`` and ``handle_DELETE``."""

    name = "demo.resource"

    def handle_GET(self) -> None:
        self.response.payload = {"method": "GET", "params": self.request.http.params}

    def handle_DELETE(self) -> None:
        self.response.status_code = 204
        self.response.payload = ""


class InvoiceJSON(Service):
    name = "demo.invoice-json"

    def handle(self) -> None:
        self.response.payload = {"invoice": self.request.payload, "format": "json"}


class InvoicePDF(Service):
    name = "demo.invoice-pdf"

    def handle(self) -> None:
        self.response.content_type = "application/pdf"
        self.response.payload = b"%PDF-1.4\n% demo invoice\n"


class TextAny(Service):
    """Reads the actual Accept value of a request routed by a ``text/*`` pattern."""

    name = "demo.text-any"

    def handle(self) -> None:
        wanted = self.request.http.accept.split(",")[0].split(";")[0].strip() or "text/plain"
        self.response.content_type = wanted
        self.response.payload = f"You asked for {wanted}"


# --- The seed's flow: a frontend hands a browser a token, a backend notifies the browser -----------------

DEMO_WEBSOCKET_CHANNEL = "demo.notifications"  # created by `manage.py bootstrap`, path /ws/demo/notifications
MAX_NOTIFICATION_LENGTH = 1000


class Notify(Service):
    """A backend system raises a notification: ``POST /demo/notify {"text": "..."}`` pushes it to every browser
    connected to the demo WebSocket channel, in whichever process serves them.

    503 in the one error shape (``PushFailed``, raised by ``self.push``) when the channel layer
    cannot be reached within ``PUSH_TIMEOUT``: the backend learns that nobody was notified and
    can try again, instead of a 200 for a notification that went nowhere."""

    name = "demo.notify"

    def handle(self) -> None:
        body = self.request.payload
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise BadRequest('Send {"text": "<the notification>"}')
        if len(text) > MAX_NOTIFICATION_LENGTH:
            raise BadRequest(f"`text` is longer than {MAX_NOTIFICATION_LENGTH} characters")
        notification = {
            "text": text,
            "from": self.channel.username or "anonymous",
            "sent_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        }
        try:
            self.push(notification, channel=DEMO_WEBSOCKET_CHANNEL)
        except ValueError:
            raise NotFound(f"There is no WebSocket channel `{DEMO_WEBSOCKET_CHANNEL}`: "
                           "`python manage.py bootstrap` creates it") from None
        self.response.payload = {"pushed": True, "channel": DEMO_WEBSOCKET_CHANNEL, "cid": self.cid}


class NotificationsPage(Service):
    """``GET /demo/notifications``: a page that shows the demo channel's notifications as they arrive.

    This service plays the frontend application of the seed: it gets a token on the browser's
    behalf from ``zato.wsx.create-token`` (in process here; a real frontend calls it over its
    REST channel, ``POST /demo/ws-token``) and renders it into the page, which opens the
    WebSocket with it. No password reaches the browser. Anyone who can load the page gets a
    token for the demo channel, which is what the demo is for; a real frontend first checks who
    its user is.
    """

    name = "demo.notifications-page"

    def handle(self) -> None:
        from integration.services.websocket import request_host, websocket_url

        issued = self.invoke("zato.wsx.create-token", {"channel": DEMO_WEBSOCKET_CHANNEL})
        host = self.request.http.headers.get("Host")
        url = websocket_url(issued["path"], host)
        # For the curl example only: the address this page was loaded from, if it is one we answer to.
        address = host if request_host(host) else f"127.0.0.1:{settings.PORT}"
        http_base = f"{'https' if settings.HTTPS else 'http'}://{address}"
        nonce, page = notifications_page(issued["token"], url, http_base=http_base)
        self.response.content_type = "text/html; charset=utf-8"
        self.response.headers.update(page_headers(url, nonce))
        self.response.payload = page


def page_headers(url: str, nonce: str) -> dict[str, str]:
    """The page carries a live token: never cached, never framed, never sent on as a referrer, and
    its script (with this request's nonce) may connect to the channel's origin only."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src {origin}; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
    }


def notifications_page(token: str, url: str, *, http_base: str = "http://127.0.0.1:8000") -> tuple[str, str]:
    """The demo page for ``token`` and the channel's ``url``: (the CSP nonce, the HTML)."""
    nonce = secrets.token_urlsafe(16)
    html = (
        NOTIFICATIONS_PAGE.replace("@NONCE@", nonce)
        .replace("@TOKEN@", escape(token))
        .replace("@URL@", escape(url))
        .replace("@HTTP_BASE@", escape(http_base))
    )
    return nonce, html


# The script is the README's browser example (openChannel), plus what a person watching needs to see.
NOTIFICATIONS_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="switchboard-token" content="@TOKEN@">
<meta name="switchboard-url" content="@URL@">
<title>Switchboard demo: live notifications</title>
<style nonce="@NONCE@">
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 46em; padding: 0 1em; color: #222; }
  h1 { font-size: 1.4em; margin-bottom: .2em; }
  #status { padding: .4em .7em; border-radius: 4px; background: #eee; display: inline-block; }
  #status.connected { background: #dff3e3; color: #17612b; }
  #status.closed { background: #fbe3e3; color: #8a1c1c; }
  #notifications { list-style: none; padding: 0; }
  #notifications li { border-left: 4px solid #417690; background: #f4f8fa; margin: .5em 0; padding: .5em .8em; }
  #notifications time { color: #666; font-size: .85em; margin-right: .6em; }
  code, pre { background: #f3f3f3; border-radius: 3px; padding: .1em .3em; }
  pre { padding: .6em; overflow-x: auto; }
</style>
<h1>Live notifications</h1>
<p>This page got a WebSocket token from the platform on your behalf and opened
<code>@URL@</code> with it. A backend system raises a notification like this:</p>
<pre>curl -u backend:"$(cat var/demo-backend-password)" \\
     -H 'Content-Type: application/json' -d '{"text": "Order 1001 shipped"}' \\
     @HTTP_BASE@/demo/notify</pre>
<p id="status">Connecting...</p>
<ul id="notifications"></ul>
<script nonce="@NONCE@">
"use strict";
function openChannel(url, token, onPush, onStatus) {
  let socket, pinger, nextId = 1, ready;
  const pending = new Map();
  function connect() {
    socket = new WebSocket(url);
    ready = new Promise((resolve, reject) => {
      socket.onopen = () => socket.send(JSON.stringify({type: "auth", token}));
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "authenticated") {
          resolve();
          onStatus("connected", message);
          pinger = setInterval(() => socket.send(JSON.stringify({type: "ping"})), 30000);
        } else if (message.type === "push") {
          onPush(message.data, message.cid);
        } else if (message.type === "reply" && pending.has(message.id)) {
          const {done, fail} = pending.get(message.id);
          pending.delete(message.id);
          message.error ? fail(message.error) : done(message.response);
        } else if (message.type === "error") {
          console.warn("Switchboard:", message.status, message.error.details);
        }
      };
      socket.onclose = (event) => {
        clearInterval(pinger);
        reject(new Error("closed " + event.code));
        for (const {fail} of pending.values()) fail({details: "connection closed"});
        pending.clear();
        // 4005: disconnected on purpose; 4401, 4403, 4440: the token is no good, get a new page.
        const final = [4005, 4401, 4403, 4440].includes(event.code);
        onStatus("closed", {code: event.code, final});
        if (!final) setTimeout(connect, 2000);
      };
    });
    ready.catch(() => {});
  }
  connect();
  return {
    async request(payload, service) {
      await ready;
      const id = String(nextId++);
      return new Promise((done, fail) => {
        pending.set(id, {done, fail});
        socket.send(JSON.stringify(service ? {id, payload, service} : {id, payload}));
      });
    },
  };
}

const meta = (name) => document.querySelector('meta[name="' + name + '"]').content;
const status = document.getElementById("status");
window.demoChannel = openChannel(meta("switchboard-url"), meta("switchboard-token"), (data, cid) => {
  const item = document.createElement("li");
  item.dataset.receivedAt = String(Date.now());
  item.dataset.cid = cid;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, typeof data === "object" && data !== null && "text" in data
    ? String(data.text) + (data.from ? " (from " + data.from + ")" : "") : JSON.stringify(data));
  document.getElementById("notifications").prepend(item);
}, (state, info) => {
  status.className = state;
  status.dataset.clientId = info.client_id || "";
  status.textContent = state === "connected"
    ? "Connected as " + info.username + " (client " + info.client_id + "); waiting for notifications."
    : "Closed (code " + info.code + ")" + (info.final ? "." : "; reconnecting...");
});
</script>
</html>
"""
