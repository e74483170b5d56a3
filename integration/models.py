"""Configuration of the service runtime: deployed code, REST channels and the version counter.

Every write to these models (and to the security definitions in ``accounts``) bumps
``ConfigVersion`` in the same transaction; each process compares the version with the one
its compiled snapshot was built from and rebuilds when they differ (``integration.snapshot``).
"""

from __future__ import annotations

import datetime as dt
import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F
from django.utils import timezone

from integration.channels import security
from integration.services import HTTP_VERBS
from integration.signals import config_model

RESERVED_PREFIXES = ("/admin/", "/manage/", "/zato/", "/healthz", "/metrics", "/static/")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PATH_CHARS = re.compile(r"^/[A-Za-z0-9_\-./~{}:@!$&'()*+,;=%]*$")
_ACCEPT = re.compile(r"^[A-Za-z0-9*!#$&^_.+-]+/[A-Za-z0-9*!#$&^_.+-]+$|^\*$")


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


@config_model
class ServiceModule(models.Model):
    """A Python module of services: built in, or deployed from a file whose source is kept here.

    ``source`` is the last version that imported cleanly; every process runs it. A newer
    upload that fails to import is recorded in ``last_error`` and does not replace it.
    """

    class Origin(models.TextChoices):
        BUILTIN = "builtin", "built in"
        PICKUP = "pickup", "pickup directory"
        API = "api", "management API"
        CLI = "cli", "command line"
        ADMIN = "admin", "admin upload"

    name = models.CharField(
        max_length=200, unique=True, help_text="Python module name, taken from the file name (my_api.py -> my_api)."
    )
    filename = models.CharField(max_length=500, blank=True, help_text="Where the source came from.")
    origin = models.CharField(
        max_length=20, choices=Origin.choices, default=Origin.PICKUP, help_text="How the module was last deployed."
    )
    source = models.TextField(blank=True, help_text="The deployed source code, run by every process.")
    source_hash = models.CharField(
        max_length=64, blank=True, db_index=True,
        help_text="SHA-256 of the deployed source; uploading the same source again changes nothing.",
    )
    deployed_at = models.DateTimeField(null=True, blank=True, help_text="When this source was deployed.")
    last_error = models.TextField(blank=True, help_text="Why the most recent upload was rejected, if it was.")
    last_error_at = models.DateTimeField(null=True, blank=True, help_text="When the most recent upload was rejected.")
    rejected_hash = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the rejected source, so the same broken file is not retried."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@config_model
class DeployedService(models.Model):
    """A service found in a deployed module; channels and jobs point here."""

    name = models.CharField(max_length=200, unique=True, help_text="The name channels and invokers use.")
    module = models.ForeignKey(
        ServiceModule, on_delete=models.CASCADE, related_name="services",
        help_text="The module the service's code lives in; redeploying the module updates the service.",
    )
    class_name = models.CharField(max_length=200, help_text="The Python class implementing the service.")
    deployed_at = models.DateTimeField(default=timezone.now, help_text="When the service's code was last deployed.")

    class Meta:
        ordering = ["name"]
        verbose_name = "service"
        permissions = [("invoke_service", "Can invoke services from the admin and the management API")]

    def __str__(self) -> str:
        return self.name


@config_model
class RestChannel(CleanOnSave):
    """A URL path (and optionally a method and Accept pattern) that invokes a service over HTTP."""

    class DataFormat(models.TextChoices):
        JSON = "json", "JSON"
        TEXT = "text", "plain text"
        XML = "xml", "XML"

    name = models.CharField(max_length=200, unique=True, help_text="A name for administrators; not used on the wire.")
    is_active = models.BooleanField(
        default=True, help_text="Inactive channels answer 404 'Channel inactive' without calling the service."
    )
    url_path = models.CharField(
        max_length=500,
        help_text="Path callers use, with {parameters} for variable parts, e.g. /api/user/{user_id}.",
    )
    method = models.CharField(
        max_length=10,
        blank=True,
        choices=[(verb, verb) for verb in HTTP_VERBS],
        help_text="HTTP method this channel answers. Blank: any method, and the service's handle_GET, "
        "handle_POST and so on is called to match the request's method.",
    )
    accept = models.CharField(
        max_length=200,
        blank=True,
        help_text="Accept header this channel answers, e.g. application/json or text/* ; blank = any.",
    )
    service = models.ForeignKey(
        DeployedService, on_delete=models.PROTECT, related_name="rest_channels", help_text="The service to invoke."
    )
    security = models.ForeignKey(
        "accounts.SecurityDefinition",
        # Zato's rule: deleting a definition deletes the channels that use it. The admin's
        # confirmation page and the API's 409 (unless ?cascade=true) make that visible first.
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="rest_channels",
        help_text="Who may call: blank = anyone.",
    )
    data_format = models.CharField(
        max_length=10,
        choices=DataFormat.choices,
        default=DataFormat.JSON,
        help_text="JSON bodies are parsed; plain text and XML reach the service as strings.",
    )
    merge_url_params = models.BooleanField(
        default=True,
        help_text="Merge path and query parameters into the service's input (query parameters win over path ones).",
    )
    created = models.DateTimeField(auto_now_add=True, help_text="When the channel was created.")
    updated = models.DateTimeField(auto_now=True, help_text="When the channel was last changed.")

    class Meta:
        ordering = ["name"]
        verbose_name = "REST channel"
        constraints = [
            models.UniqueConstraint(
                fields=["url_path", "method", "accept"],
                name="rest_channel_unique_route",
                violation_error_message="A channel with this URL path, method and Accept already exists.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        path = (self.url_path or "").strip()
        self.url_path = path
        problem = path_problem(path, _PATH_CHARS, "The URL path", "")
        if problem:
            errors["url_path"] = problem
        else:
            names = self.path_params
            stripped = _PARAM.sub("", path)
            if "{" in stripped or "}" in stripped:
                errors["url_path"] = "Path parameters are written {name}, with a letter or _ first."
            elif len(names) != len(set(names)):
                errors["url_path"] = "A path parameter name is used twice."
        self.accept = (self.accept or "").strip()
        for pattern in _split_accept(self.accept):
            if not _ACCEPT.match(pattern):
                errors["accept"] = f"`{pattern}` is not a media type or pattern such as application/json or text/*."
        self.method = (self.method or "").upper()
        if self.method and self.method not in HTTP_VERBS:
            errors["method"] = f"Method must be blank or one of {', '.join(HTTP_VERBS)}."
        problem = security_problem(self, security.REST)
        if problem:
            errors["security"] = problem
        if errors:
            raise ValidationError(errors)

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.url_path)


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


def _latency_bucket() -> models.BigIntegerField:
    return models.BigIntegerField(default=0)


class InvocationStat(models.Model):
    """Invocations of one service in one minute, summed over every process (``integration.metrics``).

    Each process adds what it recorded to this row every ``METRICS_FLUSH_INTERVAL`` seconds;
    the dashboard aggregates rows over its range. ``slot`` (minutes since the epoch) is the
    key: an integer divides into 15-minute or hourly bins in SQL on every database, which a
    timestamp does not. ``b00`` ... ``b21`` are the latency histogram, one column per bucket
    of ``metrics.BOUNDS_MS``, so that SQL can sum them over any range.
    """

    slot = models.BigIntegerField(help_text="Minutes since 1970-01-01 UTC: the minute this row counts.")
    minute = models.DateTimeField(help_text="The same minute as a date and time (UTC), for people.")
    service = models.CharField(max_length=200, help_text="The invoked service's name.")
    count = models.BigIntegerField(default=0, help_text="Invocations in this minute.")
    errors = models.BigIntegerField(
        default=0, help_text="Invocations that failed: an exception, or a response status of 500 or more."
    )
    total_ms = models.FloatField(default=0.0, help_text="Sum of the invocations' times, in milliseconds.")
    max_ms = models.FloatField(default=0.0, help_text="The longest invocation, in milliseconds.")
    # The latency histogram; bucket i counts times up to metrics.BOUNDS_MS[i], b21 those above 10 s.
    (b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10,
     b11, b12, b13, b14, b15, b16, b17, b18, b19, b20, b21) = (_latency_bucket() for _ in range(22))

    class Meta:
        verbose_name = "invocation statistic"
        constraints = [
            # Also the index the dashboard's range queries use (slot first).
            models.UniqueConstraint(fields=["slot", "service"], name="invocation_stat_unique_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.service} at {self.minute:%Y-%m-%d %H:%M}: {self.count} invocations"


_WS_PATH_CHARS = re.compile(r"^/[A-Za-z0-9_\-./~:@!$&'()*+,;=%]*$")
#: Largest value of a channel's whole-number limits: PostgreSQL's integer column, on every
#: database, so a channel saved on SQLite saves on PostgreSQL too.
MAX_LIMIT = 2**31 - 1
#: Largest ``max_message_size`` (64 MiB): daphne holds a whole message in memory before the
#: channel sees it, and ``manage.py serve`` raises daphne's own limit to the largest channel's.
MAX_WEBSOCKET_MESSAGE_SIZE = 64 * 1024 * 1024
_WEBSOCKET_LIMITS = {"new_token_wait_time": "seconds", "token_ttl": "seconds", "idle_timeout": "seconds",
                     "max_messages_per_second": "messages a second"}


@config_model
class WebSocketChannel(CleanOnSave):
    """A path on which WebSocket clients connect, authenticate, invoke a service and receive pushes.

    One consumer serves every channel (``integration.channels.websocket``); it finds the
    channel by path in the snapshot. Clients speak Zato's protocol or the plain JSON form
    the README documents. The limits below apply per connection.
    """

    name = models.CharField(
        max_length=200, unique=True,
        help_text="A name for administrators; services push to every client of a channel by this name.",
    )
    is_active = models.BooleanField(
        default=True,
        help_text="Inactive channels refuse new connections; deactivating one closes its open connections "
        "within a second or two.",
    )
    path = models.CharField(
        max_length=500, unique=True,
        help_text="The path clients connect to, e.g. /ws/notifications (ws://host:port/ws/notifications). "
        "Exact match, no parameters.",
    )
    service = models.ForeignKey(
        DeployedService, on_delete=models.PROTECT, related_name="websocket_channels",
        help_text="The service each request invokes, with the request's payload as its input.",
    )
    security = models.ForeignKey(
        "accounts.SecurityDefinition",
        # As for REST channels (Zato's rule): deleting a definition deletes its channels, shown first.
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="websocket_channels",
        help_text="Who may connect: blank = anyone. JWT: the client sends its token. Basic Auth, technical "
        "account, Vault: a username and password (or a Vault token). API key: the key.",
    )
    allowed_services = models.TextField(
        blank=True,
        help_text="Other services a request may name instead of the channel's own, one name per line. "
        "Requests naming any other service are refused with 403.",
    )
    new_token_wait_time = models.PositiveIntegerField(
        default=5,
        help_text="Seconds a new connection may stay without authenticating; then it is closed (code 4401). "
        "Not used on channels without security.",
    )
    token_ttl = models.PositiveIntegerField(
        default=3600,
        help_text="Zato protocol only: seconds the session token from create-session stays valid after its last "
        "use; every message carrying it extends it. A JWT's own expiry applies as well: the connection ends "
        "when the JWT expires or is logged out, whichever comes first.",
    )
    idle_timeout = models.PositiveIntegerField(
        default=300,
        help_text="Seconds without any message from the client after which the connection is closed (code 4008); "
        "0 = never. Browser clients keep a connection open by sending {\"type\": \"ping\"} now and then.",
    )
    max_message_size = models.PositiveIntegerField(
        default=64 * 1024,
        help_text="Largest message a client may send, in bytes; a larger one closes the connection (code 4009).",
    )
    max_messages_per_second = models.PositiveIntegerField(
        default=50,
        help_text="Messages one connection may send per second; over it, messages are refused with 429, and a "
        "client sending twice as many is disconnected (code 4029). 0 = no limit.",
    )
    pushes = models.TextField(
        blank=True,
        help_text="What this channel pushes to its clients, and when: documentation for administrators and "
        "client developers; not used by the platform.",
    )
    created = models.DateTimeField(auto_now_add=True, help_text="When the channel was created.")
    updated = models.DateTimeField(auto_now=True, help_text="When the channel was last changed.")

    class Meta:
        ordering = ["name"]
        verbose_name = "WebSocket channel"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        path = (self.path or "").strip()
        self.path = path
        problem = path_problem(path, _WS_PATH_CHARS, "The path", " (and no {parameters})")
        if problem:
            errors["path"] = problem
        names = self.allowed_service_names
        self.allowed_services = "\n".join(names)
        bad = [name for name in names if len(name) > 200 or any(char.isspace() for char in name)]
        if bad:
            errors["allowed_services"] = f"Not a service name: {bad[0][:50]!r}. Write one name per line."
        problem = security_problem(self, security.WEBSOCKET)
        if problem:
            errors["security"] = problem
        for field, unit in _WEBSOCKET_LIMITS.items():
            value = getattr(self, field)
            if isinstance(value, int) and value > MAX_LIMIT:
                errors[field] = f"At most {MAX_LIMIT} {unit}."
        if isinstance(self.max_message_size, int) and self.max_message_size > MAX_WEBSOCKET_MESSAGE_SIZE:
            errors["max_message_size"] = (f"At most {MAX_WEBSOCKET_MESSAGE_SIZE} bytes (64 MiB); send larger data "
                                          "over a REST channel.")
        if errors:
            raise ValidationError(errors)

    @property
    def allowed_service_names(self) -> list[str]:
        """The names in ``allowed_services``, without blanks and duplicates, in their order."""
        seen: dict[str, None] = {}
        for line in (self.allowed_services or "").splitlines():
            if line.strip():
                seen.setdefault(line.strip(), None)
        return list(seen)


class WebSocketClientQuerySet(models.QuerySet):
    def live(self) -> WebSocketClientQuerySet:
        """Rows whose server process has reported in lately; older ones belong to processes that died."""
        return self.filter(last_seen__gte=timezone.now() - websocket_client_stale_after())

    def stale(self) -> WebSocketClientQuerySet:
        return self.filter(last_seen__lt=timezone.now() - websocket_client_stale_after())


def websocket_client_stale_after() -> dt.timedelta:
    """How long a row may go without an update before it counts as gone (its process died)."""
    from django.conf import settings

    return dt.timedelta(seconds=settings.WEBSOCKET_CLIENT_UPDATE_INTERVAL * settings.WEBSOCKET_CLIENT_STALE_FACTOR)


class WebSocketClient(models.Model):
    """A connected WebSocket client, for the admin's live list (not configuration: no version bump).

    The serving process writes the row when the client has authenticated, refreshes
    ``last_seen`` of all its rows and the counters that moved every
    ``WEBSOCKET_CLIENT_UPDATE_INTERVAL`` seconds (one batch per process, not per message),
    and deletes it when the client goes. A process that dies cannot delete its rows: a row
    whose ``last_seen`` is older than ``WEBSOCKET_CLIENT_STALE_FACTOR`` intervals counts as
    gone (``WebSocketClient.objects.live()``), and every process deletes such rows now and then.
    """

    channel = models.ForeignKey(
        WebSocketChannel, on_delete=models.CASCADE, related_name="clients", help_text="The channel connected to."
    )
    client_id = models.CharField(
        max_length=64, unique=True,
        help_text="The connection's id: services push to one client by it; the disconnect action uses it.",
    )
    username = models.CharField(
        max_length=200, blank=True, help_text="Who the security definition says the client is; blank on open channels."
    )
    remote_addr = models.CharField(max_length=100, blank=True, help_text="The client's address, as the server saw it.")
    connected_at = models.DateTimeField(default=timezone.now, help_text="When the client connected.")
    last_seen = models.DateTimeField(
        default=timezone.now, db_index=True,
        help_text="When the serving process last reported this connection alive.",
    )
    messages_in = models.BigIntegerField(default=0, help_text="Messages received from the client.")
    messages_out = models.BigIntegerField(default=0, help_text="Messages sent to the client (replies and pushes).")
    server_host = models.CharField(max_length=255, blank=True, help_text="The machine serving the connection.")
    server_pid = models.IntegerField(default=0, help_text="The process serving the connection.")
    server_id = models.CharField(
        max_length=32, blank=True,
        help_text="The serving process's run (a random id): its periodic update refreshes its rows by this.",
    )

    objects = WebSocketClientQuerySet.as_manager()

    class Meta:
        ordering = ["-connected_at"]
        verbose_name = "WebSocket client"
        indexes = [
            models.Index(fields=["server_id"], name="ws_client_server_run"),
            models.Index(fields=["server_host", "server_pid"], name="ws_client_server"),
        ]

    def __str__(self) -> str:
        return f"{self.username or 'anonymous'} on {self.channel_id} ({self.client_id})"


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

    channel = models.ForeignKey(FileChannel, on_delete=models.CASCADE, related_name="claims")
    key = models.CharField(max_length=64, help_text="SHA-256 of the path, size and modification time.")
    path_key = models.CharField(max_length=64, db_index=True, help_text="SHA-256 of the path alone.")
    path = models.TextField(help_text="The file's path when it was claimed.")
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    event = models.CharField(max_length=10, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROCESSING)
    owner = models.CharField(max_length=200, help_text="host:pid of the process that claimed it.")
    cid = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-claimed_at"]
        constraints = [models.UniqueConstraint(fields=["channel", "key"], name="file_claim_unique_version")]
        indexes = [models.Index(fields=["status", "claimed_at"], name="file_claim_status")]

    def __str__(self) -> str:
        return f"{self.path} ({self.status})"


@config_model
class AMQPChannel(CleanOnSave):
    """A queue on an AMQP broker whose messages invoke a service (``integration.channels.amqp``).

    ``manage.py consume_amqp`` consumes every active channel. A message is acknowledged once its
    service succeeded; a failed one is published again to the same queue up to ``max_requeues``
    times, then to the dead-letter queue, with the error and the CID in its headers.
    """

    class DataFormat(models.TextChoices):
        JSON = "json", "JSON"
        TEXT = "text", "text (UTF-8)"
        BYTES = "bytes", "bytes, as they are"

    name = models.CharField(max_length=200, unique=True, help_text="A name for administrators.")
    is_active = models.BooleanField(default=True, help_text="Inactive channels are not consumed.")
    broker = models.ForeignKey("connections.AMQPBroker", on_delete=models.PROTECT, related_name="channels",
                               help_text="The broker the queue is on.")
    queue = models.CharField(max_length=255, help_text="The queue to consume; declared durable if missing.")
    prefetch = models.PositiveIntegerField(default=10, help_text="Unacknowledged messages a consumer holds at once.")
    consumers = models.PositiveSmallIntegerField(default=1, help_text="Consumers (threads) per consume_amqp process.")
    service = models.ForeignKey(DeployedService, on_delete=models.PROTECT, related_name="amqp_channels",
                                help_text="The service each message invokes.")
    data_format = models.CharField(
        max_length=10, choices=DataFormat.choices, default=DataFormat.JSON,
        help_text="JSON bodies are parsed (a malformed one goes straight to the dead-letter queue); text is "
        "decoded; bytes are passed as they are.",
    )
    max_requeues = models.PositiveSmallIntegerField(
        default=3, help_text="How many times a message whose service failed is put back on the queue before it "
        "goes to the dead-letter queue.",
    )
    dead_letter_queue = models.CharField(max_length=255, blank=True,
                                         help_text="Where failed messages end; empty: the queue's name + '.dead'.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "AMQP channel"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        self.queue = (self.queue or "").strip()
        if not self.queue or self.queue.startswith("amq.") or len(self.queue.encode()) > 255:
            errors["queue"] = "Give a queue name (up to 255 bytes, not starting with amq.)."
        if self.prefetch is not None and not 1 <= self.prefetch <= 65535:
            errors["prefetch"] = "1 to 65535."
        if self.consumers is not None and not 1 <= self.consumers <= 64:
            errors["consumers"] = "1 to 64."
        if (self.dead_letter_queue or self.queue) and self.dead_letter_queue.strip() == self.queue:
            errors["dead_letter_queue"] = "The dead-letter queue must be another queue."
        if errors:
            raise ValidationError(errors)

    @property
    def dead_letter_name(self) -> str:
        return self.dead_letter_queue.strip() or f"{self.queue}.dead"
