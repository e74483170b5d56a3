"""Security definitions: reusable descriptions of who may call a channel.

``SecurityDefinition`` holds what every type shares (name, type, active flag); each type
is a subclass in its own table (multi-table inheritance), so a channel's ``security`` is
one foreign key whatever the type, and names are unique across types, which lets the
management API refer to a definition by name alone.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from accounts import crypto
from integration.signals import config_model


@config_model
class SecurityDefinition(models.Model):
    """A named security definition of any type; see the subclasses for the fields of each type."""

    class SecType(models.TextChoices):
        # Zato's discriminator values, so exported configuration reads the same.
        BASIC_AUTH = "basic_auth", "HTTP Basic Auth"
        TECH_ACCOUNT = "tech_acc", "Technical account"
        API_KEY = "apikey", "API key"
        JWT = "jwt", "JWT"
        VAULT = "vault_conn_sec", "Vault"

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

    def dependants(self) -> list[tuple[str, str, int]]:
        """What deleting this definition deletes with it: (kind, name, id) of each channel or connection."""
        from django.db import router
        from django.db.models.deletion import Collector

        collector = Collector(using=router.db_for_write(type(self)))
        collector.collect([self])
        found = []
        for model, objects in collector.data.items():
            if issubclass(model, SecurityDefinition) or model._meta.label == "accounts.JWTSession":
                continue  # this definition's own rows and sessions
            found += [(str(model._meta.verbose_name), str(obj), obj.pk) for obj in objects]
        for queryset in collector.fast_deletes:
            model = queryset.model
            if issubclass(model, SecurityDefinition) or model._meta.label == "accounts.JWTSession":
                continue
            found += [(str(model._meta.verbose_name), str(obj), obj.pk) for obj in queryset]
        return sorted(found)


class PasswordMixin:
    """Verify-only passwords: a keyed hash, and a random one nobody knows until an admin sets one."""

    password_hash: str

    def set_password(self, password: str) -> None:
        self.password_hash = crypto.hash_secret(password)

    def ensure_password(self) -> None:
        if not self.password_hash:
            # Zato's rule: a definition starts with a random password nobody knows.
            self.set_password(crypto.random_secret())


class BasicAuth(PasswordMixin, SecurityDefinition):
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
        self.ensure_password()
        super().save(*args, **kwargs)


class TechAccount(PasswordMixin, SecurityDefinition):
    """A technical account: the name is the username; callers send X-Zato-User and X-Zato-Password."""

    password_hash = models.CharField(max_length=200, editable=False)

    class Meta:
        verbose_name = "technical account"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = SecurityDefinition.SecType.TECH_ACCOUNT
        self.ensure_password()
        super().save(*args, **kwargs)


header_name = RegexValidator(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", "Not a valid HTTP header name.")
API_KEY_PREFIX_LENGTH = 8
API_KEY_MIN_LENGTH = 24


class ApiKey(SecurityDefinition):
    """An API key sent in a header; stored as a short lookup prefix plus a keyed hash."""

    DEFAULT_HEADER = "X-API-Key"

    header = models.CharField(max_length=200, default=DEFAULT_HEADER, validators=[header_name],
                              help_text="The HTTP header callers send the key in.")
    key_prefix = models.CharField(max_length=API_KEY_PREFIX_LENGTH, editable=False, db_index=True,
                                  help_text="The key's first characters, to tell keys apart; not a secret.")
    key_hash = models.CharField(max_length=200, editable=False)

    class Meta:
        verbose_name = "API key"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = SecurityDefinition.SecType.API_KEY
        if not self.key_hash:
            self.set_key(crypto.random_secret())  # unusable until a key is generated or set
        super().save(*args, **kwargs)

    @staticmethod
    def generate_key() -> str:
        return "sbk_" + secrets.token_urlsafe(32)

    def set_key(self, key: str) -> None:
        if len(key) < API_KEY_MIN_LENGTH:
            raise ValidationError({"key": f"An API key must be at least {API_KEY_MIN_LENGTH} characters long."})
        self.key_prefix = key[:API_KEY_PREFIX_LENGTH]
        self.key_hash = crypto.hash_secret(key)

    def new_key(self) -> str:
        """Generate, store (hashed) and return a key: the only moment it is visible."""
        key = self.generate_key()
        self.set_key(key)
        return key


class JWTDefinition(PasswordMixin, SecurityDefinition):
    """JWT: log in with username and password once, then send the token as a Bearer credential."""

    username = models.CharField(max_length=200, unique=True,
                                help_text="What applications send to /zato/jwt/log-in; unique among JWT definitions.")
    password_hash = models.CharField(max_length=200, editable=False)
    ttl = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1)],
        help_text="Seconds a token stays valid after its last use (sliding expiry).",
    )

    class Meta:
        verbose_name = "JWT definition"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = SecurityDefinition.SecType.JWT
        self.ensure_password()
        super().save(*args, **kwargs)


class JWTSession(models.Model):
    """A live JWT session, when tokens are tracked in the database (no Redis: the embedded default).

    With Redis configured, sessions live there instead (``accounts.tokens``); either way the
    expiry is server-side, extended on every use and shared by every process.
    """

    sid = models.CharField(max_length=32, primary_key=True)
    definition = models.ForeignKey(JWTDefinition, on_delete=models.CASCADE, related_name="sessions")
    expires_at = models.FloatField(db_index=True, help_text="Unix time.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "JWT session"

    def __str__(self) -> str:
        return f"JWT session {self.sid[:8]}..."
