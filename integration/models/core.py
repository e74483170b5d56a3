"""Deployed code, REST channels and invocation statistics."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from integration.channels import security
from integration.models.base import (
    _ACCEPT,
    _PARAM,
    _PATH_CHARS,
    CleanOnSave,
    _split_accept,
    path_problem,
    security_problem,
)
from integration.services import HTTP_VERBS
from integration.signals import config_model


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
