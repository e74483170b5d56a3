"""``SshServer``: Debian's OpenSSH sshd as a private SFTP server on a free port of 127.0.0.1.

Why OpenSSH and not asyncssh's server: it is the SFTP server people actually run, with its
real extensions (``hardlink@openssh.com``, ``posix-rename@openssh.com``, ``statvfs``...), its
real error codes and its real ``exec`` channel, which the seed's ``execute(script)`` needs.
It runs without changing the machine's users: see ``tests/servers/sandbox.py`` (a private mount
namespace where the login user exists, its home tree, the 1 MiB full disk).

The server is the machine's ``/usr/sbin/sshd`` with a configuration of its own: its own
ed25519 host key, its own ``authorized_keys``, password and public-key logins for
``TEST_USER`` only, no root login, no forwarding, and ``internal-sftp`` as the SFTP subsystem.
``-D -e`` keeps it in the foreground with its log on stderr (the process log file).

Clients find here:

* ``host``, ``port``, ``username``, ``password``; ``key_path`` / ``rsa_key_path`` (OpenSSH
  private keys the server accepts) and ``client_key()`` (the paramiko key);
* ``host_key`` (paramiko ``PKey``), ``known_hosts_path`` (a file OpenSSH and paramiko read) and
  ``trust(client)`` to add the key to a ``paramiko.SSHClient``;
* ``root`` (``FileServerRoot``): ``home`` and its ``readonly``, ``locked`` and ``full`` paths.

``hardlink()`` and ``sftp_extensions()`` reach what paramiko's client leaves out; see there.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

from tests.servers.procs import ManagedProcess, free_port, wait_for
from tests.servers.sandbox import TEST_USER, FileServerRoot, ensure_debian_packages, require_root

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 15.0
_PORT_TAKEN = "Address already in use"


def _write_private_key(key: Any, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)  # sshd refuses a host key that others can read, and ssh an identity file


def _public_line(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def openssh_version() -> tuple[int, int]:
    """sshd's (major, minor) version from ``sshd -V``, which prints e.g. ``OpenSSH_9.2p1 Debian-2``."""
    done = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=10, check=False)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stdout + done.stderr)
    if found is None:
        raise RuntimeError(f"Cannot tell sshd's version from: {done.stderr!r}")
    return int(found.group(1)), int(found.group(2))


class SshServer:
    """One private sshd. ``start()`` returns once it sends its SSH banner; ``stop()`` ends it and its sessions."""

    def __init__(self, *, password: str | None = None, log_level: str = "VERBOSE") -> None:
        ensure_debian_packages("openssh-server", "openssh-client")
        require_root("The SFTP test server")
        self.host = "127.0.0.1"
        self.port = 0
        self.username = TEST_USER.name
        self.password = password or "sftp-" + secrets.token_urlsafe(12)
        self.log_level = log_level
        self.root = FileServerRoot("switchboard-sshd-", self.password)
        self.ssh_dir = self.root.path / "ssh"
        self.ssh_dir.mkdir(mode=0o700)
        self.config_path = self.ssh_dir / "sshd_config"
        self.log_path = self.root.path / "sshd.log"
        self.process: ManagedProcess | None = None
        self._log_offset = 0
        self._make_keys()

    # --- Keys and configuration -----------------------------------------------------------------

    def _make_keys(self) -> None:
        host_key = ed25519.Ed25519PrivateKey.generate()
        self.host_key_path = self.ssh_dir / "ssh_host_ed25519_key"
        _write_private_key(host_key, self.host_key_path)
        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(self.host_key_path))
        self.key_path = self.ssh_dir / "id_ed25519"
        self.rsa_key_path = self.ssh_dir / "id_rsa"
        user_keys = [ed25519.Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 2048)]
        for key, path in zip(user_keys, (self.key_path, self.rsa_key_path), strict=True):
            _write_private_key(key, path)
        # sshd reads authorized_keys as the user logging in, so it lies outside the 0700 ssh/ directory.
        self.authorized_keys_path = self.root.path / "authorized_keys"
        self.authorized_keys_path.write_text("".join(_public_line(key) + " switchboard-tests\n" for key in user_keys))
        self.authorized_keys_path.chmod(0o644)
        self.known_hosts_path = self.ssh_dir / "known_hosts"

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress {self.host}:{self.port}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.ssh_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            # The key files sit in a directory under /tmp (mode 1777), which StrictModes rejects;
            # they are this test's own files, and no other user can change them.
            "StrictModes no",
            # No PAM: sshd checks the password itself against the crypt hash in our passwd copy.
            "UsePAM no",
            "PasswordAuthentication yes",
            "PermitEmptyPasswords no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            f"AllowUsers {self.username}",
            "Subsystem sftp internal-sftp",
            f"LogLevel {self.log_level}",
            # Pools and benchmarks open many sessions at once: the defaults (10 unauthenticated
            # connections, 10 sessions per connection) would drop some at random.
            "MaxStartups 200",
            "MaxSessions 100",
            "MaxAuthTries 20",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PermitUserEnvironment no",
        ]
        if openssh_version() >= (9, 8):
            # From 9.8 sshd penalises an address after failed logins; wrong-password tests fail on purpose.
            lines.append("PerSourcePenalties no")
        self.config_path.write_text("\n".join(lines) + "\n")
        public = self.host_key.get_name() + " " + self.host_key.get_base64()
        self.known_hosts_path.write_text(f"[{self.host}]:{self.port} {public}\n")

    # --- Lifecycle -------------------------------------------------------------------------------

    def start(self) -> SshServer:
        # sshd's privilege-separated children chroot into this directory; Debian's init script
        # creates it when it starts the system sshd, which the tests never do.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _ in range(5):
            self.port = self.port or free_port()
            self._write_config()
            argv = self.root.namespace_argv([SSHD, "-D", "-e", "-f", str(self.config_path)])
            self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.process = ManagedProcess(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                          log_path=self.log_path).start()
            try:
                wait_for(self._ready, START_TIMEOUT, message=lambda: self.process.log_tail() if self.process else "")
                return self
            except _PortTaken:
                self.process.stop()
                self.port = 0  # another process took the port between free_port() and sshd's bind
        raise RuntimeError(f"sshd could not bind a free port: {self.process.log_tail() if self.process else ''}")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = self.process.log_text()[self._log_offset:]  # this attempt's lines, not an earlier one's
            if _PORT_TAKEN in log:
                raise _PortTaken
            raise RuntimeError(f"sshd exited with {self.process.poll()}: {log}")
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def close(self) -> None:
        """Stop the server and delete its tree (the full-disk tmpfs went with its namespace)."""
        self.stop()
        self.root.remove()

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Clients ---------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.root.home

    def client_key(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key_file(str(self.key_path))

    def trust(self, client: paramiko.SSHClient) -> paramiko.SSHClient:
        """Let ``client`` know this server's host key (as a known_hosts entry for ``[host]:port``)."""
        client.get_host_keys().add(f"[{self.host}]:{self.port}", self.host_key.get_name(), self.host_key)
        return client

    def connect(self, *, password: str | None = None, key: paramiko.PKey | None = None,
                timeout: float = 10.0) -> paramiko.SSHClient:
        """A ``paramiko.SSHClient`` logged in with the password (default) or ``key``; it requires the known host key.

        No agent and no keys from ~/.ssh, so a test proves exactly the credential it passes.
        """
        client = self.trust(paramiko.SSHClient())
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(self.host, self.port, username=self.username,
                       password=None if key is not None else (password or self.password), pkey=key,
                       allow_agent=False, look_for_keys=False, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, channel_timeout=timeout)
        return client

    def sftp_command(self, *extra: str, with_key: bool = True) -> list[str]:
        """The OpenSSH ``sftp`` client's command line for this server, logging in with ``key_path``.

        Add ``-b -`` (batch commands on stdin, stop at the first failing one), as Zato's
        ``execute`` does. ``-b`` also forces BatchMode, which never asks for a password, so a
        batch needs the key. With ``with_key=False`` the command offers no key and answers the
        password prompt through ``askpass_env``; commands then go in on stdin without ``-b``
        (and sftp goes on after a failing one).
        """
        login = (["-i", str(self.key_path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"] if with_key
                 else ["-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"])
        return ["/usr/bin/sftp", "-F", "/dev/null", "-P", str(self.port), *login,
                "-o", f"UserKnownHostsFile={self.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=10", *extra, f"{self.username}@{self.host}"]


class _PortTaken(Exception):
    pass


def hardlink(sftp: paramiko.SFTPClient, existing: str, new: str) -> None:
    """Make ``new`` a hard link to ``existing`` with OpenSSH's ``hardlink@openssh.com`` request.

    paramiko's client has no method for it: the SFTP protocol (v3) knows only symlinks, and
    hard links are an OpenSSH extension. paramiko sends its own ``posix-rename@openssh.com``
    the same way, as an SSH_FXP_EXTENDED request through ``_request``; that is the one way in
    without a second SFTP implementation. Errors come back as paramiko raises them for any
    request (``FileNotFoundError``, ``PermissionError``, ``OSError``).
    """
    sftp._request(CMD_EXTENDED, "hardlink@openssh.com", existing, new)


STATVFS_FIELDS = ("bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "fsid", "flag",
                  "namemax")


def statvfs(sftp: paramiko.SFTPClient, path: str) -> dict[str, int]:
    """The filesystem figures for ``path`` from OpenSSH's ``statvfs@openssh.com`` request (as statvfs(3)).

    SFTP v3 has no status code for a full disk: OpenSSH answers a write that hit ENOSPC with
    SSH_FX_FAILURE ("Failure"). A client that wants to say "disk full" asks this afterwards
    (``bavail == 0``). paramiko has no method for it; the request goes in as ``hardlink`` does,
    and the reply is eleven uint64 values in the order of ``STATVFS_FIELDS``.
    """
    kind, message = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", path)
    if kind != CMD_EXTENDED_REPLY:
        raise OSError(f"Expected SSH_FXP_EXTENDED_REPLY to statvfs, got packet type {kind}")
    return {name: message.get_int64() for name in STATVFS_FIELDS}


def sftp_extensions(transport: paramiko.Transport) -> dict[str, str]:
    """The extensions the server announces in its SSH_FXP_VERSION reply, by name (``{"hardlink@openssh.com": "1"}``).

    paramiko reads that reply and drops the list, so this opens an SFTP channel of its own on
    ``transport`` (``client.get_transport()``, or ``sftp.get_channel().get_transport()``),
    sends SSH_FXP_INIT (version 3) and parses the answer: uint32 length, byte type (2),
    uint32 version, then (name, data) string pairs up to the end of the packet.
    """
    channel = transport.open_session(timeout=10)
    try:
        channel.settimeout(10)
        channel.invoke_subsystem("sftp")
        channel.sendall(struct.pack(">IBI", 5, 1, 3))
        size = struct.unpack(">I", _read_exactly(channel, 4))[0]
        packet = _read_exactly(channel, size)
        if packet[0] != 2:
            raise ValueError(f"Expected SSH_FXP_VERSION (2), got packet type {packet[0]}")
        found: dict[str, str] = {}
        offset = 5
        while offset < len(packet):
            name, offset = _sftp_string(packet, offset)
            data, offset = _sftp_string(packet, offset)
            found[name.decode()] = data.decode(errors="replace")
        return found
    finally:
        channel.close()


def _read_exactly(channel: paramiko.Channel, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = channel.recv(size - len(data))
        if not chunk:
            raise EOFError("The SFTP channel closed early")
        data += chunk
    return data


def _sftp_string(packet: bytes, offset: int) -> tuple[bytes, int]:
    size = struct.unpack_from(">I", packet, offset)[0]
    start = offset + 4
    return packet[start:start + size], start + size


def askpass_env(password: str, directory: Path) -> dict[str, str]:
    """Environment for OpenSSH's ``sftp``/``ssh`` to log in with a password without a terminal.

    OpenSSH reads passwords from the terminal only, unless ``SSH_ASKPASS`` names a program and
    ``SSH_ASKPASS_REQUIRE=force`` (OpenSSH 8.4+) tells it to use that program even with no
    display. The program (written into ``directory``) prints the password from the environment,
    so it is never on a command line (``ps`` would show it). Run the client without BatchMode,
    which would forbid the prompt.
    """
    program = Path(directory) / "askpass.sh"
    program.write_text('#!/bin/sh\nprintf "%s\\n" "$SWITCHBOARD_SFTP_PASSWORD"\n')
    program.chmod(0o700)
    return {**os.environ, "SSH_ASKPASS": str(program), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": "none",
            "SWITCHBOARD_SFTP_PASSWORD": password}
