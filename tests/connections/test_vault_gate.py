"""Vault security definitions: ``VaultGate`` driven directly, the real hvac client against a loopback fake Vault.

What Vault is asked and what comes back: token, username/password and GitHub logins, the
chooser service, Vault down, slow or failing, the cache of successful logins, and TLS.
``test_vault_channel.py`` goes through a REST channel secured by a Vault definition, the
management API and the admin, the way callers and administrators meet it.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from connections.models import VaultConnection
from connections.vault_inbound import VaultDenied, VaultGate, VaultLogin, VaultUnavailable
from integration.invoke import call_service
from tests.connections.conftest import (
    CALLER_TOKEN,
    CHOOSER,
    GITHUB_TOKEN,
    OWN_TOKEN,
    PASSWORD,
    USERNAME,
    make_tls,
    no_body,
    wsgi,
)
from tests.servers.procs import free_port
from tests.servers.vault import FakeVault

pytestmark = pytest.mark.django_db

TOKEN_H = "HTTP_X_ZATO_VAULT_TOKEN"
GITHUB_H = "HTTP_X_ZATO_VAULT_TOKEN_GITHUB"
USER_H = "HTTP_X_ZATO_VAULT_USERNAME"
PASSWORD_H = "HTTP_X_ZATO_VAULT_PASSWORD"
MOUNT_H = "HTTP_X_ZATO_VAULT_MOUNT_POINT"
USERPASS = {USER_H: USERNAME, PASSWORD_H: PASSWORD}


# --- VaultGate: asking Vault -----------------------------------------------------------------------


def test_building_a_gate_contacts_nobody(gate, vault) -> None:
    gate()
    assert vault.calls() == []


def test_a_valid_token_is_looked_up_with_switchboards_own_token(gate, vault) -> None:
    login = gate().login({TOKEN_H: CALLER_TOKEN}, no_body, "cid-1")
    assert login == VaultLogin(username="ci-bot", method="token", client_token=CALLER_TOKEN, lease_duration=600,
                               policies=("default", "reader"))
    (call,) = vault.calls()
    assert (call.method, call.path) == ("POST", "/v1/auth/token/lookup")
    assert call.headers["x-vault-token"] == OWN_TOKEN
    assert call.body == {"token": CALLER_TOKEN}


def test_an_unknown_token_is_denied(gate) -> None:
    with pytest.raises(VaultDenied, match="bad token") as caught:
        gate().login({TOKEN_H: "hvs.not-a-real-token"}, no_body, "cid")
    assert "hvs.not-a-real-token" not in str(caught.value)


def test_without_its_own_token_a_definition_lets_the_token_look_itself_up(gate, vault) -> None:
    login = gate(token="").login({TOKEN_H: CALLER_TOKEN}, no_body, "cid")
    assert login is not None and login.username == "ci-bot"
    (call,) = vault.calls()
    assert (call.method, call.path, call.headers["x-vault-token"]) == ("GET", "/v1/auth/token/lookup-self",
                                                                       CALLER_TOKEN)
    with pytest.raises(VaultDenied, match="permission denied"):
        gate(name="other", token="").login({TOKEN_H: "hvs.unknown"}, no_body, "cid")


def test_username_and_password_log_in_with_userpass_without_replacing_the_clients_token(gate, vault) -> None:
    vault_gate = gate()
    login = vault_gate.login(USERPASS, no_body, "cid")
    assert login is not None
    assert (login.username, login.method, login.lease_duration, login.policies) == (
        USERNAME, "username-password", 1800, ("default", "crm"))
    assert login.client_token.startswith("hvs.") and login.client_token in vault.tokens
    (call,) = vault.calls()
    assert (call.method, call.path, call.body) == ("POST", f"/v1/auth/userpass/login/{USERNAME}",
                                                   {"password": PASSWORD})
    assert vault_gate.client.token == OWN_TOKEN  # use_token=False: one client serves every caller


@pytest.mark.parametrize("username,password", [(USERNAME, "wrong-password"), ("nobody", PASSWORD)])
def test_a_wrong_password_and_an_unknown_user_are_denied_alike(gate, username, password) -> None:
    with pytest.raises(VaultDenied, match="invalid username or password"):
        gate().login({USER_H: username, PASSWORD_H: password}, no_body, "cid")


def test_the_caller_may_name_another_userpass_mount_point(gate, vault) -> None:
    vault.add_user("contractor", "c-pass", mount="partners/userpass")
    vault_gate = gate()
    login = vault_gate.login({USER_H: "contractor", PASSWORD_H: "c-pass", MOUNT_H: "partners/userpass"}, no_body, "c")
    assert login is not None and login.username == "contractor"
    assert vault.calls()[-1].path == "/v1/auth/partners/userpass/login/contractor"
    with pytest.raises(VaultDenied, match="at mount 'userpass'"):  # the default mount does not know that user
        vault_gate.login({USER_H: "contractor", PASSWORD_H: "c-pass"}, no_body, "cid")


def test_the_definitions_mount_point_is_the_default(gate, vault) -> None:
    vault.add_user("ops", "ops-pass", mount="corp")
    login = gate(mount_point="corp").login({USER_H: "ops", PASSWORD_H: "ops-pass"}, no_body, "cid")
    assert login is not None and vault.calls()[-1].path == "/v1/auth/corp/login/ops"


@pytest.mark.parametrize("headers,reason", [
    ({USER_H: USERNAME, PASSWORD_H: PASSWORD, MOUNT_H: "../../sys/seal"}, "Mount-Point is not a valid"),
    ({USER_H: USERNAME, PASSWORD_H: PASSWORD, MOUNT_H: "userpass/../token"}, "Mount-Point is not a valid"),
    ({USER_H: "../../sys/seal", PASSWORD_H: PASSWORD}, "Username is not a valid"),
    ({USER_H: "vera?x=1", PASSWORD_H: PASSWORD}, "Username is not a valid"),
    ({USER_H: "..", PASSWORD_H: PASSWORD}, "Username is not a valid"),
    ({USER_H: USERNAME}, "must be sent together"),
    ({PASSWORD_H: PASSWORD}, "must be sent together"),
    ({TOKEN_H: "hvs.with space"}, "not a valid token"),
    ({USER_H: "\xff\xfe", PASSWORD_H: PASSWORD}, "not valid UTF-8"),
    ({USER_H: USERNAME, PASSWORD_H: "pass\x07word"}, "control characters"),
    ({USER_H: USERNAME, PASSWORD_H: wsgi("pass\u0085word")}, "control characters"),
    ({TOKEN_H: "\u20ac"}, "not valid UTF-8"),  # not even latin-1: cannot have come from a WSGI server
    ({PASSWORD_H: "x" * 9000, USER_H: USERNAME}, "too long"),
])
def test_malformed_credentials_are_denied_before_anything_is_sent_to_vault(gate, vault, headers, reason) -> None:
    with pytest.raises(VaultDenied, match=reason):
        gate().login(headers, no_body, "cid")
    assert vault.calls() == []


def test_a_utf8_password_arrives_in_vault_as_sent(gate, vault) -> None:
    vault.add_user("zofia", "zażółć gęślą jaźń")
    login = gate().login({USER_H: "zofia", PASSWORD_H: wsgi("zażółć gęślą jaźń")}, no_body, "cid")
    assert login is not None and vault.calls()[-1].body == {"password": "zażółć gęślą jaźń"}


def test_a_github_token_logs_in_with_vaults_github_method(gate, vault) -> None:
    login = gate().login({GITHUB_H: GITHUB_TOKEN}, no_body, "cid")
    assert login is not None
    assert (login.username, login.method, login.lease_duration, login.policies) == (
        "octocat", "github", 3600, ("default", "dev"))
    (call,) = vault.calls()
    assert (call.path, call.body) == ("/v1/auth/github/login", {"token": GITHUB_TOKEN})


def test_a_bad_github_token_is_denied_and_the_github_mount_point_is_configurable(gate, vault) -> None:
    with pytest.raises(VaultDenied, match="not part of required org"):
        gate().login({GITHUB_H: "ghp_notAMember"}, no_body, "cid")
    vault.add_github("ghp_otherOrg", "hubot", mount="gh-enterprise")
    login = gate(name="ghe", github_mount_point="gh-enterprise").login({GITHUB_H: "ghp_otherOrg"}, no_body, "c")
    assert login is not None and login.username == "hubot"
    assert vault.calls()[-1].path == "/v1/auth/gh-enterprise/login"


def test_no_vault_headers_means_no_credentials(gate, vault) -> None:
    assert gate().login({"HTTP_AUTHORIZATION": "Basic dTpw", "HTTP_X_ZATO_VAULT_TOKEN": ""}, no_body, "c") is None
    assert vault.calls() == []


def test_without_a_default_method_the_order_is_token_then_userpass_then_github(gate, vault) -> None:
    vault_gate = gate(cache_ttl=0)
    everything = {TOKEN_H: CALLER_TOKEN, **USERPASS, GITHUB_H: GITHUB_TOKEN}
    assert vault_gate.login(everything, no_body, "c").method == "token"
    assert vault_gate.login({**USERPASS, GITHUB_H: GITHUB_TOKEN}, no_body, "c").method == "username-password"
    assert vault_gate.login({GITHUB_H: GITHUB_TOKEN}, no_body, "c").method == "github"
    assert [call.path for call in vault.calls()] == [
        "/v1/auth/token/lookup", f"/v1/auth/userpass/login/{USERNAME}", "/v1/auth/github/login"]


def test_a_default_method_is_the_only_one_accepted(gate, vault) -> None:
    github_only = gate(default_auth_method="github")
    everything = {TOKEN_H: CALLER_TOKEN, **USERPASS, GITHUB_H: GITHUB_TOKEN}
    assert github_only.login(everything, no_body, "c").method == "github"
    with pytest.raises(VaultDenied, match="accepts only the github method"):
        github_only.login({TOKEN_H: CALLER_TOKEN}, no_body, "c")
    assert github_only.login({}, no_body, "c") is None
    userpass_only = gate(name="userpass-only", default_auth_method="username-password")
    assert userpass_only.login(everything, no_body, "c").method == "username-password"
    with pytest.raises(VaultDenied, match="must be sent together"):
        userpass_only.login({USER_H: USERNAME}, no_body, "c")
    assert [call.path for call in vault.calls()] == ["/v1/auth/github/login", f"/v1/auth/userpass/login/{USERNAME}"]


# --- VaultGate: the chooser service ------------------------------------------------------------------


def test_a_chooser_service_reads_the_body_and_picks_method_and_credentials(gate, vault, deploy, builtins) -> None:
    deploy("vault_choosers.py", CHOOSER)
    vault_gate = gate(service_name="vault-choosers.from-body", default_auth_method="github")
    body = json.dumps({"user": USERNAME, "pass": PASSWORD}).encode()
    login = vault_gate.login({GITHUB_H: GITHUB_TOKEN}, lambda: body, "cid-chooser", call_service)
    # The chooser decides before the default method: userpass, from the body, not the GitHub header.
    assert login is not None and (login.method, login.username) == ("username-password", USERNAME)
    assert [call.path for call in vault.calls()] == [f"/v1/auth/userpass/login/{USERNAME}"]


def test_a_chooser_sees_the_request_headers_by_their_http_names(gate, deploy, builtins) -> None:
    deploy("vault_choosers.py", CHOOSER)
    login = gate(service_name="vault-choosers.from-authorization").login(
        {"HTTP_AUTHORIZATION": f"Bearer {CALLER_TOKEN}"}, lambda: b"", "cid", call_service)
    assert login is not None and (login.method, login.client_token) == ("token", CALLER_TOKEN)


@pytest.mark.parametrize("service,reason", [
    ("vault-choosers.broken", "failed"),
    ("vault-choosers.nonsense", "unknown method 'carrier-pigeon'"),
    ("vault-choosers.not-an-object", "no usable answer"),
    ("vault-choosers.not-deployed", "is not deployed"),
])
def test_a_chooser_that_fails_or_talks_nonsense_denies_the_caller(gate, vault, deploy, builtins, service,
                                                                   reason) -> None:
    deploy("vault_choosers.py", CHOOSER)
    with pytest.raises(VaultDenied, match=reason):
        gate(service_name=service).login({TOKEN_H: CALLER_TOKEN}, lambda: b"{}", "cid", call_service)
    assert vault.calls() == []


def test_a_chooser_that_names_a_method_without_its_credentials_denies(gate, deploy, builtins) -> None:
    deploy("vault_choosers.py", CHOOSER)
    with pytest.raises(VaultDenied, match="gave no credentials"):
        gate(service_name="vault-choosers.from-body").login({}, lambda: b"{}", "cid", call_service)


def test_without_a_service_caller_a_chooser_cannot_be_asked_and_the_caller_is_denied(gate, vault, deploy,
                                                                                      builtins) -> None:
    # The channel hands the gate its way of invoking services; code that hands none gets no yes.
    deploy("vault_choosers.py", CHOOSER)
    with pytest.raises(VaultDenied, match="no service caller"):
        gate(service_name="vault-choosers.from-body").login({TOKEN_H: CALLER_TOKEN}, lambda: b"{}", "cid")
    assert vault.calls() == []


# --- VaultGate: Vault down, slow or failing -----------------------------------------------------------


def test_vault_not_listening_is_unavailable_not_denied(gate) -> None:
    with pytest.raises(VaultUnavailable, match="cannot connect"):
        gate(url=f"http://127.0.0.1:{free_port()}").login(USERPASS, no_body, "cid")


def test_vault_hanging_past_the_timeout_is_unavailable(gate, vault) -> None:
    vault.hang = 10
    started = time.monotonic()
    with pytest.raises(VaultUnavailable, match=r"did not answer within 0\.5 s"):
        gate(timeout=0.5).login({TOKEN_H: CALLER_TOKEN}, no_body, "cid")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("status,name", [(500, "InternalServerError"), (503, "VaultDown"), (502, "BadGateway")])
def test_vault_answering_5xx_is_unavailable(gate, vault, status, name) -> None:
    vault.fail_with = status
    with pytest.raises(VaultUnavailable, match=name):
        gate().login(USERPASS, no_body, "cid")


def test_a_token_that_no_longer_decrypts_makes_a_gate_that_refuses_all_without_breaking_the_snapshot(
        vault_def, vault) -> None:
    definition = vault_def()
    definition.token_encrypted = "gAAAAABnot-a-fernet-token"
    vault_gate = VaultGate.from_definition(definition)
    with pytest.raises(VaultUnavailable, match="cannot be decrypted"):
        vault_gate.login({TOKEN_H: CALLER_TOKEN}, no_body, "cid")
    assert vault.calls() == []


def test_an_inactive_definition_denies_before_asking_vault(gate, vault) -> None:
    with pytest.raises(VaultDenied, match="inactive"):
        gate(is_active=False).login({TOKEN_H: CALLER_TOKEN}, no_body, "cid")
    assert vault.calls() == []


# --- VaultGate: the cache of successful logins ---------------------------------------------------------


def test_a_success_is_remembered_for_cache_ttl_and_then_asked_again(gate, vault) -> None:
    vault_gate = gate(cache_ttl=5)
    now = [1000.0]
    vault_gate.clock = lambda: now[0]
    first = vault_gate.login(USERPASS, no_body, "c")
    assert vault_gate.login(USERPASS, no_body, "c") == first
    assert len(vault.calls()) == 1
    now[0] += 5.1
    assert vault_gate.login(USERPASS, no_body, "c") is not None
    assert len(vault.calls()) == 2


def test_failures_are_never_remembered(gate, vault) -> None:
    vault_gate = gate(cache_ttl=60)
    for _ in range(2):
        with pytest.raises(VaultDenied):
            vault_gate.login({USER_H: USERNAME, PASSWORD_H: "wrong"}, no_body, "c")
    vault.fail_with = 503
    with pytest.raises(VaultUnavailable):
        vault_gate.login(USERPASS, no_body, "c")
    vault.fail_with = None
    assert vault_gate.login(USERPASS, no_body, "c") is not None
    assert len(vault.calls()) == 4


def test_a_different_password_misses_the_cache(gate, vault) -> None:
    vault_gate = gate(cache_ttl=60)
    vault_gate.login(USERPASS, no_body, "c")
    with pytest.raises(VaultDenied):
        vault_gate.login({USER_H: USERNAME, PASSWORD_H: PASSWORD + "x"}, no_body, "c")
    assert len(vault.calls()) == 2


def test_cache_ttl_zero_asks_vault_every_time(gate, vault) -> None:
    vault_gate = gate(cache_ttl=0)
    for _ in range(3):
        vault_gate.login({TOKEN_H: CALLER_TOKEN}, no_body, "c")
    assert len(vault.calls()) == 3
    assert len(vault_gate.cache) == 0


def test_a_login_is_never_remembered_past_its_vault_lease(gate, vault) -> None:
    vault.add_user("brief", "brief-pass", lease_duration=2)
    vault_gate = gate(cache_ttl=60)
    now = [50.0]
    vault_gate.clock = lambda: now[0]
    vault_gate.login({USER_H: "brief", PASSWORD_H: "brief-pass"}, no_body, "c")
    now[0] += 2.5
    vault_gate.login({USER_H: "brief", PASSWORD_H: "brief-pass"}, no_body, "c")
    assert len(vault.calls()) == 2


def test_a_remembered_login_serves_only_the_very_same_vault_headers(gate, vault) -> None:
    # Entries are keyed by the Vault headers as sent, so that a hit skips reading them again: any other
    # value, even one that adds a header to remembered credentials, is read and checked afresh.
    vault_gate = gate(cache_ttl=60, default_auth_method="username-password")
    assert vault_gate.login(USERPASS, no_body, "c") is not None
    with pytest.raises(VaultDenied, match="not a valid mount path"):
        vault_gate.login({**USERPASS, MOUNT_H: "../sys"}, no_body, "c")
    assert vault_gate.login({**USERPASS, TOKEN_H: CALLER_TOKEN}, no_body, "c") is not None  # read afresh
    assert len(vault.calls()) == 2
    assert vault_gate.login({USER_H: USERNAME, PASSWORD_H: PASSWORD}, no_body, "c") is not None
    assert len(vault.calls()) == 2  # the very same values: remembered


def test_the_cache_keys_are_keyed_hashes_and_the_cache_is_bounded(gate, vault, monkeypatch) -> None:
    from connections import vault_inbound

    monkeypatch.setattr(vault_inbound._Cache, "MAX_ENTRIES", 3)
    vault_gate = gate(cache_ttl=60)
    for index in range(5):
        vault.add_user(f"user{index}", f"secret-{index}")
        vault_gate.login({USER_H: f"user{index}", PASSWORD_H: f"secret-{index}"}, no_body, "c")
    assert len(vault_gate.cache) == 3
    keys = " ".join(vault_gate.cache._entries)
    assert "secret-" not in keys and "user" not in keys


def _at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    """``call()`` from ``count`` threads released together; each one's result or exception, in order."""
    barrier = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = call()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_callers_arriving_while_a_login_is_asked_wait_for_it_instead_of_asking_too(gate, vault) -> None:
    # With dozens of threads per process, each expiry of a busy caller's entry used to send as many
    # identical logins as calls arrived during the first one (70 in a 20 s benchmark, for 8 expiries).
    vault_gate = gate(cache_ttl=60)
    vault.hang = 0.5  # the first login is in flight for half a second while the others arrive
    logins = _at_once(6, lambda: vault_gate.login(USERPASS, no_body, "c"))
    assert len(vault.calls()) == 1
    assert all(isinstance(login, VaultLogin) for login in logins)
    assert len({login.client_token for login in logins}) == 1  # the one answer, shared


def test_a_refusal_is_not_handed_to_callers_waiting_for_it(gate, vault) -> None:
    # Failures are never remembered, nor shared: each waiter whose leader was refused asks Vault itself.
    vault_gate = gate(cache_ttl=60)
    vault.hang = 0.3
    outcomes = _at_once(4, lambda: vault_gate.login({USER_H: USERNAME, PASSWORD_H: "wrong"}, no_body, "c"))
    assert all(isinstance(outcome, VaultDenied) for outcome in outcomes)
    assert len(vault.calls()) == 4
    assert len(vault_gate.cache) == 0


# --- VaultGate: TLS -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # tls_verify=False, on purpose
def test_tls_ca_bundle_and_client_certificate_are_used_from_private_files(vault_def, settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path / "var"
    tls = make_tls(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    context.load_verify_locations(cadata=tls.ca_pem)
    context.verify_mode = ssl.CERT_REQUIRED  # Vault asks for Switchboard's client certificate
    fake = FakeVault().start(tls=context)
    try:
        fake.add_user(USERNAME, PASSWORD)
        definition = VaultConnection(name="vault-tls", url=fake.url, tls_ca_cert=tls.ca_pem,
                                     tls_client_cert=tls.client_cert_pem)
        definition.set_tls_client_key(tls.client_key_pem)
        definition.save()
        login = VaultGate.from_definition(definition).login(USERPASS, no_body, "cid")
        assert login is not None and login.username == USERNAME
        directory = settings.VAR_DIR / "vault"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        files = sorted(directory.iterdir())
        assert len(files) == 3 and all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
        assert tls.client_key_pem in [path.read_text() for path in files]

        # Without the CA, Vault's certificate is not trusted: unavailable, never a pass.
        untrusting = VaultConnection(name="vault-tls-no-ca", url=fake.url, tls_client_cert=tls.client_cert_pem)
        untrusting.set_tls_client_key(tls.client_key_pem)
        untrusting.save()
        with pytest.raises(VaultUnavailable, match="TLS"):
            VaultGate.from_definition(untrusting).login(USERPASS, no_body, "cid")
        # Without the client certificate, Vault hangs up during the handshake.
        anonymous = VaultConnection.objects.create(name="vault-tls-anonymous", url=fake.url, tls_ca_cert=tls.ca_pem)
        with pytest.raises(VaultUnavailable):
            VaultGate.from_definition(anonymous).login(USERPASS, no_body, "cid")
        # tls_verify off: the CA does not matter any more (the client certificate still does).
        unverified = VaultConnection(name="vault-tls-unverified", url=fake.url, tls_verify=False,
                                     tls_client_cert=tls.client_cert_pem)
        unverified.set_tls_client_key(tls.client_key_pem)
        unverified.save()
        assert VaultGate.from_definition(unverified).login(USERPASS, no_body, "cid") is not None
        assert len(fake.calls()) == 2
    finally:
        fake.stop()



def test_private_files_are_not_readable_by_others(settings, tmp_path) -> None:
    from connections.vault import _private_file

    settings.VAR_DIR = tmp_path
    first = _private_file("-----BEGIN CERTIFICATE-----\nabc\n", ".pem")
    again = _private_file("-----BEGIN CERTIFICATE-----\nabc\n", ".pem")
    assert first == again and stat.S_IMODE(os.stat(first).st_mode) == 0o600
