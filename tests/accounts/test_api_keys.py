"""API keys: a header per definition, stored as a prefix plus a keyed hash, shown once."""

from __future__ import annotations

import logging

import pytest

from accounts import crypto
from accounts.models import ApiKey

pytestmark = pytest.mark.django_db
API = "/manage/api/v1/security/api-keys"


@pytest.fixture
def keyed(builtins, make_channel, api_key):
    definition, key = api_key()
    make_channel("/partner/orders", "demo.hello", security=definition)
    return definition, key


def test_the_right_key_runs_the_service(client, keyed) -> None:
    _, key = keyed
    response = client.get("/partner/orders", HTTP_X_API_KEY=key)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_X_API_KEY": ""},
        {"HTTP_X_API_KEY": "sbk_wrong-key-that-is-long-enough-to-look-real"},
        {"HTTP_X_API_KEY": "short"},
        {"HTTP_X_API_KEY": "\xff\xfe\xfd"},
        {"HTTP_X_API_KEY": "key with spaces in it"},
        {"HTTP_AUTHORIZATION": "Basic =a="},
        {"HTTP_X_OTHER_KEY": "sbk_whatever"},
    ],
)
def test_missing_wrong_and_malformed_keys_are_401(client, keyed, headers) -> None:
    response = client.get("/partner/orders", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "zato-apikey"
    assert response.json() == {"result": "Error", "cid": response["X-Zato-CID"], "details": "Unauthorized"}


def test_the_right_prefix_with_a_wrong_rest_is_refused(client, keyed) -> None:
    definition, key = keyed
    forged = key[:8] + ("A" if key[8] != "A" else "B") + key[9:]
    assert forged.startswith(definition.key_prefix)
    assert client.get("/partner/orders", HTTP_X_API_KEY=forged).status_code == 401


def test_the_header_name_is_per_definition(client, builtins, make_channel, api_key) -> None:
    definition, key = api_key(name="custom", header="X-Partner-Token")
    make_channel("/partner/custom", "demo.hello", security=definition)
    assert client.get("/partner/custom", HTTP_X_PARTNER_TOKEN=key).status_code == 200
    assert client.get("/partner/custom", HTTP_X_API_KEY=key).status_code == 401


def test_an_inactive_definition_refuses_the_right_key(client, builtins, make_channel, api_key, caplog) -> None:
    definition, key = api_key(is_active=False)
    make_channel("/partner/off", "demo.hello", security=definition)
    response = client.get("/partner/off", HTTP_X_API_KEY=key)
    assert response.status_code == 401
    assert "inactive" in caplog.text


def test_stored_as_prefix_and_keyed_hash(keyed) -> None:
    definition, key = keyed
    row = ApiKey.objects.values("key_prefix", "key_hash").get(pk=definition.pk)
    assert row["key_prefix"] == key[:8]
    assert key not in row["key_hash"] and key[8:] not in str(row)
    assert crypto.verify_secret(key, row["key_hash"])


def test_the_api_shows_the_key_once_at_creation(api, client, builtins, make_channel, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    created = api.post(f"{API}/", {"name": "shop"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    key = body["key"]
    assert key.startswith(body["key_prefix"]) and len(key) >= 40 and body["header"] == "X-API-Key"
    assert "key" not in api.get(f"{API}/{body['id']}/").json()
    assert key not in str(api.get(f"{API}/").json())
    make_channel("/shop", "demo.hello", security=ApiKey.objects.get(pk=body["id"]))
    assert client.get("/shop", HTTP_X_API_KEY=key).status_code == 200

    regenerated = api.post(f"{API}/{body['id']}/regenerate-key/")
    assert regenerated.status_code == 200
    new_key = regenerated.json()["key"]
    assert new_key != key
    assert client.get("/shop", HTTP_X_API_KEY=key).status_code == 401
    assert client.get("/shop", HTTP_X_API_KEY=new_key).status_code == 200
    assert key not in caplog.text and new_key not in caplog.text


def test_an_existing_key_can_be_brought_along_and_set_with_change_password(api, client, builtins,
                                                                          make_channel) -> None:
    zato_key = "8a5b3c9d1e2f4a6b8c0d2e4f6a8b0c2d"  # Zato's keys are uuid4 hex
    created = api.post(f"{API}/", {"name": "legacy", "key": zato_key, "header": "X-Legacy-Key"}, format="json")
    assert created.status_code == 201
    assert created.json()["key"] == zato_key
    make_channel("/legacy", "demo.hello", security=ApiKey.objects.get(pk=created.json()["id"]))
    assert client.get("/legacy", HTTP_X_LEGACY_KEY=zato_key).status_code == 200
    other = "f" * 32
    url = f"{API}/{created.json()['id']}/change-password/"
    assert api.post(url, {"password1": other, "password2": other}, format="json").status_code == 200
    assert client.get("/legacy", HTTP_X_LEGACY_KEY=other).status_code == 200
    too_short = api.post(url, {"password1": "abc", "password2": "abc"}, format="json")
    assert too_short.status_code == 400


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "k1", "key": "too-short"}, "key"),
        ({"name": "k2", "header": "X Bad Header"}, "header"),
        ({"name": "k3", "header": ""}, "header"),
    ],
)
def test_bad_input_is_400_and_saves_nothing(api, payload, field) -> None:
    response = api.post(f"{API}/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["details"]
    assert not ApiKey.objects.exists()


def test_the_admin_shows_the_key_once(admin_client_alice, client, builtins, make_channel) -> None:
    page = admin_client_alice.post("/admin/accounts/apikey/add/",
                                   {"name": "from-admin", "header": "X-API-Key", "is_active": "on"})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    definition = ApiKey.objects.get(name="from-admin")
    shown = page.content.decode().split('<pre id="api-key-value" style="font-size: 1.2em">')[1].split("</pre>")[0]
    assert shown.startswith(definition.key_prefix) and crypto.verify_secret(shown, definition.key_hash)
    change = admin_client_alice.get(f"/admin/accounts/apikey/{definition.pk}/change/")
    assert change.status_code == 200 and shown.encode() not in change.content
    regenerated = admin_client_alice.post(f"/admin/accounts/apikey/{definition.pk}/regenerate-key/")
    assert regenerated.status_code == 200 and shown.encode() not in regenerated.content
    definition.refresh_from_db()
    assert not crypto.verify_secret(shown, definition.key_hash)


def test_the_admin_sets_a_given_key_and_refuses_a_short_one(admin_client_alice, api_key) -> None:
    definition, _old = api_key()
    url = f"/admin/accounts/apikey/{definition.pk}/password/"
    assert 'id="set-key"' in admin_client_alice.get(f"/admin/accounts/apikey/{definition.pk}/change/").content.decode()
    short = admin_client_alice.post(url, {"password1": "too-short", "password2": "too-short"})
    assert "at least 24 characters" in short.content.decode()
    definition.refresh_from_db()
    assert definition.key_prefix == _old[:8]
    given = "0b0b6f2c-9c9e-4b7b-8a57-6f0e3c1d2a44"
    assert admin_client_alice.post(url, {"password1": given, "password2": given}).status_code == 302
    definition.refresh_from_db()
    assert definition.key_prefix == given[:8]
