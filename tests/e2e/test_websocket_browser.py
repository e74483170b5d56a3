"""The seed's flow end to end, in headless Chromium, across two daphne processes on the Redis channel layer.

1. The frontend application (a small HTTP server in this test, on its own origin) asks the
   platform for a token over REST, with its own Basic Auth credentials (``POST
   /demo/ws-token`` on daphne A), and serves the browser a page carrying the token.
2. The page opens the WebSocket on daphne A with the token. A second browser page loads the
   platform's own demo page (``GET /demo/notifications`` on daphne A), which does the same
   server-side.
3. A backend system calls ``POST /demo/notify`` on daphne B with its credentials; the service
   pushes through Redis, and the notification must appear on both pages within a second (timed on
   the backend's second call: its first one pays for the password hash).
4. An administrator, logged in (password and TOTP code) on daphne B, sees both browsers in the
   live list of connected clients and disconnects one: that page shows the close code 4005.

The daphne command line is ``manage.py serve``'s own (``daphne_argv``). The demo is set up by
``manage.py bootstrap``, with its passwords given as the environment would give them.
Screenshots: ``var/screenshots/websocket-demo.png`` and ``websocket-clients.png``.
"""

from __future__ import annotations

import io
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from playwright.sync_api import Browser, Page, expect

from integration.management.commands.serve import daphne_argv
from integration.services.demo import notifications_page, page_headers
from tests.browser import conftest as browser_fixtures
from tests.browser.conftest import DESKTOP, TIMEOUT_MS
from tests.servers import client
from tests.servers.procs import ManagedProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FRONTEND_PASSWORD = "e2e-frontend-secret-1"
BACKEND_PASSWORD = "e2e-backend-secret-1"
ALICE_PASSWORD = "e2e-alice-password-1"
_PORT_TAKEN = "Address already in use"

# The browser tests' fixtures (one Chromium per module, the real login form, screenshots), by name.
_async_unsafe_allowed = browser_fixtures._async_unsafe_allowed
browser = browser_fixtures.browser
codes = browser_fixtures.codes
admin_login = browser_fixtures.admin_login
shot = browser_fixtures.shot


class Daphne:
    """One daphne process started as ``manage.py serve`` starts it, on a free port of 127.0.0.1.

    ``origin``: another page origin allowed to open sockets (the frontend's), as an operator lists
    it in ``WEBSOCKET_ALLOWED_ORIGINS``, beside this daphne's own pages.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, name: str, origin: str) -> None:
        self.env, self.log_dir, self.name, self.origin = env, log_dir, name, origin
        self.port = 0
        self.process: ManagedProcess | None = None
        self.attempt = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Daphne:
        self.port = free_port()
        self.attempt += 1
        # WEBSOCKET_PORT: the pages this process serves point browsers at its own port.
        env = {**self.env, "WEBSOCKET_PORT": str(self.port),
               "WEBSOCKET_ALLOWED_ORIGINS": f"{self.origin},{self.base_url}"}
        self.process = ManagedProcess(daphne_argv(sys.executable, self.port, 1024 * 1024), env=env,
                                      log_path=self.log_dir / f"{self.name}-{self.attempt}.log").start()
        return self

    def ready(self, deadline: float) -> bool:
        """Wait until /healthz answers 200 (database up, snapshot loaded); relaunch if the port was taken."""
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if _PORT_TAKEN in self.process.log_text() and self.attempt < 3:
                    self.launch()
                    continue
                return False
            reply = client.try_get(self.base_url + "/healthz", timeout=2)
            if reply is not None and reply.status == 200:
                return True
            time.sleep(0.05)
        return False

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process is not None else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=8)


@pytest.fixture
def frontend_port() -> int:
    """The frontend's port, chosen first: the platform must list the frontend's origin."""
    return free_port()


@pytest.fixture
def daphnes(server_env: dict[str, str], tmp_path: Path, settings: Any,
            frontend_port: int) -> Iterator[tuple[Daphne, Daphne]]:
    """Two daphne processes on the test database and one Redis channel layer (a prefix of their own)."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (make test sets REDIS_URL)")
    env = {key: value for key, value in server_env.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update({"CHANNEL_LAYER_PREFIX": f"test-e2e-{uuid.uuid4().hex[:12]}", "ADMIN_REQUIRE_TOTP": "true",
                "WEBSOCKET_PUBLIC_URL": "", "WEBSOCKET_ALLOWED_ORIGINS": ""})
    origin = f"http://127.0.0.1:{frontend_port}"
    pair = (Daphne(env, tmp_path / "logs", "daphne-a", origin), Daphne(env, tmp_path / "logs", "daphne-b", origin))
    try:
        for server in pair:  # both start at once: each spends a second or two importing Django
            server.launch()
        deadline = time.monotonic() + 45
        for server in pair:
            assert server.ready(deadline), f"{server.name} did not serve in time:\n{server.log_tail()}"
        yield pair
    finally:
        for server in pair:
            server.stop()
            print(f"--- {server.name} (port {server.port}), end of its log:\n{server.log_tail()}")  # shown on failure


@pytest.fixture
def frontend(daphnes: tuple[Daphne, Daphne], frontend_port: int) -> Iterator[str]:
    """The frontend application: serves a page with a token it got over REST with its own credentials."""
    platform = daphnes[0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issued = client.request("POST", platform.base_url + "/demo/ws-token",
                                    json={"channel": "demo.notifications"},
                                    headers=client.basic_auth("frontend", FRONTEND_PASSWORD))
            if issued.status != 200:
                self.send_error(502, f"token service answered {issued.status}")
                return
            body = issued.json()
            nonce, html = notifications_page(body["token"], body["url"], http_base=platform.base_url)
            payload = html.encode()
            self.send_response(200)
            for name, value in {**page_headers(body["url"], nonce), "Content-Type": "text/html; charset=utf-8",
                                "Content-Length": str(len(payload))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", frontend_port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def demo(settings: Any, builtins: None) -> None:
    """What `make run` sets up (`manage.py bootstrap`), the demo's passwords from the environment."""
    settings.ADMIN_PASSWORD, settings.ADMIN_REQUIRE_TOTP = "e2e-unused-admin-password", False
    settings.DEMO_FRONTEND_PASSWORD, settings.DEMO_BACKEND_PASSWORD = FRONTEND_PASSWORD, BACKEND_PASSWORD
    call_command("bootstrap", stdout=io.StringIO())


@pytest.fixture
def alice_for_servers(totp_device: Callable[..., Any]) -> bytes:
    """Alice, an administrator the servers can check: PBKDF2 (this process hashes with MD5), and a TOTP key."""
    hasher = PBKDF2PasswordHasher()
    alice = get_user_model().objects.create_superuser("alice", "alice@example.com", None)
    alice.password = hasher.encode(ALICE_PASSWORD, hasher.salt())
    alice.save(update_fields=["password"])
    _device, key = totp_device(alice)
    return key


def open_page(browser: Browser, base_url: str, path: str = "/") -> Page:
    context = browser.new_context(base_url=base_url, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(path)
    return page


def connected_client_id(page: Page) -> str:
    status = page.locator("#status")
    expect(status).to_have_class("connected", timeout=10_000)
    expect(status).to_contain_text("Connected as demo-user")
    client_id = status.get_attribute("data-client-id")
    assert client_id and len(client_id) == 32
    return client_id


def test_a_backend_event_reaches_the_browser_within_a_second_across_two_daphnes(
    demo: None, alice_for_servers: bytes, daphnes: tuple[Daphne, Daphne], frontend: str, browser: Browser,
    admin_login: Callable[..., Page], shot: Callable[[Page, str], Path],
) -> None:
    server_a, server_b = daphnes
    # The browsers: one on the frontend's page, one on the platform's own demo page; both sockets on daphne A.
    on_frontend = open_page(browser, frontend)
    on_demo = open_page(browser, server_a.base_url, "/demo/notifications")
    try:
        frontend_client, demo_client = connected_client_id(on_frontend), connected_client_id(on_demo)
        assert frontend_client != demo_client

        # The backend system, on the other daphne. Its first call pays for checking its password with
        # the production hash (PBKDF2, over a second while the suite loads both cores); daphne B then
        # remembers it (accounts/authentication.py), as it does for a backend that keeps calling. What
        # is timed is a later event: the push, not the password hash.
        first = f"Order {uuid.uuid4().hex[:6]} packed"
        reply = client.request("POST", server_b.base_url + "/demo/notify", json={"text": first},
                               headers=client.basic_auth("backend", BACKEND_PASSWORD))
        assert reply.status == 200, reply.text
        for page in (on_frontend, on_demo):
            expect(page.locator("#notifications li", has_text=first)).to_have_count(1, timeout=5_000)
        text = f"Order {uuid.uuid4().hex[:6]} shipped"
        sent_at_ms = time.time() * 1000
        reply = client.request("POST", server_b.base_url + "/demo/notify", json={"text": text},
                               headers=client.basic_auth("backend", BACKEND_PASSWORD))
        replied_ms = time.time() * 1000 - sent_at_ms
        assert reply.status == 200, reply.text
        assert reply.json()["pushed"] is True
        latencies = {}
        for name, page in (("frontend page", on_frontend), ("demo page", on_demo)):
            item = page.locator("#notifications li", has_text=text)
            expect(item).to_have_count(1, timeout=2_000)
            expect(item).to_contain_text(f"{text} (from backend)")
            latencies[name] = float(item.get_attribute("data-received-at")) - sent_at_ms
        print(f"from the backend's call (ms): answered after {replied_ms:.1f}, shown in the browsers after",
              {name: round(ms, 1) for name, ms in latencies.items()})
        assert all(ms < 1000 for ms in latencies.values()), latencies
        shot(on_demo, "websocket-demo")

        # The administrator, on daphne B, sees both browsers (rows written by daphne A) and disconnects one.
        admin = open_page(browser, server_b.base_url, "/admin/login/")
        try:
            admin_page = admin_login(admin, "alice", ALICE_PASSWORD, alice_for_servers)
            admin_page.goto("/admin/integration/websocketclient/")
            rows = admin_page.locator("#result_list tbody tr")
            expect(rows).to_have_count(2)
            for client_id in (frontend_client, demo_client):
                row = rows.filter(has_text=client_id)
                expect(row).to_contain_text("demo.notifications")
                expect(row).to_contain_text("demo-user")
            if admin_page.locator("#toggle-nav-sidebar").is_visible():
                admin_page.click("#toggle-nav-sidebar")  # the screenshot shows every column, not the menu
            shot(admin_page, "websocket-clients")
            rows.filter(has_text=frontend_client).locator("input[name=_selected_action]").check()
            admin_page.select_option("select[name=action]", "disconnect")
            admin_page.click("button[name=index]")
            expect(admin_page.locator(".messagelist")).to_contain_text("Asked 1 client to disconnect")
        finally:
            admin.context.close()
        status = on_frontend.locator("#status")
        expect(status).to_have_class("closed", timeout=5_000)
        expect(status).to_have_text("Closed (code 4005).")  # on purpose: the page does not reconnect
        expect(on_demo.locator("#status")).to_have_class("connected")
    finally:
        on_frontend.context.close()
        on_demo.context.close()

