"""AMQP (RabbitMQ) through kombu: broker connections, ping, and outgoing AMQP for services.

``broker_connection(broker)`` is the one place a kombu ``Connection`` is made from an
``AMQPBroker`` row (the password decrypted only here); AMQP channels consume through it too.

Outgoing: ``self.out.amqp["name"].send(data, exchange=..., routing_key=..., headers=...)``
publishes with publisher confirms: ``send`` returns once the broker has confirmed the message
and raises ``ServiceUnavailable`` (503, naming the connection) when it could not (broker down,
message refused). A dict or list is sent as JSON, ``str`` as UTF-8 text, ``bytes`` as they are.
Each process keeps ``pool_size`` broker connections per outgoing connection.

Zato's call shape works too: ``self.outgoing.amqp.send(data, "name", "exchange", "routing-key")``
(Zato 3: ``send(msg, out_name, exchange, routing_key, properties=None, headers=None)``), through
``OutgoingAMQP``, the ``kind_api`` this type registers (``self.out.amqp[name]`` is unchanged).
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from kombu import Connection as KombuConnection
from kombu import Producer

from connections.base import Connection, PingResult, row_fingerprint, timed
from integration.errors import ServiceUnavailable

KIND = "amqp"
#: What Zato's ``properties`` may hold: AMQP 0-9-1's basic properties (headers apart).
BASIC_PROPERTIES = frozenset({"content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                              "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id"})


def broker_connection(broker: Any, **options: Any) -> KombuConnection:
    """A kombu connection (not yet connected) to the broker of an ``AMQPBroker`` row."""
    ssl_option: Any = False
    if broker.tls:
        context = ssl.create_default_context(cadata=broker.tls_ca_cert.strip() or None)
        if not broker.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        ssl_option = context  # py-amqp takes an SSLContext
    return KombuConnection(
        hostname=broker.host, port=broker.port, userid=broker.username, password=broker.get_password(),
        virtual_host=broker.vhost or "/", ssl=ssl_option, heartbeat=broker.heartbeat or 0,
        connect_timeout=broker.timeout, transport="pyamqp", **options,
    )


def describe(broker: Any) -> str:
    vhost = broker.vhost if broker.vhost.startswith("/") else "/" + broker.vhost
    return f"amqp{'s' if broker.tls else ''}://{broker.host}:{broker.port}{vhost}"


def ping_broker(broker: Any) -> PingResult:
    """Connect and log in; the broker's product and version on success, the exact reason otherwise."""

    def check() -> tuple[bool, str]:
        conn = broker_connection(broker)
        try:
            conn.connect()
            props = conn.connection.server_properties or {}
            return True, f"{props.get('product', 'AMQP broker')} {props.get('version', '')}".strip()
        except Exception as exc:
            return False, f"cannot connect to {describe(broker)}: {type(exc).__name__}: {exc}"
        finally:
            conn.release()

    return timed(check)


def encode(data: Any, content_type: str = "") -> tuple[bytes, str]:
    """The body and content type a message of ``data`` is sent with."""
    if isinstance(data, bytes):
        return data, content_type or "application/octet-stream"
    if isinstance(data, str):
        return data.encode("utf-8"), content_type or "text/plain"
    return json.dumps(data, separators=(",", ":")).encode("utf-8"), "application/json"


class OutgoingAMQPConnection(Connection):
    """``self.out.amqp[name]``: publishes with publisher confirms, over a small pool of broker connections."""

    kind = KIND

    def __init__(self, row: Any) -> None:
        broker = row.broker
        self.name = row.name
        self.is_active = row.is_active and broker.is_active
        self.broker_name = broker.name
        self.where = describe(broker)
        self.exchange = row.exchange
        self.routing_key = row.routing_key
        self.delivery_mode = row.delivery_mode
        self.priority = row.priority
        self.content_type = row.content_type
        self.expiration = row.expiration
        self.app_id = row.app_id
        self.timeout = broker.timeout
        self._broker = broker
        self._connection = broker_connection(broker, transport_options={"confirm_publish": True})
        self.pool = self._connection.Pool(limit=row.pool_size)

    @classmethod
    def from_row(cls, row: Any) -> OutgoingAMQPConnection:
        return cls(row)

    @staticmethod
    def fingerprint(row: Any) -> str:
        """The row's and its broker's fields: editing the broker rebuilds the publisher too."""
        return row_fingerprint(row) + row_fingerprint(row.broker)

    def send(self, data: Any, exchange: str | None = None, routing_key: str | None = None,
             headers: dict[str, Any] | None = None, **properties: Any) -> None:
        """Publish one message and wait for the broker's confirmation."""
        body, content_type = encode(data, self.content_type)
        content_type = properties.pop("content_type", None) or content_type
        content_encoding = properties.pop("content_encoding", None) or (
            "binary" if content_type == "application/octet-stream" else "utf-8")
        props: dict[str, Any] = {"delivery_mode": self.delivery_mode, "priority": self.priority}
        if self.expiration:
            props["expiration"] = str(self.expiration)
        if self.app_id:
            props["app_id"] = self.app_id
        props.update(properties)
        try:
            with self.pool.acquire(block=True, timeout=self.timeout) as conn:
                producer = Producer(conn.default_channel)
                producer.publish(
                    body, exchange=self.exchange if exchange is None else exchange,
                    routing_key=self.routing_key if routing_key is None else routing_key,
                    headers=headers or {}, content_type=content_type, content_encoding=content_encoding,
                    retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
                    timeout=self.timeout,
                    **props,
                )
        except Exception as exc:
            raise ServiceUnavailable(
                f"Outgoing amqp connection `{self.name}` could not publish to {self.where}: "
                f"{type(exc).__name__}: {exc}") from None

    def ping(self) -> PingResult:
        return ping_broker(self._broker)

    def send_zato(self, msg: Any, exchange: str | None = None, routing_key: str | None = None,
                  properties: dict[str, Any] | None = None, headers: dict[str, Any] | None = None,
                  **kwargs: Any) -> None:
        """``send`` with Zato's arguments: ``properties`` a dict of AMQP properties (``content_type``
        overrides the encoding's; the others as ``send`` takes them); ``/`` as the exchange (not a
        valid exchange name in AMQP 0-9-1) is the default exchange."""
        props = {**(properties or {}), **kwargs}
        in_properties = props.pop("headers", None)
        unknown = sorted(set(props) - BASIC_PROPERTIES)
        if unknown:
            raise TypeError(f"Not AMQP message properties: {', '.join(map(str, unknown))[:300]}")
        headers = headers if headers is not None else in_properties
        if exchange == "/":
            exchange = ""
        self.send(msg, exchange=exchange, routing_key=routing_key, headers=headers, **props)

    def close(self) -> None:
        try:
            self.pool.force_close_all()
        finally:
            self._connection.release()


class OutgoingAMQP:
    """``self.out.amqp`` (the ``kind_api`` of this type): the connections by name, and Zato's ``send``.

    ``self.out.amqp[name]``, ``.get(name)``, ``name in``, ``.keys()`` are the plain view's;
    ``send(msg, out_name, exchange, routing_key, properties=None, headers=None)`` is Zato 3's
    ``self.outgoing.amqp.send``: the connection named ``out_name`` publishes ``msg`` (confirmed),
    the connection's default exchange and routing key when those are ``None``.
    """

    __slots__ = ("_view",)

    def __init__(self, view: Any) -> None:
        self._view = view

    def __getitem__(self, name: str) -> Any:
        return self._view[name]

    def get(self, name: str) -> Any:
        return self._view.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._view

    def keys(self) -> list[str]:
        return self._view.keys()

    def send(self, msg: Any, out_name: str, exchange: str | None = None, routing_key: str | None = None,
             properties: dict[str, Any] | None = None, headers: dict[str, Any] | None = None,
             **kwargs: Any) -> None:
        self._view[out_name].send_zato(msg, exchange, routing_key, properties, headers, **kwargs)

    def __repr__(self) -> str:
        return repr(self._view)
