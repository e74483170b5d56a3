"""What every security definition type shares: swapping, cascade delete, no queries, no secrets in logs."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey, BasicAuth, JWTDefinition, SecurityDefinition, TechAccount
from integration.models import RestChannel
from tests.conftest import basic_header

pytestmark = pytest.mark.django_db
BASE = "/manage/api/v1/security"


@pytest.fixture
def every_type(basic_auth, tech_account, api_key, jwt_def, client, session_store):
    """One definition of each type with the headers of a good caller: {sec_type: (definition, headers, secret)}."""
    key_def, key = api_key(name="key-def")
    jwt = jwt_def(name="jwt-def", username="jwt-user", password="jwt-pass-123")
    token = client.post("/zato/jwt/log-in", json.dumps({"username": "jwt-user", "password": "jwt-pass-123"}),
                        content_type="application/json").json()["token"]
    return {
        "basic_auth": (basic_auth(name="basic-def", password="basic-pass-123"),
                       {"HTTP_AUTHORIZATION": basic_header("crm-user", "basic-pass-123")}, "basic-pass-123"),
        "tech_acc": (tech_account(name="tech-def", password="tech-pass-123"),
                     {"HTTP_X_ZATO_USER": "tech-def", "HTTP_X_ZATO_PASSWORD": "tech-pass-123"}, "tech-pass-123"),
        "apikey": (key_def, {"HTTP_X_API_KEY": key}, key),
        "jwt": (jwt, {"HTTP_AUTHORIZATION": f"Bearer {token}"}, "jwt-pass-123"),
    }


RESOURCES = {"basic_auth": "basic-auth", "tech_acc": "tech-accounts", "apikey": "api-keys", "jwt": "jwt"}
CHALLENGES = {"basic_auth": 'Basic realm="Switchboard"', "tech_acc": "zato-tech-acc", "apikey": "zato-apikey",
              "jwt": "Bearer"}


@pytest.mark.parametrize("sec_type", list(RESOURCES))
def test_each_type_guards_a_channel_with_its_own_challenge(client, builtins, make_channel, every_type,
                                                           sec_type) -> None:
    definition, headers, _ = every_type[sec_type]
    make_channel("/guarded", "demo.hello", security=definition)
    assert client.get("/guarded", **headers).status_code == 200
    denied = client.get("/guarded")
    assert denied.status_code == 401
    assert denied["WWW-Authenticate"] == CHALLENGES[sec_type]
    assert denied.json()["cid"] == denied["X-Zato-CID"]


def test_a_successful_authentication_makes_no_database_query(client, builtins, make_channel, every_type,
                                                             settings) -> None:
    """With Redis, none at all; with the database as JWT session store, only the JWT use's one UPDATE."""
    for sec_type, (definition, _, _) in every_type.items():
        make_channel(f"/q/{sec_type}", "demo.hello", security=definition)
    client.get("/q/basic_auth")  # builds the snapshot
    with CaptureQueriesContext(connection) as queries:
        for sec_type, (_, headers, _) in every_type.items():
            assert client.get(f"/q/{sec_type}", **headers).status_code == 200, sec_type
    sql = [q["sql"] for q in queries.captured_queries]
    if settings.JWT_SESSION_STORE == "redis":
        assert sql == []
    else:
        assert len(sql) == 1 and sql[0].startswith('UPDATE "accounts_jwtsession"'), sql


def test_swapping_a_channels_definition_takes_effect_at_once(api, client, builtins, make_channel,
                                                             every_type) -> None:
    basic, basic_headers, _ = every_type["basic_auth"]
    tech, tech_headers, _ = every_type["tech_acc"]
    channel = make_channel("/swap", "demo.hello", security=basic)
    assert client.get("/swap", **basic_headers).status_code == 200
    response = api.patch(f"/manage/api/v1/channels/rest/{channel.pk}/", {"security": tech.name}, format="json")
    assert response.status_code == 200
    assert client.get("/swap", **basic_headers).status_code == 401
    assert client.get("/swap", **tech_headers).status_code == 200
    api.patch(f"/manage/api/v1/channels/rest/{channel.pk}/", {"security": None}, format="json")
    assert client.get("/swap").status_code == 200


@pytest.mark.parametrize("sec_type", list(RESOURCES))
def test_delete_refuses_with_409_listing_dependants_unless_cascade(api, client, builtins, make_channel,
                                                                   every_type, sec_type) -> None:
    definition, headers, _ = every_type[sec_type]
    make_channel("/a", "demo.hello", security=definition, name="channel-a")
    make_channel("/b", "demo.hello", security=definition, name="channel-b")
    make_channel("/c", "demo.hello", name="channel-c")
    url = f"{BASE}/{RESOURCES[sec_type]}/{definition.pk}/"
    refused = api.delete(url)
    assert refused.status_code == 409
    body = refused.json()
    assert body["details"] == ("In use by REST channel `channel-a`, REST channel `channel-b`; "
                               "add ?cascade=true to delete them with the definition")
    assert [d["name"] for d in body["dependants"]] == ["channel-a", "channel-b"]
    assert SecurityDefinition.objects.filter(pk=definition.pk).exists()
    assert client.get("/a", **headers).status_code == 200

    deleted = api.delete(url + "?cascade=true")
    assert deleted.status_code == 204
    assert not SecurityDefinition.objects.filter(pk=definition.pk).exists()
    assert list(RestChannel.objects.values_list("name", flat=True)) == ["channel-c"]
    assert client.get("/a", **headers).status_code == 404


def test_an_unused_definition_deletes_without_cascade(api, tech_account) -> None:
    definition = tech_account()
    assert api.delete(f"{BASE}/tech-accounts/{definition.pk}/").status_code == 204
    assert not TechAccount.objects.exists()


@pytest.mark.parametrize(("model_path", "sec_type"), [
    ("basicauth", "basic_auth"), ("techaccount", "tech_acc"), ("apikey", "apikey"), ("jwtdefinition", "jwt"),
])
def test_the_admin_confirmation_page_lists_what_goes(admin_client_alice, builtins, make_channel, every_type,
                                                     model_path, sec_type) -> None:
    definition, _, _ = every_type[sec_type]
    make_channel("/a", "demo.hello", security=definition, name="channel-going")
    make_channel("/c", "demo.hello", name="channel-staying")
    page = admin_client_alice.get(f"/admin/accounts/{model_path}/{definition.pk}/delete/")
    assert page.status_code == 200
    assert b"channel-going" in page.content and b"channel-staying" not in page.content
    done = admin_client_alice.post(f"/admin/accounts/{model_path}/{definition.pk}/delete/", {"post": "yes"})
    assert done.status_code == 302
    assert list(RestChannel.objects.values_list("name", flat=True)) == ["channel-staying"]


def test_names_are_unique_across_types(api, basic_auth) -> None:
    basic_auth(name="shared-name")
    response = api.post(f"{BASE}/tech-accounts/", {"name": "shared-name"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["details"]
    assert TechAccount.objects.count() == 0


def test_secrets_never_reach_the_logs(client, api, builtins, make_channel, every_type, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = []
    for sec_type, (definition, headers, secret) in every_type.items():
        make_channel(f"/l/{sec_type}", "demo.hello", security=definition)
        secrets.append(secret)
        assert client.get(f"/l/{sec_type}", **headers).status_code == 200
        wrong = {key: value + "x" for key, value in headers.items()}
        assert client.get(f"/l/{sec_type}", **wrong).status_code == 401
        secrets += [value.split()[-1] for key, value in headers.items() if key != "HTTP_X_ZATO_USER"]
    api.post(f"{BASE}/basic-auth/", {"name": "logged", "username": "u", "password": "api-pass-999"}, format="json")
    client.post("/zato/jwt/log-in", json.dumps({"username": "jwt-user", "password": "typo-pass-777"}),
                content_type="application/json")
    secrets += ["api-pass-999", "typo-pass-777"]
    assert "401" in caplog.text or "rejected" in caplog.text  # the failures were logged ...
    for secret in secrets:
        assert secret not in caplog.text  # ... without a secret


def test_every_type_shows_in_the_cross_type_model(every_type) -> None:
    types = dict(SecurityDefinition.objects.values_list("name", "sec_type"))
    assert types == {"basic-def": "basic_auth", "tech-def": "tech_acc", "key-def": "apikey", "jwt-def": "jwt"}
    assert {BasicAuth, TechAccount, ApiKey, JWTDefinition} <= set(SecurityDefinition.__subclasses__())


def test_a_definition_that_cannot_load_fails_its_own_channels_closed_only(client, builtins, make_channel,
                                                                          every_type, monkeypatch) -> None:
    import dataclasses

    from integration.channels import security

    def broken(definition):
        raise ValueError("A stored secret cannot be decrypted with the configured FERNET_KEYS")

    monkeypatch.setitem(security._types, "tech_acc", dataclasses.replace(security.get("tech_acc"), compile=broken))
    tech, tech_headers, _ = every_type["tech_acc"]
    basic, basic_headers, _ = every_type["basic_auth"]
    make_channel("/broken", "demo.hello", security=tech)
    make_channel("/fine", "demo.hello", security=basic)
    # The platform's fault, not the caller's: 503 with the CID, and nobody passes.
    refused = client.get("/broken", **tech_headers)
    assert refused.status_code == 503 and refused.json()["cid"] == refused["X-Zato-CID"]
    assert client.get("/fine", **basic_headers).status_code == 200
