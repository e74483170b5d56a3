"""Search, filters, paging and lookups on every list resource of the management API.

They all come from one base viewset (``integration.api_base``) and django-filter: ``?search=``
looks through each resource's names (and paths where it has them), filters understand their
value or answer 400 naming the parameter, and text PostgreSQL cannot hold (a NUL character)
in a query parameter, a path or a request body is a 400 naming it, never a 500.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import ApiKey, BasicAuth, JWTDefinition, TechAccount
from connections.models import VaultConnection
from integration.models import DeployedService, RestChannel, WebSocketChannel
from scheduling import jobs
from scheduling.models import Job

pytestmark = pytest.mark.django_db
API = "/manage/api/v1"


def assert_error(response: Any, status: int) -> Any:
    """The one error shape, with the CID in the header too; returns ``details``."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["result"] == "Error" and re.fullmatch(r"[0-9a-f]{24}", body["cid"])
    assert response["X-Zato-CID"] == body["cid"]
    return body["details"]


def _rest(name: str, active: bool) -> None:
    RestChannel.objects.create(name=name, url_path=f"/{name}/path", is_active=active,
                               service=DeployedService.objects.get(name="demo.hello"))


def _websocket(name: str, active: bool) -> None:
    WebSocketChannel.objects.create(name=name, path=f"/ws/{name}", is_active=active,
                                    service=DeployedService.objects.get(name="demo.echo"))


def _secured(model: type, **fields: Any) -> Callable[[str, bool], None]:
    def make(name: str, active: bool) -> None:
        definition = model(name=name, is_active=active, **{key: f"{name}-{value}" for key, value in fields.items()})
        if hasattr(definition, "set_password"):
            definition.set_password("a-password-of-some-length")
        definition.save()

    return make


def _job(name: str, active: bool) -> None:
    jobs.save_job(Job(name=name, is_active=active, service=DeployedService.objects.get(name="demo.hello"),
                      job_type=Job.JobType.INTERVAL_BASED, start_date=timezone.now() + timedelta(hours=1), hours=1))


# Every list resource with is_active, and how to make one of its objects by name.
RESOURCES = {
    "channels/rest": _rest,
    "channels/websocket": _websocket,
    "security/basic-auth": _secured(BasicAuth, username="user"),
    "security/tech-accounts": _secured(TechAccount),
    "security/api-keys": _secured(ApiKey),
    "security/jwt": _secured(JWTDefinition, username="user"),
    "security/vault": _secured(VaultConnection),
    "scheduling/jobs": _job,
}


def names(api: Any, resource: str, query: str) -> list[str]:
    response = api.get(f"{API}/{resource}/?{query}")
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()["results"]]


@pytest.mark.parametrize("resource", RESOURCES)
def test_search_and_is_active_work_on_every_list(api, builtins, resource) -> None:
    make = RESOURCES[resource]
    make("alpha-one", True)
    make("beta-two", False)
    # `security/jwt/?search=x` used to answer every definition: search was not applied there.
    assert names(api, resource, "search=ALPHA") == ["alpha-one"]
    assert names(api, resource, "search=nothing-like-it") == []
    assert names(api, resource, "is_active=false") == ["beta-two"]
    assert names(api, resource, "is_active=TRUE") == ["alpha-one"]


@pytest.mark.parametrize(("resource", "path_query"), [("channels/rest", "search=beta-two/path"),
                                                      ("channels/websocket", "search=/ws/beta")])
def test_channels_are_searched_by_path_too(api, builtins, resource, path_query) -> None:
    RESOURCES[resource]("alpha-one", True)
    RESOURCES[resource]("beta-two", True)
    assert names(api, resource, path_query) == ["beta-two"]


def test_services_are_searched_by_service_and_module_name_and_filtered_by_module(api, builtins, deploy) -> None:
    deploy("billing.py", "from integration.services import Service\nclass Run(Service):\n    def handle(self):\n"
                         "        pass\n")
    assert names(api, "services", "search=billing") == ["billing.run"]
    assert names(api, "services", "module=billing") == ["billing.run"]
    assert "billing.run" not in names(api, "services", "origin=builtin&page_size=1000")


def test_definitions_have_their_own_fields_as_filters(api, builtins) -> None:
    RESOURCES["security/basic-auth"]("crm", True)
    RESOURCES["security/jwt"]("mobile", True)
    ApiKey.objects.create(name="partner", header="X-Partner-Key")
    VaultConnection.objects.create(name="vault", default_auth_method="token")
    assert names(api, "security/basic-auth", "username=crm-user") == ["crm"]
    assert names(api, "security/basic-auth", "search=crm-us") == ["crm"]  # usernames are searched too
    assert names(api, "security/jwt", "username=mobile-user") == ["mobile"]
    assert names(api, "security/api-keys", "header=X-Partner-Key") == ["partner"]
    assert names(api, "security/vault", "default_auth_method=token") == ["vault"]


def test_the_documented_filters_keep_their_meaning(api, builtins, basic_auth) -> None:
    partners = basic_auth(name="partners")
    RestChannel.objects.create(name="get-a", url_path="/a", method="GET", security=partners,
                               service=DeployedService.objects.get(name="demo.hello"))
    RestChannel.objects.create(name="post-a", url_path="/a", method="POST",
                               service=DeployedService.objects.get(name="demo.echo"))
    assert names(api, "channels/rest", "method=get") == ["get-a"]  # any case, as before
    assert names(api, "channels/rest", "service=demo.echo") == ["post-a"]
    assert names(api, "channels/rest", "security=partners") == ["get-a"]
    # A name that matches nothing is an empty answer, not an error: the service may be gone.
    assert names(api, "channels/rest", "service=no.such.service") == []
    _job("nightly", True)
    assert names(api, "scheduling/jobs", "job_type=interval_based&service=demo.hello") == ["nightly"]
    assert names(api, "scheduling/jobs", "job_type=cron_style") == []
    page = api.get(f"{API}/channels/rest/?page_size=1&page=2").json()
    assert [row["name"] for row in page["results"]] == ["post-a"] and page["count"] == 2


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("is_active=yes", "is_active"),
        ("is_active=", None),  # empty: no filter, as an empty search is no search
        ("method=BREW", "method"),
        ("data_format=csv", "data_format"),
        ("page=abc", "page"),
        ("page=0", "page"),
        ("page_size=abc", "page_size"),
        ("page_size=-5", "page_size"),
        ("page_size=" + "9" * 5000, "page_size"),
    ],
)
def test_an_invalid_filter_or_page_value_is_a_400_naming_the_parameter(api, builtins, query, parameter) -> None:
    response = api.get(f"{API}/channels/rest/?{query}")
    if parameter is None:
        assert response.status_code == 200
        return
    details = assert_error(response, 400)
    assert list(details) == [parameter], details


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        (f"{API}/scheduling/jobs/?job_type=weekly", "job_type"),
        (f"{API}/services/?origin=ftp", "origin"),
        (f"{API}/security/vault/?default_auth_method=kerberos", "default_auth_method"),
        (f"{API}/modules/?rejected=maybe", "rejected"),
    ],
)
def test_every_resource_refuses_values_its_filters_do_not_know(api, builtins, url, parameter) -> None:
    assert parameter in assert_error(api.get(url), 400)


def test_a_page_past_the_last_is_404_and_a_huge_page_size_is_lowered(api, builtins) -> None:
    assert_error(api.get(f"{API}/services/?page=999"), 404)
    page = api.get(f"{API}/services/?page_size=100000").json()
    assert len(page["results"]) == page["count"]  # lowered to the maximum (1000), not refused


def test_unknown_parameters_are_ignored(api, builtins) -> None:
    # As HTTP APIs usually do: a client may send parameters a newer or older version knows.
    assert api.get(f"{API}/channels/rest/?colour=blue").status_code == 200


NUL = "%00"


@pytest.mark.parametrize("resource", ["services", "modules", *RESOURCES])
def test_a_nul_in_a_search_is_a_400_naming_it(api, builtins, resource) -> None:
    assert assert_error(api.get(f"{API}/{resource}/?search=a{NUL}b"), 400) == {
        "search": ["NUL characters are not allowed."]
    }


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        (f"{API}/channels/rest/?service=x{NUL}", "service"),
        (f"{API}/channels/websocket/?security={NUL}", "security"),
        (f"{API}/security/jwt/?username=a{NUL}", "username"),
        (f"{API}/scheduling/jobs/?service={NUL}", "service"),
        (f"{API}/channels/rest/?page={NUL}", "page"),
        (f"{API}/channels/rest/?colour={NUL}", "colour"),  # unknown, but it would still reach nothing
        (f"{API}/channels/rest/?a{NUL}b=1", "a\\x00b"),  # the name itself: named printably
    ],
)
def test_a_nul_in_any_query_parameter_is_a_400_naming_it(api, builtins, url, parameter) -> None:
    assert list(assert_error(api.get(url), 400)) == [parameter]


@pytest.mark.parametrize(
    ("method", "url", "parameter"),
    [
        ("get", f"{API}/services/demo{NUL}hello/", "name"),  # services are looked up by name
        ("get", f"{API}/modules/a{NUL}/", "name"),
        ("delete", f"{API}/modules/a{NUL}/", "name"),
        ("get", f"{API}/channels/rest/1{NUL}/", "id"),
        ("patch", f"{API}/security/jwt/{NUL}/", "id"),
        ("post", f"{API}/security/basic-auth/{NUL}/change-password/", "id"),
        ("get", f"{API}/channels/websocket/{NUL}/clients/", "id"),
    ],
)
def test_a_nul_in_a_lookup_is_a_400_naming_it(api, builtins, method, url, parameter) -> None:
    details = assert_error(getattr(api, method)(url, {}, format="json"), 400)
    assert details == {parameter: ["NUL characters are not allowed."]}


@pytest.mark.parametrize("lookup", ["abc", "1.5", "-1", "99999999999999999999", "2147483648", "0x10"])
def test_non_numeric_or_out_of_range_ids_are_404(api, builtins, lookup) -> None:
    for resource in RESOURCES:
        assert_error(api.get(f"{API}/{resource}/{lookup}/"), 404)
    assert_error(api.delete(f"{API}/channels/rest/{lookup}/"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a", "url_path": "/a", "service": "demo\x00hello"}, "service"),  # a name looked up
        ({"name": "a\x00", "url_path": "/a", "service": "demo.hello"}, "name"),
        ({"name": "a", "url_path": "/a", "service": "demo.hello", "security": "\x00"}, "security"),
        ({"name": "a", "url_path": "/a", "service": "demo.hello", "note\x00": 1}, "note\\x00"),
    ],
)
def test_a_nul_in_a_request_body_is_a_400_naming_the_field(api, builtins, body, field) -> None:
    details = assert_error(api.post(f"{API}/channels/rest/", body, format="json"), 400)
    assert field in details, details
    assert not RestChannel.objects.exists()


def test_nested_and_surrogate_values_in_a_body_are_refused_too(api, builtins) -> None:
    nested = {"name": "ws", "path": "/ws/x", "service": "demo.echo", "allowed_services": ["demo.hello", "a\x00"]}
    assert "allowed_services" in assert_error(api.post(f"{API}/channels/websocket/", nested, format="json"), 400)
    # "\ud800" is valid JSON syntax but no UTF-8 string: PostgreSQL's driver could not send it. The
    # JSON parser (integration.jsonio) already refuses the whole body, before any field is read.
    raw = '{"name": "j", "service": "\\ud800", "job_type": "one_time", "start_date": "2031-01-01T00:00:00Z"}'
    details = assert_error(api.generic("POST", f"{API}/scheduling/jobs/", raw, content_type="application/json"),
                           400)
    assert "unpaired UTF-16 surrogate" in str(details)
    assert not Job.objects.exists()
    upload = api.post(f"{API}/services/", {"filename": "nul.py", "source": "x = 1\x00"}, format="json")
    assert "source" in assert_error(upload, 400)


def test_an_uploaded_module_with_nul_is_a_400_naming_the_file(api) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("nul.py", b"x = 1\x00\n", content_type="text/x-python")
    details = assert_error(api.post(f"{API}/services/", {"file": upload}, format="multipart"), 400)
    assert details == {"file": ["The file is not Python source: NUL characters are not allowed."]}


def test_a_form_body_over_the_size_limit_is_a_413_in_the_error_shape(api, builtins, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post(f"{API}/channels/rest/", {"name": "x" * 2000}, format="multipart")
    assert assert_error(response, 413) == "The request body is larger than 1000 bytes"


def test_checks_on_input_come_after_authentication(builtins) -> None:
    from rest_framework.test import APIClient

    # A caller without credentials learns nothing about parameters: 401 first.
    assert_error(APIClient().get(f"{API}/channels/rest/?search=a{NUL}"), 401)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(
    st.sampled_from(["search", "is_active", "method", "service", "security", "data_format", "page", "page_size",
                     "other"]),
    st.text(max_size=30),
    max_size=4,
))
def test_any_query_string_gets_an_answer_in_the_one_shape_never_a_500(api, builtins, query) -> None:
    url = f"{API}/channels/rest/?{urllib.parse.urlencode(query)}"
    response = api.get(url)
    assert response.status_code in (200, 400, 404), (url, response.status_code, response.content[:300])
    if response.status_code != 200:
        assert_error(response, response.status_code)
