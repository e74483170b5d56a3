"""AMQP channels (``integration.channels.amqp``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from integration.models.base import (
    CleanOnSave,
)
from integration.models.core import DeployedService
from integration.signals import config_model


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
