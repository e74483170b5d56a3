"""OAuth client credentials for outgoing REST: one token, shared, refreshed early, replaced after a 401.

Against the loopback token server (authlib, real expiry) and the REST backend that checks each
bearer token by introspection. Each test registers a client of its own, so counts never mix.
The cache is Redis (REDIS_URL of the test run), as in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts import oauth
from accounts.models import OAuthDefinition
from accounts.oauth_params import parse_extra_params, parse_scopes
from connections.models import OutgoingRest
from integration.channels import security
from tests.connections.outgoing_fixtures import (  # noqa: F401 - the autouse fixture empties the token cache
    _empty_token_cache,
    closed_port,
    make_oauth_def,
    make_rest,
    out,
)
from tests.servers.procs import REPO_ROOT

pytestmark = pytest.mark.django_db

CID = "0a0b0c0d0e0f0a0b0c0d0e0f"


def test_a_token_is_fetched_once_and_reused(oauth_server, make_oauth_client, rest_backend) -> None:
    client = make_oauth_client(scopes=["customers:read", "billing:read"])
    make_rest(address=rest_backend.url, url_path="/customers/{cust_id}", auth_type="oauth",
              oauth=make_oauth_def(oauth_server, client, scopes="customers:read billing:read"))
    conn = out("rest", "REST Server").conn

    answers = [conn.get(CID, {"cust_id": 1}) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[0].data["echo"]["auth"]["client_id"] == client.client_id
    assert oauth_server.token_request_count(client.client_id) == 1
    sent = oauth_server.last_token_request(client.client_id)
    assert sent["auth_method"] == "client_secret_basic"  # the default: RFC 6749 §2.3.1 prefers it
    assert sent["form"] == {"grant_type": "client_credentials", "scope": "customers:read billing:read"}


def test_the_secret_can_go_in_the_form_body_with_extra_parameters(oauth_server, make_oauth_client, rest_backend
                                                                  ) -> None:
    client = make_oauth_client()
    make_rest(address=rest_backend.url, url_path="/customers/1", auth_type="oauth",
              oauth=make_oauth_def(oauth_server, client, credentials_in="form",
                                   extra_params="audience=https://api.example.com"))

    answer = out("rest", "REST Server").conn.get(CID)

    assert answer.status_code == 200 and answer.data["echo"]["auth"]["aud"] == "https://api.example.com"
    sent = oauth_server.last_token_request(client.client_id)
    assert sent["auth_method"] == "client_secret_post" and "authorization" not in sent["headers"]
    assert sent["form"]["audience"] == "https://api.example.com"


def test_definitions_differing_in_scopes_or_secret_never_share_a_token(oauth_server, make_oauth_client,
                                                                        rest_backend) -> None:
    client = make_oauth_client()
    definition = make_oauth_def(oauth_server, client, scopes="customers:read customers:write")
    make_rest("read", address=rest_backend.url, url_path="/customers/1", auth_type="oauth", oauth=definition,
              oauth_scopes="customers:read")
    make_rest("write", address=rest_backend.url, url_path="/customers/1", auth_type="oauth", oauth=definition,
              oauth_scopes="customers:write")

    read = out("rest", "read").conn.get(CID).data["echo"]["auth"]
    write = out("rest", "write").conn.get(CID).data["echo"]["auth"]

    assert (read["scope"], write["scope"]) == ("customers:read", "customers:write")
    assert oauth_server.token_request_count(client.client_id) == 2
    key = oauth.ClientConfig.from_definition(definition).cache_key
    definition.set_secret("another-secret")
    assert oauth.ClientConfig.from_definition(definition).cache_key != key


def test_a_token_is_refreshed_before_it_expires_and_never_sent_expired(oauth_server, make_oauth_client,
                                                                       rest_backend) -> None:
    client = make_oauth_client(expires_in=3)  # used until 80 % of its life: 2.4 s
    make_rest(address=rest_backend.url, url_path="/customers/1", auth_type="oauth",
              oauth=make_oauth_def(oauth_server, client))
    conn = out("rest", "REST Server").conn

    first = conn.get(CID)
    time.sleep(1.0)
    second = conn.get(CID)
    time.sleep(1.8)  # 2.8 s: still valid at the server, but due for refresh
    third = conn.get(CID)

    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert oauth_server.token_request_count(client.client_id) == 2
    assert all(entry["status"] == 200 for entry in rest_backend.requests("/customers"))  # no 401 on the way


def test_a_401_drops_the_token_and_the_call_is_retried_once_with_a_new_one(oauth_server, make_oauth_client,
                                                                           rest_backend) -> None:
    client = make_oauth_client()
    make_rest(address=rest_backend.url, url_path="/customers/1", auth_type="oauth",
              oauth=make_oauth_def(oauth_server, client))
    conn = out("rest", "REST Server").conn
    conn.get(CID)
    oauth_server.revoke_client(client.client_id)  # the backend now answers 401 to the cached token

    answer = conn.get(CID)

    assert answer.status_code == 200
    assert [entry["status"] for entry in rest_backend.requests("/customers")] == [200, 401, 200]
    assert oauth_server.token_request_count(client.client_id) == 2
    assert len(answer.history) == 1 and answer.history[0].status_code == 401


def test_a_second_401_is_the_backends_answer(oauth_server, make_oauth_client, rest_backend_basic) -> None:
    client = make_oauth_client()  # the Basic-only backend refuses every bearer token
    make_rest(address=rest_backend_basic.url, url_path="/customers/1", auth_type="oauth",
              oauth=make_oauth_def(oauth_server, client))

    answer = out("rest", "REST Server").conn.get(CID)

    assert answer.status_code == 401
    assert [entry["status"] for entry in rest_backend_basic.requests("/customers")] == [401, 401]  # one retry only
    assert oauth_server.token_request_count(client.client_id) == 2


def test_fifty_simultaneous_callers_with_an_empty_cache_make_one_token_request(oauth_server, make_oauth_client,
                                                                              rest_backend) -> None:
    client = make_oauth_client()
    make_rest(address=rest_backend.url, url_path="/customers/1", auth_type="oauth", pool_size=50,
              oauth=make_oauth_def(oauth_server, client))
    conn = out("rest", "REST Server").conn
    oauth_server.slow(0.3, times=1)  # the token request takes a while: everyone arrives while it runs
    start = threading.Barrier(50)
    statuses: list[int] = []

    def call() -> None:
        start.wait()
        statuses.append(conn.get(CID).status_code)

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert statuses == [200] * 50
    assert oauth_server.token_request_count(client.client_id) == 1


PROCESS_SCRIPT = """
import sys, threading, time
import django
django.setup()
from accounts import oauth
config = oauth.ClientConfig("okta", sys.argv[1], sys.argv[2], sys.argv[3], timeout=5.0)
start_at = float(sys.argv[4])
source = oauth.TokenSource(config)
tokens = []
def take():
    time.sleep(max(0.0, start_at - time.time()))
    tokens.append(source.token().access_token)
threads = [threading.Thread(target=take) for _ in range(10)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(set(tokens)), source.requests_made)
"""


def test_processes_sharing_the_redis_cache_make_one_token_request(oauth_server, make_oauth_client) -> None:
    client = make_oauth_client()
    oauth_server.slow(0.3, times=1)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    start_at = str(time.time() + 3.0)  # all five are up by then
    args = [oauth_server.token_url, client.client_id, client.client_secret, start_at]
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS_SCRIPT, *args], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(5)]
    outputs = [proc.communicate(timeout=30) for proc in procs]

    assert all(proc.returncode == 0 for proc in procs), outputs
    assert [out_.split() for out_, _ in outputs].count(["1", "1"]) == 1  # one process asked...
    assert [out_.split() for out_, _ in outputs].count(["1", "0"]) == 4  # ...the others read its token
    assert oauth_server.token_request_count(client.client_id) == 1


# --- A token server that fails ---------------------------------------------------------------------


def test_a_token_server_that_is_down_is_a_clear_503_naming_the_definition(oauth_server, make_oauth_client,
                                                                          rest_backend) -> None:
    client = make_oauth_client()
    definition = make_oauth_def(oauth_server, client, token_url=f"http://127.0.0.1:{closed_port()}/token")
    make_rest(address=rest_backend.url, auth_type="oauth", oauth=definition)

    with pytest.raises(oauth.TokenUnavailable) as caught:
        out("rest", "REST Server").conn.get(CID)

    assert caught.value.status_code == 503
    assert str(caught.value).startswith("OAuth definition `okta`: no token: cannot reach the token server at")
    assert client.client_secret not in str(caught.value)


def test_a_slow_token_server_times_out_and_the_waiting_callers_do_not_each_try_again(
        oauth_server, make_oauth_client, rest_backend) -> None:
    client = make_oauth_client()
    make_rest(address=rest_backend.url, auth_type="oauth", pool_size=10,
              oauth=make_oauth_def(oauth_server, client, timeout=0.5))
    conn = out("rest", "REST Server").conn
    oauth_server.slow(3)
    errors: list[str] = []

    def call() -> None:
        try:
            conn.get(CID)
        except oauth.TokenUnavailable as exc:
            errors.append(exc.reason)

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    oauth_server.clear()

    assert time.monotonic() - started < 2.5  # one timeout, not ten in a row
    assert len(errors) == 10 and "did not answer within 0.5 s" in errors[0]
    assert oauth_server.token_request_count(client.client_id) == 1


def test_a_refused_client_gets_the_oauth_error(oauth_server, make_oauth_client, rest_backend) -> None:
    client = make_oauth_client()
    definition = make_oauth_def(oauth_server, client)
    definition.set_secret("wrong")
    definition.save()
    make_rest(address=rest_backend.url, auth_type="oauth", oauth=definition)

    with pytest.raises(oauth.TokenUnavailable, match="answered 401: invalid_client"):
        out("rest", "REST Server").conn.get(CID)


# --- The definition: admin, API, secret, and no channel may use it --------------------------------------


def test_no_channel_kind_accepts_an_oauth_definition(oauth_server, make_oauth_client) -> None:
    definition = make_oauth_def(oauth_server, make_oauth_client())
    assert definition.sec_type == "oauth"
    assert security.problem("oauth", security.REST).startswith("OAuth definitions cannot protect rest channels")
    assert security.problem("oauth", security.WEBSOCKET)


def test_the_api_stores_the_secret_encrypted_and_never_returns_it(api: Any) -> None:
    created = api.post("/manage/api/v1/security/oauth/", {
        "name": "okta", "token_url": "https://auth.example.com/token", "client_id": "sb",
        "client_secret": "top-secret-1", "scopes": "a b"}, format="json")

    assert created.status_code == 201, created.json()
    body = created.json()
    assert "client_secret" not in body and body["has_secret"] is True
    row = OAuthDefinition.objects.get(name="okta")
    assert row.get_secret() == "top-secret-1" and "top-secret-1" not in row.client_secret_encrypted
    changed = api.post(f"/manage/api/v1/security/oauth/{row.pk}/change-password/",
                       {"password1": "top-secret-2", "password2": "top-secret-2"}, format="json")
    assert changed.status_code == 200
    row.refresh_from_db()
    assert row.get_secret() == "top-secret-2"
    assert api.get("/manage/api/v1/security/oauth/?search=okta").json()["count"] == 1
    bad = api.post("/manage/api/v1/security/oauth/", {"name": "x", "token_url": "ftp://x", "client_id": "c",
                                                      "extra_params": "nonsense"}, format="json")
    assert bad.status_code == 400 and {"token_url", "extra_params"} <= set(bad.json()["details"])


def test_changing_the_secret_rebuilds_the_connection_and_asks_for_a_new_token(oauth_server, make_oauth_client,
                                                                             rest_backend) -> None:
    client = make_oauth_client()
    definition = make_oauth_def(oauth_server, client)
    make_rest(address=rest_backend.url, url_path="/customers/1", auth_type="oauth", oauth=definition)
    before = out("rest", "REST Server")
    before.conn.get(CID)

    definition.set_secret(client.client_secret)  # the same value re-typed: a new ciphertext, a new row
    definition.save()
    after = out("rest", "REST Server")

    assert after is not before
    assert after.conn.get(CID).status_code == 200
    assert oauth_server.token_request_count(client.client_id) == 1  # same secret, same key: the cached token


def test_deleting_a_definition_in_use_asks_for_cascade(api: Any, oauth_server, make_oauth_client) -> None:
    definition = make_oauth_def(oauth_server, make_oauth_client())
    make_rest(address="http://127.0.0.1:9", auth_type="oauth", oauth=definition)

    refused = api.delete(f"/manage/api/v1/security/oauth/{definition.pk}/")
    assert refused.status_code == 409 and "REST Server" in refused.json()["details"]
    assert api.delete(f"/manage/api/v1/security/oauth/{definition.pk}/?cascade=true").status_code == 204
    assert not OutgoingRest.objects.exists()


def test_the_admin_change_secret_form_sets_the_secret(admin_client_alice: Any, oauth_server, make_oauth_client
                                                      ) -> None:
    definition = make_oauth_def(oauth_server, make_oauth_client())
    url = f"/admin/accounts/oauthdefinition/{definition.pk}/password/"

    page = admin_client_alice.get(url)
    mismatch = admin_client_alice.post(url, {"password1": "n-1", "password2": "n-2"})
    done = admin_client_alice.post(url, {"password1": "new-secret", "password2": "new-secret"})

    assert page.status_code == 200 and b"New client secret" in page.content
    assert mismatch.status_code == 200 and b"not the same" in mismatch.content
    assert done.status_code == 302
    definition.refresh_from_db()
    assert definition.get_secret() == "new-secret"
    change = admin_client_alice.get(f"/admin/accounts/oauthdefinition/{definition.pk}/change/")
    assert b"new-secret" not in change.content and b"Change secret" in change.content


# --- Parsers of raw input ---------------------------------------------------------------------------


@given(st.dictionaries(st.text(), st.one_of(st.none(), st.integers(), st.floats(), st.text(), st.booleans(),
                                            st.lists(st.integers(), max_size=2)), max_size=5),
       st.sampled_from(["access_token", "token_type", "expires_in"]), st.one_of(st.text(), st.floats(),
                                                                               st.integers(), st.none()))
def test_any_token_answer_parses_or_fails_with_a_reason(body: dict[str, Any], field: str, value: Any) -> None:
    body[field] = value
    try:
        token = oauth.parse_token_response(body, 1000.0)
    except ValueError as exc:
        assert str(exc).startswith("the answer")
    else:
        assert token.access_token and token.refresh_at <= token.expires_at and token.expires_at > 1000.0
        assert "\n" not in token.header and "\r" not in token.header


@given(st.text(max_size=200))
def test_extra_parameters_and_scopes_parse_or_fail_with_a_reason(text: str) -> None:
    scopes = parse_scopes(text)
    assert len(scopes) == len(set(scopes)) and all(scope and " " not in scope for scope in scopes)
    try:
        params = parse_extra_params(text)
    except ValueError as exc:
        assert "key=value" in str(exc) or "set by Switchboard" in str(exc)
    else:
        assert all(key and "=" not in key and "\n" not in value for key, value in params.items())
