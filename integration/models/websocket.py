"""WebSocket channels and the rows of their connected clients."""

from __future__ import annotations

import datetime as dt
import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from integration.channels import security
from integration.models.base import (
    MAX_LIMIT,
    CleanOnSave,
    path_problem,
    security_problem,
)
from integration.models.core import DeployedService
from integration.signals import config_model

_WS_PATH_CHARS = re.compile(r"^/[A-Za-z0-9_\-./~:@!$&'()*+,;=%]*$")
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
