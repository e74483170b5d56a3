"""The OpenSSH test server (sshd for SFTP connections), driven with paramiko and OpenSSH's sftp client.

Logins and host keys, then SFTP; the other directory servers are in test_directory_servers.py
and test_directory_servers_ftp.py. Nothing here is mocked; sshd is a real process on 127.0.0.1.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.connections.large_files import LARGE, large_file, sha256
from tests.servers.sandbox import FULL_DISK_BYTES, TEST_USER
from tests.servers.sshd import SshServer, askpass_env, hardlink, sftp_extensions, statvfs

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

