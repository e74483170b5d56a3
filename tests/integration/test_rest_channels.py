"""REST channels: Zato 3.1+ matching by path, method and Accept, and every error shape."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integration.models import RestChannel
from tests.conftest import basic_header

pytestmark = pytest.mark.django_db

USER_SERVICES = """
    from integration.services import Service

    class GetUser(Service):
        class SimpleIO:
            input_required = ("user_id",)
            response_elem = None
        def handle(self):
            self.response.payload = {"action": "get", "user_id": self.request.input.user_id}

    class CreateUser(Service):
        class SimpleIO:
            input_required = ("name", "email")
            response_elem = None
        def handle(self):
            self.response.status_code = 201
            self.response.payload = {"action": "create", "name": self.request.input.name}

    class DeleteUser(Service):
        class SimpleIO:
            input_required = ("user_id",)
            response_elem = None
        def handle(self):
            self.response.payload = {"action": "delete", "user_id": self.request.input.user_id}
"""


def assert_error_shape(response, status: int, details: str | None = None) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["result"] == "Error"
    assert re.fullmatch(r"[0-9a-f]{24}", body["cid"])
    assert response["X-Zato-CID"] == body["cid"]
    if details is not None:
        assert body["details"] == details
    return body


@pytest.fixture
def user_api(deploy, make_channel) -> None:
    """The seed's example: one path, one service per method, each with its own input."""
    deploy("users.py", USER_SERVICES)
    make_channel("/api/user", "users.get-user", method="GET")
    make_channel("/api/user", "users.create-user", method="POST")
    make_channel("/api/user", "users.delete-user", method="DELETE")


def test_each_method_on_one_path_reaches_its_own_service_with_its_own_input(client, user_api) -> None:
    got = client.get("/api/user?user_id=5")
    created = client.post("/api/user", {"name": "Ann", "email": "ann@example.com"}, content_type="application/json")
    deleted = client.delete("/api/user?user_id=9")
    # user_id is an int by Zato's naming convention (*_id), so the query string "5" arrives as 5.
    assert got.json() == {"action": "get", "user_id": 5}
    assert created.status_code == 201
    assert created.json() == {"action": "create", "name": "Ann"}
    assert deleted.json() == {"action": "delete", "user_id": 9}
    # POST's input declaration is its own: GET's user_id is not required there.
    missing = client.post("/api/user", {"name": "Ann"}, content_type="application/json")
    assert_error_shape(missing, 400, "Element missing: email")


def test_a_path_without_the_method_is_405_with_allow(client, user_api) -> None:
    response = client.put("/api/user", {}, content_type="application/json")
    assert_error_shape(response, 405)
    assert response["Allow"] == "DELETE, GET, POST"


def test_an_unknown_path_is_404_in_the_one_shape(client, user_api) -> None:
    assert_error_shape(client.get("/api/nothing-here"), 404, "URL not found")


def test_json_and_pdf_invoices_share_method_and_path_by_accept(client, builtins, make_channel) -> None:
    make_channel("/api/invoice", "demo.invoice-json", method="POST", accept="application/json")
    make_channel("/api/invoice", "demo.invoice-pdf", method="POST", accept="application/pdf")
    as_json = client.post("/api/invoice", {"no": 1}, content_type="application/json", HTTP_ACCEPT="application/json")
    as_pdf = client.post("/api/invoice", {"no": 1}, content_type="application/json", HTTP_ACCEPT="application/pdf")
    assert as_json.json() == {"invoice": {"no": 1}, "format": "json"}
    assert as_pdf["Content-Type"] == "application/pdf"
    assert as_pdf.content.startswith(b"%PDF")
    # Real negotiation: a list with q-values picks the client's preferred type.
    preferred = client.post("/api/invoice", {}, content_type="application/json",
                            HTTP_ACCEPT="application/json;q=0.4, application/pdf;q=0.9")
    assert preferred["Content-Type"] == "application/pdf"
    # Nothing offered matches: 406, not Zato's 404.
    refused = client.post("/api/invoice", {}, content_type="application/json", HTTP_ACCEPT="image/png")
    assert_error_shape(refused, 406)


def test_a_text_pattern_channel_lets_the_service_read_the_actual_accept(client, builtins, make_channel) -> None:
    make_channel("/api/report", "demo.text-any", method="GET", accept="text/*")
    csv = client.get("/api/report", HTTP_ACCEPT="text/csv")
    xml = client.get("/api/report", HTTP_ACCEPT="text/xml; q=0.8")
    assert csv.content == b"You asked for text/csv"
    assert csv["Content-Type"] == "text/csv"
    assert xml.content == b"You asked for text/xml"
    assert_error_shape(client.get("/api/report", HTTP_ACCEPT="application/json"), 406)


def test_the_most_specific_accept_wins(client, builtins, make_channel) -> None:
    make_channel("/api/doc", "demo.echo", method="GET", name="any")
    make_channel("/api/doc", "demo.text-any", method="GET", accept="text/*", name="pattern")
    make_channel("/api/doc", "demo.hello", method="GET", accept="text/html", name="exact")
    # exact beats pattern beats any, for the same q
    assert client.get("/api/doc", HTTP_ACCEPT="text/html").json()["hello"] == "world"
    assert client.get("/api/doc", HTTP_ACCEPT="text/plain").content == b"You asked for text/plain"
    assert client.get("/api/doc", HTTP_ACCEPT="application/json").content == b""  # echo of no payload


def test_path_parameters_and_query_merge_into_input_query_winning(client, builtins, make_channel) -> None:
    make_channel("/api/customer/{customer_id}", "demo.get-customer", method="GET")
    assert client.get("/api/customer/12").json() == {
        "response": {"customer_id": 12, "name": "Customer 12", "email": None}
    }
    # Zato's default qs-over-path: the query string wins over the path.
    assert client.get("/api/customer/12?customer_id=13").json()["response"]["customer_id"] == 13


def test_handle_verb_dispatch_on_a_channel_without_method(client, builtins, make_channel) -> None:
    make_channel("/api/resource/{id}", "demo.resource")
    assert client.get("/api/resource/3").json() == {"method": "GET", "params": {"id": "3"}}
    assert client.delete("/api/resource/3").status_code == 204
    response = client.post("/api/resource/3", {}, content_type="application/json")
    assert_error_shape(response, 405)
    assert response["Allow"] == "DELETE, GET"


def test_an_inactive_channel_answers_404_channel_inactive(client, builtins, make_channel) -> None:
    make_channel("/api/off", "demo.hello", is_active=False)
    assert_error_shape(client.get("/api/off"), 404, "Channel inactive")


def test_plain_text_channels_pass_the_body_as_a_string(client, builtins, make_channel) -> None:
    make_channel("/api/text", "demo.echo", method="POST", data_format="text")
    response = client.post("/api/text", "<a>not json</a>", content_type="application/xml")
    assert response.status_code == 200
    assert response.content == b"<a>not json</a>"
    assert response["Content-Type"].startswith("text/plain")


def test_malformed_json_is_a_400_that_says_where(client, builtins, make_channel) -> None:
    make_channel("/api/echo", "demo.echo", method="POST")
    response = client.post("/api/echo", '{"a": 1,', content_type="application/json")
    body = assert_error_shape(response, 400)
    assert body["details"].startswith("Invalid JSON in request body")


def test_a_wrong_content_type_is_415(client, builtins, make_channel) -> None:
    make_channel("/api/echo", "demo.echo", method="POST")
    assert_error_shape(client.post("/api/echo", b"\x89PNG", content_type="image/png"), 415)
    # curl -d sends form-encoded by default: a JSON body that way still works.
    curl_style = client.post("/api/echo", '{"a": 1}', content_type="application/x-www-form-urlencoded")
    assert curl_style.json() == {"a": 1}


def test_an_oversized_body_is_413(client, builtins, make_channel, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.MAX_REQUEST_BODY = 1000
    make_channel("/api/echo", "demo.echo", method="POST")
    response = client.post("/api/echo", json.dumps({"x": "y" * 2000}), content_type="application/json")
    assert_error_shape(response, 413)


def test_an_unsupported_method_is_405(client, builtins, make_channel) -> None:
    make_channel("/api/echo", "demo.echo")
    response = client.generic("TRACE", "/api/echo")
    assert_error_shape(response, 405, "Unsupported HTTP method")


def test_a_service_exception_is_500_in_the_one_shape(client, deploy, make_channel) -> None:
    deploy("boom.py", """
        from integration.services import Service
        class Boom(Service):
            def handle(self):
                1 / 0
    """)
    make_channel("/api/boom", "boom.boom")
    body = assert_error_shape(client.get("/api/boom"), 500)
    assert "ZeroDivisionError" not in json.dumps(body)


def test_basic_auth_protects_a_channel(client, builtins, make_channel, basic_auth) -> None:
    definition = basic_auth(realm="CRM")
    make_channel("/api/secure", "demo.hello", security=definition)
    denied = client.get("/api/secure")
    assert_error_shape(denied, 401)
    assert denied["WWW-Authenticate"] == 'Basic realm="CRM"'
    wrong = client.get("/api/secure", HTTP_AUTHORIZATION=basic_header("crm-user", "nope"))
    assert_error_shape(wrong, 401)
    garbage = client.get("/api/secure", HTTP_AUTHORIZATION="Basic !!!")
    assert_error_shape(garbage, 401)
    ok = client.get("/api/secure", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret"))
    assert ok.status_code == 200


def test_an_inactive_definition_rejects_even_good_credentials(client, builtins, make_channel, basic_auth) -> None:
    make_channel("/api/secure", "demo.hello", security=basic_auth(is_active=False))
    response = client.get("/api/secure", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret"))
    assert_error_shape(response, 401)


def test_a_channel_request_makes_no_configuration_queries(client, builtins, make_channel, basic_auth) -> None:
    make_channel("/api/secure/{x}", "demo.hello", security=basic_auth(), method="GET")
    make_channel("/api/open", "demo.hello")
    auth = basic_header("crm-user", "crm-secret")
    client.get("/api/open")  # builds the snapshot
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/open").status_code == 200
        assert client.get("/api/secure/1", HTTP_AUTHORIZATION=auth).status_code == 200
        assert client.get("/api/nowhere").status_code == 404
    assert [q["sql"] for q in queries.captured_queries] == []


def test_a_change_in_this_process_takes_effect_at_once(client, builtins, make_channel) -> None:
    channel = make_channel("/api/moving", "demo.hello")
    assert client.get("/api/moving").status_code == 200
    channel.url_path = "/api/moved"
    channel.save()
    assert client.get("/api/moving").status_code == 404
    assert client.get("/api/moved").status_code == 200
    RestChannel.objects.filter(pk=channel.pk).delete()
    assert client.get("/api/moved").status_code == 404


def test_every_channel_response_carries_the_cid(client, builtins, make_channel) -> None:
    make_channel("/api/hello", "demo.hello")
    response = client.get("/api/hello")
    assert response.json()["cid"] == response["X-Zato-CID"]
