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
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django_otp.models import Device

from accounts import crypto, totp
from accounts.oauth_params import parse_extra_params, parse_scopes
from integration.channels import security
from integration.signals import config_model


class SecTypeField(models.CharField):
    """The type of a definition: Zato's names (``basic_auth``, ``jwt``...), its choices from the registry.

    Each subclass's ``save()`` stores its own type (``security.sec_type_of``); the choices are
    whatever types are registered now, so they stay out of migrations.
    """

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("choices", None)
        return name, path, args, kwargs


@config_model
class SecurityDefinition(models.Model):
    """A named security definition of any type; see the subclasses for the fields of each type."""

    name = models.CharField(max_length=200, unique=True, help_text="Unique across all security definition types.")
    sec_type = SecTypeField(
        max_length=30, choices=security.choices, editable=False, help_text="The kind of definition; set by its type."
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
    """Verify-only passwords: a salted, slow hash (``accounts.crypto``); unusable until an admin sets one."""

    password_hash: str

    def set_password(self, password: str) -> None:
        self.password_hash = crypto.hash_password(password)

    def ensure_password(self) -> None:
        if not self.password_hash:
            # Zato's rule: a definition starts with a password nobody knows.
            self.password_hash = crypto.unusable_password()


SLOW_HASH_HELP = (
    "A salted, slow hash of the password (Django's PASSWORD_HASHERS); the password itself is never stored."
)


class BasicAuth(PasswordMixin, SecurityDefinition):
    """HTTP Basic Auth: callers send a username and password in the Authorization header."""

    username = models.CharField(max_length=200, help_text="The username callers send.")
    password_hash = models.CharField(max_length=200, editable=False, help_text=SLOW_HASH_HELP)
    realm = models.CharField(
        max_length=200, default="Switchboard", help_text="Shown by browsers in the login prompt (WWW-Authenticate)."
    )

    class Meta:
        verbose_name = "HTTP Basic Auth definition"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = security.sec_type_of(type(self))
        self.ensure_password()
        super().save(*args, **kwargs)


class TechAccount(PasswordMixin, SecurityDefinition):
    """A technical account: the name is the username; callers send X-Zato-User and X-Zato-Password."""

    password_hash = models.CharField(max_length=200, editable=False, help_text=SLOW_HASH_HELP)

    class Meta:
        verbose_name = "technical account"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = security.sec_type_of(type(self))
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
        max_length=200, editable=False,
        help_text="A keyed hash of the key, naming the HMAC_KEYS key it was made with; the key itself is never stored.",
    )

    class Meta:
        verbose_name = "API key"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = security.sec_type_of(type(self))
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
    password_hash = models.CharField(max_length=200, editable=False, help_text=SLOW_HASH_HELP)
    ttl = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1)],
        help_text="Seconds a token stays valid after its last use (sliding expiry).",
    )

    class Meta:
        verbose_name = "JWT definition"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = security.sec_type_of(type(self))
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
    """One credential check worth auditing: the admin's **Login attempts** list.

    Admin log-ins (``kind`` admin) are recorded at every attempt, successful, failed or refused by
    throttling, at the step where they ended, and ``accounts.throttle`` counts them. Management API
    log-ins with a password are recorded the same way (refusals only logged). Failed checks of
    channel credentials, JWT log-ins and API tokens are recorded up to the failure limit of their
    window (``accounts.limits``), so an attacker cannot grow the table without bound; every refusal
    beyond it is logged instead. The reason says exactly why, even when the caller was not told.
    """

    class Kind(models.TextChoices):
        ADMIN = "admin", "Admin login"
        API = "api", "Management API"
        CHANNEL = "channel", "Channel"
        JWT_LOGIN = "jwt", "JWT log-in"

    class Stage(models.TextChoices):
        PASSWORD = "password", "Password"
        TOTP = "totp", "TOTP code"
        KEY = "key", "Key or token"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        THROTTLED = "throttled", "Throttled"

    USERNAME_LENGTH = 150
    ADDRESS_LENGTH = 64
    USER_AGENT_LENGTH = 300
    DEFINITION_LENGTH = 200
    REASON_LENGTH = 100

    when = models.DateTimeField(default=timezone.now, db_index=True, help_text="When the attempt was made.")
    kind = models.CharField(
        max_length=16, choices=Kind.choices, default=Kind.ADMIN,
        help_text="What was checked: the admin login form, the management API, a channel's security "
                  "definition, or /zato/jwt/log-in.",
    )
    definition = models.CharField(
        max_length=DEFINITION_LENGTH, blank=True,
        help_text="The security definition checked (channels, JWT log-in), or what was asked for (API token, "
                  "metrics); blank for admin logins.",
    )
    username = models.CharField(
        max_length=USERNAME_LENGTH, blank=True,
        help_text="The username as typed or sent (cut to 150 characters); it may name no account.",
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
        max_length=USER_AGENT_LENGTH, blank=True, help_text="The client's User-Agent header (cut to 300 characters).",
    )
    stage = models.CharField(
        max_length=16, choices=Stage.choices,
        help_text="How far the attempt got: the password check, the TOTP code after a correct password, or a "
                  "key or token check.",
    )
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices,
        help_text="Throttled attempts were refused before any check, after too many failures.",
    )
    reason = models.CharField(
        max_length=REASON_LENGTH, blank=True,
        help_text="Why it failed (wrong password, wrong code, replayed code, malformed code, "
                  "no TOTP device, invalid key, throttled); blank on success.",
    )

    class Meta:
        verbose_name = "login attempt"
        ordering = ["-when"]
        indexes = [
            # The admin throttle's queries: recent outcomes for one username, or for one address.
            models.Index(fields=["username", "outcome", "when"], name="loginattempt_user_idx"),
            models.Index(fields=["address", "outcome", "when"], name="loginattempt_addr_idx"),
        ]

    def __str__(self) -> str:
        kind = self.get_kind_display().lower()
        return f"{self.get_outcome_display()} {kind} of {self.username!r} from {self.address}"


class CredentialFailures(models.Model):
    """Failed credential checks of one (kind, definition or user, client address) in the current window.

    The database store of ``accounts.limits`` (the embedded default, without REDIS_URL): one row per
    key, counted by a single atomic upsert, deleted a while after its window ends.
    """

    key = models.CharField(max_length=64, primary_key=True, help_text="A hash of kind, definition and address.")
    failures = models.PositiveIntegerField(default=0, help_text="Failures since the window began.")
    window_ends = models.FloatField(db_index=True, help_text="Unix time the window (and any block) ends.")

    class Meta:
        verbose_name = "credential failure count"

    def __str__(self) -> str:
        return f"{self.failures} failures until {self.window_ends:.0f}"


API_TOKEN_PREFIX = "sbt_"  # noqa: S105 (marks what a token is, as GitHub's ghp_ does)
API_TOKEN_LOOKUP_LENGTH = 12  # "sbt_" and 8 random characters: shown in listings, not a secret
API_TOKEN_DEFAULT_DAYS = 90  # a token's life unless its maker says otherwise (0 = never expires)
API_TOKEN_MAX_DAYS = 3650


class ApiToken(models.Model):
    """A management API token: what scripts and automation send instead of a password.

    A token acts as its user, with that user's permissions, or only reads when ``read_only``.
    It is shown once, when made (``manage.py api_token create`` or the admin); only its first
    characters (the lookup prefix, healthchecks/NetBox style) and a keyed hash are stored
    (``accounts.crypto.hash_secret``). It stops working when it expires, when it is revoked,
    or when its user is deactivated or loses staff status.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens",
        help_text="The token acts as this user, with this user's permissions.",
    )
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for (a script, a CI job).")
    prefix = models.CharField(
        max_length=API_TOKEN_LOOKUP_LENGTH, unique=True, editable=False,
        help_text="The token's first characters, to find and tell tokens apart; not a secret.",
    )
    token_hash = models.CharField(
        max_length=200, editable=False, help_text="A keyed hash of the token; the token itself is never stored.",
    )
    read_only = models.BooleanField(
        default=False, help_text="A read-only token may only read: writes, deployments, invocations and job runs "
                                 "are refused (403).",
    )
    created = models.DateTimeField(auto_now_add=True, help_text="When the token was made.")
    expires = models.DateTimeField(null=True, blank=True, help_text="When the token stops working; empty: never.")
    last_used = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When the token was last accepted (written at most once a minute per process).",
    )
    revoked = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the token was revoked; it no longer works.",
    )

    class Meta:
        verbose_name = "API token"
        ordering = ["-created"]

    def __str__(self) -> str:
        label = f" ({self.name})" if self.name else ""
        return f"{self.prefix}...{label}"

    @classmethod
    def issue(cls, user: Any, *, name: str = "", days: int | None = None, read_only: bool = False) -> tuple[
            ApiToken, str]:
        """Make and save a token; returns (row, the token in clear: the only moment it exists)."""
        row = cls(user=user, name=name, read_only=read_only,
                  expires=timezone.now() + timedelta(days=days) if days else None)
        token = row.new_token()
        row.save()
        return row, token

    def new_token(self) -> str:
        """Set a new random token's prefix and hash (not saved); returns the token in clear."""
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.prefix = token[:API_TOKEN_LOOKUP_LENGTH]
        self.token_hash = crypto.hash_secret(token)
        return token

    @property
    def status(self) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= timezone.now():
            return "expired"
        return "active"

    def revoke(self) -> bool:
        """Revoke at once, in every process (each request reads the row); False if it already was."""
        now = timezone.now()
        if type(self).objects.filter(pk=self.pk, revoked__isnull=True).update(revoked=now) != 1:
            return False
        self.revoked = now
        return True


class OAuthDefinition(SecurityDefinition):
    """OAuth 2.0 client credentials (RFC 6749 §4.4) that outgoing REST and FHIR connections use to get tokens.

    Not for channels: its type is registered with no channel kinds (``channel_kinds=frozenset()``),
    so no channel may point at it. The client secret must be sent to the token server, so it is
    Fernet-encrypted (``set_secret``), never hashed; tokens live in ``accounts.oauth``'s cache only.
    """

    class CredentialsIn(models.TextChoices):
        BASIC = "basic", "HTTP Basic header (client_secret_basic)"
        FORM = "form", "Form body (client_secret_post)"

    token_url = models.CharField(max_length=500, help_text="The token endpoint, e.g. https://auth.example.com/oauth2/token.")
    client_id = models.CharField(max_length=200, help_text="The client id the token server knows Switchboard by.")
    client_secret_encrypted = models.TextField(
        blank=True, editable=False, help_text="The client secret, Fernet-encrypted; set it with Change secret.",
    )
    scopes = models.TextField(
        blank=True, help_text="The scopes connections may ask for, separated by spaces or new lines. "
        "Empty: ask for none (the token server grants its default).",
    )
    extra_params = models.TextField(
        blank=True, help_text="More token request parameters, one key=value a line (e.g. audience=https://api.example.com).",
    )
    credentials_in = models.CharField(
        max_length=10, choices=CredentialsIn.choices, default=CredentialsIn.BASIC,
        help_text="How the client id and secret reach the token server (RFC 6749 §2.3.1).",
    )
    timeout = models.FloatField(default=10.0, help_text="Seconds to wait for the token server.")
    tls_verify = models.BooleanField(default=True, help_text="Check the token server's TLS certificate.")
    tls_ca_cert = models.TextField(blank=True, help_text="PEM CA bundle for the token server; empty: the system's CAs.")

    class Meta:
        verbose_name = "OAuth definition"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = security.sec_type_of(type(self))
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.token_url and not self.token_url.lower().startswith(("http://", "https://")):
            errors["token_url"] = "Enter an http:// or https:// URL."  # noqa: S105 (a message, not a secret)
        if self.timeout is not None and not 0 < self.timeout <= 300:
            errors["timeout"] = "The timeout must be more than 0 and at most 300 seconds."
        try:
            parse_extra_params(self.extra_params)
        except ValueError as exc:
            errors["extra_params"] = str(exc)
        if self.tls_ca_cert.strip() and "-----BEGIN " not in self.tls_ca_cert:
            errors["tls_ca_cert"] = "Paste the certificate in PEM form (-----BEGIN CERTIFICATE----- ...)."
        if errors:
            raise ValidationError(errors)

    @property
    def scope_list(self) -> list[str]:
        return parse_scopes(self.scopes)

    @property
    def extra_dict(self) -> dict[str, str]:
        return parse_extra_params(self.extra_params)

    @property
    def has_secret(self) -> bool:
        return bool(self.client_secret_encrypted)

    def set_secret(self, secret: str) -> None:
        """Store the client secret (encrypted); an empty string removes it."""
        self.client_secret_encrypted = crypto.encrypt(secret) if secret else ""

    def get_secret(self) -> str:
        return crypto.decrypt(self.client_secret_encrypted) if self.client_secret_encrypted else ""

    set_password = set_secret  # the shared "change password" page and API action call it so

