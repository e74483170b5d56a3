"""The LDAP server list parser: examples, and Hypothesis for what any text may do to it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connections.ldap_parsing import LdapServer, is_ntlm_user, parse_servers


def test_it_reads_host_names_ports_schemes_comments_and_ipv6() -> None:
    text = "# primary first\nldap://dc1.example.com:3389\n  dc2.example.com  \n[::1]:1389\n\n127.0.0.1"
    assert parse_servers(text) == [LdapServer("dc1.example.com", 3389, False),
                                   LdapServer("dc2.example.com", 389, False), LdapServer("::1", 1389, False),
                                   LdapServer("127.0.0.1", 389, False)]
    assert parse_servers("ldaps://dc1/\ndc2", "ldaps") == [LdapServer("dc1", 636, True),
                                                           LdapServer("dc2", 636, True)]
    assert LdapServer("::1", 636, True).url == "ldaps://[::1]:636"


@pytest.mark.parametrize(("text", "mode", "message"), [
    ("", "none", "at least one server"),
    ("ldaps://dc1", "none", "contradicts the TLS mode"),
    ("ldap://dc1", "ldaps", "contradicts the TLS mode"),
    ("http://dc1", "none", "must be ldap:// or ldaps://"),
    ("dc1:0", "none", "port must be a number"),
    ("dc1:99999", "none", "port must be a number"),
    ("dc 1", "none", "not a host name"),
    ("[::1", "none", "closing bracket"),
])
def test_it_refuses_bad_lines_quoting_them(text: str, mode: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_servers(text, mode)


def test_ntlm_users_are_domain_backslash_user() -> None:
    assert is_ntlm_user("EXAMPLE\\svc") and is_ntlm_user("example.com\\Ann Archer")
    assert not is_ntlm_user("cn=admin,dc=example,dc=org") and not is_ntlm_user("\\svc")
    assert not is_ntlm_user("EXAMPLE\\") and not is_ntlm_user("A\\b\\c")


@given(st.text(max_size=300), st.sampled_from(["none", "starttls", "ldaps"]))
def test_any_text_gives_servers_or_a_value_error(text: str, mode: str) -> None:
    try:
        servers = parse_servers(text, mode)
    except ValueError as exc:
        assert str(exc)
        return
    assert 1 <= len(servers) <= 20
    for server in servers:
        assert 0 < server.port < 65536 and server.use_ssl == (mode == "ldaps") and server.host
        assert parse_servers(server.url, mode) == [server]  # what it made, it reads back the same


@given(st.text(max_size=200))
def test_ntlm_user_check_never_fails(text: str) -> None:
    assert is_ntlm_user(text) in (True, False)
