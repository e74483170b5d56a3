"""Scripts of SFTP commands over an ``SftpClient``: ``conn.execute(script)`` and the admin's command shell.

The commands are OpenSSH ``sftp``'s (``connections.sftp_parsing.COMMANDS``), run in one SFTP
session so that ``cd`` holds for what follows. The script stops at the first failing command,
as ``sftp -b`` does, unless that line starts with ``-``. ``SftpOutput`` is Zato's shape:
``is_ok``, ``command_no`` (the number of the command that ran last), ``stdout``, ``stderr``,
``details`` (the protocol log when asked for with a log level of 1-4) and ``response_time``.

With a log level, the script runs on a transport of its own whose paramiko log is captured:
1 says what happens (connection, authentication, channels), 2-3 every SFTP request, 4 adds a
hex dump of every packet. ``get`` and ``put`` read and write files on Switchboard's own
machine; the admin's shell refuses them (``allow_local=False``).
"""

from __future__ import annotations

import logging
import posixpath
import stat as stat_module
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import paramiko

from connections.sftp_errors import SftpError, SftpUnavailable
from connections.sftp_parsing import COMMANDS, LOCAL_COMMANDS, Command, parse_script

if TYPE_CHECKING:
    from connections.sftp import SftpClient


@dataclass
class SftpOutput:
    is_ok: bool
    command: str
    command_no: int
    stdout: str
    stderr: str
    details: str
    response_time: float  # seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < 5000:
            self.lines.append(f"{record.levelname[0]} {record.getMessage()}")


def run_script(client: SftpClient, script: str, log_level: int = 0, *, allow_local: bool = True) -> SftpOutput:
    started = time.perf_counter()
    try:
        commands = parse_script(script)
    except ValueError as exc:
        return SftpOutput(False, script, 0, "", str(exc), "", time.perf_counter() - started)
    if not allow_local:
        for command in commands:
            if command.name in LOCAL_COMMANDS:
                return SftpOutput(False, script, command.line_no, "", f"Line {command.line_no}: `{command.name}` "
                                  "reads or writes files on Switchboard's machine and is not allowed here",
                                  "", time.perf_counter() - started)
    stdout: list[str] = []
    stderr: list[str] = []
    capture = _Capture()
    channel = f"connections.sftp.shell.{threading.get_ident()}"
    wire = logging.getLogger(channel)
    number, ok, transport = 0, True, None
    try:
        if log_level > 0:
            wire.addHandler(capture)
            wire.propagate = False
            transport = client.open_transport(log_channel=channel, log_level=log_level)
            sftp = client._new_session(transport)
            context: Any = _Owned(sftp)
        else:
            context = client.session()
        with context as sftp:
            client._local.sftp = sftp
            try:
                for command in commands:
                    number = command.line_no
                    try:
                        stdout.extend(_run(client, sftp, command))
                    except (SftpError, SftpUnavailable, OSError, ValueError, EOFError, paramiko.SSHException) as exc:
                        stderr.append(f"{command.text}: {exc}")
                        if not command.ignore_errors:
                            ok = False
                            break
            finally:
                client._local.sftp = None
    except (SftpError, SftpUnavailable) as exc:
        ok = False
        stderr.append(str(exc))
    finally:
        if transport is not None:
            transport.close()
        wire.removeHandler(capture)
    return SftpOutput(ok, script, number, "\n".join(stdout) + ("\n" if stdout else ""),
                      "\n".join(stderr) + ("\n" if stderr else ""), "\n".join(capture.lines),
                      time.perf_counter() - started)


class _Owned:
    """A session the script opened itself: closed afterwards, never pooled."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp

    def __enter__(self) -> paramiko.SFTPClient:
        return self.sftp

    def __exit__(self, *exc: object) -> None:
        self.sftp.close()


def _run(client: SftpClient, sftp: paramiko.SFTPClient, command: Command) -> list[str]:
    name, args, flags = command.name, command.args, command.flags
    if name == "ls":
        return _ls(client, sftp, args[0] if args else ".", flags)
    if name == "cd":
        with client.operation("change to", args[0]):
            sftp.chdir(args[0])
        return []
    if name == "pwd":
        return [f"Remote working directory: {sftp.getcwd() or sftp.normalize('.')}"]
    if name == "mkdir":
        if "p" in flags:
            _mkdir_p(client, args[0])
        else:
            client.create_directory(args[0])
        return []
    if name == "rmdir":
        client.require(args[0], "directory")
        with client.operation("remove the directory", args[0]):
            sftp.rmdir(args[0])
        return []
    if name == "rm":
        if "r" in flags:
            client.delete(args[0])
        else:
            with client.operation("remove", args[0]):
                sftp.remove(args[0])
        return []
    if name == "rename":
        client.move(args[0], args[1])
        return []
    if name in ("ln", "symlink"):
        if name == "symlink" or "s" in flags:
            client.create_symlink(args[0], args[1])
        else:
            client.create_hardlink(args[0], args[1])
        return []
    if name == "chmod":
        client.chmod(args[0], args[1])
        return []
    if name == "chown":
        client.chown(args[0], args[1])
        return []
    if name == "chgrp":
        client.chgrp(args[0], args[1])
        return []
    if name == "get":
        local = args[1] if len(args) > 1 else posixpath.basename(args[0])
        client.download(args[0], local, recursive="r" in flags)
        return [f"Fetching {args[0]} to {local}"]
    if name == "put":
        remote = args[1] if len(args) > 1 else posixpath.basename(args[0])
        client.upload(args[0], remote, recursive="r" in flags, overwrite=True)
        return [f"Uploading {args[0]} to {remote}"]
    if name == "stat":
        info = client.get_info(args[0])
        return [f"{key}: {value}" for key, value in info.as_dict().items()]
    if name == "df":
        return _df(client, sftp, args[0] if args else ".")
    if name == "version":
        return ["SFTP protocol version 3"]
    return ["Available commands: " + ", ".join(sorted(COMMANDS)),
            "A line starting with - goes on when its command fails; # starts a comment."]


def _ls(client: SftpClient, sftp: paramiko.SFTPClient, path: str, flags: frozenset[str]) -> list[str]:
    with client.operation("list", path):
        attributes = sftp.lstat(path)
    if not stat_module.S_ISDIR(attributes.st_mode or 0):
        info = client.get_info(path)
        return [f"{info.permissions} {info.owner} {info.group} {info.size:>10} {path}" if "l" in flags else path]
    with client.operation("list", path):
        entries = sorted(sftp.listdir_attr(path), key=lambda a: a.filename)
    lines = []
    for entry in entries:
        if entry.filename.startswith(".") and "a" not in flags:
            continue
        lines.append((entry.longname or str(entry)) if "l" in flags else entry.filename)
    return lines


def _mkdir_p(client: SftpClient, path: str) -> None:
    parts = path.split("/")
    for end in range(1, len(parts) + 1):
        partial = "/".join(parts[:end])
        if partial and not client.is_directory(partial):
            client.create_directory(partial)


def _df(client: SftpClient, sftp: paramiko.SFTPClient, path: str) -> list[str]:
    from paramiko.sftp import CMD_EXTENDED

    with client.operation("ask the free space of", path):
        _, message = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", sftp._adjust_cwd(path))
    _bsize, frsize, blocks, bfree, bavail = (message.get_int64() for _ in range(5))
    kib = frsize // 1024 or 1
    return ["        Size         Used        Avail   (KiB)",
            f"{blocks * kib:>12} {(blocks - bfree) * kib:>12} {bavail * kib:>12}"]
