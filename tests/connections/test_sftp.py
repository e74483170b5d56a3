"""SFTP connections against OpenSSH's sshd: every method of the seed's API, host keys, errors, scripts.

sshd is a real process on 127.0.0.1 (tests/servers/sshd.py); each test works in a directory of
its own (``sftp_dir``), whose absolute path is both the remote path and, since the server runs
on this machine, a local path the test can check with ``os``.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connections.models import SftpConnection
from connections.sftp import (
    SftpClient,
    SftpDiskFull,
    SftpError,
    SftpExists,
    SftpHostKeyError,
    SftpNotFound,
    SftpPathTypeError,
    SftpPermissionDenied,
    SftpUnavailable,
)
from integration import snapshot
from integration.invoke import invoke
from tests.connections.large_files import large_file, sha256
from tests.servers.sandbox import FULL_DISK_BYTES, TEST_USER
from tests.servers.sshd import SshServer


def host_key_line(server: SshServer) -> str:
    return f"{server.host_key.get_name()} {server.host_key.get_base64()}"


@pytest.fixture
def sftp_row(db: None, sshd: SshServer) -> Callable[..., SftpConnection]:
    """``sftp_row(**fields)``: a saved SFTP connection to the session's sshd with its known host key."""

    def _make(name: str = "My SFTP Connection", password: str | None = None, key: str | None = None,
              **fields: Any) -> SftpConnection:
        fields.setdefault("host", sshd.host)
        fields.setdefault("port", sshd.port)
        fields.setdefault("username", sshd.username)
        fields.setdefault("host_key", host_key_line(sshd))
        fields.setdefault("timeout", 5.0)
        row = SftpConnection(name=name, **fields)
        if key is not None:
            row.set_private_key(key)
        else:
            row.set_password(password or sshd.password)
        row.save()
        return row

    return _make


@pytest.fixture
def conn(sftp_row: Callable[..., SftpConnection]) -> SftpClient:
    """``self.out.sftp['My SFTP Connection'].conn`` as a service sees it."""
    row = sftp_row()
    return snapshot.current().outgoing.get("sftp", row.name).conn


# --- Files: write, read, upload, download --------------------------------------------------------------


def test_write_and_read_round_trip_and_leave_no_temporary_file(conn: SftpClient, sftp_dir: Path) -> None:
    target = f"{sftp_dir}/hello.txt"
    conn.write("My data, zażółć", target)
    assert conn.read(target) == "My data, zażółć".encode()
    assert sorted(os.listdir(sftp_dir)) == ["hello.txt"]  # the .part name is gone
    with pytest.raises(SftpExists, match=rf"cannot write, location `{target}` already exists"):
        conn.write(b"other", target)
    conn.write(b"replaced", target, overwrite=True)
    assert Path(target).read_bytes() == b"replaced"


def test_upload_and_download_files_and_trees_keeping_times(conn: SftpClient, sftp_dir: Path, tmp_path: Path) -> None:
    local = tmp_path / "in.bin"
    local.write_bytes(b"\x00\x01payload" * 1000)
    os.utime(local, (1_700_000_000, 1_700_000_000))
    conn.upload(str(local), f"{sftp_dir}/in.bin")
    assert (sftp_dir / "in.bin").read_bytes() == local.read_bytes()
    assert os.stat(sftp_dir / "in.bin").st_mtime == 1_700_000_000  # preserve_metadata is on by default
    with pytest.raises(SftpExists):
        conn.upload(str(local), f"{sftp_dir}/in.bin")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    conn.upload(str(tree), f"{sftp_dir}/tree")
    assert (sftp_dir / "tree" / "sub" / "b.txt").read_text() == "b"
    conn.download(f"{sftp_dir}/tree", str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub" / "b.txt").read_text() == "b"
    conn.download_file(f"{sftp_dir}/in.bin", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == local.read_bytes()
    with pytest.raises(SftpPathTypeError, match=r"expected `.*/tree` to be a file, not a directory"):
        conn.download_file(f"{sftp_dir}/tree", str(tmp_path / "nope"))


def test_a_large_file_goes_up_and_down_intact(conn: SftpClient, sftp_dir: Path, tmp_path: Path) -> None:
    local = tmp_path / "large.bin"
    digest = large_file(local, 32 * 1024 * 1024)
    conn.upload(str(local), f"{sftp_dir}/large.bin")
    assert sha256(sftp_dir / "large.bin") == digest
    conn.download(f"{sftp_dir}/large.bin", str(tmp_path / "again.bin"))
    assert sha256(tmp_path / "again.bin") == digest


# --- Directories, links, information -------------------------------------------------------------------


def test_directories_symlinks_and_hard_links_and_what_get_info_says(conn: SftpClient, sftp_dir: Path) -> None:
    base = str(sftp_dir)
    conn.create_directory(f"{base}/dir")
    conn.write("data", f"{base}/dir/file.txt")
    conn.create_symlink(f"{base}/dir/file.txt", f"{base}/link")
    conn.create_hardlink(f"{base}/dir/file.txt", f"{base}/hard")
    assert os.readlink(f"{base}/link") == f"{base}/dir/file.txt"
    assert os.stat(f"{base}/hard").st_ino == os.stat(f"{base}/dir/file.txt").st_ino
    assert (conn.is_directory(f"{base}/dir"), conn.is_file(f"{base}/dir"), conn.is_symlink(f"{base}/dir")) == (
        True, False, False)
    assert (conn.is_file(f"{base}/link"), conn.is_symlink(f"{base}/link")) == (False, True)
    assert conn.exists(f"{base}/hard") and not conn.exists(f"{base}/missing")
    info = conn.get_info(f"{base}/dir/file.txt")
    assert (info.type, info.name, info.size, info.size_human) == ("file", "file.txt", 4, "4 B")
    assert (info.owner, info.group) == (TEST_USER.name, TEST_USER.group)
    assert info.permissions.startswith("-rw") and info.is_file and info.last_modified is not None
    link = conn.get_info(f"{base}/link")
    assert link.is_symlink and link.symlink_target == f"{base}/dir/file.txt"
    listed = conn.list(base)
    assert [(item.name, item.type) for item in listed] == [("dir", "directory"), ("hard", "file"),
                                                           ("link", "symlink")]
    assert listed[0].owner == TEST_USER.name


def test_deletes_check_the_kind_of_path_first(conn: SftpClient, sftp_dir: Path) -> None:
    base = str(sftp_dir)
    conn.create_directory(f"{base}/d")
    conn.write("x", f"{base}/d/f")
    conn.create_symlink(f"{base}/d/f", f"{base}/s")
    with pytest.raises(SftpPathTypeError, match=rf"expected `{base}/d` to be a file, not a directory"):
        conn.delete_file(f"{base}/d")
    with pytest.raises(SftpPathTypeError, match="to be a symlink, not a file"):
        conn.delete_symlink(f"{base}/d/f")
    with pytest.raises(SftpPathTypeError, match="to be a directory, not a symlink"):
        conn.delete_directory(f"{base}/s")
    conn.delete_symlink(f"{base}/s")
    assert os.path.exists(f"{base}/d/f")  # the link went, not its target
    conn.delete_directory(f"{base}/d")  # with what is in it
    assert os.listdir(base) == []
    with pytest.raises(SftpNotFound, match=rf"SFTP connection `My SFTP Connection`: cannot delete `{base}/d`"):
        conn.delete(f"{base}/d")


def test_move_rename_chmod_chown_and_chgrp(conn: SftpClient, sftp_dir: Path) -> None:
    base = str(sftp_dir)
    conn.write("x", f"{base}/a")
    conn.move(f"{base}/a", f"{base}/b")
    conn.rename(f"{base}/b", f"{base}/c")
    assert os.listdir(base) == ["c"]
    conn.chmod("600", f"{base}/c")
    assert stat.S_IMODE(os.stat(f"{base}/c").st_mode) == 0o600
    conn.chmod(0o640, f"{base}/c")
    assert conn.get_info(f"{base}/c").permissions_oct == "640"
    # The user is in two groups; changing to the other one works by name and by number.
    conn.chgrp(TEST_USER.extra_group, f"{base}/c")
    assert os.stat(f"{base}/c").st_gid == TEST_USER.extra_gid
    conn.chgrp(str(TEST_USER.gid), f"{base}/c")
    assert os.stat(f"{base}/c").st_gid == TEST_USER.gid
    conn.chown(TEST_USER.name, f"{base}/c")  # to oneself: allowed
    assert os.stat(f"{base}/c").st_uid == TEST_USER.uid
    with pytest.raises(SftpPermissionDenied, match=rf"cannot change the owner of `{base}/c`: permission denied"):
        conn.chown(0, f"{base}/c")  # giving a file away needs root
    with pytest.raises(SftpError, match="not an octal mode"):
        conn.chmod("rwx", f"{base}/c")
    with pytest.raises(SftpError, match="knows no owner `no-such-user`"):
        conn.chown("no-such-user", f"{base}/c")


# --- Bad input -----------------------------------------------------------------------------------------


def test_permission_denied_and_a_full_disk_name_the_connection_and_path(conn: SftpClient, sshd: SshServer) -> None:
    readonly, full = sshd.root.readonly, sshd.root.full
    with pytest.raises(SftpPermissionDenied, match=rf"`My SFTP Connection`: cannot write `{readonly}/x`: "):
        conn.write("x", f"{readonly}/x")
    with pytest.raises(SftpPermissionDenied, match="cannot list"):
        conn.list(str(sshd.root.locked))
    too_big = b"\xff" * (FULL_DISK_BYTES * 2)
    before = set(os.listdir(full))
    with pytest.raises(SftpDiskFull, match=rf"cannot write `{full}/big.bin`: the server's disk is full"):
        conn.write(too_big, f"{full}/big.bin")
    # Atomic: neither the promised name nor the temporary one is left behind.
    assert set(os.listdir(full)) == before


def test_an_unknown_host_key_is_refused_unless_accepting_is_chosen_and_then_logged(
        sftp_row: Callable[..., SftpConnection], sshd: SshServer, caplog: pytest.LogCaptureFixture) -> None:
    from paramiko import Ed25519Key

    other = Ed25519Key.from_private_key_file(str(sshd.key_path))  # some other ed25519 key, not the host's
    strict = SftpClient.from_definition(sftp_row(name="strict", host_key=f"ssh-ed25519 {other.get_base64()}"))
    result = strict.ping()
    assert not result.ok
    assert f"the server's host key ssh-ed25519 {sshd.host_key.fingerprint} is not a known host key" in result.info
    with pytest.raises(SftpHostKeyError):
        strict.read("x")
    trusting = SftpClient.from_definition(sftp_row(name="trusting", host_key="", accept_unknown_host_key=True))
    with caplog.at_level(logging.WARNING, logger="connections.sftp"):
        assert trusting.ping().ok
    assert f"accepting the unknown host key ssh-ed25519 {sshd.host_key.fingerprint}" in caplog.text


def test_a_connection_without_a_host_key_is_refused_when_saved(sftp_row: Callable[..., SftpConnection]) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Paste the server's host key"):
        sftp_row(host_key="")


def test_wrong_credentials_and_an_unreachable_server_are_clear(sftp_row: Callable[..., SftpConnection],
                                                               sshd: SshServer) -> None:
    wrong = SftpClient.from_definition(sftp_row(name="wrong", password="nope"))
    with pytest.raises(SftpUnavailable, match=r"`wrong` \(sbfiles@127.0.0.1:\d+\): login failed: the password was "
                                              r"refused") as raised:
        wrong.list(".")
    assert raised.value.status_code == 503 and "nope" not in str(raised.value)
    from tests.servers.procs import free_port

    port = free_port()
    down = SftpClient.from_definition(sftp_row(name="down", port=port))
    result = down.ping()
    assert not result.ok and f"127.0.0.1:{port}): cannot connect: Connection refused" in result.info


def test_a_private_key_logs_in(sftp_row: Callable[..., SftpConnection], sshd: SshServer) -> None:
    client = SftpClient.from_definition(sftp_row(name="by-key", key=sshd.key_path.read_text()))
    assert client.ping().ok
    assert client.settings.password == ""


# --- Scripts (execute, the admin shell) and ping --------------------------------------------------------


def test_execute_runs_sftp_commands_in_one_session_and_stops_at_the_first_failure(
        conn: SftpClient, sftp_dir: Path) -> None:
    output = conn.execute(f"cd {sftp_dir}\nmkdir new\n# a comment\nls -la\npwd")
    assert output.is_ok and output.command_no == 5
    assert "new" in output.stdout and f"Remote working directory: {sftp_dir}" in output.stdout
    with pytest.raises(SftpError, match=r"command #2 failed: rmdir missing: .*does not exist"):
        conn.execute(f"cd {sftp_dir}\nrmdir missing\nmkdir never")
    assert not (sftp_dir / "never").exists()
    # A leading '-' goes on, as in sftp -b.
    output = conn.execute(f"cd {sftp_dir}\n-rmdir missing\nmkdir after", raise_on_error=False)
    assert output.is_ok and (sftp_dir / "after").is_dir() and "rmdir missing" in output.stderr
    # A typo anywhere: nothing runs.
    output = conn.execute(f"mkdir {sftp_dir}/first\nlss", raise_on_error=False)
    assert not output.is_ok and "Line 2: unknown command `lss`" in output.stderr
    assert not (sftp_dir / "first").exists()
    # The pooled session is back at the default directory afterwards.
    assert conn.execute("pwd").stdout.strip() == f"Remote working directory: {conn.execute('pwd').stdout.split()[-1]}"


def test_a_log_level_adds_protocol_detail(conn: SftpClient) -> None:
    quiet = conn.execute("ls .")
    assert quiet.details == ""
    loud = conn.execute("ls .", log_level=2)
    assert loud.is_ok and "Authentication (password) successful" in loud.details


def test_ping_runs_the_ping_command_and_names_the_server(conn: SftpClient, sshd: SshServer) -> None:
    result = conn.ping()
    assert result.ok and result.info.startswith(f"127.0.0.1:{sshd.port} ran `ls .` (SSH-2.0-OpenSSH")


SERVICE = """
from integration.services import Service

class UseSftp(Service):
    name = "files.use-sftp"

    def handle(self):
        conn = self.out.sftp["My SFTP Connection"].conn
        path = self.request.payload["path"]
        conn.write("from a service", path)
        self.response.payload = {"read": conn.read(path).decode(), "is_file": conn.is_file(path)}
"""


@pytest.mark.django_db
def test_a_service_reaches_the_connection_through_self_out(sftp_row: Callable[..., SftpConnection], deploy: Any,
                                                           sftp_dir: Path) -> None:
    sftp_row()
    deploy("use_sftp.py", SERVICE)
    result = invoke("files.use-sftp", {"path": f"{sftp_dir}/svc.txt"})
    assert result.payload == {"read": "from a service", "is_file": True}


def test_a_bandwidth_limit_slows_transfers_down(sftp_row: Callable[..., SftpConnection], sftp_dir: Path) -> None:
    import time

    limited = SftpClient.from_definition(sftp_row(name="slow", bandwidth_limit=256))  # KiB/s
    limited.ping()  # connected: only the transfer is timed
    started = time.monotonic()
    limited.write(b"x" * (512 * 1024), f"{sftp_dir}/slow.bin")
    # 512 KiB at 256 KiB/s: about 2 s (the last chunk's wait included), never the instant a loopback takes.
    assert time.monotonic() - started >= 1.5
    assert (sftp_dir / "slow.bin").stat().st_size == 512 * 1024


def test_service_code_may_get_and_put_local_files_in_a_script(conn: SftpClient, sftp_dir: Path,
                                                               tmp_path: Path) -> None:
    (tmp_path / "local.txt").write_text("local")
    output = conn.execute(f"put {tmp_path}/local.txt {sftp_dir}/remote.txt\nget {sftp_dir}/remote.txt "
                          f"{tmp_path}/back.txt\nstat {sftp_dir}/remote.txt\ndf {sftp_dir}")
    assert output.is_ok, output.stderr
    assert (tmp_path / "back.txt").read_text() == "local"
    assert "type: file" in output.stdout and "Avail" in output.stdout


def test_a_failed_download_leaves_no_local_file(conn: SftpClient, sshd: SshServer, tmp_path: Path) -> None:
    with pytest.raises(SftpPermissionDenied):
        conn.download(f"{sshd.root.locked}", str(tmp_path / "locked"))
    with pytest.raises(SftpNotFound):
        conn.download_file("/no/such/file", str(tmp_path / "file"))
    assert list(tmp_path.iterdir()) == []
