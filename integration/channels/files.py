"""File channels: a directory whose files invoke a service, compiled once per configuration version.

``FileTable`` (``snapshot.current().channels["file"]``) holds every ``FileChannel`` row as the
watcher needs it: which files match (directory, recursive or not, glob patterns), which events
count, what the service receives and what happens to the file afterwards. The watcher process
itself (``manage.py watch_files``) is ``integration.channels.file_watcher``.

What a service receives, as its input (the seed's ``file.notifications`` reads ``path``):

* ``path``: the file's absolute path, always;
* ``event``: ``created``, ``modified`` or ``moved`` (when the channel passes it);
* ``data``: the contents as text when they are UTF-8, else ``data_base64``; a file larger than
  the channel's limit gets ``data_omitted: true`` instead (when the channel passes contents);
* ``channel``: the channel's name.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from integration.channels.base import BuildContext, ChannelType
from integration.models import FileChannel

if TYPE_CHECKING:
    from integration.registry import ServiceInfo

KIND = "file"
EVENTS = ("created", "modified", "moved")


@dataclass(frozen=True)
class CompiledFileChannel:
    """One file channel, as the watcher needs it."""

    id: int
    name: str
    is_active: bool
    directory: str
    patterns: tuple[str, ...]
    recursive: bool
    events: frozenset[str]
    service_name: str
    service: ServiceInfo | None  # None: the service is not deployed in this process
    pass_contents: bool
    max_contents_size: int
    pass_event: bool
    after_success: str
    done_directory: str
    after_failure: str
    error_directory: str
    stable_seconds: float
    use_polling: bool

    @property
    def watch_key(self) -> tuple[str, bool, bool]:
        """What one watching thread covers: the directory, recursively or not, polled or not."""
        return (self.directory, self.recursive, self.use_polling)

    def matches(self, path: str) -> bool:
        """Whether the file at ``path`` belongs to this channel (its place and its name)."""
        directory = self.directory.rstrip("/") or "/"
        parent, name = os.path.split(path)
        if self.recursive:
            if not (parent == directory or parent.startswith(directory.rstrip("/") + "/")):
                return False
            for excluded in (self.done_directory, self.error_directory):
                # Files already handled (moved below the watched directory) are not handed over again.
                if excluded and (parent == excluded or parent.startswith(excluded.rstrip("/") + "/")):
                    return False
        elif parent != directory:
            return False
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)


class FileTable:
    """The file channels of one configuration version, by id and name."""

    def __init__(self, channels: list[CompiledFileChannel]) -> None:
        self.by_id = {channel.id: channel for channel in channels}
        self.by_name = {channel.name: channel for channel in channels}

    def __len__(self) -> int:
        return len(self.by_id)

    def active(self) -> list[CompiledFileChannel]:
        return [channel for channel in self.by_id.values() if channel.is_active]

    def matching(self, path: str) -> list[CompiledFileChannel]:
        return [channel for channel in self.active() if channel.matches(path)]

    @classmethod
    def build(cls, context: BuildContext) -> FileTable:
        channels = []
        for row in FileChannel.objects.select_related("service"):
            events = frozenset(name for name, on in (("created", row.on_created), ("modified", row.on_modified),
                                                     ("moved", row.on_moved)) if on)
            channels.append(CompiledFileChannel(
                id=row.pk, name=row.name, is_active=row.is_active,
                directory=os.path.normpath(row.directory), patterns=tuple(row.pattern_list),
                recursive=row.recursive, events=events, service_name=row.service.name,
                service=context.registry.get(row.service.name), pass_contents=row.pass_contents,
                max_contents_size=row.max_contents_size, pass_event=row.pass_event,
                after_success=row.after_success,
                done_directory=os.path.normpath(row.done_directory) if row.done_directory else "",
                after_failure=row.after_failure,
                error_directory=os.path.normpath(row.error_directory) if row.error_directory else "",
                stable_seconds=row.stable_seconds, use_polling=row.use_polling,
            ))
        return cls(channels)


class FileChannelType(ChannelType):
    """File channels: compiled into a ``FileTable`` (``snap.channels["file"]``)."""

    name = KIND
    label = "File"

    def build(self, context: BuildContext) -> FileTable:
        return FileTable.build(context)
