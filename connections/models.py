"""Connections to outside systems. So far: Vault, which doubles as a security definition.

A ``VaultConnection`` is a security definition (multi-table child of
``accounts.SecurityDefinition``), so a channel's ``security`` can point at it like at any
other type, and its name is unique across all types. Switchboard's own Vault token and the
client TLS key are secrets the platform must send out again, so they are stored
Fernet-encrypted (``accounts.crypto``) in fields no form edits directly; ``set_token`` and
``set_tls_client_key`` are the only ways in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from accounts import crypto
from accounts.models import SecurityDefinition
from connections import vault
from integration.channels import security

if TYPE_CHECKING:
    from connections.base import PingResult

MAX_TIMEOUT = 300
MAX_CACHE_TTL = 3600
_MOUNT_POINT_HELP = "Path Vault's {what} auth method is mounted at (vault auth enable -path=...)."


class VaultConnection(SecurityDefinition):
    """A Vault server that authenticates the callers of the channels using this definition."""

    class AuthMethod(models.TextChoices):
        # Zato's method ids, so exported configuration and chooser services read the same.
        NONE = "", "None"
        TOKEN = "token", "Token"
        USERNAME_PASSWORD = "username-password", "Username/password"
        GITHUB = "github", "GitHub"

    DEFAULT_URL = "http://localhost:8200"

    url = models.CharField(max_length=500, default=DEFAULT_URL, help_text="Where Vault listens, http:// or https://.")
    token_encrypted = models.TextField(
        blank=True, editable=False,
        help_text="Switchboard's own Vault token, Fernet-encrypted; used to look up the tokens callers present "
        "(without one, each presented token looks itself up).",
    )
    default_auth_method = models.CharField(
        max_length=30, blank=True, choices=AuthMethod.choices, default=AuthMethod.NONE,
        help_text="The Vault login every caller must use. Empty: whichever the caller sends, tried in the order "
        "token, username/password, GitHub. A chooser service, if set, decides instead.",
    )
    service_name = models.CharField(
        max_length=200, blank=True,
        help_text="A deployed service that inspects each request (headers and body) and answers which method "
        "and credentials to use. When set, it decides for every request, before the default method.",
    )
    mount_point = models.CharField(
        max_length=200, default="userpass", help_text=_MOUNT_POINT_HELP.format(what="username/password") +
        " Callers may name another with X-Zato-Vault-Mount-Point.",
    )
    github_mount_point = models.CharField(
        max_length=200, default="github", help_text=_MOUNT_POINT_HELP.format(what="GitHub")
    )
    timeout = models.FloatField(default=10.0, help_text="Seconds to wait for Vault before the caller gets a 503.")
    tls_verify = models.BooleanField(default=True, help_text="Check Vault's TLS certificate (https URLs).")
    tls_ca_cert = models.TextField(
        blank=True, help_text="PEM CA bundle to check Vault's certificate with; empty: the system's CAs."
    )
    tls_client_cert = models.TextField(
        blank=True, help_text="PEM client certificate Switchboard presents to Vault; needs the client key too."
    )
    tls_client_key_encrypted = models.TextField(
        blank=True, editable=False, help_text="The PEM client key, Fernet-encrypted."
    )
    cache_ttl = models.FloatField(
        default=5.0,
        help_text="Seconds a successful login is remembered in each process, sparing Vault a call; 0 = never. "
        "Failures are never remembered.",
    )

    class Meta:
        verbose_name = "Vault connection"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = security.sec_type_of(type(self))
        # Admin, API and imports all pass through here, so invalid rows never reach the table.
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        url = (self.url or "").strip()
        self.url = url
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            errors["url"] = "Enter an http:// or https:// URL with a host name, e.g. http://localhost:8200."
        if self.timeout is not None and not 0 < self.timeout <= MAX_TIMEOUT:
            errors["timeout"] = f"The timeout must be more than 0 and at most {MAX_TIMEOUT} seconds."
        if self.cache_ttl is not None and not 0 <= self.cache_ttl <= MAX_CACHE_TTL:
            # Longer would keep accepting a token for long after Vault revoked it.
            errors["cache_ttl"] = f"The cache time must be 0 (off) to {MAX_CACHE_TTL} seconds."
        for field in ("mount_point", "github_mount_point"):
            if not vault.valid_mount_point(getattr(self, field) or ""):
                errors[field] = "Letters, digits, '.', '_', '-' and '/' between path segments only."
        if bool(self.tls_client_cert.strip()) != bool(self.tls_client_key_encrypted):
            errors["tls_client_cert"] = "A client certificate and a client key go together: give both or neither."
        for field in ("tls_ca_cert", "tls_client_cert"):
            text = getattr(self, field).strip()
            if text and "-----BEGIN " not in text:
                errors[field] = "Paste the certificate in PEM form (-----BEGIN CERTIFICATE----- ...)."
        if errors:
            raise ValidationError(errors)

    @property
    def has_token(self) -> bool:
        return bool(self.token_encrypted)

    @property
    def has_tls_client_key(self) -> bool:
        return bool(self.tls_client_key_encrypted)

    def ping(self) -> PingResult:
        """Ask Vault's health endpoint with this connection's settings (``connections.base.Pingable``)."""
        return vault.ping(self)

    def set_token(self, token: str) -> None:
        """Store Switchboard's own Vault token (encrypted); an empty string removes it."""
        self.token_encrypted = crypto.encrypt(token) if token else ""

    def get_token(self) -> str:
        return crypto.decrypt(self.token_encrypted) if self.token_encrypted else ""

    def set_tls_client_key(self, key_pem: str) -> None:
        """Store the client TLS key (encrypted); an empty string removes it."""
        if key_pem and "-----BEGIN " not in key_pem:
            raise ValidationError({"tls_client_key": "Paste the key in PEM form (-----BEGIN PRIVATE KEY----- ...)."})
        self.tls_client_key_encrypted = crypto.encrypt(key_pem) if key_pem else ""

    def get_tls_client_key(self) -> str:
        return crypto.decrypt(self.tls_client_key_encrypted) if self.tls_client_key_encrypted else ""



# Outgoing directory and file-server connections (LDAP, SFTP, FTP): their own module, kept here for Django.
from connections.directory_models import FtpConnection, LdapConnection, SftpConnection  # noqa: E402, F401
