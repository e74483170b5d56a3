"""Management API: services, REST channels, invoke; authentication, atomic writes, error shape."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from integration.models import RestChannel
from tests.conftest import api_client_for, verified_login

pytestmark = pytest.mark.django_db
API = "/manage/api/v1"
GOOD = "from integration.services import Service\nclass Quote(Service):\n    def handle(self):\n" \
       "        self.response.payload = {'quote': self.request.input.get('symbol', '?')}\n"


def assert_api_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["result"] == "Error"
    assert re.fullmatch(r"[0-9a-f]{24}", body["cid"])
    assert response["X-Zato-CID"] == body["cid"]
    return body


def test_it_refuses_anonymous_callers_and_non_admins(bob) -> None:
    assert_api_error(APIClient().get(f"{API}/services/"), 401)
    assert_api_error(api_client_for(bob).get(f"{API}/services/"), 403)


def test_staff_with_model_permissions_may_do_what_they_allow(bob, builtins) -> None:
    from django.contrib.auth.models import Permission

    bob.user_permissions.add(Permission.objects.get(codename="view_restchannel"))
    client = api_client_for(bob)
    assert client.get(f"{API}/channels/rest/").status_code == 200
    data = {"name": "c", "url_path": "/api/c", "service": "demo.hello"}
    assert_api_error(client.post(f"{API}/channels/rest/", data, format="json"), 403)
    assert_api_error(client.post(f"{API}/invoke/demo.hello", {}, format="json"), 403)


def test_a_totp_verified_session_works_too(alice, builtins, totp_device) -> None:
    device, _key = totp_device(alice)
    client = verified_login(APIClient(), alice, device)
    assert client.get(f"{API}/services/").status_code == 200


def test_it_deploys_a_module_and_lists_its_services(api, builtins) -> None:
    deployed = api.post(f"{API}/services/", {"filename": "stocks.py", "source": GOOD}, format="json")
    assert deployed.status_code == 201
    assert deployed.json() == {"module": "stocks", "services": ["stocks.quote"], "changed": True}
    listing = api.get(f"{API}/services/?search=stocks")
    assert [s["name"] for s in listing.json()["results"]] == ["stocks.quote"]
    detail = api.get(f"{API}/services/stocks.quote/")
    assert detail.json()["source"] == GOOD
    assert detail.json()["module"] == "stocks"


def test_it_deploys_an_uploaded_file(api) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("uploaded.py", GOOD.encode(), content_type="text/x-python")
    response = api.post(f"{API}/services/", {"file": upload}, format="multipart")
    assert response.status_code == 201
    assert response.json()["services"] == ["uploaded.quote"]


def test_a_broken_upload_is_400_naming_the_problem(api) -> None:
    body = assert_api_error(api.post(f"{API}/services/", {"filename": "x.py", "source": "def ("}, format="json"),
                            400)
    assert body["details"]["source"][0].startswith("Syntax error in x.py, line 1")
    body = assert_api_error(api.post(f"{API}/services/", {"source": GOOD}, format="json"), 400)
    assert "filename" in body["details"]


def test_services_are_paginated(api, builtins) -> None:
    page = api.get(f"{API}/services/?page_size=2").json()
    assert len(page["results"]) == 2
    assert page["count"] >= 9 and page["next"]


def test_it_creates_reads_updates_and_deletes_a_rest_channel(api, builtins, basic_auth) -> None:
    basic_auth(name="partners")
    created = api.post(f"{API}/channels/rest/", {
        "name": "quotes", "url_path": " /api/quote/{symbol} ", "method": "get", "accept": "",
        "service": "demo.hello", "security": "partners", "data_format": "json",
    }, format="json")
    assert created.status_code == 201, created.content
    channel = created.json()
    # Normalised on the way in: path trimmed, method upper-cased.
    assert channel["url_path"] == "/api/quote/{symbol}"
    assert channel["method"] == "GET"
    assert channel["security"] == "partners"
    assert api.get(f"{API}/channels/rest/{channel['id']}/").json()["service"] == "demo.hello"
    patched = api.patch(f"{API}/channels/rest/{channel['id']}/", {"security": None, "is_active": False},
                        format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["security"] is None
    assert api.delete(f"{API}/channels/rest/{channel['id']}/").status_code == 204
    assert not RestChannel.objects.exists()


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"url_path": "/admin/steal"}, "url_path"),
        ({"url_path": "/manage/x"}, "url_path"),
        ({"url_path": "/zato/x"}, "url_path"),
        ({"url_path": "/healthz"}, "url_path"),
        ({"url_path": "no-slash"}, "url_path"),
        ({"url_path": "/api/{bad-name}"}, "url_path"),
        ({"url_path": "/api/{id}/{id}"}, "url_path"),
        ({"service": "no.such.service"}, "service"),
        ({"security": "no-such-definition"}, "security"),
        ({"method": "BREW"}, "method"),
        ({"accept": "not a media type"}, "accept"),
        ({"data_format": "yaml"}, "data_format"),
        ({"name": "x" * 300}, "name"),
    ],
)
def test_invalid_channels_are_400_naming_the_field_and_nothing_is_saved(api, builtins, fields, bad_field) -> None:
    data = {"name": "c", "url_path": "/api/c", "method": "GET", "service": "demo.hello", **fields}
    body = assert_api_error(api.post(f"{API}/channels/rest/", data, format="json"), 400)
    assert bad_field in body["details"]
    assert not RestChannel.objects.exists()


def test_channels_are_filtered_by_method_activity_and_search(api, make_channel) -> None:
    make_channel("/api/a", "demo.hello", method="GET", name="get-a")
    make_channel("/api/a", "demo.echo", method="POST", name="post-a", is_active=False)
    make_channel("/api/b", "demo.hello", method="GET", name="get-b")

    def names(query: str) -> list[str]:
        return [c["name"] for c in api.get(f"{API}/channels/rest/?{query}").json()["results"]]

    assert names("method=get") == ["get-a", "get-b"]
    assert names("is_active=false") == ["post-a"]
    assert names("search=/api/a") == ["get-a", "post-a"]
    assert names("service=demo.echo") == ["post-a"]


def test_a_duplicate_route_is_rejected(api, builtins) -> None:
    data = {"name": "one", "url_path": "/api/c", "method": "GET", "service": "demo.hello"}
    assert api.post(f"{API}/channels/rest/", data, format="json").status_code == 201
    body = assert_api_error(api.post(f"{API}/channels/rest/", {**data, "name": "two"}, format="json"), 400)
    assert "already exists" in str(body["details"])
    # A different method or Accept on the same path is a different route.
    assert api.post(f"{API}/channels/rest/", {**data, "name": "three", "method": "POST"}, format="json").status_code \
        == 201
    assert RestChannel.objects.count() == 2


def test_malformed_json_to_the_api_is_400(api) -> None:
    response = api.generic("POST", f"{API}/channels/rest/", '{"name": ', content_type="application/json")
    assert_api_error(response, 400)


def test_invoke_runs_a_service_by_name(api, builtins) -> None:
    response = api.post(f"{API}/invoke/demo.get-customer", {"customer_id": 4}, format="json")
    assert response.status_code == 200
    assert response.json()["response"]["name"] == "Customer 4"
    assert re.fullmatch(r"[0-9a-f]{24}", response["X-Zato-CID"])
    missing = api.post(f"{API}/invoke/demo.get-customer", {}, format="json")
    assert assert_api_error(missing, 400)["details"] == "Element missing: customer_id"
    assert_api_error(api.post(f"{API}/invoke/no.such", {}, format="json"), 404)
    broken = api.generic("POST", f"{API}/invoke/demo.echo", '{"a": ', content_type="application/json")
    assert assert_api_error(broken, 400)["details"].startswith("Invalid JSON in request body")


def test_the_openapi_schema_is_served(api) -> None:
    response = api.get("/manage/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/manage/api/v1/channels/rest/" in paths
    assert "/manage/api/v1/security/basic-auth/" in paths
