"""Vault security definitions the way callers and administrators meet them.

Through a REST channel secured by a Vault definition (against a loopback fake Vault), the
model's checks and encrypted secrets, the management API and the admin. ``test_vault_gate.py``
drives ``VaultGate`` directly: what Vault is asked, and what comes back.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.core.exceptions import ValidationError

from accounts import crypto
from connections.models import VaultConnection
from tests.connections.conftest import (
    CALLER_TOKEN,
    CHANNEL,
    CHOOSER,
    GITHUB_TOKEN,
    OWN_TOKEN,
    PASSWORD,
    USERNAME,
    make_tls,
)
from tests.servers.procs import free_port

pytestmark = pytest.mark.django_db
API = "/manage/api/v1/security/vault"


# --- The model -----------------------------------------------------------------------------------------


def test_the_token_and_client_key_are_stored_encrypted(vault_def) -> None:
    definition = vault_def(token=OWN_TOKEN)
    stored = VaultConnection.objects.values_list("token_encrypted", flat=True).get(pk=definition.pk)
    assert OWN_TOKEN not in stored and crypto.decrypt(stored) == OWN_TOKEN
    assert definition.sec_type == "vault_conn_sec"
    assert VaultConnection.objects.get(pk=definition.pk).has_token


@pytest.mark.parametrize("fields,field", [
    ({"url": "ftp://vault:8200"}, "url"),
    ({"url": "localhost:8200"}, "url"),
    ({"timeout": 0}, "timeout"),
    ({"cache_ttl": -1}, "cache_ttl"),
    ({"cache_ttl": 86400}, "cache_ttl"),
    ({"timeout": 3600}, "timeout"),
    ({"mount_point": "../sys"}, "mount_point"),
    ({"github_mount_point": "a//b"}, "github_mount_point"),
    ({"tls_client_cert": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"}, "tls_client_cert"),
    ({"tls_ca_cert": "not a pem"}, "tls_ca_cert"),
    ({"default_auth_method": "ldap"}, "default_auth_method"),
])
def test_invalid_definitions_are_refused_on_save(db, fields, field) -> None:
    with pytest.raises(ValidationError) as caught:
        VaultConnection(name="bad", **fields).save()
    assert field in caught.value.message_dict
    assert not VaultConnection.objects.exists()


def test_a_client_key_alone_is_refused_too(db) -> None:
    definition = VaultConnection(name="key-only")
    definition.set_tls_client_key("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----")
    with pytest.raises(ValidationError, match="give both or neither"):
        definition.save()


# --- Through the REST channel ----------------------------------------------------------------------------


def test_a_valid_token_reaches_the_service_and_the_response_carries_the_vault_token(client, vault_channel) -> None:
    vault_channel()
    response = client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN)
    assert response.status_code == 200, response.content
    assert response.json()["hello"] == "world"
    assert response["X-Zato-Vault-Token"] == CALLER_TOKEN
    assert response["X-Zato-Vault-Token-Lease-Duration"] == "600"


def test_a_userpass_login_hands_the_issued_client_token_to_the_caller(client, vault_channel, vault) -> None:
    vault_channel()
    response = client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD=PASSWORD)
    assert response.status_code == 200
    assert response["X-Zato-Vault-Token"] in vault.tokens
    assert response["X-Zato-Vault-Token-Lease-Duration"] == "1800"


def test_a_github_login_through_the_channel(client, vault_channel) -> None:
    vault_channel(default_auth_method="github")
    assert client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN_GITHUB=GITHUB_TOKEN).status_code == 200
    assert client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN_GITHUB="ghp_stranger").status_code == 401


def assert_vault_401(response) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "zato-vault"
    body = response.json()
    assert body["result"] == "Error" and body["details"] == "Failed to authenticate"
    assert response["X-Zato-CID"] == body["cid"]
    assert "X-Zato-Vault-Token" not in response


@pytest.mark.parametrize("headers", [
    {},
    {"HTTP_X_ZATO_VAULT_TOKEN": "hvs.unknown"},
    {"HTTP_X_ZATO_VAULT_USERNAME": USERNAME, "HTTP_X_ZATO_VAULT_PASSWORD": "wrong"},
    {"HTTP_X_ZATO_VAULT_USERNAME": "nobody", "HTTP_X_ZATO_VAULT_PASSWORD": PASSWORD},
    {"HTTP_X_ZATO_VAULT_USERNAME": "\xff\xfe", "HTTP_X_ZATO_VAULT_PASSWORD": PASSWORD},
    {"HTTP_X_ZATO_VAULT_USERNAME": USERNAME, "HTTP_X_ZATO_VAULT_PASSWORD": "\xc3\x28"},
    {"HTTP_X_ZATO_VAULT_TOKEN": "hvs.\x00nul"},
    {"HTTP_X_ZATO_VAULT_USERNAME": USERNAME},
    {"HTTP_AUTHORIZATION": "Basic =a="},
])
def test_missing_wrong_or_malformed_credentials_give_401_never_500(client, vault_channel, headers) -> None:
    vault_channel()
    assert_vault_401(client.get(CHANNEL, **headers))


def test_an_inactive_definition_refuses_good_credentials(client, vault_channel, vault) -> None:
    vault_channel(is_active=False)
    assert_vault_401(client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN))
    assert vault.calls() == []


def test_vault_down_is_503_never_200(client, vault_channel) -> None:
    vault_channel(url=f"http://127.0.0.1:{free_port()}")
    response = client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN)
    assert response.status_code == 503
    assert response.json()["result"] == "Error"
    assert "X-Zato-Vault-Token" not in response


def test_vault_hanging_past_the_timeout_is_503(client, vault_channel, vault) -> None:
    vault_channel(timeout=0.5)
    vault.hang = 10
    started = time.monotonic()
    response = client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD=PASSWORD)
    assert response.status_code == 503
    assert time.monotonic() - started < 5


def test_vault_sealed_is_503(client, vault_channel, vault) -> None:
    vault_channel()
    vault.fail_with = 503
    assert client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN).status_code == 503


def test_a_second_call_within_cache_ttl_does_not_reach_vault(client, vault_channel, vault) -> None:
    vault_channel(cache_ttl=30)
    for _ in range(3):
        response = client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD=PASSWORD)
        assert response.status_code == 200
    assert len(vault.calls()) == 1
    for _ in range(2):  # a failure is asked about every time
        client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD="nope")
    assert len(vault.calls()) == 3


def test_a_remembered_login_ends_with_its_cache_entry_even_for_repeated_calls(client, vault_channel, vault,
                                                                            settings) -> None:
    """Repeated calls are answered from the authenticator's memo; it expires with the gate's entry."""
    settings.CREDENTIAL_RECHECK = 60  # the limits' own recheck must not be what sends the call to Vault
    vault_channel(cache_ttl=1.5)
    headers = {"HTTP_X_ZATO_VAULT_USERNAME": USERNAME, "HTTP_X_ZATO_VAULT_PASSWORD": PASSWORD}
    for _ in range(3):
        assert client.get(CHANNEL, **headers).status_code == 200
    assert len(vault.calls()) == 1
    del vault.userpass[("userpass", USERNAME)]  # Vault no longer knows the caller...
    assert client.get(CHANNEL, **headers).status_code == 200  # ...which the cache cannot tell yet
    time.sleep(1.6)
    assert client.get(CHANNEL, **headers).status_code == 401  # asked again, and refused
    assert len(vault.calls()) == 2


def test_a_lease_shorter_than_cache_ttl_ends_the_memoised_login_too(client, vault_channel, vault,
                                                                   settings) -> None:
    settings.CREDENTIAL_RECHECK = 60  # the limits' own recheck must not be what sends the call to Vault
    vault_channel(cache_ttl=30)
    vault.add_user("short-lease", "pw-1", lease_duration=2)
    headers = {"HTTP_X_ZATO_VAULT_USERNAME": "short-lease", "HTTP_X_ZATO_VAULT_PASSWORD": "pw-1"}
    for _ in range(3):
        assert client.get(CHANNEL, **headers).status_code == 200
    assert len(vault.calls()) == 1
    time.sleep(2.1)
    assert client.get(CHANNEL, **headers).status_code == 200
    assert len(vault.calls()) == 2  # the lease ended: Vault was asked again


def test_cache_ttl_zero_reaches_vault_on_every_call(client, vault_channel, vault) -> None:
    vault_channel(cache_ttl=0)
    for _ in range(3):
        assert client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN).status_code == 200
    assert len(vault.calls()) == 3


def test_a_chooser_service_through_the_channel(client, vault_channel, deploy) -> None:
    deploy("vault_choosers.py", CHOOSER)
    vault_channel(service_name="vault-choosers.from-body")
    good = client.post(CHANNEL, {"user": USERNAME, "pass": PASSWORD}, content_type="application/json")
    assert good.status_code == 200, good.content
    assert good["X-Zato-Vault-Token"].startswith("hvs.")
    assert_vault_401(client.post(CHANNEL, {"user": USERNAME, "pass": "no"}, content_type="application/json"))


def test_a_chooser_that_raises_gives_401(client, vault_channel, deploy, vault) -> None:
    deploy("vault_choosers.py", CHOOSER)
    vault_channel(service_name="vault-choosers.broken")
    assert_vault_401(client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN))
    assert vault.calls() == []


def test_a_channel_swapped_onto_a_vault_definition_uses_it_at_once(client, make_channel, basic_auth,
                                                                    vault_def) -> None:
    from integration.models import RestChannel

    channel = make_channel(CHANNEL, "demo.hello", security=basic_auth())
    assert client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN).status_code == 401
    channel.security = vault_def()
    channel.save()
    assert RestChannel.objects.get(pk=channel.pk).security.sec_type == "vault_conn_sec"
    assert client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN).status_code == 200


def test_secrets_never_reach_the_logs(client, vault_channel, vault, caplog, deploy) -> None:
    caplog.set_level(logging.DEBUG)
    definition = vault_channel(cache_ttl=0)
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN)
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN + "-typo")
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD=PASSWORD)
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD=PASSWORD + "-typo")
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN_GITHUB=GITHUB_TOKEN + "-typo")
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD="pass\x07" + PASSWORD)
    vault.fail_with = 503
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_TOKEN=CALLER_TOKEN)
    vault.fail_with = None
    vault.hang = 5
    definition.timeout = 0.3
    definition.save()
    client.get(CHANNEL, HTTP_X_ZATO_VAULT_USERNAME=USERNAME, HTTP_X_ZATO_VAULT_PASSWORD=PASSWORD)
    logged = caplog.text
    assert "invalid username or password" in logged and "bad token" in logged  # the precise reasons are there
    for secret in (CALLER_TOKEN, PASSWORD, GITHUB_TOKEN, OWN_TOKEN, "hvs.", "ghp_"):
        assert secret not in logged


# --- The management API and the admin ---------------------------------------------------------------------


def test_the_api_takes_the_secrets_and_never_gives_them_back(api, vault) -> None:
    tls = make_tls_in_memory()
    created = api.post(f"{API}/", {
        "name": "vault-api", "url": vault.url, "token": OWN_TOKEN, "default_auth_method": "token",
        "tls_client_cert": tls.client_cert_pem, "tls_client_key": tls.client_key_pem,
    }, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["has_token"] is True and body["has_tls_client_key"] is True
    assert "token" not in body and "tls_client_key" not in body
    definition = VaultConnection.objects.get(name="vault-api")
    assert definition.get_token() == OWN_TOKEN and definition.get_tls_client_key() == tls.client_key_pem
    listing = json.dumps(api.get(f"{API}/").json()) + json.dumps(api.get(f"{API}/{definition.pk}/").json())
    assert OWN_TOKEN not in listing and "PRIVATE KEY" not in listing and "gAAAA" not in listing

    kept = api.patch(f"{API}/{definition.pk}/", {"timeout": 3}, format="json")
    assert kept.status_code == 200 and kept.json()["has_token"] is True
    assert VaultConnection.objects.get(pk=definition.pk).get_token() == OWN_TOKEN
    cleared = api.patch(f"{API}/{definition.pk}/", {"token": None}, format="json")
    assert cleared.json()["has_token"] is False


def test_the_api_refuses_invalid_definitions_naming_the_field(api) -> None:
    response = api.post(f"{API}/", {"name": "bad-vault", "url": "ftp://vault", "timeout": 0}, format="json")
    assert response.status_code == 400
    assert {"url", "timeout"} <= set(response.json()["details"])
    key_only = api.post(f"{API}/", {"name": "bad-vault", "tls_client_key": "-----BEGIN PRIVATE KEY-----\nx"},
                        format="json")
    assert key_only.status_code == 400 and "tls_client_cert" in key_only.json()["details"]
    assert not VaultConnection.objects.exists()


def test_deleting_a_definition_in_use_needs_cascade(api, vault_channel) -> None:
    definition = vault_channel()
    refused = api.delete(f"{API}/{definition.pk}/")
    assert refused.status_code == 409
    assert "vault-protected" in json.dumps(refused.json())
    assert api.delete(f"{API}/{definition.pk}/?cascade=true").status_code == 204
    assert not VaultConnection.objects.exists()


def test_the_admin_sets_secrets_write_only_and_never_shows_them(admin_client_alice, vault) -> None:
    client = admin_client_alice
    add = client.get("/admin/connections/vaultconnection/add/")
    assert add.status_code == 200
    form = {
        "name": "vault-admin", "is_active": "on", "url": vault.url, "default_auth_method": "", "service_name": "",
        "mount_point": "userpass", "github_mount_point": "github", "timeout": "10", "cache_ttl": "5",
        "tls_verify": "on", "tls_ca_cert": "", "tls_client_cert": "", "new_token": OWN_TOKEN,
        "new_tls_client_key": "",
    }
    created = client.post("/admin/connections/vaultconnection/add/", form)
    assert created.status_code == 302, created.content.decode()[:3000]
    definition = VaultConnection.objects.get(name="vault-admin")
    assert definition.get_token() == OWN_TOKEN
    change_url = f"/admin/connections/vaultconnection/{definition.pk}/change/"
    page = client.get(change_url).content.decode()
    assert OWN_TOKEN not in page and definition.token_encrypted not in page
    assert "Stored encrypted; never shown." in page
    # Saving with the token input left empty keeps the stored token.
    assert client.post(change_url, {**form, "new_token": "", "timeout": "4"}).status_code == 302
    definition.refresh_from_db()
    assert definition.timeout == 4 and definition.get_token() == OWN_TOKEN
    # A client certificate without its key is refused on the form, with the message.
    tls = make_tls_in_memory()
    refused = client.post(change_url, {**form, "new_token": "", "tls_client_cert": tls.client_cert_pem})
    assert refused.status_code == 200 and "give both or neither" in refused.content.decode()
    # A form sent back with an error never echoes a secret typed on it.
    echoed = client.post(change_url, {**form, "new_token": "hvs.typed-not-saved", "timeout": "0",
                                      "new_tls_client_key": tls.client_key_pem})
    assert echoed.status_code == 200 and "timeout" in echoed.context["adminform"].form.errors
    assert "hvs.typed-not-saved" not in echoed.content.decode() and "PRIVATE KEY" not in echoed.content.decode()
    definition.refresh_from_db()
    assert definition.get_token() == OWN_TOKEN and not definition.has_tls_client_key
    # The checkbox removes it.
    assert client.post(change_url, {**form, "new_token": "", "clear_token": "on"}).status_code == 302
    definition.refresh_from_db()
    assert not definition.has_token


def make_tls_in_memory():  # type: ignore[no-untyped-def]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        return make_tls(Path(directory))
