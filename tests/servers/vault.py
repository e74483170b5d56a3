"""``FakeVault``: a loopback HTTP server that answers the parts of Vault's API Switchboard uses.

No Vault server can be installed here, so the tests drive the real hvac client against
this one. It follows Vault's documented HTTP API for the three login paths:

* ``POST /v1/auth/token/lookup`` (``X-Vault-Token`` of a token allowed to look others up,
  body ``{"token": ...}``) and ``GET /v1/auth/token/lookup-self``: ``{"data": {...}}``;
  an unknown token is 403 ``{"errors": ["bad token"]}``, a caller without the right 403
  ``{"errors": ["permission denied"]}``;
* ``POST /v1/auth/<mount>/login/<username>`` with ``{"password": ...}`` (userpass);
* ``POST /v1/auth/<mount>/login`` with ``{"token": ...}`` (GitHub, on a GitHub mount);
* ``GET`` / ``HEAD /v1/sys/health``, answered as Vault documents it: 200 when initialized,
  unsealed and active, 429 for an unsealed standby, 501 when not initialized, 503 when
  sealed (the codes can be changed with ``activecode``, ``standbycode``, ``sealedcode``,
  ``uninitcode`` and ``standbyok``), with the JSON body Vault sends (``initialized``,
  ``sealed``, ``standby``, ``version``, ``cluster_name``...). Set ``sealed``, ``standby`` or
  ``initialized`` to change the state; a sealed Vault answers every other path 503.

Logins answer Vault's ``auth`` block and issue a fresh client token, which can then be
looked up like any other; bad credentials are 400 with Vault's message, unknown paths 404
``{"errors": []}``. Every request is recorded (``requests``) so tests can assert what
hvac sent, and ``fail_with`` / ``hang`` make it answer 5xx or stall, for outage tests.
It binds 127.0.0.1 on a port the OS picks, so parallel tests never collide.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

MAX_HANG = 30.0  # seconds: a hanging answer never outlives a test run by much


@dataclass
class Recorded:
    """One request as Vault received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Token:
    data: dict[str, Any]
    may_look_up_others: bool = False


@dataclass
class _Login:
    """A userpass user or a GitHub token that may log in at one mount."""

    secret: str
    username: str
    policies: list[str] = field(default_factory=lambda: ["default"])
    lease_duration: int = 2764800
    metadata: dict[str, str] = field(default_factory=dict)


class FakeVault:
    """Start with ``start()`` (or use as a context manager); ``url`` is then where hvac should go."""

    def __init__(self) -> None:
        self.tokens: dict[str, _Token] = {}
        self.userpass: dict[tuple[str, str], _Login] = {}  # (mount, username)
        self.github: dict[tuple[str, str], _Login] = {}  # (mount, GitHub token)
        self.github_mounts: set[str] = {"github"}
        self.requests: list[Recorded] = []
        self.fail_with: int | None = None  # answer every request with this status (500, 503...)
        self.hang: float = 0.0  # seconds to stall before answering
        self.initialized = True
        self.sealed = False
        self.standby = False
        self.version = "1.17.2"
        self.cluster_name = "vault-cluster-test"
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tls = False

    # --- Setting up what Vault knows -------------------------------------------------------------

    def add_token(
        self,
        token: str,
        *,
        policies: list[str] | None = None,
        display_name: str = "token",
        meta: dict[str, str] | None = None,
        ttl: int = 2764800,
        may_look_up_others: bool = False,
    ) -> None:
        data = {
            "id": token,
            "accessor": "acc-" + secrets.token_hex(6),
            "policies": policies or ["default"],
            "ttl": ttl,
            "creation_ttl": ttl,
            "display_name": display_name,
            "meta": meta,
            "path": "auth/token/create",
            "renewable": ttl > 0,
            "type": "service",
            "orphan": False,
            "num_uses": 0,
        }
        with self._lock:
            self.tokens[token] = _Token(data, may_look_up_others)

    def add_user(self, username: str, password: str, *, mount: str = "userpass",
                 policies: list[str] | None = None, lease_duration: int = 2764800) -> None:
        with self._lock:
            self.userpass[(mount, username)] = _Login(password, username, policies or ["default"], lease_duration,
                                                      {"username": username})

    def add_github(self, github_token: str, username: str, *, mount: str = "github", org: str = "example-org",
                   policies: list[str] | None = None, lease_duration: int = 3600) -> None:
        with self._lock:
            self.github_mounts.add(mount)
            self.github[(mount, github_token)] = _Login(github_token, username, policies or ["default"],
                                                        lease_duration, {"username": username, "org": org})

    def calls(self, path_prefix: str = "/v1/") -> list[Recorded]:
        with self._lock:
            return [item for item in self.requests if item.path.startswith(path_prefix)]

    def reset_calls(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- Lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeVault is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, tls: ssl.SSLContext | None = None) -> FakeVault:
        """Serve on a free port of 127.0.0.1; with ``tls`` (a server-side context), serve HTTPS."""
        vault = self

        class Handler(_Handler):
            fake = vault

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._tls = tls is not None
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-vault",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; answers still stalling in ``hang`` are released at once. Safe to call twice."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeVault:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Vault's answers -------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any,
               query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        if self.fail_with is not None:
            return self.fail_with, {"errors": ["Vault is sealed" if self.fail_with == 503 else "internal error"]}
        if path == "/v1/sys/health" and method in ("GET", "HEAD"):
            return self._health(query or {})
        if self.sealed:
            return 503, {"errors": ["Vault is sealed"]}
        caller = headers.get("x-vault-token", "")
        if path == "/v1/auth/token/lookup" and method == "POST":
            looker = self.tokens.get(caller)
            if looker is None or not looker.may_look_up_others:
                return 403, {"errors": ["permission denied"]}
            wanted = body.get("token") if isinstance(body, dict) else None
            found = self.tokens.get(wanted) if isinstance(wanted, str) else None
            if found is None:
                return 403, {"errors": ["bad token"]}
            return 200, self._envelope(data=found.data)
        if path == "/v1/auth/token/lookup-self" and method == "GET":
            found = self.tokens.get(caller)
            if found is None:
                return 403, {"errors": ["permission denied"]}
            return 200, self._envelope(data=found.data)
        parts = path.split("/")
        # /v1/auth/<mount...>/login/<username>: userpass; /v1/auth/<mount...>/login: GitHub
        if method == "POST" and len(parts) >= 5 and parts[:3] == ["", "v1", "auth"]:
            if parts[-1] == "login":
                mount = "/".join(parts[3:-1])
                if mount in self.github_mounts:
                    return self._github_login(mount, body)
            elif parts[-2] == "login":
                mount = "/".join(parts[3:-2])
                return self._userpass_login(mount, parts[-1], body)
        return 404, {"errors": []}

    def _health(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Vault's health answer: the status code says the state, the body repeats it."""
        body = {
            "initialized": self.initialized,
            "sealed": self.sealed,
            "standby": self.standby,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": self.version,
            "cluster_name": self.cluster_name,
            "cluster_id": "2b9a9ab1-6f4d-4c1e-9a55-3f0b0a4c1d2e",
        }

        def code(name: str, default: int) -> int:
            value = query.get(name, "")
            return int(value) if value.isdigit() else default

        if not self.initialized:
            return code("uninitcode", 501), body
        if self.sealed:
            return code("sealedcode", 503), body
        if self.standby and query.get("standbyok", "").lower() not in ("true", "1"):
            return code("standbycode", 429), body
        return code("activecode", 200), body

    def _userpass_login(self, mount: str, username: str, body: Any) -> tuple[int, dict[str, Any]]:
        if not any(key[0] == mount for key in self.userpass):
            return 404, {"errors": [f"no handler for route \"auth/{mount}/login/{username}\". route entry not found."]}
        password = body.get("password") if isinstance(body, dict) else None
        user = self.userpass.get((mount, username))
        if user is None or not isinstance(password, str) or not secrets.compare_digest(password.encode(),
                                                                                       user.secret.encode()):
            return 400, {"errors": ["invalid username or password"]}
        return 200, self._issue(user, f"{mount}-{username}")

    def _github_login(self, mount: str, body: Any) -> tuple[int, dict[str, Any]]:
        token = body.get("token") if isinstance(body, dict) else None
        user = self.github.get((mount, token)) if isinstance(token, str) else None
        if user is None:
            return 400, {"errors": ["user is not part of required org"]}
        return 200, self._issue(user, f"{mount}-{user.username}")

    def _issue(self, login: _Login, display_name: str) -> dict[str, Any]:
        client_token = "hvs." + secrets.token_urlsafe(18)
        self.add_token(client_token, policies=login.policies, display_name=display_name, meta=login.metadata,
                       ttl=login.lease_duration)
        auth = {
            "client_token": client_token,
            "accessor": self.tokens[client_token].data["accessor"],
            "policies": login.policies,
            "token_policies": login.policies,
            "metadata": login.metadata,
            "lease_duration": login.lease_duration,
            "renewable": True,
            "entity_id": "",
            "token_type": "service",
            "orphan": True,
        }
        return self._envelope(auth=auth)

    @staticmethod
    def _envelope(*, data: Any = None, auth: Any = None) -> dict[str, Any]:
        return {
            "request_id": secrets.token_hex(8),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": auth,
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeVault
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Vault's Go server has: the body is a second write after the headers, which
    # Nagle's algorithm held until the client's delayed ACK, 40 ms later, making every login ~44 ms.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("latin-1")
        headers = {key.lower(): value for key, value in self.headers.items()}
        path, _, query_text = self.path.partition("?")
        query = {key: values[-1] for key, values in parse_qs(query_text).items()}
        with self.fake._lock:
            self.fake.requests.append(Recorded(self.command, path, headers, body))
        if self.fake.hang:
            self.fake._release.wait(min(self.fake.hang, MAX_HANG))
        status, answer = self.fake.answer(self.command, path, headers, body, query)
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test): nothing to answer

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass
