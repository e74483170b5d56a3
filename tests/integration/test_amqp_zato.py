"""Zato's call shape for outgoing AMQP, ``self.outgoing.amqp.send(msg, out_name, exchange, routing_key)``,
from a deployed service to the local RabbitMQ (127.0.0.1:5672, guest/guest), next to
``self.out.amqp[name].send(...)``; and the generic ``kind_api`` hook that makes it possible.

Queues and the exchange are named after a fresh UUID and deleted afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from connections import base
from connections.amqp import OutgoingAMQP as OutgoingAMQPApi
from connections.models import AMQPBroker, OutgoingAMQP
from integration import snapshot
from integration.errors import SwitchboardError
from integration.invoke import invoke

pytestmark = pytest.mark.django_db(transaction=True)
URL = "amqp://guest:guest@127.0.0.1:5672//"

SERVICES = '''
from integration.services import Service

class ZatoSend(Service):
    """Zato 3's spelling, positional: msg, out_name, exchange, routing_key."""
    name = "amqp.zato_send"

    def handle(self):
        p = self.request.payload
        self.outgoing.amqp.send(p["msg"], p["out"], p["exchange"], p["routing_key"])

class ZatoSendProps(Service):
    """Zato's optional properties and headers, as keywords."""
    name = "amqp.zato_send_props"

    def handle(self):
        p = self.request.payload
        self.outgoing.amqp.send(p["msg"], p["out"], p["exchange"], p["routing_key"],
                                properties={"content_type": "text/csv", "correlation_id": "c-1"},
                                headers={"x-zato": "yes"})

class ByName(Service):
    """Switchboard's spelling, still working, and the lookups the facade keeps."""
    name = "amqp.by_name"

    def handle(self):
        p = self.request.payload
        self.out.amqp[p["out"]].send(p["msg"], routing_key=p["routing_key"])
        self.response.payload = {"keys": self.out.amqp.keys(), "has": p["out"] in self.out.amqp,
                                 "same": self.out.amqp.get(p["out"]) is self.outgoing.amqp[p["out"]]}
'''


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:12]
    made = {"queue": f"sb-i15b-zato-{tag}", "routed": f"sb-i15b-zato-routed-{tag}", "exchange": f"sb-i15b-ex-{tag}"}
    with Connection(URL) as conn:
        channel = conn.channel()
        Queue(made["queue"], durable=True, channel=channel).declare()
        exchange = Exchange(made["exchange"], type="direct", durable=False, channel=channel)
        exchange.declare()
        Queue(made["routed"], exchange=exchange, routing_key="orders.new", durable=True, channel=channel).declare()
    yield made
    with Connection(URL) as conn:
        for queue in (made["queue"], made["routed"]):
            Queue(queue, channel=conn.channel()).delete()
        Exchange(made["exchange"], channel=conn.channel()).delete()


@pytest.fixture
def setup(transactional_db: None, builtins: None, deploy: Any) -> AMQPBroker:
    deploy("amqp_zato_services.py", SERVICES)
    broker = AMQPBroker(name="local", host="127.0.0.1")
    broker.set_password("guest")
    broker.save()
    OutgoingAMQP.objects.create(name="out", broker=broker, app_id="switchboard")
    return broker


def get_one(queue: str) -> Any:
    with Connection(URL) as conn:
        return Queue(queue, durable=True, channel=conn.channel()).get(no_ack=True)


def test_zatos_send_publishes_through_the_named_connection_to_an_exchange(setup: AMQPBroker,
                                                                          names: dict[str, str]) -> None:
    invoke("amqp.zato_send", {"msg": {"order": 7}, "out": "out", "exchange": names["exchange"],
                              "routing_key": "orders.new"})
    message = get_one(names["routed"])
    assert message is not None, "the message did not reach the queue bound to the exchange"
    assert json.loads(message.body) == {"order": 7}
    assert message.content_type == "application/json" and message.properties["app_id"] == "switchboard"
    assert get_one(names["queue"]) is None


def test_zatos_send_to_the_default_exchange_with_properties_and_headers(setup: AMQPBroker,
                                                                         names: dict[str, str]) -> None:
    for exchange in ("", "/"):  # "/", not a valid exchange name, is the default exchange
        invoke("amqp.zato_send_props", {"msg": "a,b\n1,2\n", "out": "out", "exchange": exchange,
                                        "routing_key": names["queue"]})
        message = get_one(names["queue"])
        assert message is not None
        assert message.content_encoding == "utf-8" and message.body in ("a,b\n1,2\n", b"a,b\n1,2\n")
        assert message.content_type == "text/csv" and message.headers == {"x-zato": "yes"}
        assert message.properties["correlation_id"] == "c-1"


def test_self_out_amqp_by_name_still_works_beside_it(setup: AMQPBroker, names: dict[str, str]) -> None:
    response = invoke("amqp.by_name", {"msg": [1, 2], "out": "out", "routing_key": names["queue"]})
    assert json.loads(get_one(names["queue"]).body) == [1, 2]
    body = response.payload if hasattr(response, "payload") else response
    assert body == {"keys": ["out"], "has": True, "same": True}


def test_zatos_send_with_an_unknown_name_or_a_broker_down_is_a_clear_error(setup: AMQPBroker) -> None:
    with pytest.raises(SwitchboardError) as raised:
        invoke("amqp.zato_send", {"msg": {}, "out": "nope", "exchange": "", "routing_key": "q"})
    assert raised.value.status_code == 500 and "`nope`" in str(raised.value.details)
    down = AMQPBroker.objects.create(name="down", host="127.0.0.1", port=1, timeout=1)
    OutgoingAMQP.objects.create(name="down-out", broker=down)
    with pytest.raises(SwitchboardError) as raised:
        invoke("amqp.zato_send", {"msg": {}, "out": "down-out", "exchange": "", "routing_key": "q"})
    assert raised.value.status_code == 503 and "`down-out`" in str(raised.value.details)


def test_zatos_send_refuses_what_is_no_amqp_property(setup: AMQPBroker) -> None:
    out = snapshot.refresh().outgoing.namespace.amqp
    with pytest.raises(TypeError, match="Not AMQP message properties: exchange, no_such"):
        out.send({}, "out", "", "q", properties={"exchange": "x", "no_such": 1})


def test_the_kind_api_hook_is_generic(transactional_db: None) -> None:
    """``self.out.amqp`` is what AMQP's ``kind_api`` made; kinds without the hook get the plain view."""
    out = snapshot.refresh().outgoing.namespace
    assert isinstance(out.amqp, OutgoingAMQPApi)
    assert type(out.vault).__name__ == "Kind"  # connections.outgoing.Kind, untouched

    class Shout:
        def __init__(self, view: Any) -> None:
            self.view = view

    probe = base.ConnectionType("probe.kind", "Probe", "connections.AMQPBroker", lambda row: base.Connection(),
                                aliases=("probe_alias",), kind_api=Shout)
    base.register(probe)
    try:
        table = base.OutgoingTable.build(registered=[probe])
        namespace = table.namespace
        assert isinstance(namespace.probe.kind, Shout) and isinstance(namespace.probe_alias, Shout)
        assert namespace.probe.kind.view.keys() == []
    finally:
        base.unregister("probe.kind")
