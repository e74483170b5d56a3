"""AMQP channels: queues whose messages invoke a service, and the consumer (``manage.py consume_amqp``).

``AMQPTable`` (``snapshot.current().channels["amqp"]``) holds every ``AMQPChannel`` row with its
broker. ``AMQPConsumers`` runs in ``consume_amqp``: per active channel, ``consumers`` threads, each
with its own broker connection and ``prefetch`` unacknowledged messages; a changed channel (or
broker) is restarted, a removed one stopped, within ``CONFIG_POLL_INTERVAL``.

One message:

* its body is parsed by the channel's data format (JSON, UTF-8 text, bytes) and becomes the
  service's input (``self.request.payload``; the raw body is ``self.request.raw_request``);
* success: acknowledged;
* the service fails: published again to the queue with ``x-switchboard-requeues`` counted up
  (publisher confirms), then acknowledged; after ``max_requeues`` of those it goes to the
  dead-letter queue instead, with ``x-switchboard-error`` and ``x-switchboard-cid`` headers;
* a body the data format cannot parse (malformed JSON) goes to the dead-letter queue at once;
* the process dies before acknowledging: the broker gives the message to another consumer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections
from kombu import Consumer, Producer, Queue

from connections.amqp import broker_connection, describe
from connections.base import row_fingerprint
from integration import snapshot as snapshots
from integration.channels.base import BuildContext, ChannelType
from integration.cid import new_cid
from integration.errors import SwitchboardError
from integration.invoke import invoke
from integration.models import AMQPChannel
from integration.services import ChannelInfo

if TYPE_CHECKING:
    from integration.registry import ServiceInfo

KIND = "amqp"
REQUEUES = "x-switchboard-requeues"
logger = logging.getLogger("integration.amqp")


@dataclass(frozen=True)
class CompiledAMQPChannel:
    id: int
    name: str
    is_active: bool
    queue: str
    dead_letter_queue: str
    prefetch: int
    consumers: int
    data_format: str
    max_requeues: int
    service_name: str
    service: ServiceInfo | None = field(compare=False)
    broker: Any = field(compare=False)  # the AMQPBroker row
    fingerprint: str = ""  # the channel's and its broker's rows: a change restarts its consumers


class AMQPTable:
    def __init__(self, channels: list[CompiledAMQPChannel]) -> None:
        self.by_id = {channel.id: channel for channel in channels}
        self.by_name = {channel.name: channel for channel in channels}

    def __len__(self) -> int:
        return len(self.by_id)

    def active(self) -> list[CompiledAMQPChannel]:
        return [c for c in self.by_id.values() if c.is_active and c.broker.is_active]

    @classmethod
    def build(cls, context: BuildContext) -> AMQPTable:
        channels = []
        for row in AMQPChannel.objects.select_related("service", "broker"):
            channels.append(CompiledAMQPChannel(
                id=row.pk, name=row.name, is_active=row.is_active, queue=row.queue,
                dead_letter_queue=row.dead_letter_name, prefetch=row.prefetch, consumers=row.consumers,
                data_format=row.data_format, max_requeues=row.max_requeues, service_name=row.service.name,
                service=context.registry.get(row.service.name), broker=row.broker,
                fingerprint=row_fingerprint(row) + row_fingerprint(row.broker),
            ))
        return cls(channels)


class AMQPChannelType(ChannelType):
    name = KIND
    label = "AMQP"

    def build(self, context: BuildContext) -> AMQPTable:
        return AMQPTable.build(context)


class MalformedMessage(ValueError):
    """The body cannot be read in the channel's data format."""


def parse_body(body: bytes, data_format: str) -> Any:
    """The service's input from a message body; ``MalformedMessage`` saying why when it cannot be read."""
    if data_format == AMQPChannel.DataFormat.BYTES:
        return body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"The body is not UTF-8 (byte {exc.start})") from None
    if data_format == AMQPChannel.DataFormat.TEXT:
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedMessage(f"The body is not JSON: {exc}") from None


class ChannelConsumer(threading.Thread):
    """One consumer of one channel: its own broker connection, reconnecting until stopped."""

    def __init__(self, channel: CompiledAMQPChannel, number: int) -> None:
        super().__init__(name=f"amqp:{channel.name}:{number}", daemon=True)
        self.channel = channel
        self.stop_event = threading.Event()

    def run(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self._consume()
                delay = 0.5
            except Exception as exc:
                if self.stop_event.is_set():
                    break
                logger.error("AMQP channel `%s`: broker %s: %s: %s; reconnecting in %.1f s", self.channel.name,
                             describe(self.channel.broker), type(exc).__name__, exc, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)

    def _consume(self) -> None:
        channel = self.channel
        with broker_connection(channel.broker, transport_options={"confirm_publish": True}) as conn:
            conn.ensure_connection(max_retries=1)
            amqp_channel = conn.channel()
            queue = Queue(channel.queue, durable=True, channel=amqp_channel)
            queue.declare()
            Queue(channel.dead_letter_queue, durable=True, channel=amqp_channel).declare()
            self.producer = Producer(conn.channel())
            consumer = Consumer(amqp_channel, queues=[queue], on_message=self._on_message,
                                prefetch_count=channel.prefetch)
            with consumer:
                logger.info("AMQP channel `%s` consuming %s on %s", channel.name, channel.queue,
                            describe(channel.broker))
                while not self.stop_event.is_set():
                    try:
                        conn.drain_events(timeout=0.5)
                    except TimeoutError:
                        conn.heartbeat_check()

    def _on_message(self, message: Any) -> None:
        channel = self.channel
        cid = new_cid()
        body: bytes = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        headers = dict(message.headers or {})
        try:
            payload = parse_body(body, channel.data_format)
        except MalformedMessage as exc:
            logger.error("[%s] AMQP channel `%s`: %s; dead-lettered to %s", cid, channel.name, exc,
                         channel.dead_letter_queue)
            self._dead_letter(message, body, headers, str(exc), cid)
            return
        close_old_connections()
        try:
            invoke(channel.service_name, payload, channel=ChannelInfo(type=KIND, name=channel.name), cid=cid,
                   raw=body)
        except SwitchboardError as exc:
            error = f"{channel.service_name} -> {exc.status_code} {exc.details}"
            requeues = int(headers.get(REQUEUES, 0) or 0)
            if requeues < channel.max_requeues:
                logger.warning("[%s] AMQP channel `%s`: %s; requeued (%d of %d)", cid, channel.name, error,
                               requeues + 1, channel.max_requeues)
                self._publish(channel.queue, message, body, {**headers, REQUEUES: requeues + 1})
                message.ack()
            else:
                logger.error("[%s] AMQP channel `%s`: %s; dead-lettered to %s after %d requeues", cid,
                             channel.name, error, channel.dead_letter_queue, requeues)
                self._dead_letter(message, body, headers, error, cid)
            return
        message.ack()

    def _dead_letter(self, message: Any, body: bytes, headers: dict[str, Any], error: str, cid: str) -> None:
        self._publish(self.channel.dead_letter_queue, message, body,
                      {**headers, "x-switchboard-error": error[:1000], "x-switchboard-cid": cid,
                       "x-switchboard-channel": self.channel.name})
        message.ack()

    def _publish(self, queue: str, message: Any, body: bytes, headers: dict[str, Any]) -> None:
        """To a queue through the default exchange, confirmed before the original is acknowledged."""
        props = message.properties or {}
        self.producer.publish(
            body, exchange="", routing_key=queue, headers=headers,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            delivery_mode=props.get("delivery_mode", 2),
            **{k: props[k] for k in ("correlation_id", "reply_to", "message_id", "app_id") if props.get(k)},
        )


class AMQPConsumers:
    """Every active channel's consumers in this process, kept in step with the configuration."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.running: dict[int, tuple[str, list[ChannelConsumer]]] = {}

    def run(self) -> None:
        version = -1
        try:
            while not self.stop_event.is_set():
                try:
                    snap = snapshots.refresh()
                except Exception as exc:
                    logger.warning("Cannot read the configuration: %s", exc)
                    close_old_connections()
                    snap = None
                if snap is not None and snap.version != version:
                    version = snap.version
                    self.sync(snap.channels[KIND])
                self.stop_event.wait(getattr(settings, "CONFIG_POLL_INTERVAL", 0.25))
        finally:
            self.stop()

    def sync(self, table: AMQPTable) -> None:
        wanted = {channel.id: channel for channel in table.active()}
        for channel_id, (fingerprint, consumers) in list(self.running.items()):
            channel = wanted.get(channel_id)
            if channel is None or channel.fingerprint != fingerprint:
                self._stop(consumers)
                del self.running[channel_id]
        for channel_id, channel in wanted.items():
            if channel_id in self.running:
                continue
            consumers = [ChannelConsumer(channel, n) for n in range(channel.consumers)]
            for consumer in consumers:
                consumer.start()
            self.running[channel_id] = (channel.fingerprint, consumers)

    @staticmethod
    def _stop(consumers: list[ChannelConsumer]) -> None:
        for consumer in consumers:
            consumer.stop_event.set()
        deadline = time.monotonic() + 30  # a message being processed is finished and acknowledged
        for consumer in consumers:
            consumer.join(max(0.1, deadline - time.monotonic()))

    def stop(self) -> None:
        self.stop_event.set()
        for _, consumers in list(self.running.values()):
            self._stop(consumers)
        self.running.clear()
