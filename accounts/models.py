"""Security definitions: reusable descriptions of who may call a channel.

``SecurityDefinition`` holds what every type shares (name, type, active flag); each type
is a subclass in its own table (multi-table inheritance), so a channel's ``security`` is
one foreign key whatever the type, and names are unique across types, which lets the
management API refer to a definition by name alone.

Admin logins have their models at the end: ``TOTPDevice`` (the second factor) and
``LoginAttempt`` (the audit list that throttling counts).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django_otp.models import Device

from accounts import crypto, totp
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
    sec_type = models.CharField(
        max_length=30, choices=SecType.choices, editable=False, help_text="The kind of definition; set by its type."
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive definitions reject every caller of the channels that use them."
    )
    created = models.DateTimeField(auto_now_add=True, help_text="When the definition was created.")
    updated = models.DateTimeField(auto_now=True, help_text="When the definition was last changed.")

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

    password_hash = models.CharField(
        max_length=200, editable=False, help_text="A keyed hash of the password; the password itself is never stored."
    )

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
    key_hash = models.CharField(
        max_length=200, editable=False, help_text="A keyed hash of the key; the key itself is never stored."
    )

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


JWT_MAX_TTL = 2**31 - 1


class JWTDefinition(PasswordMixin, SecurityDefinition):
    """JWT: log in with username and password once, then send the token as a Bearer credential."""

    username = models.CharField(max_length=200, unique=True,
                                help_text="What applications send to /zato/jwt/log-in; unique among JWT definitions.")
    password_hash = models.CharField(
        max_length=200, editable=False, help_text="A keyed hash of the password; the password itself is never stored."
    )
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

    def clean(self) -> None:
        # PostgreSQL's bound on every database: a TTL accepted on SQLite then works on PostgreSQL and in Redis.
        if isinstance(self.ttl, int) and self.ttl > JWT_MAX_TTL:
            raise ValidationError({"ttl": f"At most {JWT_MAX_TTL} seconds (about 68 years)"})


class JWTSession(models.Model):
    """A live JWT session, when tokens are tracked in the database (no Redis: the embedded default).

    With Redis configured, sessions live there instead (``accounts.tokens``); either way the
    expiry is server-side, extended on every use and shared by every process.
    """

    sid = models.CharField(max_length=32, primary_key=True, help_text="The session id carried inside the token.")
    definition = models.ForeignKey(
        JWTDefinition, on_delete=models.CASCADE, related_name="sessions",
        help_text="The JWT definition the token was issued for.",
    )
    expires_at = models.FloatField(
        db_index=True, help_text="Unix time the session ends unless used again (each use extends it)."
    )
    created = models.DateTimeField(auto_now_add=True, help_text="When the token was issued.")

    class Meta:
        verbose_name = "JWT session"

    def __str__(self) -> str:
        return f"JWT session {self.sid[:8]}..."


class TOTPDevice(Device):
    """A TOTP authenticator app (Google Authenticator, Authy, FreeOTP) that a user logs in to the admin with.

    RFC 6238 with the parameters every app understands: SHA1, 6 digits, 30-second steps. The key
    is Fernet-encrypted at rest (``accounts.crypto``). A code is accepted at most once: the step it
    belongs to is claimed by one conditional UPDATE, so two requests racing with the same code
    cannot both win, whatever the number of processes.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_devices",
        help_text="The admin user who logs in with codes from this app.",
    )
    name = models.CharField(
        max_length=64, default="Authenticator app",
        help_text="A label to tell this user's devices apart; not shown at login.",
    )
    confirmed = models.BooleanField(
        default=True,
        help_text="Only confirmed devices are accepted at login. A key being enrolled on the "
                  "Two-factor authentication page stays unconfirmed until its first valid code.",
    )
    encrypted_key = models.TextField(
        editable=False, help_text="The shared secret, encrypted with FERNET_KEYS; never shown again.",
    )
    last_t = models.BigIntegerField(
        default=-1, editable=False,
        help_text="Time step (Unix time / 30) of the last accepted code: codes from that step or "
                  "earlier are refused, so each code works once.",
    )
    created = models.DateTimeField(auto_now_add=True, help_text="When this key was set.")

    class Meta:
        verbose_name = "TOTP device"
        ordering = ["user_id", "-created"]

    @property
    def key(self) -> bytes:
        """The shared secret, decrypted (raises ``ValueError`` when FERNET_KEYS cannot decrypt it)."""
        return totp.parse_base32(crypto.decrypt(self.encrypted_key), min_bytes=1)

    def set_key(self, key: bytes) -> None:
        self.encrypted_key = crypto.encrypt(totp.key_to_base32(key))

    def check_code(self, code: str, at: float | None = None) -> totp.Verdict:
        """Check ``code`` and consume it: the verdict says why a code was refused, for the audit list.

        At most one step of clock drift either way is accepted. The winning step is claimed with
        ``UPDATE ... WHERE pk = X AND last_t < step``: the database serialises racing requests on
        the row, and only the one whose UPDATE changes it (rowcount 1) is accepted.
        """
        normalised = totp.normalise_code(code)
        if normalised is None:
            return totp.Verdict.MALFORMED
        step = totp.matching_step(self.key, normalised, totp.clock() if at is None else at)
        if step is None:
            return totp.Verdict.WRONG
        claimed = type(self).objects.filter(pk=self.pk, last_t__lt=step).update(last_t=step)
        if claimed != 1:
            return totp.Verdict.REPLAYED
        self.last_t = step
        return totp.Verdict.ACCEPTED

    def verify_token(self, token: object) -> bool:
        """django-otp's interface (used by its forms and ``django_otp.verify_token``)."""
        return self.check_code(str(token)) is totp.Verdict.ACCEPTED

    @property
    def last_used(self) -> datetime | None:
        """Start of the time step of the last accepted code (None before the first one)."""
        if self.last_t < 0:
            return None
        return datetime.fromtimestamp(self.last_t * totp.STEP, tz=UTC)


class LoginAttempt(models.Model):
    """One admin log-in attempt: the audit list, and what throttling counts (``accounts.throttle``).

    Rows are written for every attempt, successful, failed or refused by throttling, at the step
    where it ended. The reason says exactly why, even when the login page deliberately does not.
    """

    class Stage(models.TextChoices):
        PASSWORD = "password", "Password"
        TOTP = "totp", "TOTP code"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        THROTTLED = "throttled", "Throttled"

    USERNAME_LENGTH = 150
    ADDRESS_LENGTH = 64
    USER_AGENT_LENGTH = 300

    when = models.DateTimeField(default=timezone.now, db_index=True, help_text="When the attempt was made.")
    username = models.CharField(
        max_length=USERNAME_LENGTH, blank=True,
        help_text="The username as typed (cut to 150 characters); it may name no account.",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The account the username belongs to, when there is one.",
    )
    address = models.CharField(
        max_length=ADDRESS_LENGTH, blank=True,
        help_text="The client's IP address (the right-most X-Forwarded-For entry when "
                  "TRUST_X_FORWARDED_FOR is on).",
    )
    user_agent = models.CharField(
        max_length=USER_AGENT_LENGTH, blank=True, help_text="The browser's User-Agent header (cut to 300 characters).",
    )
    stage = models.CharField(
        max_length=16, choices=Stage.choices,
        help_text="How far the attempt got: the password check, or the TOTP code after a correct password.",
    )
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices,
        help_text="Throttled attempts were refused before any check, after too many failures.",
    )
    reason = models.CharField(
        max_length=100, blank=True,
        help_text="Why it failed (wrong password, wrong code, replayed code, malformed code, "
                  "no TOTP device, throttled); blank on success.",
    )

    class Meta:
        verbose_name = "login attempt"
        ordering = ["-when"]
        indexes = [
            # The throttle's queries: recent outcomes for one username, or for one address.
            models.Index(fields=["username", "outcome", "when"], name="loginattempt_user_idx"),
            models.Index(fields=["address", "outcome", "when"], name="loginattempt_addr_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} login of {self.username!r} from {self.address}"
