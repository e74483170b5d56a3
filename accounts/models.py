"""Security definitions: reusable descriptions of who may call a channel.

``SecurityDefinition`` holds what every type shares (name, type, active flag); each type
is a subclass in its own table (multi-table inheritance), so a channel's ``security`` is
one foreign key whatever the type, and names are unique across types, which lets the
management API refer to a definition by name alone.
"""

from __future__ import annotations

from django.db import models

from accounts import crypto
from integration.signals import config_model


@config_model
class SecurityDefinition(models.Model):
    """A named security definition of any type; see the subclasses for the fields of each type."""

    class SecType(models.TextChoices):
        BASIC_AUTH = "basic_auth", "HTTP Basic Auth"

    name = models.CharField(max_length=200, unique=True, help_text="Unique across all security definition types.")
    sec_type = models.CharField(max_length=30, choices=SecType.choices, editable=False)
    is_active = models.BooleanField(
        default=True, help_text="Inactive definitions reject every caller of the channels that use them."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_sec_type_display()})"


class BasicAuth(SecurityDefinition):
    """HTTP Basic Auth: callers send a username and password in the Authorization header."""

    username = models.CharField(max_length=200, help_text="The username callers send.")
    password_hash = models.CharField(
        max_length=200, editable=False, help_text="A keyed hash of the password; the password itself is never stored."
    )
    realm = models.CharField(
        max_length=200, default="Switchboard", help_text="Shown by browsers in the login prompt (WWW-Authenticate)."
    )

    class Meta:
        verbose_name = "HTTP Basic Auth definition"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = SecurityDefinition.SecType.BASIC_AUTH
        if not self.password_hash:
            # Zato's rule: a definition starts with a random password nobody knows.
            self.set_password(crypto.random_secret())
        super().save(*args, **kwargs)

    def set_password(self, password: str) -> None:
        self.password_hash = crypto.hash_secret(password)
