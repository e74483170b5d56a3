"""File channels (``integration.channels.files``) and the claims that make each file run once."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from integration.models.base import (
    CleanOnSave,
)
from integration.models.core import DeployedService
from integration.signals import config_model


class AfterAction(models.TextChoices):
    LEAVE = "leave", "leave it where it is"
    MOVE = "move", "move it to a directory"
    DELETE = "delete", "delete it"


@config_model
class FileChannel(CleanOnSave):
    """A directory whose new (or changed) files invoke a service, once each (``integration.channels.files``).

    ``manage.py watch_files`` watches every active channel's directory; a file is handed over
    once its size and modification time have stopped changing for ``stable_seconds``, and a
    claim row (``FileClaim``) makes sure one process handles each version of a file.
    """

    name = models.CharField(max_length=200, unique=True, help_text="A name for administrators.")
    is_active = models.BooleanField(default=True, help_text="Inactive channels are not watched.")
    directory = models.CharField(max_length=1000, help_text="Absolute path of the watched directory.")
    patterns = models.CharField(
        max_length=1000, default="*",
        help_text="File name patterns (globs such as *.csv), separated by commas or spaces; a file matching "
        "any of them counts.",
    )
    recursive = models.BooleanField(default=False, help_text="Watch subdirectories too.")
    on_created = models.BooleanField(default=True, help_text="New files count (written in place).")
    on_modified = models.BooleanField(default=False, help_text="Files changed after they were handed over count.")
    on_moved = models.BooleanField(default=True, help_text="Files moved (renamed) into the directory count.")
    service = models.ForeignKey(
        DeployedService, on_delete=models.PROTECT, related_name="file_channels",
        help_text="The service invoked with the file's path as `path` in its input.",
    )
    pass_contents = models.BooleanField(
        default=False, help_text="Also pass the file's contents, as `data` (text if UTF-8, else base64 in "
        "`data_base64`), when not larger than the limit below.",
    )
    max_contents_size = models.PositiveIntegerField(
        default=1_048_576, help_text="Largest file (bytes) whose contents are passed; larger ones get `path` "
        "only and `data_omitted: true`.",
    )
    pass_event = models.BooleanField(default=True, help_text="Pass the event type as `event` (created, "
                                     "modified or moved).")
    after_success = models.CharField(max_length=10, choices=AfterAction.choices, default=AfterAction.LEAVE,
                                     help_text="What happens to the file after the service succeeded.")
    done_directory = models.CharField(max_length=1000, blank=True,
                                      help_text="Where files are moved after success (absolute path).")
    after_failure = models.CharField(
        max_length=10, choices=[c for c in AfterAction.choices if c[0] != AfterAction.DELETE],
        default=AfterAction.LEAVE, help_text="What happens to the file after the service failed.",
    )
    error_directory = models.CharField(max_length=1000, blank=True,
                                       help_text="Where files are moved after a failure (absolute path).")
    stable_seconds = models.FloatField(
        default=1.0, help_text="A file is handed over once its size and time stamp have not changed for this "
        "long (seconds): no half-written files.",
    )
    use_polling = models.BooleanField(
        default=False, help_text="Poll the directory instead of inotify (network file systems such as NFS or SMB).",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "file channel"

    def __str__(self) -> str:
        return self.name

    @property
    def pattern_list(self) -> list[str]:
        return [p for p in re.split(r"[,\s]+", self.patterns or "") if p]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field in ("directory", "done_directory", "error_directory"):
            value = (getattr(self, field) or "").strip()
            setattr(self, field, value)
            if value and not value.startswith("/"):
                errors[field] = "Give an absolute path (starting with /)."
            elif "\x00" in value:
                errors[field] = "A path cannot contain a NUL character."
        if not self.pattern_list:
            errors["patterns"] = "Give at least one pattern, such as *."
        if not (self.on_created or self.on_modified or self.on_moved):
            errors["on_created"] = "Choose at least one event."
        if self.after_success == AfterAction.MOVE and not self.done_directory:
            errors["done_directory"] = "Files are moved after success: say where."
        if self.after_failure == AfterAction.MOVE and not self.error_directory:
            errors["error_directory"] = "Files are moved after a failure: say where."
        if self.stable_seconds is not None and not 0 <= self.stable_seconds <= 3600:
            errors["stable_seconds"] = "Between 0 and 3600 seconds."
        if errors:
            raise ValidationError(errors)


class FileClaim(models.Model):
    """One version of one file (path, size, modification time) taken by one watcher process.

    Inserting the row is the claim: the unique key lets exactly one process win, however many
    watch the directory. A claim left ``processing`` by a process that died is taken over after
    ``FILE_CLAIM_TIMEOUT`` seconds.
    """

    class Status(models.TextChoices):
        PROCESSING = "processing"
        DONE = "done"
        FAILED = "failed"

    channel = models.ForeignKey(FileChannel, on_delete=models.CASCADE, related_name="claims",
                                help_text="The file channel whose watcher claimed the file.")
    key = models.CharField(max_length=64, help_text="SHA-256 of the path, size and modification time.")
    path_key = models.CharField(max_length=64, db_index=True, help_text="SHA-256 of the path alone.")
    path = models.TextField(help_text="The file's path when it was claimed.")
    size = models.BigIntegerField(help_text="The file's size in bytes when it was claimed.")
    mtime_ns = models.BigIntegerField(
        help_text="The file's modification time when it was claimed, in nanoseconds since 1970-01-01 UTC; with "
        "the size it tells this version of the file from later ones.",
    )
    event = models.CharField(
        max_length=10, blank=True, help_text="What the watcher saw: created, moved (into the directory) or "
        "modified (another version of the path was claimed before).",
    )
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.PROCESSING,
        help_text="processing while the service runs; done once it succeeded and the file was put away; failed "
        "if the service or putting the file away failed. A claim left processing for FILE_CLAIM_TIMEOUT seconds "
        "is taken over by another watcher.",
    )
    owner = models.CharField(max_length=200, help_text="host:pid of the process that claimed it.")
    cid = models.CharField(max_length=64, blank=True,
                           help_text="The correlation id of the service call: search the logs for it.")
    claimed_at = models.DateTimeField(
        default=timezone.now, help_text="When the file was claimed (or the claim taken over from a watcher that "
        "did not finish it).",
    )
    finished_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When processing ended, done or failed; empty while processing.")
    error = models.TextField(blank=True, help_text="Why processing failed (the service's status and details, or "
                             "the file error); empty when it did not.")

    class Meta:
        ordering = ["-claimed_at"]
        constraints = [models.UniqueConstraint(fields=["channel", "key"], name="file_claim_unique_version")]
        indexes = [models.Index(fields=["status", "claimed_at"], name="file_claim_status")]

    def __str__(self) -> str:
        return f"{self.path} ({self.status})"
