"""HL7 FHIR connections through fhirpy, and the seed's scenario end to end.

The FHIR server (``tests/servers/fhir.py``) checks bearer tokens at the loopback token server.
The scenario: a client calls a REST channel with Basic Auth; the service calls the REST backend
and the FHIR server through OAuth-secured connections sharing one definition, and returns the
combined result. The token is fetched once, reused, refreshed before it expires and, after a
forced 401, replaced once.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound
from fhirpy.base.lib_sync import SyncClient

from connections.fhir import PooledFHIRClient
from connections.http_common import BackendUnreachable
from connections.models import OutgoingFhir
from integration import snapshot
from tests.conftest import basic_header
from tests.connections.outgoing_fixtures import (  # noqa: F401 - the autouse fixture empties the token cache
    _empty_token_cache,
    closed_port,
    make_fhir,
    make_oauth_def,
    make_rest,
    out,
)

pytestmark = pytest.mark.django_db

CID = "f0f1f2f3f4f5f6f7f8f9fafb"


def test_fhirpy_searches_creates_updates_and_deletes_through_an_oauth_connection(
        oauth_server, make_oauth_client, fhir_server) -> None:
    client_credentials = make_oauth_client(scopes=["fhir"])
    make_fhir(address=fhir_server.base_url, auth_type="oauth",
              oauth=make_oauth_def(oauth_server, client_credentials, scopes="fhir"))

    with out("hl7.fhir", "My EHR").conn.client(CID) as client:
        practitioners = client.resources("Practitioner")
        found = practitioners.search(active=True, _id=456).get()  # the seed's own example
        patient = client.resource("Patient", active=True, name=[{"family": "Doe", "given": ["Jane"]}])
        patient.save()
        patient["active"] = False
        patient.save()
        read = client.reference("Patient", patient.id).to_resource()
        read.delete()
        with pytest.raises(ResourceNotFound):
            client.reference("Patient", patient.id).to_resource()

    assert found["name"][0]["family"] == "Smith"
    assert read["active"] is False and read["meta"]["versionId"] == "2"
    assert oauth_server.token_request_count(client_credentials.client_id) == 1
    assert fhir_server.last_request("/fhir/Patient")["headers"]["x-zato-cid"] == CID


def test_basic_auth_fhir_connection(fhir_server_basic) -> None:
    user, password = fhir_server_basic.basic_auth
    make_fhir(address=fhir_server_basic.base_url, auth_type="basic", username=user, password=password)

    with out("hl7.fhir", "My EHR").conn.client() as client:
        assert client.resources("Patient").count() >= 1


def test_a_fhir_server_that_cannot_be_reached_is_an_error_naming_the_connection() -> None:
    make_fhir(address=f"http://127.0.0.1:{closed_port()}/fhir")

    with pytest.raises(BackendUnreachable) as caught, out("hl7.fhir", "My EHR").conn.client() as client:
        client.resources("Patient").fetch()

    assert str(caught.value) == "Outgoing HL7 FHIR connection `My EHR`: cannot connect: Connection refused"


def tcp_connections_to(port: int) -> set[int]:
    """This process's established TCP sockets to 127.0.0.1:``port``, by local port (from /proc: what the
    kernel says, not what the HTTP library believes)."""
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    found = set()
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and inode in ours and remote == f"0100007F:{port:04X}":
            found.add(int(local.split(":")[1], 16))
    return found


def test_calls_through_one_connection_reuse_one_tcp_connection_until_the_row_changes(
        fhir_server_open, monkeypatch) -> None:
    monkeypatch.setattr("connections.base.RETIRE_AFTER", 0)  # retired sessions closed at once here
    row = make_fhir(address=fhir_server_open.base_url)
    port = fhir_server_open.port
    before = tcp_connections_to(port)

    seen = []
    for n in range(4):  # several clients, several calls each: one socket for all of them
        with out("hl7.fhir", "My EHR").conn.client(f"{CID[:-1]}{n}") as client:
            client.resources("Patient").fetch()
            client.resources("Practitioner").search(_id=456).fetch()
        seen.append(tcp_connections_to(port) - before)
    assert all(len(now) == 1 for now in seen) and len(set.union(*seen)) == 1, seen
    connection = out("hl7.fhir", "My EHR")
    assert connection.session.get_adapter(fhir_server_open.base_url).poolmanager.pools  # the pool is warm

    row.timeout = 2.0
    row.save()
    snapshot.refresh()
    with out("hl7.fhir", "My EHR").conn.client() as client:
        client.resources("Patient").fetch()
    now = tcp_connections_to(port) - before
    assert len(now) == 1 and now.isdisjoint(seen[0])  # a new session for the changed row, the old one closed
    assert out("hl7.fhir", "My EHR").session is not connection.session


def test_the_pooled_client_keeps_fhirpys_answers_and_errors(fhir_server_open) -> None:
    make_fhir(address=fhir_server_open.base_url)

    with out("hl7.fhir", "My EHR").conn.client() as client:
        assert isinstance(client, PooledFHIRClient)
        assert client.resources("Patient").count() >= 1
        with pytest.raises(ResourceNotFound):
            client.reference("Patient", "no-such-patient").to_resource()
        with pytest.raises(OperationOutcome):
            client.reference("Patient", "not$a$valid$id").to_resource()  # 400 with an OperationOutcome


def test_the_pooled_client_overrides_the_fhirpy_method_it_was_copied_from() -> None:
    """``PooledFHIRClient._do_request`` is fhirpy 2.3.1's with a session: a fhirpy that changed it needs reading."""
    source = inspect.getsource(SyncClient._do_request).encode()
    assert hashlib.sha256(source).hexdigest() == "09c0106f93f0336dd2e612f6d574403c205d1572920d21b2cbadd436f8b3741e"


def test_ping_reads_the_capability_statement(fhir_server_open, rest_backend_open, api: Any) -> None:
    good = make_fhir(address=fhir_server_open.base_url)
    not_fhir = make_fhir("not fhir", address=rest_backend_open.url + "/echo")

    answer = api.post(f"/manage/api/v1/outgoing/fhir/{good.pk}/ping/").json()

    assert answer["ok"] is True and answer["info"].startswith("FHIR 4.0.1 CapabilityStatement")
    assert fhir_server_open.last_request("/fhir/metadata")["method"] == "GET"
    result = not_fhir.ping()
    assert not result.ok and "without a CapabilityStatement" in result.info


def test_the_api_keeps_the_password_write_only_and_filters(api: Any) -> None:
    created = api.post("/manage/api/v1/outgoing/fhir/", {
        "name": "ehr", "address": "https://fhir.example.com/r4", "auth_type": "basic", "username": "u",
        "password": "pw-123"}, format="json")
    assert created.status_code == 201, created.json()
    assert "password" not in created.json() and created.json()["has_password"] is True
    assert OutgoingFhir.objects.get(name="ehr").get_password() == "pw-123"
    assert api.get("/manage/api/v1/outgoing/fhir/?auth_type=basic").json()["count"] == 1
    assert api.get("/manage/api/v1/outgoing/fhir/?search=nothing-like-it").json()["count"] == 0
    bad = api.post("/manage/api/v1/outgoing/rest/", {"name": "r", "address": "nope", "auth_type": "oauth"},
                   format="json")
    assert bad.status_code == 400 and {"address", "oauth"} <= set(bad.json()["details"])


def test_the_admin_lists_and_edits_connections_without_showing_secrets(admin_client_alice: Any) -> None:
    row = make_rest(address="http://127.0.0.1:9", auth_type="basic", username="u", password="pw-shown-never")

    listing = admin_client_alice.get("/admin/connections/outgoingrest/?q=REST")
    page = admin_client_alice.get(f"/admin/connections/outgoingrest/{row.pk}/change/")

    assert listing.status_code == 200 and b"REST Server" in listing.content and b"sb-ping" in listing.content
    assert page.status_code == 200 and b"pw-shown-never" not in page.content
    assert admin_client_alice.get("/admin/connections/outgoingfhir/").status_code == 200
    assert admin_client_alice.get("/admin/accounts/oauthdefinition/add/").status_code == 200


# --- The seed's scenario ------------------------------------------------------------------------------

SCENARIO = """
from integration.services import Service

class GetClientSummary(Service):
    def handle(self):
        client_id = (self.request.payload or {}).get("client_id", 123)
        plan = self.out.rest["REST Server"].conn.get(self.cid, {"client_id": client_id})
        with self.out.hl7.fhir["My EHR"].conn.client(self.cid) as client:
            practitioner = client.resources("Practitioner").search(active=True, _id=456).get()
        self.response.payload = {"plan": plan.data["plan"], "practitioner": practitioner["name"][0]["family"]}
"""


def test_the_seed_scenario_end_to_end(oauth_server, make_oauth_client, rest_backend, fhir_server, deploy: Any,
                                      make_channel: Any, basic_auth: Any) -> None:
    credentials = make_oauth_client(scopes=["billing:read", "fhir"], expires_in=3)
    definition = make_oauth_def(oauth_server, credentials, scopes="billing:read fhir")
    make_rest(address=rest_backend.url, url_path="/billing-plan", auth_type="oauth", oauth=definition)
    make_fhir(address=fhir_server.base_url, auth_type="oauth", oauth=definition)
    deploy("summary.py", SCENARIO)
    make_channel("/api/client-summary", "summary.get-client-summary", security=basic_auth())
    http = Client()

    def call() -> Any:
        return http.get("/api/client-summary", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret"))

    first, second = call(), call()
    assert first.status_code == 200, first.content
    assert first.json() == second.json() == {"plan": "gold", "practitioner": "Smith"}
    assert oauth_server.token_request_count(credentials.client_id) == 1  # fetched once, reused by both

    time.sleep(2.6)  # past 80 % of the token's 3 s: refreshed before it expires
    assert call().status_code == 200
    assert oauth_server.token_request_count(credentials.client_id) == 2
    assert 401 not in [entry["status"] for entry in rest_backend.requests() + fhir_server.requests()]

    oauth_server.revoke_client(credentials.client_id)  # a forced 401
    assert call().status_code == 200
    assert oauth_server.token_request_count(credentials.client_id) == 3  # refreshed once, then shared
    statuses = [entry["status"] for entry in rest_backend.requests("/billing-plan")]
    assert statuses[-2:] == [401, 200]
    assert fhir_server.requests("/fhir/Practitioner")[-1]["status"] == 200
    cid = first["X-Zato-CID"]
    assert rest_backend.requests("/billing-plan")[0]["headers"]["x-zato-cid"] == cid
