"""Pinging Vault connections: the health check against the loopback FakeVault, and the admin's Ping buttons."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from connections import vault as vault_module
from connections.base import PingResult
from connections.models import VaultConnection
from tests.conftest import verified_login
from tests.connections.conftest import make_tls
from tests.servers.vault import FakeVault

pytestmark = pytest.mark.django_db

HEALTH = "Vault 1.17.2, initialized, unsealed, active, cluster vault-cluster-test"


def closed_port() -> int:
    """A port nothing listens on: bound by the OS, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping_url(definition: VaultConnection) -> str:
    return reverse("admin:connections_vaultconnection_ping", args=[definition.pk])


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]


# --- The health check ---------------------------------------------------------------------------------


def test_a_healthy_vault_answers_with_its_version_and_the_time(vault_def: Callable[..., VaultConnection],
                                                               vault: FakeVault) -> None:
    result = vault_module.ping(vault_def())
    assert result == PingResult(True, result.ms, HEALTH)
    assert 0 < result.ms < 2000
    (call,) = vault.calls("/v1/sys/")
    assert (call.method, call.path) == ("GET", "/v1/sys/health")


def test_a_sealed_vault_is_reported_exactly(vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    vault.sealed = True
    result = vault_module.ping(vault_def())
    assert not result.ok
    assert result.info == f"Vault 1.17.2 at {vault.url} is sealed (HTTP 503)"


def test_an_uninitialized_vault_is_reported(vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    vault.initialized = False
    result = vault_module.ping(vault_def())
    assert (result.ok, result.info) == (False, f"Vault 1.17.2 at {vault.url} is not initialized (HTTP 501)")


def test_a_standby_node_counts_as_reachable(vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    vault.standby = True
    result = vault_module.ping(vault_def())
    assert result.ok
    assert result.info == ("Vault 1.17.2, unsealed standby node (requests are forwarded to the active node), "
                           "cluster vault-cluster-test")


def test_a_server_failing_the_health_check_is_reported_with_its_errors(
        vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    vault.fail_with = 500
    result = vault_module.ping(vault_def())
    assert (result.ok, result.info) == (False, f"Vault at {vault.url} answered HTTP 500 to /v1/sys/health: "
                                               "internal error")


def test_a_closed_port_is_a_connection_error(vault_def: Callable[..., VaultConnection]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = vault_module.ping(vault_def(url=url))
    assert not result.ok
    assert result.info == f"cannot connect to Vault at {url}: Connection refused"


def test_a_vault_that_does_not_answer_times_out_after_the_connection_timeout(
        vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    vault.hang = 5.0
    result = vault_module.ping(vault_def(timeout=0.3))
    assert not result.ok
    assert result.info == f"Vault at {vault.url} did not answer within 0.3 s"
    assert 300 <= result.ms < 3000


def test_tls_settings_of_the_connection_are_used(db: None, settings: Any, tmp_path: Any) -> None:
    settings.VAR_DIR = tmp_path / "var"
    tls = make_tls(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    fake = FakeVault().start(tls=context)
    try:
        assert fake.url.startswith("https://")
        trusting = VaultConnection.objects.create(name="vault-tls", url=fake.url, tls_ca_cert=tls.ca_pem)
        assert vault_module.ping(trusting).ok
        untrusting = VaultConnection.objects.create(name="vault-tls-no-ca", url=fake.url)
        result = vault_module.ping(untrusting)
        assert not result.ok
        # Our test CA is in no system bundle: the exact verification failure is shown.
        assert result.info == (f"TLS with Vault at {fake.url} failed: certificate verify failed: "
                               "unable to get local issuer certificate")
    finally:
        fake.stop()


def test_a_definition_whose_secret_cannot_be_decrypted_says_so_without_asking_vault(
        vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    definition = vault_def()
    VaultConnection.objects.filter(pk=definition.pk).update(token_encrypted="not-a-fernet-token")
    definition.refresh_from_db()
    result = vault_module.ping(definition)
    assert not result.ok
    assert result.info.startswith("the definition cannot be used: A stored secret cannot be decrypted")
    assert vault.calls() == []


def test_the_token_is_never_part_of_the_answer(vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    from tests.connections.conftest import OWN_TOKEN

    vault.fail_with = 500
    result = vault_module.ping(vault_def())
    assert OWN_TOKEN not in result.info


# --- The admin: a POST URL, messages and JSON -----------------------------------------------------------


def test_the_ping_button_shows_the_response_time(admin_client_alice: Client,
                                                 vault_def: Callable[..., VaultConnection]) -> None:
    definition = vault_def()
    change = reverse("admin:connections_vaultconnection_change", args=[definition.pk])
    page = admin_client_alice.get(change).content.decode()
    assert f'action="{ping_url(definition)}"' in page  # the button among the object tools
    response = admin_client_alice.post(ping_url(definition), {"next": change})
    assert response.status_code == 302
    assert response["Location"] == change
    ((level, text),) = messages_of(response)
    assert level == "success"
    assert text.startswith(f"Ping OK: Vault connection “{definition}” answered in ")
    assert text.endswith(f" ms. {HEALTH}")


def test_a_failed_ping_shows_the_exact_error_as_an_error_message(
        admin_client_alice: Client, vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    definition = vault_def()
    vault.sealed = True
    response = admin_client_alice.post(ping_url(definition), follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert f"Ping failed: Vault connection “{definition}”: " in text
    assert f"Vault 1.17.2 at {vault.url} is sealed (HTTP 503)" in text
    assert 'class="error"' in text


def test_scripts_get_json(admin_client_alice: Client, vault_def: Callable[..., VaultConnection],
                          vault: FakeVault) -> None:
    definition = vault_def()
    response = admin_client_alice.post(ping_url(definition), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["info"] == HEALTH and body["name"] == str(definition)
    assert body["ms"] > 0
    vault.sealed = True
    body = admin_client_alice.post(ping_url(definition) + "?format=json").json()
    assert body["ok"] is False
    assert body["info"] == f"Vault 1.17.2 at {vault.url} is sealed (HTTP 503)"


def test_ping_is_post_only(admin_client_alice: Client, vault_def: Callable[..., VaultConnection],
                           vault: FakeVault) -> None:
    response = admin_client_alice.get(ping_url(vault_def()))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert vault.calls() == []


def test_an_unknown_connection_is_a_404_or_a_message(admin_client_alice: Client, db: None) -> None:
    url = reverse("admin:connections_vaultconnection_ping", args=[999999])
    response = admin_client_alice.post(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 404
    assert response.json()["ok"] is False
    response = admin_client_alice.post(url)
    assert response.status_code == 302
    assert "does not exist" in messages_of(response)[0][1]


def test_ping_needs_the_permission_to_view_vault_connections(
        client: Client, bob: Any, totp_device: Any, vault_def: Callable[..., VaultConnection],
        vault: FakeVault) -> None:
    definition = vault_def()
    device, _ = totp_device(bob)
    verified_login(client, bob, device)
    assert client.post(ping_url(definition)).status_code == 403
    assert client.post(ping_url(definition), HTTP_ACCEPT="application/json").status_code == 403
    assert vault.calls() == []
    bob.user_permissions.add(Permission.objects.get(codename="view_vaultconnection"))
    response = client.post(ping_url(definition), HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json()["ok"] is True


def test_anonymous_visitors_cannot_ping(client: Client, vault_def: Callable[..., VaultConnection],
                                        vault: FakeVault) -> None:
    response = client.post(ping_url(vault_def()))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert vault.calls() == []


def test_a_ping_without_the_csrf_token_is_refused(alice: Any, totp_device: Any,
                                                  vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    client = Client(enforce_csrf_checks=True)
    device, _ = totp_device(alice)
    verified_login(client, alice, device)
    assert client.post(ping_url(vault_def())).status_code == 403
    assert vault.calls() == []


def test_the_list_has_a_ping_button_per_row_and_a_bulk_action(
        admin_client_alice: Client, vault_def: Callable[..., VaultConnection], vault: FakeVault) -> None:
    first, second = vault_def(), vault_def(name="vault-down", url=f"http://127.0.0.1:{closed_port()}")
    listing = reverse("admin:connections_vaultconnection_changelist")
    page = admin_client_alice.get(listing).content.decode()
    for definition in (first, second):
        assert f'formaction="{ping_url(definition)}"' in page
    assert 'value="ping_selected"' in page

    response = admin_client_alice.post(listing, {"action": "ping_selected",
                                                 "_selected_action": [first.pk, second.pk]})
    assert response.status_code == 302
    shown = sorted(messages_of(response))
    assert shown[0][0] == "error"
    assert shown[0][1].startswith(f"Ping failed: Vault connection “{second}”: cannot connect to Vault at {second.url}: "
                                  "Connection refused (after ")
    assert shown[1][0] == "success" and shown[1][1].startswith(f"Ping OK: Vault connection “{first}” answered in ")


def test_the_row_button_comes_back_to_the_list(admin_client_alice: Client,
                                              vault_def: Callable[..., VaultConnection]) -> None:
    listing = reverse("admin:connections_vaultconnection_changelist") + "?q=vault"
    response = admin_client_alice.post(ping_url(vault_def()), HTTP_REFERER="http://testserver" + listing)
    assert response["Location"] == "http://testserver" + listing
    # A referer elsewhere is not followed.
    response = admin_client_alice.post(ping_url(vault_def(name="other")), HTTP_REFERER="https://evil.example/")
    assert response["Location"].endswith("/change/")


def test_an_unexpected_failure_is_a_message_never_a_500(
        admin_client_alice: Client, vault_def: Callable[..., VaultConnection],
        monkeypatch: pytest.MonkeyPatch) -> None:
    definition = vault_def()

    def broken(_definition: VaultConnection) -> PingResult:  # fault injection: a bug in a ping implementation
        raise RuntimeError("token hvs.secret leaked into an exception")

    monkeypatch.setattr(vault_module, "ping", broken)
    response = admin_client_alice.post(ping_url(definition), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["ok"] is False
    assert body["info"].startswith("unexpected error RuntimeError (see the server log, CID ")
    assert "hvs.secret" not in body["info"]


def test_an_invalid_stored_url_is_reported_not_raised(vault_def: Callable[..., VaultConnection]) -> None:
    definition = vault_def()
    VaultConnection.objects.filter(pk=definition.pk).update(url="http://[::1")  # bypasses clean(), as a bad import
    definition.refresh_from_db()
    result = vault_module.ping(definition)
    assert not result.ok
    assert result.info == "asking Vault at http://[::1 failed (InvalidURL)"
