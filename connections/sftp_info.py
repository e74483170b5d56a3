"""``SftpInfo``: what ``get_info`` and ``list`` say about one remote path, in the seed's terms."""

from __future__ import annotations

import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import paramiko


@dataclass(frozen=True)
class SftpInfo:
    """One entry: ``type`` is file, directory, symlink or other; sizes in bytes; owner and group by name when known."""

    name: str
    path: str
    type: str
    size: int
    size_human: str
    owner: str
    group: str
    permissions: str
    permissions_oct: str
    last_modified: datetime | None
    symlink_target: str | None = None

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @property
    def is_directory(self) -> bool:
        return self.type == "directory"

    @property
    def is_symlink(self) -> bool:
        return self.type == "symlink"

    @property
    def is_other(self) -> bool:
        return self.type == "other"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_modified"] = self.last_modified.isoformat() if self.last_modified else None
        return data


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def info_from_attributes(name: str, path: str, attributes: paramiko.SFTPAttributes,
                         owner: tuple[str, str] | None, target: str | None) -> SftpInfo:
    mode = attributes.st_mode or 0
    if stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_ISDIR(mode):
        kind = "directory"
    elif stat.S_ISREG(mode):
        kind = "file"
    else:
        kind = "other"
    size = attributes.st_size or 0
    modified = (datetime.fromtimestamp(attributes.st_mtime, UTC) if attributes.st_mtime is not None else None)
    user, group = owner or (str(attributes.st_uid), str(attributes.st_gid))
    return SftpInfo(name=name, path=path, type=kind, size=size, size_human=human_size(size), owner=user,
                    group=group, permissions=stat.filemode(mode), permissions_oct=f"{stat.S_IMODE(mode):o}",
                    last_modified=modified, symlink_target=target)
