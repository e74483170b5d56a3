"""LDAP connections against OpenLDAP's slapd: the seed's AD lookup on a REST channel, credentials, pools, TLS.

Everything here talks to real slapd processes (tests/servers/slapd.py) on 127.0.0.1. The one
exception is NTLM: it needs a real Active Directory (a Windows domain controller), which
cannot run here and which slapd does not imitate, so its test checks the bind parameters the
connection hands to ldap3, the part that is ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ldap3
import pytest
from django.test import Client

from connections.ldap import LdapBindRefused, LdapClient, LdapUnavailable, bind_parameters
from connections.models import LdapConnection
from integration import snapshot
from tests.servers.slapd import BIND_DN, BIND_PASSWORD, CAST, USERS_DN, LdapUser, SlapdServer
from tests.servers.testca import ThrowawayCA

# The seed's service, as a user would deploy it, with one change: the value is escaped before it
# goes into the filter (the seed's str.format would let a caller inject `*)(uid=*`).
AD_SERVICE = '''
from json import loads

from ldap3.utils.conv import escape_filter_chars

from integration.services import Service

search_base = "cn=users, dc=example, dc=com"
search_filter = "(&(|(uid={user_info})(mail={user_info})))"
query_attributes = ["uid", "givenName", "sn", "mail"]


class ADService(Service):
    """Looks up users in AD by their username or email."""

    name = "ad.get-user"

    class SimpleIO:
        input_required = "user_info"
        output_optional = "message", "username", "first_name", "last_name", "email"
        response_elem = None
        skip_empty_keys = True

    def handle(self):
        conn_name = "My AD Connection"
        with self.out.ldap[conn_name].conn.client() as client:
            with client.get() as conn:
                user_filter = search_filter.format(user_info=escape_filter_chars(self.request.input.user_info))
                if conn.search(search_base, user_filter, attributes=query_attributes):
                    entry = loads(conn.entries[0].entry_to_json())["attributes"]
                    self.response.payload = {
                        "message": "User found", "username": entry["uid"][0], "first_name": entry["givenName"][0],
                        "last_name": entry["sn"][0], "email": entry["mail"][0],
                    }
                else:
                    self.response.payload = {"message": "No such user"}


class CheckCredentials(Service):
    name = "ad.check-credentials"

    def handle(self):
        with self.out.ldap["My AD Connection"].conn.client() as client:
            is_valid = client.check_credentials(self.request.payload["username"], self.request.payload["password"])
        self.response.payload = {"is_valid": is_valid}
'''


@pytest.fixture
def ldap_row(db: None, slapd: SlapdServer) -> Callable[..., LdapConnection]:
    """``ldap_row(**fields)``: a saved LDAP connection to the session's slapd, bound as the Switchboard user."""

    def _make(name: str = "My AD Connection", password: str | None = BIND_PASSWORD, **fields: Any) -> LdapConnection:
        fields.setdefault("servers", slapd.url)
        fields.setdefault("username", BIND_DN)
        fields.setdefault("connect_timeout", 3.0)
        fields.setdefault("operation_timeout", 5.0)
        row = LdapConnection(name=name, **fields)
        if password is not None:
            row.set_password(password)
        row.save()
        return row

    return _make


def client_of(row: LdapConnection) -> LdapClient:
    return snapshot.current().outgoing.get("ldap", row.name)


# --- The seed's service on a REST channel ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_seeds_ad_lookup_finds_people_by_username_and_email_over_a_rest_channel(
        ldap_row: Callable[..., LdapConnection], deploy: Any, make_channel: Any) -> None:
    ldap_row()
    deploy("ad_lookup.py", AD_SERVICE)
    make_channel("/api/get-user", "ad.get-user")
    client = Client()
    for person in CAST:
        for user_info in (person.uid, person.mail):
            answer = client.get("/api/get-user", {"user_info": user_info})
            assert answer.status_code == 200, answer.content
            # Zofia's surname comes back in UTF-8 as slapd stores it.
            assert answer.json() == {"message": "User found", "username": person.uid,
                                     "first_name": person.given_name, "last_name": person.sn, "email": person.mail}
    assert client.get("/api/get-user", {"user_info": "nobody@example.com"}).json() == {"message": "No such user"}
    # An injection attempt is a value like any other: no such user, not "everyone".
    assert client.get("/api/get-user", {"user_info": "*)(uid=*"}).json() == {"message": "No such user"}


@pytest.mark.django_db
def test_check_credentials_says_true_for_the_right_password_and_false_otherwise(
        ldap_row: Callable[..., LdapConnection], deploy: Any, make_channel: Any) -> None:
    ldap_row()
    deploy("ad_lookup.py", AD_SERVICE)
    make_channel("/api/check", "ad.check-credentials")
    client = Client()
    ann = CAST[0]

    def check(username: str, password: str) -> bool:
        answer = client.post("/api/check", {"username": username, "password": password},
                             content_type="application/json")
        assert answer.status_code == 200, answer.content
        return answer.json()["is_valid"]

    assert check(ann.dn(), ann.password) is True
    assert check(ann.dn(), ann.password + "x") is False
    assert check(f"uid=mallory,{USERS_DN}", "anything") is False
    # An empty password would be an unauthenticated bind, which slapd accepts: it must not count.
    assert check(ann.dn(), "") is False


# --- Service code: any ldap3 operation, the pool --------------------------------------------------------


@pytest.mark.django_db
def test_a_pooled_connection_adds_modifies_and_deletes_entries(ldap_row: Callable[..., LdapConnection],
                                                               ldap_subtree: str) -> None:
    client = client_of(ldap_row())
    newcomer = LdapUser("nina", "Nina", "Novak", "nina.novak@example.com", "Nina-Pa55-word")
    with client.conn.client() as pool, pool.get() as conn:
        dn = newcomer.dn(ldap_subtree)
        assert conn.add(dn, ["inetOrgPerson"], {**newcomer.attributes(), "userPassword": newcomer.password})
        assert conn.modify(dn, {"mail": [(ldap3.MODIFY_REPLACE, ["nina@example.org"])]})
        assert conn.search(ldap_subtree, "(uid=nina)", attributes=["mail"])
        assert conn.entries[0].mail.value == "nina@example.org"
    # The new person's password works at once (slapd hashes nothing it is given in clear: it compares as stored).
    assert client.check_credentials(dn, newcomer.password) is True
    with client.get() as conn:
        assert conn.delete(dn)
        assert conn.search(ldap_subtree, "(uid=nina)") is False


@pytest.mark.django_db
def test_the_pool_lends_the_same_bound_connection_again_unless_a_service_rebound_it(
        ldap_row: Callable[..., LdapConnection], slapd: SlapdServer) -> None:
    client = client_of(ldap_row(pool_size=2))
    with client.get() as first:
        pass
    with client.get() as again:
        assert again is first and again.bound
        ann = CAST[0]
        assert again.rebind(ann.dn(), ann.password)  # now it is Ann's, not the pool's
    with client.get() as fresh:
        assert fresh is not first
        assert fresh.extend.standard.who_am_i() == f"dn:{BIND_DN}"


@pytest.mark.django_db
def test_a_pool_whose_connections_stay_busy_says_so_after_the_operation_timeout(
        ldap_row: Callable[..., LdapConnection]) -> None:
    client = client_of(ldap_row(pool_size=1, operation_timeout=0.3))
    busy = r"all 1 pooled connections stayed busy for 0.3 s"
    with client.get(), pytest.raises(LdapUnavailable, match=busy), client.get():
        pass


# --- Server pools ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_two_server_pool_whose_first_server_is_down_answers_from_the_second(
        ldap_row: Callable[..., LdapConnection], slapd_factory: Callable[..., SlapdServer]) -> None:
    first, second = slapd_factory(), slapd_factory()
    first.stop()
    row = ldap_row(servers=f"{first.url}\n{second.url}", pool_strategy="FIRST", pool_exhaust_timeout=0)
    client = client_of(row)
    result = client.ping()
    # The whole pool is pinged, and the answer names the server that answered.
    assert result.ok, result.info
    assert result.info.startswith(f"ldap://127.0.0.1:{second.port} answered")
    with client.get() as conn:
        assert conn.server.port == second.port
        assert conn.search(USERS_DN, "(uid=ann)", attributes=["mail"])
    # The first comes back: FIRST means it answers again.
    first.start()
    assert client.ping().info.startswith(f"ldap://127.0.0.1:{first.port} answered")


@pytest.mark.django_db
def test_a_pool_with_no_server_up_names_each_servers_failure(ldap_row: Callable[..., LdapConnection],
                                                             slapd_factory: Callable[..., SlapdServer]) -> None:
    first, second = slapd_factory(), slapd_factory()
    first.stop()
    second.stop()
    client = client_of(ldap_row(servers=f"{first.url}\n{second.url}"))
    result = client.ping()
    assert not result.ok
    assert f"LDAP connection `My AD Connection`: no server answered (ldap://127.0.0.1:{first.port}" in result.info
    assert f"ldap://127.0.0.1:{second.port}:" in result.info and "refused" in result.info.lower()
    with pytest.raises(LdapUnavailable, match="no server answered") as raised, client.get():
        pass
    assert raised.value.status_code == 503
    with pytest.raises(LdapUnavailable):
        client.check_credentials(CAST[0].dn(), CAST[0].password)


@pytest.mark.django_db
def test_a_wrong_bind_password_is_a_clear_error_and_a_failed_ping(ldap_row: Callable[..., LdapConnection],
                                                                    slapd: SlapdServer) -> None:
    client = client_of(ldap_row(password="not-the-password"))
    with pytest.raises(LdapBindRefused, match=rf"`My AD Connection`: {slapd.url} refused the bind as "
                                              rf"`{BIND_DN}`: invalidCredentials \(49\)"), client.get():
        pass
    result = client.ping()
    assert not result.ok and "invalidCredentials" in result.info and "not-the-password" not in result.info


@pytest.mark.django_db
def test_an_anonymous_connection_searches_without_a_bind_user(ldap_row: Callable[..., LdapConnection]) -> None:
    client = client_of(ldap_row(auth_type="ANONYMOUS", username="", password=None))
    assert client.ping().info.endswith("answered (bound anonymously)")
    with client.get() as conn:
        assert conn.search(USERS_DN, "(uid=bob)", attributes=["sn", "userPassword"])
        assert conn.entries[0].sn.value == "O'Brien"
        assert not conn.entries[0].entry_attributes_as_dict.get("userPassword")  # slapd hides it from anonymous


# --- TLS ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_tls_connections_check_the_servers_certificate_against_the_ca(
        ldap_row: Callable[..., LdapConnection], slapd: SlapdServer, mode: str, tmp_path: Any) -> None:
    url = slapd.ldaps_url if mode == "ldaps" else slapd.url
    good = client_of(ldap_row(name="tls", servers=url, tls_mode=mode, tls_ca_cert=slapd.ca.ca_path.read_text()))
    result = good.ping()
    assert result.ok, result.info
    with good.get() as conn:
        assert conn.tls_started or conn.server.ssl
        assert conn.search(USERS_DN, "(uid=ann)")
    stranger = ThrowawayCA(tmp_path)  # a CA that did not sign slapd's certificate
    bad = client_of(ldap_row(name="wrong-ca", servers=url, tls_mode=mode, tls_ca_cert=stranger.ca_path.read_text()))
    refused = bad.ping()
    assert not refused.ok and "no server answered" in refused.info
    assert "certificate" in refused.info.lower() or "ssl" in refused.info.lower() or "tls" in refused.info.lower()


# --- Settings -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_connection_gets_a_random_password_stored_encrypted(db: None) -> None:
    row = LdapConnection.objects.create(name="fresh", servers="ldap://127.0.0.1:1")
    password = row.get_password()
    assert len(password) >= 32 and row.has_password
    assert password not in row.password_encrypted
    assert password not in repr(LdapClient.from_definition(row).settings)


def test_ntlm_binds_send_domain_user_through_ldap3s_ntlm_mechanism() -> None:
    # A real Active Directory cannot run here (slapd does not speak NTLM): these are the parameters ldap3
    # receives, and ldap3's NTLM exchange takes it from there.
    from connections.ldap import LdapSettings
    from connections.ldap_parsing import parse_servers

    settings = LdapSettings("ad", tuple(parse_servers("ad.example.com")), auth_type="NTLM",
                            username="EXAMPLE\\svc-switchboard", password="s3cret", operation_timeout=7)
    parameters = bind_parameters(settings)
    assert parameters["authentication"] == ldap3.NTLM
    assert parameters["user"] == "EXAMPLE\\svc-switchboard" and parameters["password"] == "s3cret"
    assert parameters["receive_timeout"] == 7
    # A credentials check on an NTLM connection binds the person with NTLM too.
    person = bind_parameters(settings, "EXAMPLE\\ann", "pw")
    assert (person["authentication"], person["user"]) == (ldap3.NTLM, "EXAMPLE\\ann")
    # ldap3 accepts them as they are (it checks the DOMAIN\\user form itself when binding).
    connection = ldap3.Connection(ldap3.Server("ad.example.com", get_info=ldap3.NONE), **parameters)
    assert connection.authentication == ldap3.NTLM and connection.user == "EXAMPLE\\svc-switchboard"


@pytest.mark.django_db
def test_an_ntlm_connection_needs_a_domain_user(db: None) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="DOMAIN"):
        LdapConnection.objects.create(name="ad", auth_type="NTLM", username="cn=admin,dc=example,dc=org")
    LdapConnection.objects.create(name="ad", auth_type="NTLM", username="EXAMPLE\\svc")


@pytest.mark.django_db
def test_an_edit_rebuilds_the_pool_and_closes_the_old_one(ldap_row: Callable[..., LdapConnection],
                                                          slapd_factory: Callable[..., SlapdServer],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from connections import base

    monkeypatch.setattr(base, "RETIRE_AFTER", 0)  # a replaced pool is closed at once here; a minute in production
    row = ldap_row()
    old = client_of(row)
    with old.get():
        pass
    other = slapd_factory()
    row.servers = other.url
    row.save()
    new = client_of(row)
    assert new is not old and new.ping().info.startswith(f"{other.url} answered")
    assert old.pool._closed



@pytest.mark.django_db
def test_a_server_that_stops_answering_times_out_after_the_operation_timeout(
        ldap_row: Callable[..., LdapConnection], slapd_factory: Callable[..., SlapdServer]) -> None:
    import os
    import signal
    import time
    from pathlib import Path

    from ldap3.core.exceptions import LDAPSocketReceiveError

    from tests.servers.procs import wait_for

    frozen = slapd_factory()
    client = client_of(ldap_row(servers=frozen.url, operation_timeout=1))
    with client.get() as conn:
        assert conn.search(USERS_DN, "(uid=ann)")
    assert frozen.process is not None
    os.kill(frozen.process.pid, signal.SIGSTOP)  # the socket stays open; nothing answers any more
    try:
        # On a loaded machine the stop takes effect when the kernel gets round to it: wait until it has.
        wait_for(lambda: Path(f"/proc/{frozen.process.pid}/stat").read_text().split(") ")[1][0] == "T", 10)
        started = time.monotonic()
        with pytest.raises(LdapUnavailable, match=rf"`My AD Connection`: 127.0.0.1:{frozen.port} stopped "
                                                  "answering") as raised, client.get() as conn:
            conn.search(USERS_DN, "(uid=ann)")
        assert 0.9 <= time.monotonic() - started < 5
        assert isinstance(raised.value.__cause__, LDAPSocketReceiveError)
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)
    # The connection that timed out was dropped, not pooled: the next one is new and works.
    with client.get() as conn:
        assert conn.search(USERS_DN, "(uid=ann)")


@pytest.mark.django_db
def test_a_round_robin_pool_takes_turns(ldap_row: Callable[..., LdapConnection],
                                        slapd_factory: Callable[..., SlapdServer]) -> None:
    first, second = slapd_factory(), slapd_factory()
    client = client_of(ldap_row(servers=f"{first.url}\n{second.url}", pool_strategy="ROUND_ROBIN"))
    answered = [client.ping().info.split(" ")[0] for _ in range(4)]
    assert answered == [first.url, second.url, first.url, second.url]
