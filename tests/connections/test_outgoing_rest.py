"""Outgoing REST connections against the loopback REST backend: calls, security, errors, pools, ping.

Everything goes over real sockets to ``tests/servers/rest_backend.py`` (in its own process),
which echoes what it received; nothing is patched.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connections.base import ConnectionNotFound, ConnectionUnavailable
from connections.http_common import (
    BackendTimeout,
    BackendTLSError,
    BackendUnreachable,
    InvalidCall,
    InvalidResponse,
    parse_header_lines,
)
from connections.models import OutgoingRest
from connections.rest import compile_path, fill_path
from integration import snapshot
from tests.conftest import basic_header
from tests.connections.outgoing_fixtures import _empty_token_cache, closed_port, make_rest, out  # noqa: F401

pytestmark = pytest.mark.django_db

CID = "a1b2c3d4e5f6a1b2c3d4e5f6"


def test_get_fills_the_path_parameters_sends_the_rest_as_query_and_the_cid(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/customers/{cust_id}")

    response = out("rest", "REST Server").conn.get(CID, {"cust_id": 123, "detail": "full", "tag": ["a", "b"]})

    assert response.status_code == 200 and response.status == 200 and response.ok
    assert response.data["customer"]["id"] == "123" and response.data["customer"]["plan"] == "gold"
    echo = response.data["echo"]
    assert echo["path"] == "/customers/123"
    assert echo["query"] == {"detail": ["full"], "tag": ["a", "b"]}
    assert echo["cid"] == CID  # X-Zato-CID, as Zato sends it
    assert echo["headers"]["accept"] == "application/json"
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.text) == response.data


def test_path_parameters_are_url_quoted_so_they_cannot_change_the_path(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url + "/echo", url_path="/{a}/x")

    response = out("rest", "REST Server").conn.get(CID, {"a": "../b c?d=1"})

    assert response.status_code == 200  # still /echo/<one segment>/x: the slash did not climb out
    assert response.url.endswith("/echo/..%2Fb%20c%3Fd%3D1/x")
    assert response.data["echo"]["query"] == {}  # the ? stayed in the path segment, quoted


def test_post_put_patch_and_delete_send_json_bodies(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/customers/{cust_id}")
    conn = out("rest", "REST Server").conn

    created = conn.put(CID, {"name": "Delta", "plan": "basic"}, {"cust_id": "77"})
    patched = conn.patch(CID, {"plan": "gold"}, {"cust_id": "77"})
    read = conn.get(CID, {"cust_id": "77"})
    deleted = conn.delete(CID, params={"cust_id": "77"})
    gone = conn.get(CID, {"cust_id": "77"})

    assert created.status_code == 201
    assert created.data["echo"]["content_type"] == "application/json"
    assert created.data["echo"]["body"] == {"name": "Delta", "plan": "basic"}
    assert patched.status_code == 200 and read.data["customer"]["plan"] == "gold"
    assert deleted.status_code == 200
    assert gone.status_code == 404 and gone.data["error"] == "not_found"  # statuses come back, as in Zato


def test_post_sends_strings_as_they_are_and_the_callers_headers_win(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/echo", default_headers="X-Team: billing\nX-Env: test")

    response = out("rest", "REST Server").conn.post(CID, "plain words", headers={"Content-Type": "text/plain",
                                                                                "X-Env": "override"})

    echo = response.data["echo"]
    assert echo["body"] == "plain words" and echo["content_type"] == "text/plain"
    assert echo["headers"]["x-team"] == "billing" and echo["headers"]["x-env"] == "override"


def test_callers_headers_replace_defaults_whatever_their_case_and_none_removes_one(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/echo", default_headers="X-Team: billing\nX-Env: test")

    response = out("rest", "REST Server").conn.get(CID, headers={"x-env": "override", "X-Team": None,
                                                                 "accept": "text/plain"})

    sent = dict(response.raw.request.headers.lower_items())
    assert len(response.raw.request.headers) == len(sent)  # one of each, whatever the case
    assert sent["x-env"] == "override" and sent["accept"] == "text/plain" and "x-team" not in sent
    assert sent["x-zato-cid"] == CID and response.data["echo"]["headers"]["x-env"] == "override"


def test_a_raw_connection_gives_text(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/not-json", data_format="raw")

    response = out("rest", "REST Server").conn.get(CID, {"kind": "html"})

    assert response.status_code == 200 and "<" in response.data and response.data == response.text


def test_plain_http_is_zatos_other_name_for_rest(rest_backend_open, deploy: Any, builtins: None) -> None:
    make_rest(address=rest_backend_open.url, url_path="/billing-plan")
    deploy("billing.py", """
        from integration.services import Service

        class GetClientBillingPlan(Service):
            def handle(self):
                conn = self.outgoing.plain_http["REST Server"].conn
                response = conn.get(self.cid, {"client_id": 123})
                self.response.payload = {"plan": response.data["plan"], "cid": response.data["echo"]["cid"]}
    """)
    from integration.invoke import invoke

    result = invoke("billing.get-client-billing-plan", {}, cid=CID)

    assert result.payload == {"plan": "gold", "cid": CID}


# --- Security -------------------------------------------------------------------------------------------


def test_basic_auth_is_sent_with_the_stored_password(rest_backend_basic) -> None:
    user, password = rest_backend_basic.basic_auth
    make_rest(address=rest_backend_basic.url, url_path="/customers/1", auth_type="basic", username=user,
              password=password)
    make_rest("wrong", address=rest_backend_basic.url, url_path="/customers/1", auth_type="basic", username=user,
              password="not-it")

    assert out("rest", "REST Server").conn.get(CID).data["echo"]["auth"]["username"] == user
    assert out("rest", "wrong").conn.get(CID).status_code == 401


def test_an_api_key_is_sent_in_its_header(rest_backend_apikey) -> None:
    make_rest(address=rest_backend_apikey.url, url_path="/customers/1", auth_type="apikey",
              api_key_header=rest_backend_apikey.api_key_header, password=rest_backend_apikey.api_key)

    response = out("rest", "REST Server").conn.get(CID)

    assert response.status_code == 200
    assert response.data["echo"]["headers"][rest_backend_apikey.api_key_header.lower()] == rest_backend_apikey.api_key


def test_the_password_is_stored_encrypted_and_never_in_the_settings_repr(rest_backend_basic) -> None:
    row = make_rest(address=rest_backend_basic.url, auth_type="basic", username="u", password="s3cret-pass")
    assert "s3cret-pass" not in row.password_encrypted
    connection = out("rest", "REST Server")
    assert "s3cret-pass" not in repr(connection.settings)


# --- Clear errors -------------------------------------------------------------------------------------


def test_an_unreachable_backend_is_a_clear_error_naming_the_connection() -> None:
    make_rest(address=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(BackendUnreachable) as caught:
        out("rest", "REST Server").conn.get(CID)

    assert caught.value.status_code == 502
    assert str(caught.value) == "Outgoing REST connection `REST Server`: cannot connect: Connection refused"


def test_a_slow_backend_is_a_timeout_within_the_connections_timeout(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/slow", timeout=0.3)

    with pytest.raises(BackendTimeout) as caught:
        out("rest", "REST Server").conn.get(CID, {"seconds": "3"})

    assert caught.value.status_code == 504
    assert "`REST Server`: no answer within 0.3 s" in str(caught.value)


def test_a_certificate_from_an_unknown_ca_is_a_tls_error_and_the_right_ca_works(rest_backend_tls, loopback_ca
                                                                                ) -> None:
    make_rest("untrusted", address=rest_backend_tls.url)
    make_rest("trusted", address=rest_backend_tls.url, url_path="/customers/1",
              tls_ca_cert=loopback_ca.ca_cert.read_text())

    with pytest.raises(BackendTLSError) as caught:
        out("rest", "untrusted").conn.get(CID)

    assert "certificate verify failed" in str(caught.value)
    assert out("rest", "trusted").conn.get(CID).data["customer"]["id"] == "1"


@pytest.mark.parametrize("kind", ["html", "text", "broken"])
def test_a_json_connection_refuses_a_2xx_answer_that_is_not_json(rest_backend_open, kind: str) -> None:
    make_rest(address=rest_backend_open.url, url_path="/not-json")

    with pytest.raises(InvalidResponse) as caught:
        out("rest", "REST Server").conn.get(CID, {"kind": kind})

    assert "`REST Server`: the answer (200, " in str(caught.value) and "is not JSON" in str(caught.value)


def test_an_empty_answer_is_no_data_not_an_error(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/not-json")
    assert out("rest", "REST Server").conn.get(CID, {"kind": "empty"}).data is None


def test_a_missing_path_parameter_names_it() -> None:
    make_rest(address="http://127.0.0.1:9", url_path="/customers/{cust_id}")

    with pytest.raises(InvalidCall) as caught:
        out("rest", "REST Server").conn.get(CID, {"other": 1})

    assert "no value for the URL path parameter 'cust_id' of /customers/{cust_id}" in str(caught.value)


def test_a_missing_or_inactive_connection_is_named() -> None:
    make_rest("off", address="http://127.0.0.1:9", is_active=False)
    with pytest.raises(ConnectionNotFound, match="No outgoing rest connection is named `nope`"):
        out("rest", "nope")
    with pytest.raises(ConnectionUnavailable, match="`off` is inactive"):
        out("plain_http", "off")


def test_a_failed_call_reaches_the_channels_caller_in_the_one_error_shape_with_the_cid(
        deploy: Any, make_channel: Any, basic_auth: Any) -> None:
    make_rest(address=f"http://127.0.0.1:{closed_port()}")
    deploy("caller.py", """
        from integration.services import Service

        class CallIt(Service):
            def handle(self):
                self.response.payload = self.out.rest["REST Server"].conn.get(self.cid).data
    """)
    make_channel("/api/call-it", "caller.call-it", security=basic_auth())

    response = Client().get("/api/call-it", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret"))

    assert response.status_code == 502
    body = response.json()
    assert body["result"] == "Error" and body["cid"] == response["X-Zato-CID"]
    assert body["details"] == "Outgoing REST connection `REST Server`: cannot connect: Connection refused"


# --- Pools: per process, kept while the row is unchanged, rebuilt when it changes ----------------------


def test_an_unchanged_connection_keeps_its_pool_and_a_changed_one_is_rebuilt(rest_backend_open, monkeypatch) -> None:
    monkeypatch.setattr("connections.base.RETIRE_AFTER", 0)  # closed at once here; a minute in production
    row = make_rest(address=rest_backend_open.url, url_path="/customers/{cust_id}")
    make_rest("other", address=rest_backend_open.url)
    first = out("rest", "REST Server")
    first.conn.get(CID, {"cust_id": 1})
    pool = first.session.get_adapter(rest_backend_open.url).poolmanager

    OutgoingRest.objects.filter(name="other").first().save()  # another row saved: a new version
    snapshot.refresh()
    assert out("rest", "REST Server") is first and len(pool.pools) == 1  # warm

    row.url_path = "/customers/{cust_id}/"
    row.timeout = 2.0
    row.save()
    second = out("rest", "REST Server")
    assert second is not first and second.settings.timeout == 2.0
    assert len(pool.pools) == 0  # the old one was closed once the new snapshot was in place


def test_sockets_are_reused_across_calls(rest_backend_open) -> None:
    make_rest(address=rest_backend_open.url, url_path="/customers/1")
    conn = out("rest", "REST Server").conn
    for _ in range(5):
        conn.get(CID)
    pool = conn.session.get_adapter(rest_backend_open.url).poolmanager
    (connection_pool,) = pool.pools._container.values()  # urllib3 refuses to iterate it from outside
    assert connection_pool.num_connections == 1  # five calls, one socket


# --- Ping: admin button and API ---------------------------------------------------------------------


def test_ping_reports_the_answer_and_the_time(rest_backend_open, api: Any) -> None:
    row = make_rest(address=rest_backend_open.url)
    make_rest("down", address=f"http://127.0.0.1:{closed_port()}")

    good = api.post(f"/manage/api/v1/outgoing/rest/{row.pk}/ping/").json()
    bad = api.post(f"/manage/api/v1/outgoing/rest/{OutgoingRest.objects.get(name='down').pk}/ping/").json()

    assert good["ok"] is True and good["info"] == f"HEAD {rest_backend_open.url}/ answered 200 OK"
    assert good["ms"] > 0 and good["name"] == "REST Server"
    assert bad["ok"] is False and bad["info"].endswith(": cannot connect: Connection refused")


def test_ping_says_when_credentials_are_refused(rest_backend_basic) -> None:
    row = make_rest(address=rest_backend_basic.url, auth_type="basic", username="x", password="y")
    result = row.ping()
    assert not result.ok and result.info.endswith("answered 401 Unauthorized, credentials refused")


# --- Parsers of raw input -----------------------------------------------------------------------------


names = st.text(alphabet="abcxyz_019", min_size=1, max_size=6).map(lambda text: "p" + text)
literal = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=8)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(literal, names), max_size=4, unique_by=lambda pair: pair[1]), literal,
       st.dictionaries(names, st.text(max_size=8), max_size=3))
def test_filling_a_path_puts_each_value_quoted_in_its_place_and_keeps_the_rest(parts, tail, extra) -> None:
    template = "".join(f"{text}{{{name}}}" for text, name in parts) + tail
    values = {name: f"v/{index}?" for index, (_, name) in enumerate(parts)}
    params = {**{k: v for k, v in extra.items() if k not in values}, **values}

    literals, found = compile_path(template)
    path, left = fill_path(literals, found, params)

    assert found == tuple(name for _, name in parts)
    assert path == "".join(f"{text}v%2F{index}%3F" for index, (text, _) in enumerate(parts)) + tail
    assert left == {k: v for k, v in params.items() if k not in values}


@given(st.text(max_size=200))
def test_header_lines_parse_or_fail_with_a_clear_message(text: str) -> None:
    try:
        headers = parse_header_lines(text)
    except ValueError as exc:
        assert str(exc).startswith(("Write each header as", "The value of header"))
    else:
        for name, value in headers.items():
            assert name and ":" not in name and "\n" not in value and "\r" not in value
