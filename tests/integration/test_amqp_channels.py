"""AMQP channels and outgoing AMQP on the local RabbitMQ (127.0.0.1:5672, guest/guest).

Each test uses queues named after a fresh UUID, so parallel tests never share one, and
deletes them afterwards. The consumer is a real ``manage.py consume_amqp`` process on the
test's database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Queue

from connections.models import AMQPBroker, OutgoingAMQP
from integration.invoke import invoke
from integration.models import AMQPChannel, DeployedService
from tests.integration.file_helpers import read_log, watcher_env
from tests.servers.procs import REPO_ROOT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
URL = "amqp://guest:guest@127.0.0.1:5672//"

SERVICES = '''
import json, os, time
from integration.services import Service

class Record(Service):
    name = "amqp.record"

    def handle(self):
        payload = self.request.payload
        if isinstance(payload, dict) and payload.get("fail"):
            raise ValueError("asked to fail")
        if isinstance(payload, dict) and payload.get("slow_once") and not os.path.exists(%(marker)r):
            open(%(marker)r, "w").write(str(os.getpid()))
            time.sleep(60)  # killed in here
        with open(%(log)r, "a") as log:
            log.write(json.dumps({"payload": payload if not isinstance(payload, bytes) else payload.hex(),
                                  "pid": os.getpid(), "cid": self.cid, "type": self.channel.type}) + "\\n")

class Publish(Service):
    name = "amqp.publish"

    def handle(self):
        self.out.amqp["out"].send(self.request.payload, routing_key=self.request.payload["queue"],
                                  headers={"x-test": "yes"})
'''


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = f"sb-i15-{uuid.uuid4().hex[:12]}"
    yield name
    with Connection(URL) as conn:
        channel = conn.channel()
        for queue in (name, f"{name}.dead"):
            try:
                Queue(queue, channel=channel).delete()
            except Exception:
                channel = conn.channel()


@pytest.fixture
def setup(transactional_db: None, builtins: None, deploy: Any, tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "service.log"
    deploy("amqp_services.py", SERVICES % {"log": str(log), "marker": str(tmp_path / "marker")})
    broker = AMQPBroker(name="local", host="127.0.0.1")
    broker.set_password("guest")
    broker.save()
    return {"log": log, "tmp": tmp_path, "broker": broker}


def make_channel(setup: dict[str, Any], queue: str, **fields: Any) -> AMQPChannel:
    return AMQPChannel.objects.create(name=fields.pop("name", "orders"), broker=setup["broker"], queue=queue,
                                      service=DeployedService.objects.get(name="amqp.record"), **fields)


def publish(queue: str, body: Any, **options: Any) -> None:
    with Connection(URL) as conn:
        Queue(queue, durable=True, channel=conn.channel()).declare()
        producer = conn.Producer()
        data = json.dumps(body) if not isinstance(body, (bytes, str)) else body
        producer.publish(data, routing_key=queue, content_type="application/json", content_encoding="utf-8",
                         **options)


def get_one(queue: str) -> Any:
    with Connection(URL) as conn:
        message = Queue(queue, durable=True, channel=conn.channel()).get(no_ack=True)
        return message


def queue_depth(queue: str) -> int:
    with Connection(URL) as conn:
        return Queue(queue, durable=True, channel=conn.channel()).queue_declare(passive=True).message_count


@contextmanager
def consumer(tmp_path: Path, name: str = "consumer") -> Iterator[subprocess.Popen[bytes]]:
    path = tmp_path / f"{name}.log"
    log = open(path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "manage.py", "consume_amqp"], cwd=REPO_ROOT, env=watcher_env(tmp_path),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b"consuming" in path.read_bytes() or proc.poll() is not None, 30,
                 message=lambda: path.read_text(errors="replace"))
        assert proc.poll() is None, path.read_text(errors="replace")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_a_message_invokes_the_service_and_is_acknowledged(setup: dict[str, Any], queue_name: str) -> None:
    make_channel(setup, queue_name, prefetch=5)
    with consumer(setup["tmp"]):
        publish(queue_name, {"order": 1})
        (line,) = wait_for(lambda: read_log(setup["log"]), 20)
        wait_for(lambda: queue_depth(queue_name) == 0, 10)
    assert line["payload"] == {"order": 1} and line["type"] == "amqp"
    assert queue_depth(queue_name) == 0  # acknowledged: nothing comes back after the consumer stopped


def test_a_failing_service_is_requeued_then_dead_lettered(setup: dict[str, Any], queue_name: str) -> None:
    make_channel(setup, queue_name, max_requeues=2)
    with consumer(setup["tmp"]) as proc:
        publish(queue_name, {"fail": True})
        wait_for(lambda: queue_depth(f"{queue_name}.dead") == 1, 20)
    message = get_one(f"{queue_name}.dead")
    assert json.loads(message.body) == {"fail": True}
    assert message.headers["x-switchboard-requeues"] == 2
    assert "amqp.record -> 500" in message.headers["x-switchboard-error"]
    cid = message.headers["x-switchboard-cid"]
    assert cid in (setup["tmp"] / "consumer.log").read_text()
    assert proc.returncode is not None and queue_depth(queue_name) == 0


def test_malformed_json_is_dead_lettered_at_once_and_the_consumer_carries_on(setup: dict[str, Any],
                                                                             queue_name: str) -> None:
    make_channel(setup, queue_name)
    with consumer(setup["tmp"]):
        publish(queue_name, b"{not json")
        publish(queue_name, {"after": "the bad one"})
        wait_for(lambda: read_log(setup["log"]), 20)
        wait_for(lambda: queue_depth(f"{queue_name}.dead") == 1, 10)
    message = get_one(f"{queue_name}.dead")
    assert message.body in (b"{not json", "{not json") and "not JSON" in message.headers["x-switchboard-error"]
    assert "x-switchboard-requeues" not in message.headers


def test_a_message_of_a_killed_worker_is_redelivered(setup: dict[str, Any], queue_name: str) -> None:
    make_channel(setup, queue_name)
    with consumer(setup["tmp"], "first") as first:
        publish(queue_name, {"slow_once": True})
        wait_for(lambda: (setup["tmp"] / "marker").exists(), 20)  # the service is running it
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not read_log(setup["log"])
    with consumer(setup["tmp"], "second"):
        (line,) = wait_for(lambda: read_log(setup["log"]), 30)
        wait_for(lambda: queue_depth(queue_name) == 0, 10)
    assert line["payload"] == {"slow_once": True}


def test_outgoing_amqp_publishes_with_confirms(setup: dict[str, Any], queue_name: str) -> None:
    OutgoingAMQP.objects.create(name="out", broker=setup["broker"], app_id="switchboard")
    with Connection(URL) as conn:
        Queue(queue_name, durable=True, channel=conn.channel()).declare()
    invoke("amqp.publish", {"queue": queue_name, "n": 1})
    message = get_one(queue_name)
    assert json.loads(message.body) == {"queue": queue_name, "n": 1}
    assert message.headers == {"x-test": "yes"} and message.properties["app_id"] == "switchboard"
    assert message.content_type == "application/json"


def test_outgoing_amqp_to_a_broker_that_is_down_is_a_503_naming_the_connection(setup: dict[str, Any]) -> None:
    broker = AMQPBroker.objects.create(name="nowhere", host="127.0.0.1", port=1, timeout=1)
    OutgoingAMQP.objects.create(name="out", broker=broker)
    from integration.errors import SwitchboardError

    with pytest.raises(SwitchboardError) as raised:
        invoke("amqp.publish", {"queue": "x"})
    assert raised.value.status_code == 503 and "`out`" in str(raised.value.details)


def test_a_broker_ping_says_what_answered(setup: dict[str, Any]) -> None:
    result = setup["broker"].ping()
    assert result.ok and "RabbitMQ" in result.info
    down = AMQPBroker.objects.create(name="down", host="127.0.0.1", port=1, timeout=1).ping()
    assert not down.ok and "127.0.0.1:1" in down.info and "guest" not in down.info
