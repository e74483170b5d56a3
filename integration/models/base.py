"""What every model of the app shares: the configuration version, clean-on-save, path and security checks."""

from __future__ import annotations

import re

from django.db import models
from django.db.models import F
from django.utils import timezone

from integration.channels import security

RESERVED_PREFIXES = ("/admin/", "/manage/", "/zato/", "/healthz", "/metrics", "/static/")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PATH_CHARS = re.compile(r"^/[A-Za-z0-9_\-./~{}:@!$&'()*+,;=%]*$")
_ACCEPT = re.compile(r"^[A-Za-z0-9*!#$&^_.+-]+/[A-Za-z0-9*!#$&^_.+-]+$|^\*$")

#: Largest value of a channel's whole-number limits: PostgreSQL's integer column, on every
#: database, so a channel saved on SQLite saves on PostgreSQL too.
MAX_LIMIT = 2**31 - 1


class ConfigVersion(models.Model):
    """A single row counting configuration changes; processes rebuild their snapshot when it moves."""

    version = models.BigIntegerField(
        default=0, help_text="Goes up by one with every configuration change; processes compare it with their own."
    )
    changed_at = models.DateTimeField(default=timezone.now, help_text="When the configuration last changed.")

    class Meta:
        verbose_name = "configuration version"

    def __str__(self) -> str:
        return f"configuration version {self.version}"

    @classmethod
    def bump(cls) -> None:
        """Count one configuration change; call inside the transaction that makes it."""
        updated = cls.objects.filter(pk=1).update(version=F("version") + 1, changed_at=timezone.now())
        if not updated:
            cls.objects.get_or_create(pk=1, defaults={"version": 1})

    @classmethod
    def lock(cls) -> None:
        """Hold the version row until the transaction ends (serialises deployments)."""
        cls.objects.get_or_create(pk=1)
        list(cls.objects.select_for_update().filter(pk=1).values_list("pk", flat=True))

    @classmethod
    def current(cls) -> int:
        return cls.objects.filter(pk=1).values_list("version", flat=True).first() or 0


class CleanOnSave(models.Model):
    """A model that validates itself on every save: admin, API and imports all pass through
    ``save()``, so invalid rows never reach the table."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)


def security_problem(channel: models.Model, kind: str) -> str:
    """Why the channel's security definition cannot protect a channel of ``kind`` ("" when it can).

    The registry of security types decides (``integration.channels.security``): a type that is
    not registered (a removed plug-in), or does not allow this kind, is named in the message.
    """
    if channel.security_id is None:
        return ""
    definitions = channel._meta.get_field("security").related_model
    sec_type = definitions.objects.filter(pk=channel.security_id).values_list("sec_type", flat=True).first()
    return security.problem(sec_type, kind)


def path_problem(path: str, allowed: re.Pattern[str], what: str, chars_note: str) -> str | None:
    """Why ``path`` cannot be a channel's path (``what`` names it in the message), or None."""
    if not path.startswith("/"):
        return f"{what} must start with /."
    if not allowed.match(path):
        return f"{what} contains characters that are not allowed in a URL{chars_note}."
    prefix = reserved_prefix(path)
    if prefix:
        return f"{what} may not start with {prefix}, which the platform reserves."
    return None


def reserved_prefix(path: str) -> str | None:
    """The reserved prefix a path falls under, if any (``/admin`` counts as ``/admin/``)."""
    for prefix in RESERVED_PREFIXES:
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            return prefix
    return None


def _split_accept(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
