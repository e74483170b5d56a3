"""The loopback FHIR R4 server behaves as FHIR's RESTful API specifies, driven by fhirpy.

FHIR connections will use fhirpy's synchronous client, so these tests drive the server with
``SyncFHIRClient`` (and with ``requests`` where the HTTP details are the point): metadata,
search with paging, read, create, update, patch and delete, OperationOutcome errors, bearer
and Basic security, and the fail switch.
"""

from __future__ import annotations

import pytest
import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, OperationOutcome, ResourceNotFound
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers.client import basic_auth
from tests.servers.http_handles import FhirServer

TIMEOUT = 5  # seconds: every client call here is bounded
FHIR_JSON = "application/fhir+json"


def fhir_client(server: FhirServer, authorization: str | None = None) -> SyncFHIRClient:
    return SyncFHIRClient(server.base_url, authorization=authorization, requests_config={"timeout": TIMEOUT})


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_metadata_is_a_capability_statement_served_without_a_token(fhir_server, oauth_server):
    response = requests.get(f"{fhir_server.base_url}/metadata", timeout=TIMEOUT)
    statement = fhir_client(fhir_server).execute("metadata", method="get")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert {resource["type"] for resource in rest["resource"]} == {"Patient", "Practitioner", "Observation"}
    assert rest["security"]["service"][0]["coding"][0]["code"] == "OAuth"
    assert rest["security"]["extension"][0]["extension"][0]["valueUri"] == oauth_server.token_url


def test_fhirpy_searches_reads_creates_updates_and_deletes_with_a_bearer_token(oauth_server, oauth_client,
                                                                               fhir_server):
    client = fhir_client(fhir_server, bearer(oauth_server.fetch_token(oauth_client, scope="fhir")["access_token"]))
    practitioners = client.resources("Practitioner")

    # The seed's own example: an active practitioner looked up by id.
    found = practitioners.search(active=True, _id=456).get()
    assert found["name"][0]["family"] == "Smith"
    assert [item.id for item in practitioners.search(active=True).fetch()] == ["456"]  # 457 is inactive

    patient = client.resource("Patient", active=True, name=[{"family": "Šťastná", "given": ["Eva"]}],
                              gender="female")
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    read = client.reference("Patient", patient.id).to_resource()
    assert read["name"][0]["family"] == "Šťastná"
    # FHIR string search ignores case and accents and matches the start of the name.
    assert [item.id for item in client.resources("Patient").search(family="STAST").fetch()] == [patient.id]
    assert client.resources("Patient").count() == 3

    read["active"] = False
    read.save()
    assert read["meta"]["versionId"] == "2"
    assert client.reference("Patient", patient.id).to_resource()["active"] is False
    assert client.resources("Patient").search(active=False).fetch()[0].id == patient.id

    read.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", patient.id).to_resource()
    assert client.resources("Patient").search(_id=patient.id).fetch() == []


def test_fhirpy_pages_through_a_search_by_its_next_links(fhir_server_open):
    client = fhir_client(fhir_server_open)
    for number in range(5):
        client.resource("Practitioner", active=True, name=[{"family": f"Paged{number}"}]).save()

    first_page = client.resources("Practitioner").search(family="paged").limit(2)
    bundle = first_page.fetch_raw()

    assert bundle["type"] == "searchset"
    assert bundle["total"] == 5
    assert len(bundle["entry"]) == 2
    assert bundle["entry"][0]["search"]["mode"] == "match"
    first = bundle["entry"][0]
    assert first["fullUrl"] == f"{fhir_server_open.base_url}/Practitioner/{first['resource']['id']}"
    assert [link["relation"] for link in bundle["link"]] == ["self", "next"]
    every = [item["name"][0]["family"] for item in first_page.fetch_all()]
    assert sorted(every) == [f"Paged{number}" for number in range(5)]


def test_create_answers_201_with_location_etag_and_a_new_version_on_each_update(fhir_server_open):
    base = fhir_server_open.base_url
    body = {"resourceType": "Patient", "id": "ignored-on-create", "name": [{"family": "Lee"}]}

    created = requests.post(f"{base}/Patient", json=body, headers={"Content-Type": FHIR_JSON}, timeout=TIMEOUT)

    assert created.status_code == 201
    new_id = created.json()["id"]
    assert new_id != "ignored-on-create"  # the server assigns ids on create
    assert created.headers["Location"] == f"{base}/Patient/{new_id}/_history/1"
    assert created.headers["ETag"] == 'W/"1"'
    assert created.json()["meta"]["lastUpdated"].endswith("Z")
    updated = requests.put(f"{base}/Patient/{new_id}", json={**created.json(), "gender": "other"},
                           headers={"If-Match": 'W/"1"'}, timeout=TIMEOUT)
    assert (updated.status_code, updated.headers["ETag"]) == (200, 'W/"2"')
    stale = requests.put(f"{base}/Patient/{new_id}", json=created.json(), headers={"If-Match": 'W/"1"'},
                         timeout=TIMEOUT)
    assert stale.status_code == 412
    unchanged = requests.get(f"{base}/Patient/{new_id}", headers={"If-None-Match": 'W/"2"'}, timeout=TIMEOUT)
    assert unchanged.status_code == 304
    assert requests.get(f"{base}/Patient/{new_id}/_history/1", timeout=TIMEOUT).json()["meta"]["versionId"] == "1"
    put_new = requests.put(f"{base}/Patient/client-chosen", json={"resourceType": "Patient", "id": "client-chosen"},
                           timeout=TIMEOUT)
    assert put_new.status_code == 201  # update as create, as the CapabilityStatement's updateCreate says


def test_observations_are_found_by_subject_and_code(fhir_server_open):
    observations = fhir_client(fhir_server_open).resources("Observation")

    by_subject = observations.search(subject="Patient/123").fetch()
    by_code = observations.search(code="http://loinc.org|29463-7").fetch()
    by_other_code = observations.search(code="http://loinc.org|8867-4").fetch()

    assert [item.id for item in by_subject] == ["900"]
    assert [item.id for item in by_code] == ["900"]
    assert by_other_code == []


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("GET", "/Encounter", None, 404, "not-supported"),
    ("GET", "/Patient/999999", None, 404, "not-found"),
    ("POST", "/Patient", {"resourceType": "Practitioner"}, 400, "invalid"),
    ("PUT", "/Patient/123", {"resourceType": "Patient", "id": "124"}, 400, "invalid"),
    ("POST", "/Observation", {"resourceType": "Observation", "status": "final"}, 400, "required"),
    ("POST", "/Patient", {"resourceType": "Patient", "gender": "robot"}, 400, "code-invalid"),
    ("GET", "/Patient?_count=many", None, 400, "invalid"),
    ("GET", "/Patient?active=maybe", None, 400, "invalid"),
    ("GET", "/Patient?family:sounds-like=x", None, 400, "not-supported"),
])
def test_errors_are_operation_outcomes_with_the_status_the_spec_gives(fhir_server_open, method, path, body, status,
                                                                      code):
    response = requests.request(method, f"{fhir_server_open.base_url}{path}", json=body, timeout=TIMEOUT)

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    issue = response.json()
    assert issue["resourceType"] == "OperationOutcome"
    assert issue["issue"][0]["code"] == code


def test_unknown_search_parameters_are_ignored_unless_the_client_asks_for_strict_handling(fhir_server_open):
    url = f"{fhir_server_open.base_url}/Patient?family=Nowak&shoe-size=44"

    lenient = requests.get(url, timeout=TIMEOUT).json()
    strict = requests.get(url, headers={"Prefer": "handling=strict"}, timeout=TIMEOUT)

    assert lenient["total"] == 1
    assert "shoe-size" not in lenient["link"][0]["url"]  # the self link shows what the server used
    assert strict.status_code == 400


def test_the_fhir_server_wants_a_live_bearer_token(oauth_server, oauth_client, fhir_server):
    token = oauth_server.fetch_token(oauth_client)["access_token"]

    with pytest.raises(AuthorizationError):
        fhir_client(fhir_server).resources("Patient").fetch()
    assert len(fhir_client(fhir_server, bearer(token)).resources("Patient").fetch()) == 2
    oauth_server.revoke(token)
    refused = requests.get(f"{fhir_server.base_url}/Patient", headers={"Authorization": bearer(token)}, timeout=TIMEOUT)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert refused.json()["issue"][0]["code"] == "login"


def test_the_fhir_server_fail_switch_answers_an_operation_outcome(fhir_server_open):
    fhir_server_open.fail(503, times=1)

    with pytest.raises(OperationOutcome):
        fhir_client(fhir_server_open).resources("Patient").fetch()

    assert len(fhir_client(fhir_server_open).resources("Patient").fetch()) == 2


def test_the_fhir_server_with_basic_auth_wants_the_right_credentials(fhir_server_basic):
    good = basic_auth(*fhir_server_basic.basic_auth)["Authorization"]
    bad = basic_auth(fhir_server_basic.basic_auth[0], "wrong")["Authorization"]

    with pytest.raises(AuthorizationError):
        fhir_client(fhir_server_basic, bad).resources("Practitioner").fetch()
    found = fhir_client(fhir_server_basic, good).resources("Practitioner").search(_id="456").fetch()
    assert [item.id for item in found] == ["456"]
    # metadata stays public, and says which security the server wants.
    statement = fhir_client(fhir_server_basic).execute("metadata", method="get")
    assert statement["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "Basic"


def test_fhirpy_patch_merges_fields_and_makes_a_new_version(fhir_server_open):
    client = fhir_client(fhir_server_open)
    patient = client.reference("Patient", "124").to_resource()

    patient.patch(active=False)

    again = client.reference("Patient", "124").to_resource()
    assert again["active"] is False
    assert again["name"][0]["family"] == "Nowak"  # untouched by the merge patch
    assert again["meta"]["versionId"] == "2"


def test_a_conditional_create_returns_the_match_instead_of_a_duplicate(fhir_server_open):
    url = f"{fhir_server_open.base_url}/Patient"
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1",
                                                       "value": "MRN-0001"}]}
    condition = {"If-None-Exist": "identifier=urn:oid:1.2.36.146.595.217.0.1|MRN-0001"}

    existing = requests.post(url, json=body, headers=condition, timeout=TIMEOUT)
    fresh = requests.post(url, json=body, headers={"If-None-Exist": "identifier=urn:x|MRN-9"}, timeout=TIMEOUT)

    # http.html#ccreate: one match is 200 with that resource, none creates (201).
    assert (existing.status_code, existing.json()["id"]) == (200, "123")
    assert fresh.status_code == 201


# --- Hostile input never breaks the server ---------------------------------------------------------

SEARCH_NAMES = st.sampled_from(["_id", "active", "family", "given", "name", "identifier", "gender", "birthdate",
                                "_count", "_offset", "_sort", "_summary", "family:exact", "active:not", "x"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.lists(st.tuples(SEARCH_NAMES, st.text(max_size=15)), max_size=5))
def test_a_fhir_search_answers_any_parameters_with_a_bundle_or_an_operation_outcome(fhir_server_open, params):
    response = requests.get(f"{fhir_server_open.base_url}/Patient", params=params, timeout=TIMEOUT)

    assert response.status_code in (200, 400)
    expected = "Bundle" if response.status_code == 200 else "OperationOutcome"
    assert response.json()["resourceType"] == expected
