"""The admin pages and management API of LDAP, SFTP and FTP connections, against the real servers.

The SFTP command shell is driven through the admin as a person would use it (form posts) and
as Zato's web admin did (JSON); the Ping buttons, the "Change password" pages and the API's
write-only secrets are checked for each kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from connections.models import FtpConnection, LdapConnection, SftpConnection
from integration import snapshot
from tests.servers.ftpd import FtpServer
from tests.servers.slapd import BIND_DN, BIND_PASSWORD, SlapdServer
from tests.servers.sshd import SshServer

API = "/manage/api/v1/outgoing"


def sftp_connection(sshd: SshServer, **fields: Any) -> SftpConnection:
    fields.setdefault("port", sshd.port)
    row = SftpConnection(name=fields.pop("name", "files"), host=sshd.host, username=sshd.username,
                         host_key=f"{sshd.host_key.get_name()} {sshd.host_key.get_base64()}", timeout=5, **fields)
    row.set_password(sshd.password)
    row.save()
    return row


# --- The SFTP command shell ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_shell_page_runs_commands_and_shows_output_errors_and_the_response_time(
        admin_client_alice: Any, sshd: SshServer, sftp_dir: Path) -> None:
    row = sftp_connection(sshd)
    url = reverse("admin:connections_sftpconnection_shell", args=[row.pk])
    page = admin_client_alice.get(url)
    assert page.status_code == 200 and b"ls ." in page.content  # the seed's initial text
    change = admin_client_alice.get(reverse("admin:connections_sftpconnection_change", args=[row.pk]))
    assert url.encode() in change.content  # linked from the change page
    done = admin_client_alice.post(url, {"data": f"cd {sftp_dir}\nmkdir made\nls", "log_level": "0"})
    assert done.status_code == 200
    text = done.content.decode()
    assert "OK &mdash; Response time:" in text and "(#3)" in text and "made" in text
    assert (sftp_dir / "made").is_dir()
    # An error is shown, and the page keeps working.
    failed = admin_client_alice.post(url, {"data": f"rmdir {sftp_dir}/missing", "log_level": "0"}).content.decode()
    assert "Failed" in failed and "does not exist" in failed and 'id="sftp-shell"' in failed
    # Protocol detail on request.
    loud = admin_client_alice.post(url, {"data": "pwd", "log_level": "2"}).content.decode()
    assert 'id="shell-details"' in loud and "Authentication (password) successful" in loud


@pytest.mark.django_db
def test_the_shell_answers_json_as_zatos_did_and_refuses_local_file_commands(
        admin_client_alice: Any, sshd: SshServer, sftp_dir: Path) -> None:
    row = sftp_connection(sshd)
    url = reverse("admin:connections_sftpconnection_shell", args=[row.pk])
    answer = admin_client_alice.post(url, {"data": f"ls {sftp_dir}", "log_level": "0"},
                                     HTTP_ACCEPT="application/json")
    body = answer.json()
    assert answer.status_code == 200 and body["is_ok"] and body["msg"].startswith("Response time: ")
    assert set(body) >= {"msg", "stdout", "stderr", "command_no", "response_time"}
    local = admin_client_alice.post(url, {"data": "get /etc/passwd /tmp/x", "log_level": "0"},
                                    HTTP_ACCEPT="application/json").json()
    assert not local["is_ok"] and "not allowed here" in local["stderr"]


@pytest.mark.django_db
def test_an_operator_who_may_only_view_cannot_use_the_shell(client: Any, bob: Any, sshd: SshServer,
                                                            totp_device: Any) -> None:
    from django.contrib.auth.models import Permission

    from tests.conftest import verified_login

    bob.user_permissions.add(Permission.objects.get(codename="view_sftpconnection"))
    device, _ = totp_device(bob)
    viewer = verified_login(client, bob, device)
    row = sftp_connection(sshd)
    url = reverse("admin:connections_sftpconnection_shell", args=[row.pk])
    assert viewer.post(url, {"data": "ls", "log_level": "0"}).status_code == 403


# --- Ping buttons and passwords ------------------------------------------------------------------------


@pytest.mark.django_db
def test_ping_buttons_answer_for_each_kind(admin_client_alice: Any, sshd: SshServer, slapd: SlapdServer,
                                           ftpd: FtpServer) -> None:
    ldap = LdapConnection(name="dir", servers=slapd.url, username=BIND_DN)
    ldap.set_password(BIND_PASSWORD)
    ldap.save()
    ftp = FtpConnection(name="billing", host=ftpd.host, port=ftpd.port, user=ftpd.user)
    ftp.set_password(ftpd.password)
    ftp.save()
    sftp = sftp_connection(sshd)
    for row, expected in ((ldap, f"{slapd.url} answered"), (sftp, f"127.0.0.1:{sshd.port} ran `ls .`"),
                          (ftp, f"ftp://127.0.0.1:{ftpd.port}: 220")):
        url = reverse(f"admin:connections_{row._meta.model_name}_ping", args=[row.pk])
        answer = admin_client_alice.post(url, HTTP_ACCEPT="application/json").json()
        assert answer["ok"] and answer["info"].startswith(expected), answer
        assert answer["ms"] > 0


@pytest.mark.django_db
def test_the_change_password_page_replaces_the_password_and_never_shows_it(
        admin_client_alice: Any, slapd: SlapdServer) -> None:
    row = LdapConnection.objects.create(name="dir", servers=slapd.url, username=BIND_DN)
    random_password = row.get_password()
    ping = reverse("admin:connections_ldapconnection_ping", args=[row.pk])
    assert not admin_client_alice.post(ping, HTTP_ACCEPT="application/json").json()["ok"]  # the random one
    url = reverse("admin:connections_ldapconnection_password", args=[row.pk])
    mismatch = admin_client_alice.post(url, {"password1": "a", "password2": "b"}, HTTP_ACCEPT="application/json")
    assert mismatch.status_code == 400 and "not the same" in mismatch.json()["message"]
    done = admin_client_alice.post(url, {"password1": BIND_PASSWORD, "password2": BIND_PASSWORD},
                                   HTTP_ACCEPT="application/json")
    assert done.json() == {"message": "Password updated"}
    assert admin_client_alice.post(ping, HTTP_ACCEPT="application/json").json()["ok"]
    page = admin_client_alice.get(reverse("admin:connections_ldapconnection_change", args=[row.pk])).content.decode()
    assert BIND_PASSWORD not in page and random_password not in page and "Stored encrypted; never shown" in page


@pytest.mark.django_db
def test_listings_are_searchable(admin_client_alice: Any, sshd: SshServer) -> None:
    sftp_connection(sshd, name="partner-a")
    sftp_connection(sshd, name="partner-b")
    listing = admin_client_alice.get(reverse("admin:connections_sftpconnection_changelist"), {"q": "partner-b"})
    assert listing.status_code == 200 and b"partner-b" in listing.content and b"partner-a" not in listing.content


# --- The management API --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_creates_connections_with_write_only_secrets(api: Any, slapd: SlapdServer, sshd: SshServer,
                                                             ftpd: FtpServer) -> None:
    created = api.post(f"{API}/ldap/", {"name": "dir", "servers": slapd.url, "username": BIND_DN,
                                        "password": BIND_PASSWORD}, format="json")
    assert created.status_code == 201, created.content
    assert "password" not in created.json() and created.json()["has_password"] is True
    assert BIND_PASSWORD not in json.dumps(created.json())
    ping = api.post(f"{API}/ldap/{created.json()['id']}/ping/").json()
    assert ping["ok"] and ping["info"].startswith(f"{slapd.url} answered")
    key = sshd.key_path.read_text()
    sftp = api.post(f"{API}/sftp/", {"name": "files", "host": sshd.host, "port": sshd.port,
                                     "username": sshd.username, "private_key": key,
                                     "host_key": f"{sshd.host_key.get_name()} {sshd.host_key.get_base64()}"},
                    format="json")
    assert sftp.status_code == 201, sftp.content
    assert sftp.json()["has_private_key"] and "private_key" not in sftp.json() and "BEGIN" not in sftp.content.decode()
    executed = api.post(f"{API}/sftp/{sftp.json()['id']}/execute/", {"data": "pwd"}, format="json").json()
    assert executed["is_ok"] and executed["stdout"].startswith("Remote working directory: ")
    ftp = api.post(f"{API}/ftp/", {"name": "Billings", "host": ftpd.host, "port": ftpd.port, "user": ftpd.user,
                                   "password": ftpd.password}, format="json")
    assert ftp.status_code == 201 and api.post(f"{API}/ftp/{ftp.json()['id']}/ping/").json()["ok"]
    # ?search= and filters, like every other resource.
    assert [r["name"] for r in api.get(f"{API}/sftp/", {"search": "files"}).json()["results"]] == ["files"]
    assert api.get(f"{API}/ldap/", {"auth_type": "NTLM"}).json()["results"] == []
    assert api.get(f"{API}/ftp/", {"is_active": "maybe"}).status_code == 400


@pytest.mark.django_db
def test_the_api_refuses_bad_rows_naming_the_field(api: Any) -> None:
    bad = api.post(f"{API}/ldap/", {"name": "x", "servers": "http://dc1", "auth_type": "NTLM", "username": "admin"},
                   format="json")
    assert bad.status_code == 400
    assert "servers" in bad.content.decode() and "username" in bad.content.decode()
    no_key = api.post(f"{API}/sftp/", {"name": "y", "host": "h", "username": "u"}, format="json")
    assert no_key.status_code == 400 and "host_key" in no_key.content.decode()
    bad_key = api.post(f"{API}/sftp/", {"name": "z", "host": "h", "username": "u", "accept_unknown_host_key": True,
                                        "private_key": "-----BEGIN nonsense"}, format="json")
    assert bad_key.status_code == 400 and "private_key" in bad_key.content.decode()


@pytest.mark.django_db
def test_an_api_edit_reaches_self_out_at_once(api: Any, slapd: SlapdServer) -> None:
    created = api.post(f"{API}/ldap/", {"name": "dir", "servers": slapd.url, "username": BIND_DN,
                                        "password": "wrong"}, format="json").json()
    assert not snapshot.current().outgoing.get("ldap", "dir").ping().ok
    api.patch(f"{API}/ldap/{created['id']}/", {"password": BIND_PASSWORD}, format="json")
    assert snapshot.current().outgoing.get("ldap", "dir").ping().ok


@pytest.mark.django_db
def test_the_shell_shows_an_unreachable_server_as_an_error_and_stays_usable(admin_client_alice: Any,
                                                                           sshd: SshServer) -> None:
    from tests.servers.procs import free_port

    row = sftp_connection(sshd, name="gone", port=free_port())
    url = reverse("admin:connections_sftpconnection_shell", args=[row.pk])
    page = admin_client_alice.post(url, {"data": "ls", "log_level": "1"})
    text = page.content.decode()
    assert page.status_code == 200 and "Failed" in text and "cannot connect: Connection refused" in text
    assert 'id="sftp-shell"' in text
