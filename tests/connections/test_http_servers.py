"""The loopback token server and REST backend behave as the real ones do, driven by ``requests``.

The outgoing REST connections will be tested against these servers, so these tests pin what
each server does, through a plain client library only (no Switchboard code): the OAuth
client-credentials grant with both client authentication methods, scopes, real expiry,
revocation and introspection; a REST backend that checks bearer tokens at the token server
and echoes what it got; TLS with a test CA; the switches that make a server slow, failing or
down; and servers that end with the test run. The FHIR server's tests are in
``test_http_servers_fhir.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers.http_handles import (
    CLIENT_ID,
    CLIENT_SECRET,
    REST_RS,
    HttpServers,
    OAuthClient,
    OAuthServer,
    RestBackend,
)
from tests.servers.procs import REPO_ROOT, proc_stat, wait_for
from tests.servers.tls import LoopbackCA

TIMEOUT = 5  # seconds: every client call here is bounded


def token_request(oauth_server: OAuthServer, oauth_client: OAuthClient, *, method: str = "basic",
                  **form: str) -> requests.Response:
    """POST /token for the client-credentials grant, authenticating by ``method`` (basic or post)."""
    data = {"grant_type": "client_credentials", **form}
    if method == "post":
        data.update(client_id=oauth_client.client_id, client_secret=oauth_client.client_secret)
        return requests.post(oauth_server.token_url, data=data, timeout=TIMEOUT)
    return requests.post(oauth_server.token_url, data=data, auth=oauth_client.basic_auth, timeout=TIMEOUT)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_customer(backend: RestBackend, token: str, cust_id: str = "123") -> requests.Response:
    return requests.get(f"{backend.url}/customers/{cust_id}", headers=bearer(token), timeout=TIMEOUT)


# --- The token server: the client-credentials grant -----------------------------------------------


def test_it_issues_a_bearer_token_to_a_client_authenticating_with_http_basic(oauth_server, make_oauth_client):
    client = make_oauth_client(scopes=["customers:read", "billing:read"], expires_in=45)

    response = token_request(oauth_server, client, scope="customers:read")

    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 45  # the client's configured lifetime, not a server-wide default
    assert token["scope"] == "customers:read"  # what was asked, not everything the client may have
    assert response.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.1
    sent = oauth_server.last_token_request(client.client_id)
    assert sent["auth_method"] == "client_secret_basic"
    assert sent["headers"]["authorization"].startswith("Basic ")
    assert "client_secret" not in sent["form"]
    assert sent["form"] == {"grant_type": "client_credentials", "scope": "customers:read"}


def test_it_issues_a_token_to_a_client_sending_its_secret_in_the_form_body(oauth_server, oauth_client):
    response = token_request(oauth_server, oauth_client, method="post")

    assert response.status_code == 200
    sent = oauth_server.last_token_request(oauth_client.client_id)
    assert sent["auth_method"] == "client_secret_post"
    assert "authorization" not in sent["headers"]
    assert sent["form"]["client_id"] == oauth_client.client_id
    assert sent["form"]["client_secret"] == oauth_client.client_secret
    assert sent["content_type"] == "application/x-www-form-urlencoded"


def test_it_refuses_the_form_method_to_a_client_registered_for_basic_only(oauth_server, make_oauth_client):
    client = make_oauth_client(auth_methods=["client_secret_basic"])

    refused = token_request(oauth_server, client, method="post")

    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert token_request(oauth_server, client, method="basic").status_code == 200


def test_it_refuses_a_wrong_secret_with_invalid_client_and_a_basic_challenge(oauth_server, oauth_client):
    wrong = OAuthClient(oauth_client.client_id, "not-the-secret")

    response = token_request(oauth_server, wrong)

    # RFC 6749 §5.2: a client that tried HTTP Basic gets 401 and a challenge for that scheme.
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert oauth_server.tokens_issued(oauth_client.client_id) == 0


def test_it_refuses_credentials_sent_both_in_the_header_and_in_the_form(oauth_server, oauth_client):
    response = requests.post(oauth_server.token_url, auth=oauth_client.basic_auth, timeout=TIMEOUT, data={
        "grant_type": "client_credentials", "client_id": oauth_client.client_id,
        "client_secret": oauth_client.client_secret})

    # RFC 6749 §2.3: one authentication method per request.
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_it_refuses_scopes_the_client_is_not_allowed_with_invalid_scope(oauth_server, make_oauth_client):
    client = make_oauth_client(scopes=["customers:read"])

    response = token_request(oauth_server, client, scope="customers:read billing:read")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert "billing:read" in response.json()["error_description"]
    # The request arrived and was counted, but no token came of it.
    assert oauth_server.token_request_count(client.client_id) == 1
    assert oauth_server.tokens_issued(client.client_id) == 0
    assert oauth_server.last_token_request(client.client_id)["error"] == "invalid_scope"


def test_without_a_scope_parameter_it_grants_every_scope_the_client_is_allowed(oauth_server, make_oauth_client):
    client = make_oauth_client(scopes=["customers:read", "fhir"])

    token = token_request(oauth_server, client).json()

    assert token["scope"].split() == ["customers:read", "fhir"]


def test_it_refuses_what_is_not_a_client_credentials_form(oauth_server, oauth_client):
    as_json = requests.post(oauth_server.token_url, json={"grant_type": "client_credentials"},
                            auth=oauth_client.basic_auth, timeout=TIMEOUT)
    password_grant = token_request(oauth_server, oauth_client, grant_type="password", username="u", password="p")
    by_get = requests.get(oauth_server.token_url, auth=oauth_client.basic_auth, timeout=TIMEOUT)

    # RFC 6749 §4.4.2: the token request is application/x-www-form-urlencoded.
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert (password_grant.status_code, password_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert (by_get.status_code, by_get.headers["Allow"]) == (405, "POST")


def test_it_records_extra_parameters_such_as_audience_and_shows_them_to_the_backend(
        oauth_server, oauth_client, rest_backend):
    token = oauth_server.fetch_token(oauth_client, audience="https://crm.example.com")["access_token"]

    assert oauth_server.last_token_request(oauth_client.client_id)["form"]["audience"] == "https://crm.example.com"
    seen = get_customer(rest_backend, token).json()["echo"]["auth"]
    assert seen["aud"] == "https://crm.example.com"
    assert seen["client_id"] == oauth_client.client_id


def test_the_cast_client_switchboard_is_known_from_the_start(oauth_server):
    token = oauth_server.fetch_token(OAuthClient(CLIENT_ID, CLIENT_SECRET), scope="fhir")

    assert token["scope"] == "fhir"


def test_the_metadata_document_names_the_endpoints(oauth_server):
    metadata = requests.get(f"{oauth_server.url}/.well-known/oauth-authorization-server", timeout=TIMEOUT).json()

    assert metadata["token_endpoint"] == oauth_server.token_url
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"}


# --- Introspection, revocation, expiry ----------------------------------------------------------


def test_introspection_says_active_for_a_live_token_and_inactive_for_anything_else(oauth_server, oauth_client,
                                                                                    make_oauth_client):
    token = oauth_server.fetch_token(oauth_client, scope="fhir")["access_token"]
    other = make_oauth_client()

    def introspect(value: str, auth: tuple[str, str] | None) -> requests.Response:
        return requests.post(f"{oauth_server.url}/introspect", data={"token": value}, auth=auth, timeout=TIMEOUT)

    live = introspect(token, REST_RS).json()
    assert live["active"] is True
    assert (live["client_id"], live["scope"], live["token_type"]) == (oauth_client.client_id, "fhir", "Bearer")
    assert 60 <= live["exp"] - live["iat"] <= 61  # the client's 60 s, in whole seconds rounded outwards
    assert introspect("no-such-token", REST_RS).json() == {"active": False}
    # RFC 7662 §2.2: a caller not allowed to see this token learns only that it is not active.
    assert introspect(token, other.basic_auth).json() == {"active": False}
    assert introspect(token, None).status_code == 401  # §2.1: the endpoint needs authentication


def test_a_token_stops_working_at_the_backend_once_its_expires_in_has_passed(oauth_server, make_oauth_client,
                                                                              rest_backend):
    client = make_oauth_client(expires_in=2)
    issued = time.monotonic()
    token = oauth_server.fetch_token(client)["access_token"]
    assert get_customer(rest_backend, token).status_code == 200

    def refused_now() -> list[requests.Response]:
        # In a list: a Response is falsy for 4xx, and wait_for waits for something truthy.
        answer = get_customer(rest_backend, token)
        return [answer] if answer.status_code == 401 else []

    [refused] = wait_for(refused_now, timeout=2 + 5, interval=0.1, message="the token never expired")

    # Expiry is real: the backend said yes before, and no only once the 2 s had passed.
    assert time.monotonic() - issued >= 2 - 0.05
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert get_customer(rest_backend, oauth_server.fetch_token(client)["access_token"]).status_code == 200


def test_expire_ends_a_token_at_once_without_waiting(oauth_server, oauth_client, rest_backend):
    token = oauth_server.fetch_token(oauth_client)["access_token"]

    assert oauth_server.expire(token) == 1

    assert get_customer(rest_backend, token).status_code == 401


def test_revoking_a_token_makes_the_backend_answer_401_and_a_new_token_works(oauth_server, oauth_client,
                                                                             rest_backend):
    token = oauth_server.fetch_token(oauth_client)["access_token"]
    assert get_customer(rest_backend, token).status_code == 200

    assert oauth_server.revoke(token) == 1

    refused = get_customer(rest_backend, token)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith('Bearer realm="rest-backend", error="invalid_token"')
    assert get_customer(rest_backend, oauth_server.fetch_token(oauth_client)["access_token"]).status_code == 200


def test_revoke_all_ends_every_token_and_rfc_7009_revocation_works_for_the_client(oauth_server, oauth_client,
                                                                                   rest_backend):
    first, second = (oauth_server.fetch_token(oauth_client)["access_token"] for _ in range(2))
    assert oauth_server.revoke_all() >= 2
    assert [get_customer(rest_backend, token).status_code for token in (first, second)] == [401, 401]

    third = oauth_server.fetch_token(oauth_client)["access_token"]
    revoked = requests.post(f"{oauth_server.url}/revoke", data={"token": third}, auth=oauth_client.basic_auth,
                            timeout=TIMEOUT)
    assert revoked.status_code == 200
    assert get_customer(rest_backend, third).status_code == 401


def test_the_counters_count_token_requests_and_tokens_per_client(oauth_server, make_oauth_client):
    one, two = make_oauth_client(scopes=["fhir"]), make_oauth_client()
    for _ in range(3):
        token_request(oauth_server, one)
    token_request(oauth_server, one, scope="billing:read")  # refused: counted, no token
    token_request(oauth_server, two, method="post")

    stats = oauth_server.stats()

    assert stats["token_requests"][one.client_id] == 4
    assert stats["tokens_issued"][one.client_id] == 3
    assert stats["token_requests"][two.client_id] == 1
    assert [entry["auth_method"] for entry in oauth_server.token_requests(one.client_id)] == ["client_secret_basic"] * 4
    assert CLIENT_ID not in stats["token_requests"]  # the reset before this test cleared earlier counts


# --- The token server's switches ----------------------------------------------------------------


def test_the_fail_switch_answers_500_for_the_next_request_only_and_still_counts_it(oauth_server, oauth_client):
    oauth_server.fail(500, times=1)

    first = token_request(oauth_server, oauth_client)
    second = token_request(oauth_server, oauth_client)

    assert first.status_code == 500
    assert second.status_code == 200
    assert oauth_server.token_request_count(oauth_client.client_id) == 2
    assert oauth_server.tokens_issued(oauth_client.client_id) == 1


def test_the_slow_switch_makes_a_client_time_out(oauth_server, oauth_client):
    oauth_server.slow(10)

    with pytest.raises(requests.ReadTimeout):
        requests.post(oauth_server.token_url, data={"grant_type": "client_credentials"},
                      auth=oauth_client.basic_auth, timeout=(TIMEOUT, 0.3))

    oauth_server.clear()
    assert token_request(oauth_server, oauth_client).status_code == 200


def test_a_token_server_that_is_down_refuses_connections_while_backends_keep_validating(
        oauth_server, oauth_client, rest_backend):
    token = oauth_server.fetch_token(oauth_client)["access_token"]
    with requests.Session() as pooled:  # a kept-alive connection must be cut too, not only new ones
        pooled.post(oauth_server.token_url, data={"grant_type": "client_credentials"}, auth=oauth_client.basic_auth,
                    timeout=TIMEOUT)
        oauth_server.down()

        with pytest.raises(requests.ConnectionError):
            pooled.post(oauth_server.token_url, data={"grant_type": "client_credentials"},
                        auth=oauth_client.basic_auth, timeout=TIMEOUT)

    # The backends introspect on the internal listener, which the switches never touch.
    assert get_customer(rest_backend, token).status_code == 200
    oauth_server.up()
    assert token_request(oauth_server, oauth_client).status_code == 200  # same URL as before


def test_the_drop_switch_closes_the_connection_without_an_answer(oauth_server, oauth_client):
    oauth_server.drop(times=1)

    with pytest.raises(requests.ConnectionError):
        token_request(oauth_server, oauth_client)

    assert token_request(oauth_server, oauth_client).status_code == 200


def test_a_killed_token_server_refuses_connections_and_its_backend_answers_503(private_http_servers: HttpServers):
    oauth = private_http_servers.oauth()
    backend = private_http_servers.rest("oauth")
    token = oauth.fetch_token(oauth.add_client())["access_token"]
    assert get_customer(backend, token).status_code == 200

    oauth.kill()

    with pytest.raises(requests.ConnectionError):
        requests.post(oauth.token_url, data={"grant_type": "client_credentials"}, timeout=TIMEOUT)
    # The backend cannot tell a good token from a bad one now: unavailable, not unauthorized.
    unavailable = get_customer(backend, token)
    assert (unavailable.status_code, unavailable.json()["error"]) == (503, "temporarily_unavailable")


def test_a_server_whose_test_run_died_stops_by_itself(tmp_path):
    # A parent standing in for a pytest process that crashes: it starts a token server, says
    # the server's pid, and is then killed without any chance to stop it.
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        server_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert proc_stat(server_pid) is not None
    finally:
        parent.kill()
        parent.wait(timeout=10)

    # The server notices its parent is gone (it checks twice a second) and exits.
    wait_for(lambda: (stat := proc_stat(server_pid)) is None or stat.state in "ZX", timeout=10,
             message="the orphaned server kept running")


PARENT_SCRIPT = """
import sys, time
from pathlib import Path
from tests.servers.http_handles import OAuthServer
server = OAuthServer(log_dir=Path(sys.argv[1])).start()
print(server.process.pid, flush=True)
time.sleep(60)
"""


# --- The REST backend -----------------------------------------------------------------------------


def test_the_backend_answers_a_request_without_a_token_with_a_bare_bearer_challenge(rest_backend):
    response = requests.get(f"{rest_backend.url}/customers/123", timeout=TIMEOUT)

    # RFC 6750 §3.1: no credentials at all gets a challenge without an error code.
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="rest-backend"'


def test_the_backend_refuses_an_unknown_token_and_a_token_without_the_scope_it_needs(
        oauth_server, make_oauth_client, rest_backend):
    unknown = get_customer(rest_backend, "made-up-token")
    token = oauth_server.fetch_token(make_oauth_client(scopes=["customers:read"]))["access_token"]
    lacking = requests.get(f"{rest_backend.url}/scope/billing:read", headers=bearer(token), timeout=TIMEOUT)
    having = requests.get(f"{rest_backend.url}/scope/customers:read", headers=bearer(token), timeout=TIMEOUT)

    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    assert lacking.status_code == 403  # RFC 6750 §3.1 insufficient_scope
    assert 'error="insufficient_scope", scope="billing:read"' in lacking.headers["WWW-Authenticate"]
    assert having.status_code == 200


def test_a_backend_requiring_an_audience_refuses_tokens_issued_for_another(private_http_servers: HttpServers):
    oauth = private_http_servers.oauth()
    backend = private_http_servers.rest("oauth", audience="https://crm.example.com")
    client = oauth.add_client()

    without = get_customer(backend, oauth.fetch_token(client)["access_token"])
    other = get_customer(backend, oauth.fetch_token(client, audience="https://erp.example.com")["access_token"])
    right = get_customer(backend, oauth.fetch_token(client, audience="https://crm.example.com")["access_token"])

    assert (without.status_code, other.status_code, right.status_code) == (401, 401, 200)
    assert 'error="invalid_token"' in other.headers["WWW-Authenticate"]


def test_the_backend_echoes_each_method_on_a_customer_with_the_cid(oauth_server, oauth_client, rest_backend):
    headers = {**bearer(oauth_server.fetch_token(oauth_client)["access_token"]), "X-Zato-CID": "cid-0001"}
    url = f"{rest_backend.url}/customers/77"

    def call(method: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)

    created = call("POST", json={"name": "Delta"}, params={"source": "test"})
    echo = created.json()["echo"]
    assert created.status_code == 201
    assert (echo["method"], echo["path"], echo["query"], echo["cid"]) == ("POST", "/customers/77",
                                                                          {"source": ["test"]}, "cid-0001")
    assert echo["body"] == {"name": "Delta"}
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["x-zato-cid"] == "cid-0001"
    assert call("GET").json()["customer"] == {"name": "Delta", "id": "77"}
    assert call("PUT", json={"name": "Delta Two"}).status_code == 200  # replaced, not created
    patched = call("PATCH", json={"plan": "gold"})
    assert patched.json()["customer"] == {"name": "Delta Two", "plan": "gold", "id": "77"}
    assert call("DELETE").json()["deleted"] == "77"
    assert call("GET").status_code == 404
    not_json = requests.patch(f"{rest_backend.url}/customers/1", data=b"not json", timeout=TIMEOUT,
                              headers={**headers, "Content-Type": "text/plain"})
    assert not_json.status_code == 400
    assert [entry["method"] for entry in rest_backend.requests("/customers/77")] == [
        "POST", "GET", "PUT", "PATCH", "DELETE", "GET"]


def test_the_backend_serves_fifty_simultaneous_callers_checking_each_token(oauth_server, oauth_client, rest_backend):
    token = oauth_server.fetch_token(oauth_client)["access_token"]
    before = oauth_server.stats()["introspections"]
    start = threading.Barrier(50, timeout=TIMEOUT)

    def call(number: int) -> int:
        start.wait()  # all 50 connect at once, on connections of their own
        return requests.get(f"{rest_backend.url}/billing-plan", params={"client_id": number}, headers=bearer(token),
                            timeout=TIMEOUT).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(call, range(50)))

    assert statuses == [200] * 50
    assert oauth_server.stats()["introspections"] - before == 50  # one per request: no cache in the backend


def test_the_backend_answers_the_billing_plan_of_a_client(oauth_server, oauth_client, rest_backend):
    headers = bearer(oauth_server.fetch_token(oauth_client)["access_token"])

    plan = requests.get(f"{rest_backend.url}/billing-plan", params={"client_id": 123}, headers=headers,
                        timeout=TIMEOUT)
    missing = requests.get(f"{rest_backend.url}/billing-plan", headers=headers, timeout=TIMEOUT)

    assert (plan.status_code, plan.json()["plan"], plan.json()["client_id"]) == (200, "gold", "123")
    assert missing.status_code == 400


def test_the_open_backend_serves_non_json_answers_and_any_status(rest_backend_open):
    def get(path: str) -> requests.Response:
        return requests.get(f"{rest_backend_open.url}{path}", timeout=TIMEOUT, allow_redirects=False)

    text, html, broken, empty = (get(f"/not-json?kind={kind}") for kind in ("text", "html", "broken", "empty"))
    assert text.headers["Content-Type"].startswith("text/plain")
    assert html.headers["Content-Type"].startswith("text/html")
    assert broken.headers["Content-Type"] == "application/json"
    with pytest.raises(requests.JSONDecodeError):
        broken.json()
    assert empty.content == b""
    no_content = get("/status/204")
    assert (no_content.status_code, no_content.content) == (204, b"")
    busy = get("/status/503?retry_after=7")
    assert (busy.status_code, busy.headers["Retry-After"], busy.json()["status"]) == (503, "7", 503)
    assert get("/status/302?location=/echo").headers["Location"] == "/echo"
    assert get("/echo").json()["echo"]["auth"] == {"scheme": "none"}
    assert get("/nowhere").status_code == 404
    not_allowed = requests.delete(f"{rest_backend_open.url}/billing-plan", timeout=TIMEOUT)
    assert (not_allowed.status_code, not_allowed.headers["Allow"]) == (405, "GET, HEAD")


def test_the_slow_endpoint_makes_a_client_time_out(rest_backend_open):
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{rest_backend_open.url}/slow", params={"seconds": 10}, timeout=(TIMEOUT, 0.2))

    assert requests.get(f"{rest_backend_open.url}/slow", params={"seconds": 0}, timeout=TIMEOUT).status_code == 200


def test_the_backend_with_basic_auth_wants_the_right_username_and_password(rest_backend_basic):
    url = f"{rest_backend_basic.url}/echo"

    anonymous = requests.get(url, timeout=TIMEOUT)
    wrong = requests.get(url, auth=("backend-user", "wrong"), timeout=TIMEOUT)
    right = requests.get(url, auth=rest_backend_basic.basic_auth, timeout=TIMEOUT)

    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="rest-backend"')
    assert wrong.status_code == 401
    assert right.json()["echo"]["auth"] == {"scheme": "basic", "username": "backend-user"}


def test_the_backend_with_an_api_key_wants_it_in_its_header(rest_backend_apikey):
    url = f"{rest_backend_apikey.url}/customers/1"

    without = requests.get(url, timeout=TIMEOUT)
    wrong = requests.get(url, headers={rest_backend_apikey.api_key_header: "nope"}, timeout=TIMEOUT)
    right = requests.get(url, headers={rest_backend_apikey.api_key_header: rest_backend_apikey.api_key},
                         timeout=TIMEOUT)

    assert (without.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert right.json()["customer"]["name"] == "Alpha Logistics"


def test_the_backend_switches_fail_and_down_like_the_token_server_s(rest_backend_open):
    url = f"{rest_backend_open.url}/echo"
    rest_backend_open.fail(502)
    assert requests.get(url, timeout=TIMEOUT).status_code == 502

    rest_backend_open.down()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=TIMEOUT)

    rest_backend_open.clear()
    assert requests.get(url, timeout=TIMEOUT).status_code == 200


# --- TLS --------------------------------------------------------------------------------------------


def test_https_verifies_with_the_test_ca_and_fails_with_another_ca_or_the_system_store(rest_backend_tls,
                                                                                        loopback_ca: LoopbackCA):
    url = f"{rest_backend_tls.url}/echo"
    assert url.startswith("https://127.0.0.1:")

    assert requests.get(url, verify=str(loopback_ca.ca_cert), timeout=TIMEOUT).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=str(loopback_ca.other_ca_cert), timeout=TIMEOUT)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=TIMEOUT)  # the system's CAs never signed the test certificate
    # The same certificate names localhost too, so a connection may use either name.
    localhost = url.replace("127.0.0.1", "localhost")
    assert requests.get(localhost, verify=str(loopback_ca.ca_cert), timeout=TIMEOUT).status_code == 200


# --- Hostile input never breaks a server ----------------------------------------------------------

FORM_NAMES = st.sampled_from(["grant_type", "scope", "client_id", "client_secret", "audience", "x", ""])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.lists(st.tuples(FORM_NAMES, st.text(max_size=20)), max_size=6), raw=st.binary(max_size=40),
       use_raw=st.booleans(), with_basic=st.booleans())
def test_the_token_endpoint_answers_any_form_with_an_oauth_error_or_a_token(oauth_server, oauth_client, form, raw,
                                                                             use_raw, with_basic):
    auth = oauth_client.basic_auth if with_basic else None
    body: Any = raw if use_raw else form
    response = requests.post(oauth_server.token_url, data=body, auth=auth, timeout=TIMEOUT,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code in (200, 400, 401)
    expected = "access_token" if response.status_code == 200 else "error"  # RFC 6749 §5.1 / §5.2
    assert expected in response.json()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
       path=st.sampled_from(["/", "/customers", "/customers/1", "/customers/%00", "/billing-plan", "/echo/x",
                             "/not-json", "/status/700", "/status/200", "/scope/a", "/nowhere"]),
       query=st.text(max_size=20), body=st.binary(max_size=40), json_type=st.booleans())
def test_the_backend_answers_any_request_without_a_server_error(rest_backend_open, method, path, query, body,
                                                                json_type):
    headers = {"Content-Type": "application/json" if json_type else "application/octet-stream"}

    response = requests.request(method, f"{rest_backend_open.url}{path}", params={"q": query, "client_id": query},
                                data=body, headers=headers, timeout=TIMEOUT)

    assert response.status_code < 500  # /status/700 is not a status HTTP has: refused with 400
