"""The rows of outgoing connections to directories and file servers: LDAP / Active Directory, SFTP, FTP.

One model per kind on a shared abstract base (name, active flag, times, one encrypted
password). Passwords and private keys are secrets Switchboard must send out again, so they
are Fernet-encrypted (``accounts.crypto``) in fields no form edits directly: ``set_password``
and ``set_private_key`` are the only ways in, and nothing shows them back. Every model
checks itself in ``clean()`` and again in ``save()``, so the admin, the API and imports all
reject the same bad rows. The connections built from the rows live in ``connections.ldap``,
``connections.sftp`` and ``connections.ftp``; the raw-text parsers (server lists, SSH options,
host keys) live there too, next to their users.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from accounts import crypto
from connections import ftp_parsing, ldap_parsing, sftp_parsing
from connections.encrypted import EncryptedPassword
from integration.signals import config_model

MAX_TIMEOUT = 600


def _timeout_field(default: float, help_text: str) -> models.FloatField:
    return models.FloatField(default=default, validators=[MinValueValidator(0.1), MaxValueValidator(MAX_TIMEOUT)],
                             help_text=help_text)


class OutgoingConnectionBase(EncryptedPassword, models.Model):
    """What every outgoing directory or file-server connection has: a unique name, an active flag, a password."""

    name = models.CharField(max_length=200, unique=True, help_text="How services name it: self.out.<kind>[name].")
    is_active = models.BooleanField(default=True, help_text="Services cannot use an inactive connection (503).")
    password_encrypted = models.TextField(blank=True, editable=False, help_text="The password, Fernet-encrypted.")
    created = models.DateTimeField(auto_now_add=True, help_text="When the connection was created.")
    updated = models.DateTimeField(auto_now=True, help_text="When the connection was last changed.")

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Admin, API and imports all pass through here, so invalid rows never reach the table.
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)



def _pem_errors(errors: dict[str, str], field: str, text: str) -> None:
    if text.strip() and "-----BEGIN " not in text:
        errors[field] = "Paste the certificate in PEM form (-----BEGIN CERTIFICATE----- ...)."


@config_model
class LdapConnection(OutgoingConnectionBase):
    """An LDAP directory or Active Directory: a pool of servers, the first available of which answers."""

    class AuthType(models.TextChoices):
        SIMPLE = "SIMPLE", "Simple (LDAP DN and password)"
        NTLM = "NTLM", "NTLM (Active Directory, DOMAIN\\user)"
        ANONYMOUS = "ANONYMOUS", "Anonymous"

    class PoolStrategy(models.TextChoices):
        FIRST = "FIRST", "First available"
        ROUND_ROBIN = "ROUND_ROBIN", "Round robin"
        RANDOM = "RANDOM", "Random"

    class TlsMode(models.TextChoices):
        NONE = "none", "None (plain LDAP)"
        STARTTLS = "starttls", "StartTLS on the plain port"
        LDAPS = "ldaps", "LDAPS (TLS from the first byte)"

    servers = models.TextField(
        default="ldap://localhost:389",
        help_text="One server a line, host:port or ldap[s]://host:port; the first available one answers.",
    )
    pool_strategy = models.CharField(max_length=20, choices=PoolStrategy.choices, default=PoolStrategy.FIRST,
                                     help_text="Which server a new connection tries first.")
    auth_type = models.CharField(max_length=20, choices=AuthType.choices, default=AuthType.SIMPLE,
                                 help_text="NTLM for Active Directory (bind user as DOMAIN\\user).")
    username = models.CharField(
        max_length=500, blank=True, default="cn=admin,dc=example,dc=org",
        help_text="The bind user: an LDAP DN (uid=MyUser,ou=users,dc=example,dc=com) or, for NTLM, DOMAIN\\user.",
    )
    tls_mode = models.CharField(max_length=10, choices=TlsMode.choices, default=TlsMode.NONE,
                                help_text="LDAPS (port 636) or StartTLS before the bind; the servers' certificates are "
                                "checked against the CA bundle below.")
    tls_ca_cert = models.TextField(blank=True, help_text="PEM CA bundle to check the servers with; empty: the "
                                   "system's CAs.")
    tls_validate = models.BooleanField(default=True, help_text="Check the servers' TLS certificates.")
    connect_timeout = _timeout_field(10.0, "Seconds to wait for a server to accept the connection.")
    operation_timeout = _timeout_field(30.0, "Seconds to wait for the answer to one operation.")
    pool_size = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1), MaxValueValidator(500)],
                                            help_text="Bound connections kept open for services.")
    pool_exhaust_timeout = models.PositiveIntegerField(
        default=5, validators=[MaxValueValidator(3600)],
        help_text="Seconds a server that did not answer is skipped before it is tried again (0: never skipped).",
    )

    class Meta(OutgoingConnectionBase.Meta):
        verbose_name = "LDAP connection"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding and not self.password_encrypted:
            # As in Zato: a new connection's password is random until someone sets it.
            self.set_password(crypto.random_secret())
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            ldap_parsing.parse_servers(self.servers or "", self.tls_mode)
        except ValueError as exc:
            errors["servers"] = str(exc)
        if self.auth_type == self.AuthType.NTLM and not ldap_parsing.is_ntlm_user(self.username or ""):
            errors["username"] = "NTLM needs the bind user as DOMAIN\\user."
        if self.auth_type == self.AuthType.SIMPLE and not (self.username or "").strip():
            errors["username"] = "A simple bind needs a bind user (an LDAP DN)."
        _pem_errors(errors, "tls_ca_cert", self.tls_ca_cert)
        if errors:
            raise ValidationError(errors)


@config_model
class SftpConnection(OutgoingConnectionBase):
    """An SFTP server reached over SSH with paramiko; its host key must be known unless accepting is chosen."""

    host = models.CharField(max_length=255, default="localhost", help_text="The SSH server's host name or address.")
    port = models.PositiveIntegerField(default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)],
                                       help_text="The SSH server's port.")
    username = models.CharField(max_length=200, help_text="The user to log in as (with the password, the private "
                                "key, or both: the key is tried first).")
    private_key_encrypted = models.TextField(blank=True, editable=False, help_text="The private key, encrypted.")
    host_key = models.TextField(
        blank=True,
        help_text="The server's public host key(s), one a line, as ssh-keyscan or known_hosts print them "
        "(ssh-ed25519 AAAA...). Required unless unknown keys are accepted.",
    )
    accept_unknown_host_key = models.BooleanField(
        default=False, help_text="Connect to a server whose key is not listed above (each time logged as a "
        "warning with the key's fingerprint). Leaves the connection open to a man in the middle.",
    )
    preserve_metadata = models.BooleanField(default=True, help_text="Keep times and permissions on transfers.")
    bandwidth_limit = models.PositiveIntegerField(default=0, help_text="KiB/s per transfer; 0: no limit.")
    log_level = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(4)],
                                                 help_text="0 (quiet) to 4 (every protocol message).")
    ssh_options = models.TextField(
        blank=True, help_text="Extra SSH options, one Name=value a line: " + ", ".join(sftp_parsing.SSH_OPTIONS) + ".",
    )
    ping_command = models.CharField(max_length=500, default="ls .", help_text="SFTP commands a ping runs.")
    default_directory = models.CharField(max_length=1000, blank=True, help_text="Where relative paths start.")
    timeout = _timeout_field(10.0, "Seconds to wait for the server to connect or answer.")

    class Meta(OutgoingConnectionBase.Meta):
        verbose_name = "SFTP connection"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            sftp_parsing.parse_ssh_options(self.ssh_options or "")
        except ValueError as exc:
            errors["ssh_options"] = str(exc)
        try:
            keys = sftp_parsing.parse_host_keys(self.host_key or "")
        except ValueError as exc:
            errors["host_key"] = str(exc)
            keys = []
        if not keys and not self.accept_unknown_host_key and "host_key" not in errors:
            errors["host_key"] = ("Paste the server's host key (ssh-keyscan -p PORT HOST prints it), or tick "
                                  "'accept unknown host key' on purpose.")
        try:
            sftp_parsing.parse_script(self.ping_command or "")
        except ValueError as exc:
            errors["ping_command"] = str(exc)
        if not (self.host or "").strip() or any(ch.isspace() for ch in self.host.strip()):
            errors["host"] = "Enter a host name or address."
        if errors:
            raise ValidationError(errors)

    @property
    def has_private_key(self) -> bool:
        return bool(self.private_key_encrypted)

    def set_private_key(self, key_text: str) -> None:
        """Store the private key (encrypted) after checking that paramiko reads it; "" removes it."""
        if key_text:
            try:
                sftp_parsing.load_private_key(key_text)
            except ValueError as exc:
                raise ValidationError({"private_key": str(exc)}) from None
        self.private_key_encrypted = crypto.encrypt(key_text) if key_text else ""

    def get_private_key(self) -> str:
        return crypto.decrypt(self.private_key_encrypted) if self.private_key_encrypted else ""


@config_model
class FtpConnection(OutgoingConnectionBase):
    """An FTP server, or FTPS (explicit, AUTH TLS) with ``tls``."""

    host = models.CharField(max_length=255, default="localhost", help_text="The FTP server's host name or address.")
    port = models.PositiveIntegerField(default=21, validators=[MinValueValidator(1), MaxValueValidator(65535)],
                                       help_text="The FTP server's control port.")
    user = models.CharField(max_length=200, blank=True, help_text="Empty: anonymous.")
    tls = models.BooleanField(default=False, help_text="Explicit FTPS: AUTH TLS, then protected data (PROT P).")
    tls_ca_cert = models.TextField(blank=True, help_text="PEM CA bundle for FTPS; empty: the system's CAs.")
    passive = models.BooleanField(default=True, help_text="Passive mode (the client opens data connections).")
    timeout = _timeout_field(30.0, "Seconds to wait for the server to connect or answer.")
    default_directory = models.CharField(max_length=1000, blank=True, help_text="Where relative paths start.")
    pool_size = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1), MaxValueValidator(100)],
                                            help_text="Logged-in sessions kept open for services.")

    class Meta(OutgoingConnectionBase.Meta):
        verbose_name = "FTP connection"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not (self.host or "").strip() or any(ch.isspace() for ch in self.host.strip()):
            errors["host"] = "Enter a host name or address."
        if ftp_parsing.has_line_break(self.user) or ftp_parsing.has_line_break(self.default_directory):
            errors["user" if ftp_parsing.has_line_break(self.user) else "default_directory"] = (
                "Line breaks cannot be sent over FTP.")
        _pem_errors(errors, "tls_ca_cert", self.tls_ca_cert)
        if errors:
            raise ValidationError(errors)
