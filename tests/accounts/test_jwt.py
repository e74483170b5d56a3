"""JWT: log-in and log-out at Zato's paths, Fernet-encrypted tokens, sliding expiry kept on the server."""

from __future__ import annotations

import json
import logging

import pytest
from cryptography.fernet import Fernet

from accounts import tokens
from accounts.models import JWTDefinition, JWTSession
from tests.conftest import basic_header

pytestmark = pytest.mark.django_db
API = "/manage/api/v1/security/jwt"


@pytest.fixture
def browsers(builtins, make_channel, jwt_def):
    definition = jwt_def()
    make_channel("/events", "demo.hello", security=definition, name="events")
    return definition


def log_in(client, username="frontend", password="jwt-secret-1"):
    return client.post("/zato/jwt/log-in", json.dumps({"username": username, "password": password}),
                       content_type="application/json")


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_log_in_answers_a_token_that_opens_the_channel(client, browsers, session_store) -> None:
    response = log_in(client)
    assert response.status_code == 200
    token = response.json()["token"]
    assert set(response.json()) == {"token"}
    assert response["Authorization"] == token  # where Zato's clients read it
    assert token.startswith("gAAAA")  # a Fernet token: opaque to the client
    assert b"frontend" not in token.encode()
    used = client.get("/events", **bearer(token))
    assert used.status_code == 200


@pytest.mark.parametrize(("username", "password", "logged"), [
    ("frontend", "not-the-secret-9", "wrong password"),
    ("nobody", "jwt-secret-1", "no JWT definition has this username"),
])
def test_a_failed_log_in_never_says_which_half_was_wrong(client, browsers, caplog, username, password,
                                                         logged) -> None:
    caplog.set_level(logging.INFO)
    response = log_in(client, username, password)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"result": "Error", "cid": response["X-Zato-CID"], "details": "Invalid credentials"}
    assert f"[{response['X-Zato-CID']}] JWT log-in refused for '{username}': {logged}" in caplog.text
    assert password not in caplog.text


@pytest.mark.parametrize(("body", "content_type"), [
    (b"not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'{"username": "frontend"}', "application/json"),
    (b'{"username": 1, "password": 2}', "application/json"),
    (b"\xff\xfe", "application/json"),
])
def test_log_in_with_bad_input_is_400(client, browsers, body, content_type) -> None:
    response = client.post("/zato/jwt/log-in", body, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["cid"] == response["X-Zato-CID"]


def test_log_in_and_out_take_post_only(client, browsers) -> None:
    for path in ("/zato/jwt/log-in", "/zato/jwt/log-out"):
        response = client.get(path)
        assert response.status_code == 405
        assert response["Allow"] == "POST"


def test_an_inactive_definition_refuses_log_in_and_tokens(client, browsers) -> None:
    token = log_in(client).json()["token"]
    JWTDefinition.objects.filter(pk=browsers.pk).update(is_active=False)
    from integration import snapshot

    snapshot.changed()
    assert log_in(client).status_code == 401
    assert client.get("/events", **bearer(token)).status_code == 401


def test_sliding_expiry_with_a_controlled_clock(client, browsers, clock, session_store) -> None:
    token = log_in(client).json()["token"]  # ttl 60
    for _ in range(5):  # each use within the TTL extends it: 5 x 50 s > 60 s in all
        clock.advance(50)
        assert client.get("/events", **bearer(token)).status_code == 200
    clock.advance(61)
    expired = client.get("/events", **bearer(token))
    assert expired.status_code == 401
    assert expired["WWW-Authenticate"] == "Bearer"
    clock.advance(-30)  # the session is gone for good once seen expired
    assert client.get("/events", **bearer(token)).status_code == 401


def test_log_out_revokes_the_token_everywhere(client, browsers, session_store) -> None:
    token = log_in(client).json()["token"]
    other = log_in(client).json()["token"]
    out = client.post("/zato/jwt/log-out", **bearer(token))
    assert out.status_code == 200
    assert out.json() == {"result": "OK"}
    assert client.get("/events", **bearer(token)).status_code == 401
    assert client.get("/events", **bearer(other)).status_code == 200  # other sessions live on
    assert client.post("/zato/jwt/log-out", **bearer(token)).status_code == 200  # idempotent, as in Zato


def test_log_out_without_a_token_or_with_garbage_is_400(client, browsers) -> None:
    assert client.post("/zato/jwt/log-out").status_code == 400
    assert client.post("/zato/jwt/log-out", HTTP_AUTHORIZATION="Basic =a=").status_code == 400
    garbage = client.post("/zato/jwt/log-out", **bearer("gAAAAnot-a-token"))
    assert garbage.status_code == 400
    assert garbage.json()["details"] == "Invalid token"


def test_a_tampered_token_is_refused(client, browsers) -> None:
    token = log_in(client).json()["token"]
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    response = client.get("/events", **bearer(tampered))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_token_made_with_a_rotated_out_key_is_refused(client, browsers, settings) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FERNET_KEYS = [old]
    token = log_in(client).json()["token"]
    settings.FERNET_KEYS = [new, old]  # rotation in progress: the old key still opens tokens
    assert client.get("/events", **bearer(token)).status_code == 200
    settings.FERNET_KEYS = [new]  # old key removed
    assert client.get("/events", **bearer(token)).status_code == 401


def test_a_token_for_another_definition_is_refused(client, browsers, jwt_def, make_channel) -> None:
    jwt_def(name="partners", username="partner-app", password="other-secret")
    token = log_in(client, "partner-app", "other-secret").json()["token"]
    assert client.get("/events", **bearer(token)).status_code == 401


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Basic =a=", "Token abc", "Bearer a b c", "Bearer \xff\xfe",
    "Bearer " + "A" * 5000,
])
def test_missing_and_malformed_authorization_is_401_never_500(client, browsers, header) -> None:
    response = client.get("/events", **({"HTTP_AUTHORIZATION": header} if header is not None else {}))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["cid"] == response["X-Zato-CID"]


def test_a_frontend_gets_a_token_on_behalf_of_an_account(client, browsers, basic_auth, make_channel,
                                                         session_store) -> None:
    """The seed on JWT and WebSockets: the frontend asks for a token and hands it to a browser."""
    frontend = basic_auth(name="frontend-app", username="frontend-app", password="fe-secret")
    make_channel("/frontend/token", "zato.security.jwt.create-token", security=frontend, method="POST")
    response = client.post("/frontend/token", json.dumps({"definition": "browsers"}),
                           content_type="application/json", HTTP_AUTHORIZATION=basic_header("frontend-app",
                                                                                             "fe-secret"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["username"] == "frontend" and body["ttl"] == 60
    assert client.get("/events", **bearer(body["token"])).status_code == 200  # the browser's call
    refused = client.post("/frontend/token", json.dumps({"definition": "browsers"}),
                          content_type="application/json")
    assert refused.status_code == 401
    unknown = client.post("/frontend/token", json.dumps({"definition": "nope"}), content_type="application/json",
                          HTTP_AUTHORIZATION=basic_header("frontend-app", "fe-secret"))
    assert unknown.status_code == 404


def test_the_database_store_keeps_rows_and_cleans_expired_ones(client, browsers, clock, settings) -> None:
    settings.JWT_SESSION_STORE = "database"
    log_in(client)
    assert JWTSession.objects.count() == 1
    clock.advance(3600)
    tokens.session_store()._cleaned_at = 0.0
    log_in(client)  # a log-in cleans out expired sessions now and then
    assert JWTSession.objects.count() == 1


def test_the_api_keeps_the_password_write_only(api) -> None:
    created = api.post(f"{API}/", {"name": "mobile", "username": "mobile-app", "password": "m-secret", "ttl": 900},
                       format="json")
    assert created.status_code == 201, created.json()
    assert set(created.json()) == {"id", "name", "is_active", "username", "ttl", "created", "updated"}
    assert api.post(f"{API}/", {"name": "bad", "username": "x", "ttl": 0}, format="json").status_code == 400
    duplicate = api.post(f"{API}/", {"name": "mobile2", "username": "mobile-app"}, format="json")
    assert duplicate.status_code == 400
    assert "username" in duplicate.json()["details"]


def test_a_process_trusts_a_live_session_for_the_recheck_window_only(client, browsers, clock, settings,
                                                                     session_store) -> None:
    """Another process's log-out (here: the session deleted from the store directly) is seen after the window."""
    settings.JWT_SESSION_RECHECK = 5.0
    token = log_in(client).json()["token"]
    assert client.get("/events", **bearer(token)).status_code == 200  # asks the store, remembers the session
    tokens.session_store().revoke(tokens.open_token(token).sid)  # as if logged out through another server
    clock.advance(4)
    assert client.get("/events", **bearer(token)).status_code == 200  # still inside the window
    clock.advance(2)
    assert client.get("/events", **bearer(token)).status_code == 401  # window over: the store says no


def test_with_no_recheck_window_every_use_asks_the_store(client, browsers, settings, session_store) -> None:
    settings.JWT_SESSION_RECHECK = 0.0
    token = log_in(client).json()["token"]
    assert client.get("/events", **bearer(token)).status_code == 200
    tokens.session_store().revoke(tokens.open_token(token).sid)
    assert client.get("/events", **bearer(token)).status_code == 401


def test_an_unreachable_redis_refuses_with_503_never_a_pass(client, browsers, basic_auth, make_channel,
                                                            settings) -> None:
    settings.JWT_SESSION_STORE = "redis"
    token = log_in(client).json()["token"] if settings.REDIS_URL else None
    from tests.servers.procs import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.JWT_SESSION_RECHECK = 0.0
    login = log_in(client)
    assert login.status_code == 503
    assert login.json()["cid"] == login["X-Zato-CID"]
    if token is not None:
        assert client.get("/events", **bearer(token)).status_code == 503
    frontend = basic_auth(name="frontend-app", username="frontend-app", password="fe-secret")
    make_channel("/frontend/token", "zato.security.jwt.create-token", security=frontend, method="POST")
    made = client.post("/frontend/token", json.dumps({"definition": "browsers"}), content_type="application/json",
                       HTTP_AUTHORIZATION=basic_header("frontend-app", "fe-secret"))
    assert made.status_code == 503
