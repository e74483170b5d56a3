"""The test servers for LDAP, SFTP and FTP connections, driven with the plain client libraries.

Before any Switchboard connection is built on them, these tests prove that each server
behaves as the real thing does for what the connections will need: OpenLDAP's slapd with
ldap3 2.9.1, OpenSSH's sshd with paramiko 5.1.0 and OpenSSH's own sftp client, pyftpdlib
with ftplib. Nothing here is mocked; every server is a real process on 127.0.0.1.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import socket
import ssl
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import ldap3
import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from ldap3.core.exceptions import LDAPSocketOpenError, LDAPStartTLSError

from tests.servers.ftpd import BILLING_CSV, FtpServer
from tests.servers.sandbox import FULL_DISK_BYTES, TEST_USER
from tests.servers.slapd import BASE_DN, BIND_DN, BIND_PASSWORD, CAST, USERS_DN, LdapUser, SlapdServer, add_user
from tests.servers.sshd import SshServer, askpass_env, hardlink, sftp_extensions, statvfs
from tests.servers.testca import ThrowawayCA

LARGE = 100 * 1024 * 1024  # the size the transfer benchmarks use
# The seed's Active Directory lookup: one filter for a username or an email address.
SEED_FILTER = "(&(|(uid={user_info})(mail={user_info})))"
SEED_ATTRIBUTES = ["uid", "givenName", "sn", "mail"]


def large_file(path: Path, size: int = LARGE) -> str:
    """Write ``size`` random bytes (incompressible, in 1 MiB blocks) to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


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


# --- OpenSSH: logins and host keys ------------------------------------------------------------------


def test_the_user_logs_in_with_a_password_and_runs_a_command(sshd: SshServer) -> None:
    with sshd.connect() as client:
        _, stdout, stderr = client.exec_command("id -un; id -Gn; pwd; exit 3", timeout=10)
        assert stdout.channel.recv_exit_status() == 3, stderr.read()
        # The session runs as the test user with both groups, starting in its home.
        assert stdout.read().decode().split("\n")[:3] == [
            TEST_USER.name, f"{TEST_USER.group} {TEST_USER.extra_group}", str(sshd.home)]


@pytest.mark.parametrize("key_kind", ["ed25519", "rsa"])
def test_the_user_logs_in_with_either_key(sshd: SshServer, key_kind: str) -> None:
    key = (sshd.client_key() if key_kind == "ed25519"
           else paramiko.RSAKey.from_private_key_file(str(sshd.rsa_key_path)))
    with sshd.connect(key=key) as client:
        assert client.get_transport().is_authenticated()


def test_a_wrong_password_and_an_unknown_key_are_refused(sshd: SshServer) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        sshd.connect(password=sshd.password + "x")
    with pytest.raises(paramiko.AuthenticationException):
        sshd.connect(key=paramiko.Ed25519Key.from_private_key(io.StringIO(_fresh_ed25519_pem())))


def _fresh_ed25519_pem() -> str:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


def test_a_client_that_requires_a_known_host_key_refuses_an_unknown_server(sshd: SshServer) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match=rf"\[127.0.0.1\]:{sshd.port}.* not found in known_hosts"):
        client.connect(sshd.host, sshd.port, username=sshd.username, password=sshd.password, allow_agent=False,
                       look_for_keys=False, timeout=10)


def test_a_client_that_knows_another_key_for_the_server_refuses_it(sshd: SshServer) -> None:
    impostor_key = paramiko.Ed25519Key.from_private_key(io.StringIO(_fresh_ed25519_pem()))
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[{sshd.host}]:{sshd.port}", "ssh-ed25519", impostor_key)
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(sshd.host, sshd.port, username=sshd.username, password=sshd.password, allow_agent=False,
                       look_for_keys=False, timeout=10)


def test_the_known_hosts_file_is_what_openssh_and_paramiko_both_accept(sshd: SshServer) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(sshd.host, sshd.port, username=sshd.username, password=sshd.password, allow_agent=False,
                   look_for_keys=False, timeout=10)
    client.close()
    done = subprocess.run(sshd.sftp_command("-b", "-"), input="pwd\n", capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert f"Remote working directory: {sshd.home}" in done.stdout


# --- OpenSSH: SFTP ------------------------------------------------------------------------------------


@pytest.fixture
def sftp(sshd: SshServer) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session logged in with the password; closed (with its SSH connection) after the test."""
    with sshd.connect() as client:
        yield client.open_sftp()


def test_sftp_puts_gets_lists_renames_and_removes_files(sftp: paramiko.SFTPClient, sftp_dir: Path,
                                                        tmp_path: Path) -> None:
    remote = str(sftp_dir)
    local = tmp_path / "report.csv"
    local.write_text("a,b\n1,2\n")
    sftp.put(str(local), f"{remote}/report.csv")
    assert (sftp_dir / "report.csv").read_text() == "a,b\n1,2\n"
    assert (sftp_dir / "report.csv").stat().st_uid == TEST_USER.uid  # written as the user, not as root

    sftp.mkdir(f"{remote}/archive", mode=0o750)
    assert sorted(sftp.listdir(remote)) == ["archive", "report.csv"]
    attributes = {item.filename: item for item in sftp.listdir_attr(remote)}
    assert stat.S_ISDIR(attributes["archive"].st_mode) and stat.S_IMODE(attributes["archive"].st_mode) == 0o750
    assert attributes["report.csv"].st_size == 8

    sftp.rename(f"{remote}/report.csv", f"{remote}/archive/report-1.csv")
    sftp.posix_rename(f"{remote}/archive/report-1.csv", f"{remote}/archive/report.csv")
    sftp.get(f"{remote}/archive/report.csv", str(tmp_path / "back.csv"))
    assert (tmp_path / "back.csv").read_text() == "a,b\n1,2\n"

    with pytest.raises(OSError):  # a directory with something in it cannot be removed
        sftp.rmdir(f"{remote}/archive")
    sftp.remove(f"{remote}/archive/report.csv")
    sftp.rmdir(f"{remote}/archive")
    assert sftp.listdir(remote) == []
    with pytest.raises(FileNotFoundError):
        sftp.stat(f"{remote}/archive")


def test_sftp_makes_and_reads_symlinks(sftp: paramiko.SFTPClient, sftp_dir: Path) -> None:
    remote = str(sftp_dir)
    with sftp.open(f"{remote}/target.txt", "w") as handle:
        handle.write("target")
    sftp.symlink("target.txt", f"{remote}/link.txt")
    assert sftp.readlink(f"{remote}/link.txt") == "target.txt"
    assert stat.S_ISLNK(sftp.lstat(f"{remote}/link.txt").st_mode)
    assert stat.S_ISREG(sftp.stat(f"{remote}/link.txt").st_mode)  # stat follows the link
    sftp.symlink("missing.txt", f"{remote}/dangling")
    with pytest.raises(FileNotFoundError):
        sftp.stat(f"{remote}/dangling")
    sftp.remove(f"{remote}/link.txt")
    assert (sftp_dir / "target.txt").exists()


def test_sftp_makes_hard_links_through_openssh_s_extension(sftp: paramiko.SFTPClient, sftp_dir: Path) -> None:
    assert sftp_extensions(sftp.get_channel().get_transport())["hardlink@openssh.com"] == "1"
    remote = str(sftp_dir)
    with sftp.open(f"{remote}/original.bin", "wb") as handle:
        handle.write(b"\x00\x01" * 1000)
    hardlink(sftp, f"{remote}/original.bin", f"{remote}/second-name.bin")
    original, second = sftp.stat(f"{remote}/original.bin"), sftp.stat(f"{remote}/second-name.bin")
    assert (sftp_dir / "original.bin").stat().st_ino == (sftp_dir / "second-name.bin").stat().st_ino
    assert (sftp_dir / "original.bin").stat().st_nlink == 2 and original.st_size == second.st_size == 2000
    with pytest.raises(OSError):  # link(2) never replaces an existing name
        hardlink(sftp, f"{remote}/original.bin", f"{remote}/second-name.bin")
    with pytest.raises(FileNotFoundError):
        hardlink(sftp, f"{remote}/missing.bin", f"{remote}/third.bin")


def test_sftp_changes_mode_and_group_but_may_not_give_a_file_away(sftp: paramiko.SFTPClient,
                                                                  sftp_dir: Path) -> None:
    path = f"{sftp_dir}/mode.txt"
    with sftp.open(path, "w") as handle:
        handle.write("x")
    sftp.chmod(path, 0o600)
    assert stat.S_IMODE(sftp.stat(path).st_mode) == 0o600
    # chgrp to a group the user belongs to; chown to itself is allowed, to root is not (as on any Unix).
    sftp.chown(path, TEST_USER.uid, TEST_USER.extra_gid)
    assert (sftp.stat(path).st_uid, sftp.stat(path).st_gid) == (TEST_USER.uid, TEST_USER.extra_gid)
    with pytest.raises(PermissionError):
        sftp.chown(path, 0, TEST_USER.gid)
    with pytest.raises(PermissionError):
        sftp.chown(path, TEST_USER.uid, 0)


def test_sftp_refuses_what_the_user_may_not_touch(sshd: SshServer, sftp: paramiko.SFTPClient) -> None:
    root = sshd.root
    assert sftp.listdir(str(root.readonly)) == ["notice.txt"]
    with pytest.raises(PermissionError):
        sftp.open(f"{root.readonly}/new.txt", "w")
    with pytest.raises(PermissionError):
        sftp.remove(f"{root.readonly}/notice.txt")
    with pytest.raises(PermissionError):
        sftp.listdir(str(root.locked))
    with pytest.raises(PermissionError):
        sftp.open(f"{root.locked}/secret.txt")


def test_a_full_disk_fails_writes_and_statvfs_says_why(sshd: SshServer, sftp: paramiko.SFTPClient) -> None:
    path = f"{sshd.root.full}/too-big-{os.getpid()}.bin"
    try:
        handle = sftp.open(path, "wb")
        # Unpipelined writes get each answer back. SFTP v3 has no "disk full" status:
        # OpenSSH reports ENOSPC as SSH_FX_FAILURE, which paramiko raises as OSError("Failure").
        with pytest.raises(OSError, match="Failure"):
            for _ in range(2 * FULL_DISK_BYTES // 32768):
                handle.write(b"\xff" * 32768)
                handle.flush()
        handle.close()
        assert statvfs(sftp, str(sshd.root.full))["bavail"] == 0
        # paramiko's put() pipelines its writes and drops their answers; only its closing size
        # check notices the short file (a connection must not rely on put() alone to see this).
        with pytest.raises(OSError, match="size mismatch"):
            sftp.putfo(io.BytesIO(b"\xff" * 2 * FULL_DISK_BYTES), path)
    finally:
        sftp.remove(path)
    assert statvfs(sftp, str(sshd.root.full))["bavail"] > 0


def test_a_large_file_makes_the_round_trip_intact(sftp: paramiko.SFTPClient, sftp_dir: Path,
                                                  tmp_path: Path) -> None:
    digest = large_file(tmp_path / "large.bin")
    sftp.put(str(tmp_path / "large.bin"), f"{sftp_dir}/large.bin")
    (tmp_path / "large.bin").unlink()
    sftp.get(f"{sftp_dir}/large.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").stat().st_size == LARGE and sha256(tmp_path / "back.bin") == digest


def test_openssh_s_sftp_client_runs_a_batch_as_zatos_execute_does(sshd: SshServer, sftp_dir: Path,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "upload.txt").write_text("from a batch\n")
    script = f"cd {sftp_dir}\nmkdir batch\nput {tmp_path / 'upload.txt'} batch/upload.txt\nls -l batch\n"
    done = subprocess.run(sshd.sftp_command("-b", "-"), input=script, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "upload.txt" in done.stdout and (sftp_dir / "batch" / "upload.txt").read_text() == "from a batch\n"
    # Batch mode stops at the first failing command and exits 1, naming the path.
    failing = subprocess.run(sshd.sftp_command("-b", "-"), input=f"rm {sftp_dir}/missing.txt\nmkdir {sftp_dir}/x\n",
                             capture_output=True, text=True, timeout=30, check=False)
    assert failing.returncode == 1 and "missing.txt" in failing.stderr and not (sftp_dir / "x").exists()


def test_openssh_s_sftp_client_logs_in_with_the_password_through_askpass(sshd: SshServer, sftp_dir: Path,
                                                                          tmp_path: Path) -> None:
    # sftp -b forces BatchMode, which forbids asking for a password; commands go in on stdin
    # instead. Without -b sftp does not stop at a failing command: the "-" prefix says so
    # explicitly, and the output still shows the error.
    script = f"cd {sftp_dir}\n-rm missing.txt\nmkdir made-with-a-password\nls\n"
    done = subprocess.run(sshd.sftp_command(with_key=False), input=script, capture_output=True, text=True,
                          timeout=30, check=False, env=askpass_env(sshd.password, tmp_path))
    assert done.returncode == 0, done.stderr
    assert "made-with-a-password" in done.stdout and (sftp_dir / "made-with-a-password").is_dir()
    assert "missing.txt" in done.stderr


# --- pyftpdlib ----------------------------------------------------------------------------------------


def ftp_login(server: FtpServer, *, passive: bool = True) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(server.host, server.port, timeout=10)
    ftp.login(server.user, server.password)
    ftp.set_pasv(passive)
    return ftp


def ftps_login(server: FtpServer, ca_path: Path) -> ftplib.FTP_TLS:
    ftps = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(ca_path)))
    ftps.connect(server.host, server.port, timeout=10)
    ftps.auth()
    ftps.login(server.user, server.password)
    ftps.prot_p()
    return ftps


def retrieve(ftp: ftplib.FTP, path: str) -> bytes:
    buffer = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", buffer.write)
    return buffer.getvalue()


def test_the_billing_user_logs_in_and_downloads_the_current_csv(ftpd: FtpServer) -> None:
    ftp = ftp_login(ftpd)
    assert ftp.getwelcome().startswith("220 ")
    assert "current.csv" in ftp.nlst("/data")
    assert retrieve(ftp, "/data/current.csv").decode() == BILLING_CSV
    facts = dict(ftp.mlsd("/data"))["current.csv"]
    assert facts["type"] == "file" and int(facts["size"]) == len(BILLING_CSV)
    ftp.voidcmd("TYPE I")  # SIZE is refused in ASCII mode, where the size on the wire may differ
    assert ftp.size("/data/current.csv") == len(BILLING_CSV)
    ftp.quit()


def test_a_wrong_ftp_password_is_refused(ftpd: FtpServer) -> None:
    ftp = ftplib.FTP()
    ftp.connect(ftpd.host, ftpd.port, timeout=10)
    # pyftpdlib waits 3 s before this answer, as a brake on password guessing.
    with pytest.raises(ftplib.error_perm, match=r"^530 Authentication failed"):
        ftp.login(ftpd.user, ftpd.password + "x")
    ftp.close()


def test_ftp_stores_lists_renames_and_deletes(ftpd: FtpServer, ftp_dir: str) -> None:
    ftp = ftp_login(ftpd)
    ftp.storbinary(f"STOR {ftp_dir}/invoice.txt", io.BytesIO(b"INV-1\n"))
    assert (ftpd.home / ftp_dir[1:] / "invoice.txt").stat().st_uid == TEST_USER.uid
    assert ftp.mkd(f"{ftp_dir}/2026") == f"{ftp_dir}/2026"
    ftp.rename(f"{ftp_dir}/invoice.txt", f"{ftp_dir}/2026/invoice.txt")
    assert ftp.nlst(f"{ftp_dir}/2026") == ["invoice.txt"]  # pyftpdlib's NLST names are relative to the directory
    listing: list[str] = []
    ftp.retrlines(f"LIST {ftp_dir}/2026", listing.append)
    assert len(listing) == 1 and listing[0].endswith(" invoice.txt") and TEST_USER.name in listing[0]
    assert retrieve(ftp, f"{ftp_dir}/2026/invoice.txt") == b"INV-1\n"
    with pytest.raises(ftplib.error_perm, match=r"^550"):  # not empty
        ftp.rmd(f"{ftp_dir}/2026")
    ftp.delete(f"{ftp_dir}/2026/invoice.txt")
    ftp.rmd(f"{ftp_dir}/2026")
    assert ftp.nlst(ftp_dir) == []
    ftp.quit()


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_transfers_work_in_passive_and_active_mode(ftpd: FtpServer, ftp_dir: str, passive: bool) -> None:
    ftp = ftp_login(ftpd, passive=passive)
    replies: list[tuple[str, str]] = []

    def recording(method: Callable[[str], str]) -> Callable[[str], str]:
        def call(command: str) -> str:
            reply = method(command)
            replies.append((command.split()[0], reply[:3]))
            return reply

        return call

    # ftplib sends PASV (and STOR, RETR) through sendcmd, and PORT through voidcmd.
    ftp.sendcmd = recording(ftp.sendcmd)  # type: ignore[method-assign]
    ftp.voidcmd = recording(ftp.voidcmd)  # type: ignore[method-assign]
    ftp.storbinary(f"STOR {ftp_dir}/mode.bin", io.BytesIO(b"\x00" * 70000))
    assert retrieve(ftp, f"{ftp_dir}/mode.bin") == b"\x00" * 70000
    ftp.quit()
    # Passive: the server opens a port and says where (227); active: it accepts our PORT (200) and connects back.
    expected = ("PASV", "227") if passive else ("PORT", "200")
    assert replies.count(expected) == 2, replies


def test_ftps_with_the_ca_bundle_protects_commands_and_data(ftpd: FtpServer, ftp_dir: str,
                                                            directory_ca: ThrowawayCA) -> None:
    ftps = ftps_login(ftpd, directory_ca.ca_path)
    assert isinstance(ftps.sock, ssl.SSLSocket)
    ftps.storbinary(f"STOR {ftp_dir}/secret.csv", io.BytesIO(b"tls,data\n"))
    assert retrieve(ftps, f"{ftp_dir}/secret.csv") == b"tls,data\n"
    assert retrieve(ftps, "/data/current.csv").decode() == BILLING_CSV
    ftps.quit()


def test_an_ftps_client_that_trusts_another_ca_refuses_the_server(ftpd: FtpServer, tmp_path: Path) -> None:
    stranger = ThrowawayCA(tmp_path, name="Some Other CA")
    ftps = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(stranger.ca_path)))
    ftps.connect(ftpd.host, ftpd.port, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        ftps.auth()
    ftps.close()


def test_a_server_that_requires_tls_refuses_a_plain_login(ftpd_factory, directory_ca: ThrowawayCA) -> None:
    server = ftpd_factory(tls_required=True)
    ftp = ftplib.FTP()
    ftp.connect(server.host, server.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required"):
        ftp.login(server.user, server.password)
    ftp.close()
    ftps_login(server, directory_ca.ca_path).quit()


def test_ftp_refuses_what_the_user_may_not_touch(ftpd: FtpServer) -> None:
    ftp = ftp_login(ftpd)
    assert ftp.nlst("/readonly") == ["notice.txt"]  # readable, just not writable
    for command in ("STOR /readonly/new.txt", "STOR /locked/new.txt"):
        with pytest.raises(ftplib.error_perm, match=r"^550 Permission denied"):
            ftp.storbinary(command, io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match=r"^550 Permission denied"):
        ftp.delete("/readonly/notice.txt")
    with pytest.raises(ftplib.error_perm, match=r"^550 Permission denied"):
        ftp.nlst("/locked")
    ftp.quit()


def aborted_store_reply(ftp: ftplib.FTP, command: str, data: bytes) -> str:
    """The server's reply to a STOR it aborts, however the client learns of it.

    The server closes the data connection at the failure and then replies. If the client had
    already sent everything, ftplib reads the reply and raises it; if it was still sending, the
    send breaks off (broken pipe, reset) and the reply waits on the control connection, where
    a client must read it before its next command. Which one happens is a race, so both count.
    """
    try:
        ftp.storbinary(command, io.BytesIO(data))
    except ftplib.error_temp as reply:
        return str(reply)
    except (BrokenPipeError, ConnectionResetError):
        try:
            ftp.getresp()
        except ftplib.error_temp as reply:
            return str(reply)
    raise AssertionError(f"{command} did not fail")


def test_a_full_disk_aborts_an_upload_with_the_reason(ftpd: FtpServer) -> None:
    ftp = ftp_login(ftpd)
    path = f"/full/too-big-{os.getpid()}.bin"
    try:
        reply = aborted_store_reply(ftp, f"STOR {path}", b"\xff" * 2 * FULL_DISK_BYTES)
        assert reply == "426 No space left on device; transfer aborted."
        assert ftp.voidcmd("NOOP").startswith("200")  # the session goes on
    finally:
        ftp.delete(path)
        ftp.quit()


def test_a_large_file_makes_the_ftp_round_trip_intact(ftpd: FtpServer, ftp_dir: str, tmp_path: Path) -> None:
    digest = large_file(tmp_path / "large.bin")
    ftp = ftp_login(ftpd)
    with (tmp_path / "large.bin").open("rb") as source:
        ftp.storbinary(f"STOR {ftp_dir}/large.bin", source, blocksize=256 * 1024)
    (tmp_path / "large.bin").unlink()
    with (tmp_path / "back.bin").open("wb") as target:
        ftp.retrbinary(f"RETR {ftp_dir}/large.bin", target.write, blocksize=256 * 1024)
    ftp.quit()
    assert (tmp_path / "back.bin").stat().st_size == LARGE and sha256(tmp_path / "back.bin") == digest


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
