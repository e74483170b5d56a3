"""The test side of the loopback HTTP servers: start each in its own process, drive its control API.

``OAuthServer``, ``RestBackend`` and ``FhirServer`` each start ``python -m
tests.servers.serve_http`` (a ``ManagedProcess``) on two free ports of 127.0.0.1 and wait,
bounded, until its control API answers. Because a server is a process of its own, a test can
kill it (``kill()``), and the Django code under test (in the pytest process or in a gunicorn
worker) talks to it over real sockets. ``HttpServers`` starts each kind once, on first use,
and stops them all at the end: the session fixtures in ``http_fixtures`` are built on it.

The cast the token server knows from the start: the resource servers ``rest-backend`` and
``fhir-backend`` (which may introspect any token: the backends use them) and ``switchboard``,
a client allowed every scope in ``SCOPES`` by both authentication methods. Tests that count
token requests register a client of their own (``add_client``), so counts never mix.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.servers import client
from tests.servers.procs import REPO_ROOT, ManagedProcess, free_port
from tests.servers.serve_http import CONFIG_ENV, PORT_TAKEN_EXIT
from tests.servers.tls import LoopbackCA, make_loopback_ca

SCOPES = ["customers:read", "customers:write", "billing:read", "fhir"]
CLIENT_ID, CLIENT_SECRET = "switchboard", "switchboard-client-secret-0001"
REST_RS = ("rest-backend", "rest-backend-introspection-secret")
FHIR_RS = ("fhir-backend", "fhir-backend-introspection-secret")
BASIC_USER, BASIC_PASSWORD = "backend-user", "backend-Pa55word"
API_KEY_HEADER, API_KEY = "X-API-Key", "backend-api-key-0001"
ISSUER = "https://oauth.loopback.test"
START_TIMEOUT = 20.0  # seconds for a server process to answer its control API


class ControlError(RuntimeError):
    """The control API refused a request (the message has its answer)."""


@dataclass(frozen=True)
class OAuthClient:
    """A client registered at the token server."""

    client_id: str
    client_secret: str
    scopes: list[str] = field(default_factory=list)
    expires_in: int = 3600
    auth_methods: list[str] = field(default_factory=lambda: ["client_secret_basic", "client_secret_post"])

    @property
    def basic_auth(self) -> tuple[str, str]:
        return self.client_id, self.client_secret


class LoopbackProcess:
    """One loopback server process: start, stop, kill, and its control API."""

    kind = ""

    def __init__(self, app_config: dict[str, Any], *, log_dir: Path, tls: LoopbackCA | None = None,
                 name: str = "", max_lifetime: float = 3600) -> None:
        self.app_config = app_config
        self.log_dir = Path(log_dir)
        self.tls = tls
        self.name = name or self.kind
        self.max_lifetime = max_lifetime
        self.process: ManagedProcess | None = None
        self.port = 0
        self.internal_port = 0

    # --- Lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The public listener: what the code under test calls."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        """The internal listener: the control API (and introspection, on the token server)."""
        return f"http://127.0.0.1:{self.internal_port}"

    def start(self) -> LoopbackProcess:
        """Start the process and wait until it serves; on a port taken meanwhile, try new ports."""
        for attempt in range(3):
            self.port, self.internal_port = free_port(), free_port()
            config = {"kind": self.kind, "port": self.port, "internal_port": self.internal_port,
                      "app": self.app_config, "max_lifetime": self.max_lifetime,
                      "tls": {"cert": str(self.tls.server_cert), "key": str(self.tls.server_key)} if self.tls else None}
            env = {**os.environ, CONFIG_ENV: json.dumps(config), "PYTHONUNBUFFERED": "1"}
            self.process = ManagedProcess([sys.executable, "-m", "tests.servers.serve_http"], env=env, cwd=REPO_ROOT,
                                          log_path=self.log_dir / f"{self.name}-{attempt}.log").start()
            exit_code = self._wait_ready()
            if exit_code is None:
                return self
            self.process.stop()
            if exit_code != PORT_TAKEN_EXIT:
                break
        raise RuntimeError(f"the {self.name} server did not start; its log:\n{self.log_tail()}")

    def _wait_ready(self) -> int | None:
        """None once the control API answers; the exit code if the process ended first."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            reply = client.try_get(f"{self.internal_url}/_control/health", timeout=1)
            if reply is not None and reply.status == 200:
                return None
            time.sleep(0.03)
        return -1

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period (``ManagedProcess.stop``). Safe to call twice."""
        if self.process is not None:
            self.process.stop(grace=5)

    def kill(self) -> None:
        """SIGKILL the server at once, as a crash would end it: its ports stop answering."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process is not None else ""

    def __enter__(self) -> LoopbackProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- The control API ------------------------------------------------------------------------

    def control(self, method: str, action: str, data: dict[str, Any] | None = None,
                query: str = "") -> Any:
        """Call ``/_control/<action>`` and return its JSON answer; ``ControlError`` if refused."""
        url = f"{self.internal_url}/_control/{action}" + (f"?{query}" if query else "")
        reply = client.request(method, url, json=data if data is not None else ({} if method == "POST" else None),
                               timeout=10)
        if reply.status >= 300:
            raise ControlError(f"{method} {action} -> {reply.status}: {reply.text}")
        return reply.json()

    def slow(self, seconds: float, times: int | None = None) -> None:
        """Answer every public request (or the next ``times``) ``seconds`` late (at most 30 s)."""
        self.control("POST", "slow", {"seconds": seconds, "times": times})

    def fail(self, status: int = 500, times: int | None = None) -> None:
        """Answer every public request (or the next ``times``) with ``status`` instead."""
        self.control("POST", "fail", {"status": status, "times": times})

    def drop(self, times: int | None = None) -> None:
        """Close the connection without answering (every request, or the next ``times``)."""
        self.control("POST", "drop", {"on": True, "times": times})

    def down(self) -> None:
        """Stop listening on the public port: connections are refused until ``up()``."""
        self.control("POST", "down")

    def up(self) -> None:
        self.control("POST", "up")

    def clear(self) -> None:
        """Every switch off (and up again), state kept."""
        self.control("POST", "clear")

    def reset(self) -> None:
        """Switches off, request log emptied, the app back to its initial state."""
        self.control("POST", "reset")

    def health(self) -> dict[str, Any]:
        return self.control("GET", "health")

    def requests(self, path: str = "") -> list[dict[str, Any]]:
        """The public requests logged since the last reset (path starting with ``path``), oldest first."""
        return self.control("GET", "requests", query=f"path={path}" if path else "")

    def last_request(self, path: str = "") -> dict[str, Any]:
        logged = self.requests(path)
        if not logged:
            raise AssertionError(f"the {self.name} server has logged no request to {path or 'any path'}")
        return logged[-1]


class OAuthServer(LoopbackProcess):
    """The token server (``tests.servers.oauth``)."""

    kind = "oauth"

    def __init__(self, *, log_dir: Path, tls: LoopbackCA | None = None, name: str = "oauth",
                 clients: list[dict[str, Any]] | None = None) -> None:
        cast = [
            {"client_id": REST_RS[0], "client_secret": REST_RS[1], "may_introspect": True},
            {"client_id": FHIR_RS[0], "client_secret": FHIR_RS[1], "may_introspect": True},
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": SCOPES},
        ]
        super().__init__({"issuer": ISSUER, "clients": [*cast, *(clients or [])]}, log_dir=log_dir, tls=tls,
                         name=name)

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def introspection_url(self) -> str:
        """Introspection on the internal listener: the backends' path, never switched off."""
        return f"{self.internal_url}/introspect"

    def add_client(self, client_id: str | None = None, client_secret: str | None = None, *,
                   scopes: list[str] | None = None, expires_in: int = 3600,
                   auth_methods: list[str] | None = None, may_introspect: bool = False) -> OAuthClient:
        """Register a client (a random id and secret unless given) and return its credentials."""
        data = {"client_id": client_id or f"client-{secrets.token_hex(4)}",
                "client_secret": client_secret or secrets.token_urlsafe(16),
                "scopes": list(SCOPES if scopes is None else scopes), "expires_in": expires_in,
                "auth_methods": auth_methods or ["client_secret_basic", "client_secret_post"],
                "may_introspect": may_introspect}
        self.control("POST", "clients", data)
        data.pop("may_introspect")
        return OAuthClient(**data)

    def fetch_token(self, oauth_client: OAuthClient, *, scope: str | None = None, method: str = "basic",
                    **extra: str) -> dict[str, Any]:
        """Get a token as a client library would (``method``: basic or post); raises on an error answer."""
        form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {}), **extra}
        auth = None
        if method == "basic":
            auth = oauth_client.basic_auth
        else:
            form.update(client_id=oauth_client.client_id, client_secret=oauth_client.client_secret)
        verify = str(self.tls.ca_cert) if self.tls else True
        response = requests.post(self.token_url, data=form, auth=auth, timeout=5, verify=verify)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        """``token_requests`` and ``tokens_issued`` per client id, ``introspections``, ``active_tokens``."""
        return self.control("GET", "stats")

    def token_request_count(self, client_id: str) -> int:
        return self.stats()["token_requests"].get(client_id, 0)

    def tokens_issued(self, client_id: str) -> int:
        return self.stats()["tokens_issued"].get(client_id, 0)

    def token_requests(self, client_id: str | None = None) -> list[dict[str, Any]]:
        """Each token request: ``client_id``, ``auth_method``, ``headers``, ``form``, ``status``, ``error``."""
        return self.control("GET", "token-requests", query=f"client_id={client_id}" if client_id else "")

    def last_token_request(self, client_id: str | None = None) -> dict[str, Any]:
        found = self.token_requests(client_id)
        if not found:
            raise AssertionError(f"no token request from {client_id or 'any client'}")
        return found[-1]

    def tokens(self) -> list[dict[str, Any]]:
        return self.control("GET", "tokens")

    def revoke(self, token: str) -> int:
        """Revoke one token: the backends answer 401 for it from now on."""
        return self.control("POST", "revoke", {"token": token})["changed"]

    def revoke_client(self, client_id: str) -> int:
        return self.control("POST", "revoke", {"client_id": client_id})["changed"]

    def revoke_all(self) -> int:
        return self.control("POST", "revoke", {"all": True})["changed"]

    def expire(self, token: str) -> int:
        """Make a token expire now, as if its ``expires_in`` had passed (no waiting in the test)."""
        return self.control("POST", "expire", {"token": token})["changed"]

    def expire_all(self) -> int:
        return self.control("POST", "expire", {"all": True})["changed"]


def _security(mode: str, oauth: OAuthServer | None, resource_server: tuple[str, str], **options: str,
              ) -> dict[str, Any]:
    security: dict[str, Any] = {"mode": mode, **options}
    if mode == "basic":
        security.update(username=BASIC_USER, password=BASIC_PASSWORD)
    elif mode == "apikey":
        security.update(api_key_header=API_KEY_HEADER, api_key=API_KEY)
    elif mode == "oauth":
        if oauth is None:
            raise ValueError("OAuth security needs the token server")
        security.update(introspection_url=oauth.introspection_url, introspection_client_id=resource_server[0],
                        introspection_client_secret=resource_server[1])
    return security


class RestBackend(LoopbackProcess):
    """The REST backend (``tests.servers.rest_backend``) with one kind of security."""

    kind = "rest"

    def __init__(self, *, log_dir: Path, security: str = "oauth", oauth: OAuthServer | None = None,
                 tls: LoopbackCA | None = None, name: str = "", audience: str = "", required_scope: str = "") -> None:
        self.security = security
        config = {"security": _security(security, oauth, REST_RS, realm="rest-backend", audience=audience,
                                        required_scope=required_scope)}
        super().__init__(config, log_dir=log_dir, tls=tls, name=name or f"rest-{security}{'-tls' if tls else ''}")

    basic_auth = (BASIC_USER, BASIC_PASSWORD)
    api_key_header, api_key = API_KEY_HEADER, API_KEY


class FhirServer(LoopbackProcess):
    """The FHIR R4 server (``tests.servers.fhir``); ``base_url`` is what a FHIR client is given."""

    kind = "fhir"

    def __init__(self, *, log_dir: Path, security: str = "oauth", oauth: OAuthServer | None = None,
                 tls: LoopbackCA | None = None, name: str = "", base_path: str = "/fhir") -> None:
        self.security = security
        self.base_path = base_path
        config = {"base_path": base_path, "token_url": oauth.token_url if oauth else "",
                  "security": _security(security, oauth, FHIR_RS, realm="fhir")}
        super().__init__(config, log_dir=log_dir, tls=tls, name=name or f"fhir-{security}{'-tls' if tls else ''}")

    @property
    def base_url(self) -> str:
        return self.url + self.base_path

    basic_auth = (BASIC_USER, BASIC_PASSWORD)


class HttpServers:
    """Starts each server once, on first use, in ``log_dir``; ``stop_all()`` stops them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self._ca: LoopbackCA | None = None
        self._servers: dict[tuple[Any, ...], LoopbackProcess] = {}

    @property
    def ca(self) -> LoopbackCA:
        """The test CA, made on first use."""
        if self._ca is None:
            self._ca = make_loopback_ca(self.log_dir / "tls")
        return self._ca

    def _get(self, key: tuple[Any, ...], make: Any) -> Any:
        """The server for ``key``, started now if it is not running (a test may have killed it)."""
        server = self._servers.get(key)
        if server is None or not server.running():
            if server is not None and key == ("oauth",):
                # The backends introspect at the old token server's address: they go with it.
                for other in [other for other in self._servers if other[-1] == "oauth"]:
                    self._servers.pop(other).stop()
            server = self._servers[key] = make().start()
        return server

    def oauth(self) -> OAuthServer:
        return self._get(("oauth",), lambda: OAuthServer(log_dir=self.log_dir))

    def rest(self, security: str = "oauth", *, tls: bool = False, audience: str = "") -> RestBackend:
        """The REST backend with ``security`` (none, basic, apikey, oauth); ``audience`` for OAuth only."""
        oauth = self.oauth() if security == "oauth" else None
        return self._get(("rest", tls, audience, security), lambda: RestBackend(
            log_dir=self.log_dir, security=security, oauth=oauth, tls=self.ca if tls else None, audience=audience,
            name=f"rest-{security}{'-tls' if tls else ''}{'-aud' if audience else ''}"))

    def fhir(self, security: str = "oauth", *, tls: bool = False) -> FhirServer:
        """The FHIR server with ``security`` (none, basic, oauth)."""
        oauth = self.oauth() if security == "oauth" else None
        return self._get(("fhir", tls, security), lambda: FhirServer(
            log_dir=self.log_dir, security=security, oauth=oauth, tls=self.ca if tls else None))

    def stop_all(self) -> None:
        servers = list(self._servers.values())
        for server in servers:  # SIGTERM all first, so they shut down side by side
            if server.running():
                assert server.process is not None
                server.process.send_signal(signal.SIGTERM)
        for server in reversed(servers):
            server.stop()
        self._servers.clear()
