"""The test servers for LDAP, SFTP and FTP connections, driven with the plain client libraries.

Before any Switchboard connection is built on them, these tests prove that each server
behaves as the real thing does for what the connections will need: OpenLDAP's slapd with
ldap3 2.9.1, OpenSSH's sshd with paramiko 5.1.0 and OpenSSH's own sftp client, pyftpdlib
with ftplib. Nothing here is mocked; every server is a real process on 127.0.0.1.

The OpenSSH server's tests are in test_directory_servers_ssh.py, pyftpdlib's in
test_directory_servers_ftp.py; here OpenLDAP's, and that every server listens on loopback only.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPSocketOpenError, LDAPStartTLSError

from tests.servers.ftpd import FtpServer
from tests.servers.slapd import BASE_DN, BIND_DN, BIND_PASSWORD, CAST, USERS_DN, LdapUser, SlapdServer, add_user
from tests.servers.sshd import SshServer
from tests.servers.testca import ThrowawayCA

# The seed's Active Directory lookup: one filter for a username or an email address.
SEED_FILTER = "(&(|(uid={user_info})(mail={user_info})))"
SEED_ATTRIBUTES = ["uid", "givenName", "sn", "mail"]


# --- OpenLDAP ---------------------------------------------------------------------------------------


def test_the_bind_user_binds_and_the_server_says_who_it_is(slapd: SlapdServer) -> None:
    conn = slapd.connect()
    assert conn.bound
    assert conn.extend.standard.who_am_i() == f"dn:{BIND_DN}"


@pytest.mark.parametrize("person", CAST, ids=[person.uid for person in CAST])
def test_the_seeds_filter_finds_each_person_by_uid_and_by_mail(slapd: SlapdServer, person: LdapUser) -> None:
    conn = slapd.connect()
    for user_info in (person.uid, person.mail):
        assert conn.search(USERS_DN, SEED_FILTER.format(user_info=user_info), attributes=SEED_ATTRIBUTES)
        (entry,) = conn.entries
        # UTF-8 values (Zofia's surname) come back as sent: slapadd got them base64-encoded in LDIF.
        assert (entry.uid.value, entry.givenName.value, entry.sn.value, entry.mail.value) == (
            person.uid, person.given_name, person.sn, person.mail)
        assert entry.entry_dn == person.dn()


def test_an_unknown_user_is_not_found(slapd: SlapdServer) -> None:
    conn = slapd.connect()
    # ldap3 answers False for a search without entries: the seed's "No such user" branch.
    assert conn.search(USERS_DN, SEED_FILTER.format(user_info="nobody@example.com"), attributes=SEED_ATTRIBUTES) \
        is False
    assert conn.entries == [] and conn.result["description"] == "success"


@pytest.mark.parametrize("person", CAST, ids=[person.uid for person in CAST])
def test_each_person_binds_with_their_password_and_not_with_a_wrong_one(slapd: SlapdServer,
                                                                         person: LdapUser) -> None:
    right = ldap3.Connection(slapd.server(), user=person.dn(), password=person.password)
    assert right.bind() and right.extend.standard.who_am_i() == f"dn:{person.dn()}"
    wrong = ldap3.Connection(slapd.server(), user=person.dn(), password=person.password + "x")
    assert wrong.bind() is False
    assert wrong.result["result"] == 49 and wrong.result["description"] == "invalidCredentials"


def test_an_unknown_dn_cannot_bind_either(slapd: SlapdServer) -> None:
    conn = ldap3.Connection(slapd.server(), user=f"uid=mallory,{USERS_DN}", password="anything")
    assert conn.bind() is False and conn.result["description"] == "invalidCredentials"


def test_anonymous_clients_may_search_but_never_read_a_password(slapd: SlapdServer) -> None:
    anonymous = ldap3.Connection(slapd.server())
    assert anonymous.bind()
    assert anonymous.search(USERS_DN, "(uid=ann)", attributes=["mail", "userPassword"])
    (found,) = anonymous.response
    assert found["raw_attributes"]["mail"] == [b"ann.archer@example.com"]
    assert found["raw_attributes"].get("userPassword", []) == []  # ldap3 lists a requested attribute, empty
    # The bind user sees the hash (it may set passwords), and it is a salted hash, not the password.
    conn = slapd.connect()
    conn.search(USERS_DN, "(uid=ann)", attributes=["userPassword"])
    assert conn.response[0]["raw_attributes"]["userPassword"][0].startswith(b"{SSHA}")


def test_the_bind_user_adds_modifies_and_deletes_entries(slapd: SlapdServer, ldap_subtree: str) -> None:
    conn = slapd.connect()
    newcomer = LdapUser("nina", "Nina", "Nowak", "nina.nowak@example.com", "Nina-Pa55-word")
    dn = add_user(conn, newcomer, ldap_subtree)
    # The hashed password works at once for a simple bind.
    assert ldap3.Connection(slapd.server(), user=dn, password=newcomer.password).bind()

    assert conn.modify(dn, {"mail": [(ldap3.MODIFY_REPLACE, ["nina@example.org"])],
                            "telephoneNumber": [(ldap3.MODIFY_ADD, ["+48 12 345 67 89"])]})
    conn.search(ldap_subtree, "(mail=nina@example.org)", attributes=["telephoneNumber"])
    assert [entry.telephoneNumber.value for entry in conn.entries] == ["+48 12 345 67 89"]

    assert conn.modify_dn(dn, "uid=nina2")
    assert conn.delete(f"uid=nina2,{ldap_subtree}")
    assert conn.search(ldap_subtree, "(uid=nina*)") is False


def test_people_may_not_write_other_entries(slapd: SlapdServer, ldap_subtree: str) -> None:
    ann = CAST[0]
    conn = ldap3.Connection(slapd.server(), user=ann.dn(), password=ann.password, auto_bind=True)
    assert conn.add(f"uid=intruder,{ldap_subtree}", ["inetOrgPerson"], {"cn": "I", "sn": "I"}) is False
    assert conn.result["description"] == "insufficientAccessRights"
    assert conn.modify(CAST[1].dn(), {"mail": [(ldap3.MODIFY_REPLACE, ["x@example.com"])]}) is False
    assert conn.result["description"] == "insufficientAccessRights"


def test_starttls_with_the_ca_bundle_encrypts_the_connection(slapd: SlapdServer) -> None:
    conn = ldap3.Connection(slapd.server(), user=BIND_DN, password=BIND_PASSWORD)
    conn.open()
    assert conn.start_tls() and conn.tls_started
    assert conn.bind()
    assert isinstance(conn.socket, ssl.SSLSocket) and conn.socket.version() in ("TLSv1.2", "TLSv1.3")
    assert conn.search(USERS_DN, "(uid=bob)", attributes=["sn"]) and conn.entries[0].sn.value == "O'Brien"


def test_ldaps_with_the_ca_bundle_binds_and_searches(slapd: SlapdServer) -> None:
    conn = ldap3.Connection(slapd.server(ldaps=True), user=BIND_DN, password=BIND_PASSWORD, auto_bind=True)
    assert isinstance(conn.socket, ssl.SSLSocket)
    assert conn.search(USERS_DN, "(mail=ann.archer@example.com)", attributes=["uid"])


def test_a_client_that_trusts_another_ca_refuses_the_server(slapd: SlapdServer, tmp_path: Path) -> None:
    stranger = ThrowawayCA(tmp_path, name="Some Other CA")
    with pytest.raises(LDAPSocketOpenError, match="CERTIFICATE_VERIFY_FAILED"):
        ldap3.Connection(slapd.server(ldaps=True, ca_path=stranger.ca_path), auto_bind=True)
    conn = ldap3.Connection(slapd.server(ca_path=stranger.ca_path))
    conn.open()
    with pytest.raises(LDAPStartTLSError, match="CERTIFICATE_VERIFY_FAILED"):
        conn.start_tls()


def test_a_pool_answers_from_the_second_server_while_the_first_is_down(slapd_factory) -> None:
    first, second = slapd_factory(), slapd_factory()
    first.stop()

    def pooled() -> ldap3.Connection:
        # FIRST: always try the list in order; active=2: try every server twice before giving up,
        # so a test that goes wrong fails instead of cycling for ever.
        pool = ldap3.ServerPool([first.server(timeout=2), second.server(timeout=2)], ldap3.FIRST, active=2,
                                exhaust=False)
        return ldap3.Connection(pool, user=BIND_DN, password=BIND_PASSWORD, auto_bind=True)

    conn = pooled()
    assert conn.server.port == second.port
    assert conn.search(USERS_DN, "(uid=zofia)", attributes=["sn"]) and conn.entries[0].sn.value == "Wójcik-Żak"
    # Back on the same port with the same data, the first server is the first choice again.
    first.start()
    assert pooled().server.port == first.port


def test_openldaps_own_client_finds_people_over_starttls(slapd: SlapdServer) -> None:
    # ldap-utils, installed with slapd, is a second, independent client (OpenLDAP's libldap + GnuTLS).
    done = subprocess.run(
        ["/usr/bin/ldapsearch", "-x", "-ZZ", "-H", slapd.url, "-D", BIND_DN, "-w", BIND_PASSWORD, "-b", BASE_DN,
         "-LLL", "(uid=ann)", "mail"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "LDAPTLS_CACERT": str(slapd.ca.ca_path), "LDAPTLS_REQCERT": "demand"})
    assert done.returncode == 0, done.stderr
    assert "mail: ann.archer@example.com" in done.stdout


# --- All of them ------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port``, from /proc/net/tcp and tcp6 (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: TCP_LISTEN
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words))
    return found


def test_every_server_listens_on_loopback_only(slapd: SlapdServer, sshd: SshServer, ftpd: FtpServer) -> None:
    for port in (slapd.port, slapd.ldaps_port, sshd.port, ftpd.port):
        assert listening_addresses(port) == {"127.0.0.1"}
