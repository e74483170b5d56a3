"""An SFTP connection's settings (decrypted, from its row) and the small helpers of its transfers."""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paramiko

from connections.sftp_errors import SftpError
from connections.sftp_parsing import parse_host_keys, parse_ssh_options

if TYPE_CHECKING:
    from connections.directory_models import SftpConnection


@dataclass(frozen=True)
class SftpSettings:
    """One SFTP connection's settings, decrypted; ``repr`` shows no secret."""

    name: str
    host: str
    port: int = 22
    username: str = ""
    password: str = ""
    private_key: str = ""
    host_keys: tuple[paramiko.PKey, ...] = ()
    accept_unknown_host_key: bool = False
    preserve_metadata: bool = True
    bandwidth_limit: int = 0  # KiB/s, 0 = none
    log_level: int = 0
    options: tuple[tuple[str, Any], ...] = ()
    ping_command: str = "ls ."
    default_directory: str = ""
    timeout: float = 10.0

    def __repr__(self) -> str:
        return f"SftpSettings(name={self.name!r}, host={self.host!r}, port={self.port!r}, username={self.username!r})"

    @classmethod
    def from_row(cls, row: SftpConnection) -> SftpSettings:
        return cls(
            name=row.name, host=row.host.strip(), port=row.port, username=row.username, password=row.get_password(),
            private_key=row.get_private_key(), host_keys=tuple(parse_host_keys(row.host_key)),
            accept_unknown_host_key=row.accept_unknown_host_key, preserve_metadata=row.preserve_metadata,
            bandwidth_limit=row.bandwidth_limit, log_level=row.log_level,
            options=tuple(parse_ssh_options(row.ssh_options).items()), ping_command=row.ping_command,
            default_directory=row.default_directory.strip(), timeout=row.timeout,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Throttle:
    """A paramiko progress callback that sleeps to keep a transfer under ``limit`` KiB/s (0: never sleeps)."""

    def __init__(self, limit_kib: int) -> None:
        self.rate = limit_kib * 1024
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self.rate:
            ahead = done / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def octal_mode(mode: str | int, name: str) -> int:
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o7777:
        return mode
    text = str(mode).strip()
    if text and len(text) <= 4 and all(ch in "01234567" for ch in text):
        return int(text, 8)
    raise SftpError(f"SFTP connection `{name}`: `{text[:20]}` is not an octal mode such as 600 or 0755")
