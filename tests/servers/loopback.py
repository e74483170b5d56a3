"""The plumbing shared by the loopback HTTP servers: two listeners, test switches, a request log.

The OAuth token server, the REST backend and the FHIR server (``oauth``, ``rest_backend``,
``fhir``) are each an ``App`` served by a ``LoopbackServer``. The server opens two listeners
on 127.0.0.1:

* the **public** one (``url``): what the code under test calls. Every request on it is logged
  and goes through the switches a test can turn on: ``slow`` (answer late), ``fail`` (answer a
  given status), ``drop`` (read the request, close without answering) and ``down`` (the
  listening socket is closed and every open connection cut, so a client gets "connection
  refused", as from a stopped server; ``up`` binds the same port again).
* the **internal** one (``internal_url``): the control API (``/_control/...``) with which a
  test, in another process, turns switches, reads the log and asks the app for its state; and
  whatever the app serves to other test servers (the token server's introspection endpoint,
  which the backends call). The switches never touch it, so a backend keeps validating tokens
  while the token endpoint is down, and a test can always bring a server back.

The servers are built on the standard library's ``ThreadingHTTPServer`` (a thread per
connection, HTTP/1.1 keep-alive), because that is all a loopback test server needs and it
adds no dependency; the OAuth logic itself is authlib's (see ``oauth``). Every wait is
bounded (``MAX_WAIT``), and ``stop()`` releases waiting answers at once.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from email.message import Message
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

MAX_WAIT = 30.0  # seconds: no slow answer outlives a test run by much
MAX_BODY = 10 * 1024 * 1024  # bytes: a larger request body is refused with 413
LOGGED_BODY = 64 * 1024  # bytes of each request body kept in the request log
LOG_SIZE = 1000  # requests kept in the log (the oldest are dropped first)
IDLE_TIMEOUT = 60.0  # seconds an idle keep-alive connection is kept open
CONTROL_PREFIX = "/_control/"


@dataclass
class Request:
    """One HTTP request as a loopback server received it."""

    method: str
    path: str  # percent-decoded, without the query string
    query_string: str
    headers: Message  # case-insensitive ``get``
    body: bytes
    scheme: str  # "http" or "https"
    listener: str  # "public" or "internal"
    client: str = ""

    @cached_property
    def query(self) -> dict[str, list[str]]:
        """Query parameters, each with all its values in order (blank values kept)."""
        return parse_qs(self.query_string, keep_blank_values=True)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of query parameter ``name``."""
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-cased, without parameters ("" when none)."""
        return self.header("Content-Type").split(";")[0].strip().lower()

    @property
    def base_url(self) -> str:
        """``scheme://host[:port]`` as the client addressed this server (its Host header)."""
        return f"{self.scheme}://{self.header('Host') or '127.0.0.1'}"

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON (or not UTF-8)."""
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded``; ``ValueError`` when not UTF-8."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Response:
    """An answer: status, headers (in order, repeats allowed) and body bytes."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None, *,
                  content_type: str = "application/json") -> Response:
    """A JSON answer (``content_type`` lets FHIR say ``application/fhir+json``)."""
    body = json.dumps(data, default=str).encode()
    others = [(name, value) for name, value in headers or [] if name.lower() != "content-type"]
    return Response(status, body, [("Content-Type", content_type), *others])


def text_response(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, text.encode(), [("Content-Type", content_type)])


class App:
    """What a loopback server serves; the three servers subclass it. Defaults do nothing."""

    kind = "app"

    def handle(self, request: Request) -> Response:
        """Answer a request on the public listener."""
        return json_response(404, {"error": "not_found"})

    def handle_internal(self, request: Request) -> Response:
        """Answer a non-control request on the internal listener (other test servers call these)."""
        return json_response(404, {"error": "not_found"})

    def control(self, request: Request, action: str) -> Response | None:
        """Answer ``/_control/<action>`` for the app's own actions; None when ``action`` is not one."""
        return None

    def observe(self, request: Request) -> dict[str, Any] | None:
        """Called as a public request arrives, before any switch: count it; what it returns is logged."""
        return None

    def failure(self, status: int) -> Response:
        """The answer while the ``fail`` switch is on."""
        return json_response(status, {"error": "server_error", "error_description": f"switched to answer {status}"})

    def reset(self) -> None:
        """Back to the state the app started with."""


@dataclass
class Logged:
    """A public request as logged: what the test can assert on afterwards."""

    seq: int
    time: float
    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: str  # UTF-8 text (undecodable bytes replaced), first LOGGED_BODY bytes
    status: int | None = None  # None while unanswered, 0 when dropped
    extra: dict[str, Any] | None = None  # what the app's observe() said about it


def headers_dict(headers: Message) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        found[key] = f"{found[key]}, {value}" if key in found else value
    return found


class Switches:
    """What the test turned on: each with an optional count of requests after which it turns off."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()  # set to end every wait in progress at once
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self.slow: float = 0.0
            self.slow_times: int | None = None
            self.fail: int | None = None
            self.fail_times: int | None = None
            self.drop = False
            self.drop_times: int | None = None
        self.release_waits()

    def release_waits(self) -> None:
        """End every wait in progress now; the switches stay as they are."""
        with self.lock:
            old, self.release = self.release, threading.Event()
        old.set()

    def take(self) -> tuple[float, int | None, bool]:
        """The switches that apply to the request arriving now (counting it against ``times``)."""
        with self.lock:
            slow = self.slow
            if slow and self.slow_times is not None:
                self.slow_times -= 1
                if self.slow_times <= 0:
                    self.slow, self.slow_times = 0.0, None
            fail = self.fail
            if fail is not None and self.fail_times is not None:
                self.fail_times -= 1
                if self.fail_times <= 0:
                    self.fail, self.fail_times = None, None
            drop = self.drop
            if drop and self.drop_times is not None:
                self.drop_times -= 1
                if self.drop_times <= 0:
                    self.drop, self.drop_times = False, None
            return slow, fail, drop

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"slow": self.slow, "slow_times": self.slow_times, "fail": self.fail,
                    "fail_times": self.fail_times, "drop": self.drop, "drop_times": self.drop_times}


class _Listener(ThreadingHTTPServer):
    """One listening socket; TLS handshakes happen in the connection's thread, never in accept()."""

    daemon_threads = True
    block_on_close = False  # stop() must not wait for an answer that is still sleeping
    # socketserver's default backlog is 5: 50 clients connecting at once would see SYNs dropped
    # and retried a second later. Concurrency tests and benchmarks connect in bursts.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 owner: LoopbackServer, name: str, tls: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.name = name
        self.tls = tls
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (timeout tests), refuses our certificate (wrong-CA tests) or is
        # cut by down() is expected here: note it in one line, keep tracebacks for real bugs.
        error = sys.exc_info()[1]
        if isinstance(error, (OSError, ssl.SSLError, TimeoutError)):
            print(f"[{self.owner.app.kind}] {self.name}: connection ended: {error!r}", file=sys.stderr)
            return
        super().handle_error(request, client_address)

    def cut_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    server: _Listener
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT

    def setup(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.add(self.request)
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms on every answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.tls is not None:
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (OSError, ValueError):
                # finish() is not called when setup() fails: forget the connection here.
                with self.server.connections_lock:
                    self.server.open_connections.discard(self.request)
                raise
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.open_connections.discard(self.request)

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None when it is too large."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self._send(json_response(400, {"error": "bad Content-Length or chunked encoding"}), close=True)
            return
        if body is None:
            self._send(json_response(413, {"error": "request_too_large"}), close=True)
            return
        raw_path, _, query_string = self.path.partition("?")
        request = Request(
            method=self.command,
            path=unquote(raw_path),
            query_string=query_string,
            headers=self.headers,
            body=body,
            scheme="https" if self.server.tls is not None else "http",
            listener=self.server.name,
            client=self.client_address[0] if self.client_address else "",
        )
        response = self.server.owner.dispatch(request)
        if response is None:  # the drop switch: no answer at all
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(response)

    def _send(self, response: Response, close: bool = False) -> None:
        try:
            self.send_response(response.status)
            no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
            for name, value in response.headers:
                self.send_header(name, value)
            if response.status not in (204, 304) and response.status >= 200:
                self.send_header("Content-Length", str(len(response.body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if not no_body:
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client left (a timeout test): nothing to answer

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # tests read the request log instead
        pass


class LoopbackServer:
    """Serves ``app`` on two listeners of 127.0.0.1 (see the module docstring).

    ``port`` / ``internal_port`` 0 let the OS choose; ``tls`` (a server-side context) makes the
    public listener HTTPS (the internal one stays plain HTTP: it is test plumbing).
    """

    def __init__(self, app: App, *, port: int = 0, internal_port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls
        self.switches = Switches()
        self._requested_port = port
        self._internal_port = internal_port
        self._public: _Listener | None = None
        self._internal: _Listener | None = None
        self._threads: list[threading.Thread] = []
        self._log: deque[Logged] = deque(maxlen=LOG_SIZE)
        self._log_lock = threading.Lock()
        self._seq = 0
        self.port = 0
        self.is_down = False
        self.started = time.time()

    # --- Lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        assert self._internal is not None, "not started"
        return f"http://127.0.0.1:{self._internal.server_address[1]}"

    def start(self) -> LoopbackServer:
        self._internal = self._listen(self._internal_port, "internal", None)
        self._public = self._listen(self._requested_port, "public", self.tls)
        self.port = self._public.server_address[1]
        return self

    def _listen(self, port: int, name: str, tls: ssl.SSLContext | None) -> _Listener:
        listener = _Listener(("127.0.0.1", port), _Handler, self, name, tls)
        thread = threading.Thread(target=listener.serve_forever, args=(0.05,), name=f"{self.app.kind}-{name}",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        return listener

    def down(self) -> None:
        """Close the public listening socket and cut its open connections: clients get "refused"."""
        if self._public is not None:
            self._public.shutdown()
            self._public.server_close()
            self._public.cut_connections()
            self._public = None
        self.switches.release_waits()  # their connections are cut: nobody would read those answers
        self.is_down = True

    def up(self) -> None:
        """Listen on the same public port again (raises OSError if another process took it meanwhile)."""
        if self._public is None:
            self._public = self._listen(self.port, "public", self.tls)
        self.is_down = False

    def stop(self) -> None:
        """Stop both listeners; answers still waiting are released at once. Safe to call twice."""
        self.switches.clear()
        for listener in (self._public, self._internal):
            if listener is not None:
                listener.shutdown()
                listener.server_close()
                listener.cut_connections()
        self._public = self._internal = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Requests -------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response | None:
        """The answer to ``request`` (None: close without one). Never raises: a bug here is a 500."""
        try:
            if request.listener == "internal":
                if request.path.startswith(CONTROL_PREFIX):
                    return self._control(request, request.path[len(CONTROL_PREFIX):])
                return self.app.handle_internal(request)
            return self._public_answer(request)
        except Exception:  # a bug in a test server must show in its log, and the client gets a 500
            traceback.print_exc()
            return json_response(500, {"error": "server_error", "error_description": "bug in the test server"})

    def _public_answer(self, request: Request) -> Response | None:
        extra = self.app.observe(request)
        with self._log_lock:
            self._seq += 1
            entry = Logged(self._seq, time.time(), request.method, request.path, request.query_string,
                           headers_dict(request.headers), request.body[:LOGGED_BODY].decode("utf-8", "replace"),
                           extra=extra)
            self._log.append(entry)
        slow, fail, drop = self.switches.take()
        if slow:
            self.switches.release.wait(min(slow, MAX_WAIT))
        if drop:
            entry.status = 0
            return None
        response = self.app.failure(fail) if fail is not None else self.app.handle(request)
        entry.status = response.status
        return response

    def requests(self, path_prefix: str = "") -> list[Logged]:
        with self._log_lock:
            return [entry for entry in self._log if entry.path.startswith(path_prefix)]

    # --- The control API ------------------------------------------------------------------------

    def _control(self, request: Request, action: str) -> Response:
        try:
            data = request.json() if request.body else {}
        except ValueError:
            return json_response(400, {"error": "the control API takes a JSON body"})
        if not isinstance(data, dict):
            return json_response(400, {"error": "the control API takes a JSON object"})
        try:
            answer = self._common_control(request, action, data)
            if answer is None:
                answer = self.app.control(request, action)
        except (TypeError, ValueError, KeyError) as exc:  # a test sent fields the action does not take
            return json_response(400, {"error": f"bad control request: {exc!r}"})
        if answer is None:
            return json_response(404, {"error": f"no control action {action!r}"})
        return answer

    def _common_control(self, request: Request, action: str, data: dict[str, Any]) -> Response | None:
        switches = self.switches
        if action == "health":
            return json_response(200, self.health())
        if action == "requests":
            entries = self.requests(request.arg("path") or "")
            return json_response(200, [asdict(entry) for entry in entries])
        if request.method != "POST":
            return None
        if action == "slow":
            with switches.lock:
                switches.slow = float(data.get("seconds", 0))
                switches.slow_times = data.get("times")
            if not switches.slow:
                switches.release_waits()
        elif action == "fail":
            with switches.lock:
                switches.fail = data.get("status")
                switches.fail_times = data.get("times")
        elif action == "drop":
            with switches.lock:
                switches.drop = bool(data.get("on", True))
                switches.drop_times = data.get("times")
        elif action == "down":
            self.down()
        elif action == "up":
            self.up()
        elif action == "clear":
            self.up()
            switches.clear()
        elif action == "reset":
            self.up()
            switches.clear()
            with self._log_lock:
                self._log.clear()
            self.app.reset()
        else:
            return None
        return json_response(200, self.health())

    def health(self) -> dict[str, Any]:
        return {"kind": self.app.kind, "url": self.url, "internal_url": self.internal_url, "down": self.is_down,
                "switches": self.switches.state()}
