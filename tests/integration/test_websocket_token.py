"""The seed's flow, built in: ``zato.wsx.create-token`` and the demo that `manage.py bootstrap` sets up.

A frontend (Basic Auth over a REST channel) asks for a token for a WebSocket channel; the
token must then open that channel, which is checked with the consumer's own authentication
(``integration.channels.websocket.authenticate``). Pushes from the demo's notify service are
received from the real Redis channel layer, under a prefix of the test's own.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from django.core.management import call_command

from accounts.models import JWTDefinition
from integration import push as pushes
from integration import snapshot
from integration.channels.websocket import authenticate
from integration.models import DeployedService, WebSocketChannel
from integration.services.websocket import request_host, websocket_url
from tests.conftest import basic_header
from tests.integration.layer_helpers import received_by_group, use_test_layer

pytestmark = pytest.mark.django_db

FRONTEND = basic_header("frontend-app", "fe-secret")


@pytest.fixture
def browsers(builtins: None, settings: Any) -> JWTDefinition:
    """A JWT account for browsers and its WebSocket channel, `notifications` at /ws/notifications."""
    settings.WEBSOCKET_PORT, settings.WEBSOCKET_PUBLIC_URL = 9101, ""
    settings.ALLOWED_HOSTS = ["switchboard.example.com", "testserver"]
    definition = JWTDefinition(name="browsers", username="browser-user", ttl=90)
    definition.save()
    WebSocketChannel.objects.create(name="notifications", path="/ws/notifications", security=definition,
                                    service=DeployedService.objects.get(name="demo.echo"))
    return definition


@pytest.fixture
def token_channel(browsers: JWTDefinition, basic_auth: Any, make_channel: Any) -> None:
    """The token service bound as a frontend would have it: POST /frontend/ws-token, Basic Auth."""
    frontend = basic_auth(name="frontend-app", username="frontend-app", password="fe-secret")
    make_channel("/frontend/ws-token", "zato.wsx.create-token", method="POST", security=frontend)


def ask(client: Any, body: Any, **headers: Any) -> Any:
    headers.setdefault("HTTP_AUTHORIZATION", FRONTEND)
    headers.setdefault("HTTP_HOST", "switchboard.example.com:8000")
    return client.post("/frontend/ws-token", json.dumps(body), content_type="application/json", **headers)


def opens(channel_name: str, token: str) -> str | None:
    """The username the channel's consumer would log the token in as (raises when it refuses)."""
    channel = snapshot.current().websockets.by_name[channel_name]
    return authenticate(channel, {"HTTP_AUTHORIZATION": f"Bearer {token}"}, channel.path).username


def test_a_frontend_gets_a_token_that_opens_the_channel(client, token_channel, browsers) -> None:
    response = ask(client, {"channel": "notifications"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "ttl", "username", "channel", "path", "url"}
    assert body["ttl"] == 90 and body["username"] == "browser-user" and body["channel"] == "notifications"
    assert body["path"] == "/ws/notifications"
    # daphne's port on the host the frontend named, not the HTTP port
    assert body["url"] == "ws://switchboard.example.com:9101/ws/notifications"
    assert opens("notifications", body["token"]) == "browser-user"
    # Naming the channel's own user is allowed, and every call makes a new token (its own session).
    again = ask(client, {"channel": "notifications", "username": "browser-user"}).json()
    assert again["token"] != body["token"] and opens("notifications", again["token"]) == "browser-user"


def test_without_the_frontends_credentials_there_is_no_token(client, token_channel) -> None:
    assert ask(client, {"channel": "notifications"}, HTTP_AUTHORIZATION="").status_code == 401
    wrong = ask(client, {"channel": "notifications"}, HTTP_AUTHORIZATION=basic_header("frontend-app", "guess"))
    assert wrong.status_code == 401 and "token" not in wrong.json()


def test_each_reason_for_no_token_is_a_clear_error(client, token_channel, browsers, basic_auth) -> None:
    service = DeployedService.objects.get(name="demo.echo")
    WebSocketChannel.objects.create(name="open", path="/ws/open", service=service)
    WebSocketChannel.objects.create(name="crm", path="/ws/crm", service=service,
                                    security=basic_auth(name="crm", username="crm-user"))
    WebSocketChannel.objects.create(name="paused", path="/ws/paused", service=service, security=browsers,
                                    is_active=False)
    sleeping = JWTDefinition.objects.create(name="sleeping", username="sleeper", is_active=False)
    WebSocketChannel.objects.create(name="asleep", path="/ws/asleep", service=service, security=sleeping)
    cases = [
        ({"channel": "nope"}, 404, "No WebSocket channel is named `nope`"),
        ({"channel": "paused"}, 404, "WebSocket channel `paused` is inactive"),
        ({"channel": "open"}, 400, "WebSocket channel `open` is open to anyone: its clients need no token"),
        ({"channel": "crm"}, 400, "WebSocket channel `crm` is not secured with JWT, so it takes no tokens"),
        ({"channel": "asleep"}, 400, "The JWT definition `sleeping` of WebSocket channel `asleep` is inactive: "
                                     "its tokens would be refused"),
        ({"channel": "notifications", "username": "mallory"}, 400,
         "WebSocket channel `notifications` is for user `browser-user`, not `mallory`"),
        ({}, 400, "Element missing: channel (the name of a WebSocket channel secured with JWT)"),
        ({"channel": 7}, 400, "Element missing: channel (the name of a WebSocket channel secured with JWT)"),
        ({"channel": "notifications", "username": ["x"]}, 400, "`username` must be a string"),
        ({"channel": "notifications", "user": "x"}, 400,
         "Unknown field(s): user; expected `channel` and optionally `username`"),
        (["notifications"], 400, 'Send a JSON object: {"channel": "<WebSocket channel name>", '
                                 '"username": "<optional>"}'),
    ]
    answers = [(body, ask(client, body)) for body, _, _ in cases]
    for (body, response), (_, status, details) in zip(answers, cases, strict=True):
        assert (response.status_code, response.json().get("details")) == (status, details), body
        assert re.fullmatch(r"[0-9a-f]{24}", response.json()["cid"])


def test_an_unreachable_session_store_is_503_and_no_token(client, token_channel, settings) -> None:
    from tests.servers.procs import free_port

    settings.JWT_SESSION_STORE = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    response = ask(client, {"channel": "notifications"})
    assert response.status_code == 503
    assert response.json()["details"] == "Tokens cannot be issued right now; try again later"


def test_the_url_follows_the_public_url_or_an_allowed_host_only(settings) -> None:
    settings.ALLOWED_HOSTS = ["switchboard.example.com", "127.0.0.1"]
    settings.WEBSOCKET_PORT, settings.WEBSOCKET_PUBLIC_URL, settings.HTTPS = 8001, "", False
    assert websocket_url("/ws/n", "switchboard.example.com:8000") == "ws://switchboard.example.com:8001/ws/n"
    # A forged Host must not send the browser (and its token) elsewhere.
    assert request_host("evil.example.net") is None
    assert websocket_url("/ws/n", "evil.example.net") == "ws://127.0.0.1:8001/ws/n"
    assert websocket_url("/ws/n", None) == "ws://127.0.0.1:8001/ws/n"
    settings.HTTPS = True
    assert websocket_url("/ws/n", "switchboard.example.com") == "wss://switchboard.example.com:8001/ws/n"
    settings.WEBSOCKET_PUBLIC_URL = "wss://push.example.com"
    assert websocket_url("/ws/n", "switchboard.example.com") == "wss://push.example.com/ws/n"


# --- The demo -----------------------------------------------------------------------------------------


@pytest.fixture
def demo(builtins: None, settings: Any) -> None:
    """What `make run` sets up, with the demo passwords given in the environment."""
    settings.ADMIN_PASSWORD, settings.ADMIN_REQUIRE_TOTP = "admin-password-1", False
    settings.DEMO_FRONTEND_PASSWORD, settings.DEMO_BACKEND_PASSWORD = "fe-demo-secret", "be-demo-secret"
    settings.WEBSOCKET_PORT, settings.WEBSOCKET_PUBLIC_URL = 9101, ""
    settings.ALLOWED_HOSTS = ["switchboard.example.com", "testserver"]
    call_command("bootstrap", stdout=io.StringIO())


@pytest.fixture
def layer(settings: Any) -> str:
    return use_test_layer(settings, "test-wst")


def test_the_demo_page_is_the_frontend_and_hands_the_browser_a_working_token(client, demo) -> None:
    response = client.get("/demo/notifications", HTTP_HOST="switchboard.example.com:8000")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    token = re.search(r'<meta name="switchboard-token" content="([^"]+)">', page).group(1)
    url = re.search(r'<meta name="switchboard-url" content="([^"]+)">', page).group(1)
    assert url == "ws://switchboard.example.com:9101/ws/demo/notifications"
    assert opens("demo.notifications", token) == "demo-user"
    assert "fe-demo-secret" not in page and "be-demo-secret" not in page  # no credentials reach the browser
    # A page carrying a live token: not cached, not framed, its script (by nonce) talks to the channel only.
    assert response["Cache-Control"] == "no-store" and response["Referrer-Policy"] == "no-referrer"
    nonce = re.search(r"script-src 'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    assert f'<script nonce="{nonce}">' in page
    assert "connect-src ws://switchboard.example.com:9101;" in response["Content-Security-Policy"]
    assert "http://switchboard.example.com:8000/demo/notify" in page  # the curl example
    again = client.get("/demo/notifications", HTTP_HOST="switchboard.example.com")
    assert again["Content-Security-Policy"] != response["Content-Security-Policy"]  # a nonce per page


def test_a_backend_raises_a_notification_that_reaches_the_demo_channel(client, demo, layer) -> None:
    channel_id = WebSocketChannel.objects.get(name="demo.notifications").pk
    backend = basic_header("backend", "be-demo-secret")

    def notify() -> Any:
        return client.post("/demo/notify", json.dumps({"text": "Order 1001 shipped"}),
                           content_type="application/json", HTTP_AUTHORIZATION=backend)

    response, event = received_by_group(pushes.channel_group(channel_id), notify)
    assert response.status_code == 200, response.content
    assert response.json() == {"pushed": True, "channel": "demo.notifications", "cid": response["X-Zato-CID"]}
    assert event is not None, "the push never reached the channel's group"
    assert event["type"] == "ws.push" and event["cid"] == response["X-Zato-CID"]
    data = json.loads(event["text"])
    assert data["text"] == "Order 1001 shipped" and data["from"] == "backend"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", data["sent_at"])


def test_the_demo_notify_channel_wants_the_backends_credentials_and_text(client, demo) -> None:
    def post(body: Any, authorization: str = basic_header("backend", "be-demo-secret")) -> Any:
        return client.post("/demo/notify", json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=authorization)

    assert post({"text": "hi"}, basic_header("frontend", "fe-demo-secret")).status_code == 401
    assert post({"text": "hi"}, "").status_code == 401
    assert post({"text": " "}).json()["details"] == 'Send {"text": "<the notification>"}'
    assert post({"text": "x" * 1001}).json()["details"] == "`text` is longer than 1000 characters"
    # The frontend's definition opens the token channel, and only that one.
    token = client.post("/demo/ws-token", json.dumps({"channel": "demo.notifications"}),
                        content_type="application/json", HTTP_AUTHORIZATION=basic_header("frontend", "fe-demo-secret"))
    assert token.status_code == 200 and opens("demo.notifications", token.json()["token"]) == "demo-user"
