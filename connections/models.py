"""Connections to outside systems: Vault (which doubles as a security definition), REST, HL7 FHIR and AMQP.

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
from accounts.oauth_params import parse_scopes
from connections import rest, vault
from connections.encrypted import EncryptedPassword
from connections.http_common import parse_header_lines
from integration.channels import security
from integration.signals import config_model

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



@config_model
class AMQPBroker(EncryptedPassword, models.Model):
    """A RabbitMQ (AMQP 0-9-1) broker: used by AMQP channels (consuming) and outgoing AMQP (publishing)."""

    name = models.CharField(max_length=200, unique=True, help_text="A name for administrators.")
    is_active = models.BooleanField(default=True, help_text="Inactive brokers are not connected to.")
    host = models.CharField(max_length=255, default="127.0.0.1", help_text="The broker's host name or address.")
    port = models.PositiveIntegerField(default=5672, help_text="5672 for AMQP, usually 5671 with TLS.")
    vhost = models.CharField(max_length=255, default="/", verbose_name="virtual host",
                             help_text="The virtual host, / by default.")
    username = models.CharField(max_length=255, default="guest", help_text="The user to log in as.")
    password_encrypted = models.TextField(blank=True, editable=False, help_text="The password, Fernet-encrypted.")
    tls = models.BooleanField(default=False, help_text="Connect over TLS.")
    tls_verify = models.BooleanField(default=True, help_text="Check the broker's certificate (with TLS).")
    tls_ca_cert = models.TextField(blank=True, help_text="PEM CA bundle for the broker's certificate; empty: the "
                                   "system's CAs.")
    heartbeat = models.PositiveIntegerField(default=30, help_text="Seconds between AMQP heartbeats; 0 = off.")
    timeout = models.FloatField(default=10.0, help_text="Seconds to wait when connecting and publishing.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "AMQP broker connection"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors = {}
        self.host = (self.host or "").strip()
        if not self.host or any(c in self.host for c in " /\\@"):
            errors["host"] = "Give a host name or an address."
        if self.port is not None and not 0 < self.port < 65536:
            errors["port"] = "A port is 1 to 65535."
        if self.timeout is not None and not 0 < self.timeout <= MAX_TIMEOUT:
            errors["timeout"] = f"More than 0 and at most {MAX_TIMEOUT} seconds."
        if self.tls_ca_cert.strip() and "-----BEGIN " not in self.tls_ca_cert:
            errors["tls_ca_cert"] = "Paste the certificate in PEM form (-----BEGIN CERTIFICATE----- ...)."
        if errors:
            raise ValidationError(errors)

    def ping(self) -> PingResult:
        from connections.amqp import ping_broker

        return ping_broker(self)


@config_model
class OutgoingAMQP(models.Model):
    """A named publisher services use: ``self.out.amqp["name"].send(data, exchange=..., routing_key=...)``."""

    class DeliveryMode(models.IntegerChoices):
        NON_PERSISTENT = 1, "non-persistent"
        PERSISTENT = 2, "persistent"

    name = models.CharField(max_length=200, unique=True, help_text="How services name it: self.out.amqp[name].")
    is_active = models.BooleanField(default=True, help_text="Sending through an inactive one is a 503.")
    broker = models.ForeignKey(AMQPBroker, on_delete=models.PROTECT, related_name="outgoing",
                               help_text="The broker to publish to.")
    exchange = models.CharField(max_length=255, blank=True, help_text="Default exchange; empty: the default "
                                "exchange (routing key = queue name).")
    routing_key = models.CharField(max_length=255, blank=True, help_text="Default routing key.")
    delivery_mode = models.PositiveSmallIntegerField(choices=DeliveryMode.choices, default=DeliveryMode.PERSISTENT,
                                                     help_text="Persistent messages survive a broker restart.")
    priority = models.PositiveSmallIntegerField(default=5, help_text="Message priority, 0 to 9.")
    content_type = models.CharField(max_length=100, blank=True, help_text="Content type for text and bytes; "
                                    "dicts and lists are always sent as application/json.")
    expiration = models.PositiveIntegerField(null=True, blank=True, help_text="Message TTL in milliseconds; "
                                             "empty: none.")
    app_id = models.CharField(max_length=200, blank=True, help_text="The app_id property of each message.")
    pool_size = models.PositiveSmallIntegerField(default=4, help_text="Broker connections kept per process.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "outgoing AMQP connection"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors = {}
        if self.priority is not None and self.priority > 9:
            errors["priority"] = "0 to 9."
        if self.pool_size is not None and not 1 <= self.pool_size <= 100:
            errors["pool_size"] = "1 to 100."
        if errors:
            raise ValidationError(errors)

    def ping(self) -> PingResult:
        from connections.amqp import ping_broker

        return ping_broker(self.broker)


# --- Outgoing HTTP connections: REST and HL7 FHIR (connections.rest, connections.fhir) ------------------

HTTP_MAX_TIMEOUT = 300


class OutgoingHttpBase(EncryptedPassword, models.Model):
    """What outgoing REST and FHIR connections share: name, address, security, timeout and TLS.

    Basic passwords and API keys are stored here, Fernet-encrypted: channels' Basic Auth and API
    key definitions keep only hashes (they verify callers), while these must be sent out.
    OAuth points at an ``accounts.OAuthDefinition``; deleting it deletes its connections, as in
    Zato (the management API asks for ``?cascade=true`` first).
    """

    class AuthType(models.TextChoices):
        NONE = "", "None"
        BASIC = "basic", "HTTP Basic Auth"
        APIKEY = "apikey", "API key"
        OAUTH = "oauth", "OAuth client credentials"

    name = models.CharField(max_length=200, unique=True, help_text="How services name it: self.out.<kind>[name].")
    is_active = models.BooleanField(default=True, help_text="Services calling an inactive connection get a 503.")
    auth_type = models.CharField(max_length=10, blank=True, choices=AuthType.choices, default=AuthType.NONE,
                                 help_text="How Switchboard identifies itself to the server.")
    username = models.CharField(max_length=200, blank=True, help_text="For HTTP Basic Auth.")
    password_encrypted = models.TextField(
        blank=True, editable=False, help_text="The Basic Auth password or the API key, Fernet-encrypted.",
    )
    oauth = models.ForeignKey(
        "accounts.OAuthDefinition", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="For OAuth: the client-credentials definition tokens are asked for with.",
    )
    oauth_scopes = models.TextField(
        blank=True, help_text="For OAuth: the scopes to ask for, a subset of the definition's; empty: all of them.",
    )
    timeout = models.FloatField(default=10.0, help_text="Seconds to wait for the server (connect and each read).")
    tls_verify = models.BooleanField(default=True, help_text="Check the server's TLS certificate (https).")
    tls_ca_cert = models.TextField(blank=True, help_text="PEM CA bundle for the server; empty: the system's CAs.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        address = (self.address_value() or "").strip()
        try:
            parts = urlsplit(address)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            errors[self.address_field] = "Enter an http:// or https:// URL with a host name, e.g. https://api.example.com."
        elif parts.query or parts.fragment:
            errors[self.address_field] = "The address takes no query string or fragment."
        if self.timeout is not None and not 0 < self.timeout <= HTTP_MAX_TIMEOUT:
            errors["timeout"] = f"The timeout must be more than 0 and at most {HTTP_MAX_TIMEOUT} seconds."
        if self.auth_type == self.AuthType.OAUTH:
            if self.oauth_id is None:
                errors["oauth"] = "Choose the OAuth definition to get tokens with."
            else:
                allowed = set(self.oauth.scope_list)
                extra = [s for s in self.scope_list if s not in allowed]
                if extra and allowed:
                    errors["oauth_scopes"] = f"Not among the definition's scopes: {' '.join(extra)}."
        elif self.oauth_id is not None:
            errors["oauth"] = "An OAuth definition is used only with the OAuth security type."
        if self.auth_type == self.AuthType.BASIC and not self.username:
            errors["username"] = "HTTP Basic Auth needs a username."
        if self.tls_ca_cert.strip() and "-----BEGIN " not in self.tls_ca_cert:
            errors["tls_ca_cert"] = "Paste the certificate in PEM form (-----BEGIN CERTIFICATE----- ...)."
        errors.update(self.clean_more())
        if errors:
            raise ValidationError(errors)

    address_field = "address"

    def address_value(self) -> str:
        return getattr(self, self.address_field)

    def clean_more(self) -> dict[str, str]:
        return {}

    @property
    def scope_list(self) -> list[str]:
        return parse_scopes(self.oauth_scopes)



class HttpConnectionManager(models.Manager):
    """Rows with their OAuth definition: the snapshot fingerprints both without a query per row."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().select_related("oauth")


@config_model
class OutgoingRest(OutgoingHttpBase):
    """An outgoing REST connection: ``self.out.rest[name].conn.get(self.cid, params)`` (``connections.rest``)."""

    class DataFormat(models.TextChoices):
        JSON = "json", "JSON"
        RAW = "raw", "Raw (bytes and text as they are)"

    address = models.CharField(
        max_length=500, help_text="Scheme, host, port and base path: https://api.example.com:8443/v2.",
    )
    url_path = models.CharField(
        max_length=500, blank=True, help_text="Appended to the address; {name} placeholders are filled from the "
        "call's params, the rest go to the query string: /customers/{cust_id}.",
    )
    data_format = models.CharField(max_length=10, choices=DataFormat.choices, default=DataFormat.JSON,
                                   help_text="JSON: dict bodies sent as JSON, answers parsed.")
    default_headers = models.TextField(blank=True, help_text="Sent with every call, one Name: value a line.")
    api_key_header = models.CharField(max_length=200, blank=True, default="X-API-Key",
                                      help_text="For API keys: the header the key is sent in.")
    pool_size = models.PositiveIntegerField(default=20, help_text="Sockets kept open to the server, per process.")
    ping_method = models.CharField(max_length=10, default="HEAD", help_text="The HTTP method a ping sends.")
    ping_path = models.CharField(max_length=500, default="/", help_text="Where a ping goes, below the address.")

    objects = HttpConnectionManager()

    class Meta(OutgoingHttpBase.Meta):
        verbose_name = "outgoing REST connection"

    def clean_more(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        try:
            parse_header_lines(self.default_headers)
        except ValueError as exc:
            errors["default_headers"] = str(exc)
        if self.url_path and not self.url_path.startswith("/"):
            errors["url_path"] = "Start the URL path with /."
        if any(ch in self.url_path for ch in " ?#\r\n"):
            errors["url_path"] = "The URL path takes no spaces, query string or fragment: params fill the query."
        if self.auth_type == self.AuthType.APIKEY and not self.api_key_header:
            errors["api_key_header"] = "Name the header the API key is sent in."
        if not 1 <= (self.pool_size or 0) <= 1000:
            errors["pool_size"] = "From 1 to 1000 sockets."
        if self.ping_method.upper() not in ("HEAD", "GET", "OPTIONS", "POST"):
            errors["ping_method"] = "HEAD, GET, OPTIONS or POST."
        return errors

    def ping(self) -> PingResult:
        return rest.ping_row(self)


@config_model
class OutgoingFhir(OutgoingHttpBase):
    """An HL7 FHIR server: ``with self.out.hl7.fhir[name].conn.client() as client`` (fhirpy; ``connections.fhir``)."""

    address = models.CharField(max_length=500, help_text="The FHIR base URL: https://fhir.example.com/r4.")

    objects = HttpConnectionManager()

    class Meta(OutgoingHttpBase.Meta):
        verbose_name = "outgoing HL7 FHIR connection"

    def clean_more(self) -> dict[str, str]:
        if self.auth_type == self.AuthType.APIKEY:
            return {"auth_type": "FHIR connections use None, HTTP Basic Auth or OAuth."}
        return {}

    def ping(self) -> PingResult:
        from connections import fhir  # fhirpy is imported only where FHIR is used (connections.apps)

        return fhir.ping_row(self)
# Outgoing directory and file-server connections (LDAP, SFTP, FTP): their own module, kept here for Django.
from connections.directory_models import FtpConnection, LdapConnection, SftpConnection  # noqa: E402, F401
