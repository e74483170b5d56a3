"""Messages per second through an AMQP channel, against kombu consuming the same queue with no service.

RabbitMQ at ``BENCH_AMQP_URL`` (``amqp://guest:guest@127.0.0.1:5672//``), on a queue of the
benchmark's own (``switchboard-bench-amqp-<random>``, deleted at the end with its dead-letter
queue). Each round, interleaved (which goes first alternates): ``BENCH_AMQP_MESSAGES`` (10,000)
small persistent JSON messages are published to the queue, left ``BENCH_AMQP_SETTLE`` (3) seconds
for the broker to finish writing them, then consumed

* by the platform: a real ``manage.py consume_amqp`` process, an AMQP channel with the model's
  defaults (one consumer, prefetch 10, JSON) bound to a user service that does nothing but note
  the wall time when the message is the first or the last: parse, invoke (CID, snapshot,
  SimpleIO-free service), acknowledge;
* by the baseline: a kombu ``Consumer`` in this process on the same queue, same prefetch, that
  parses each body as JSON and acknowledges it, with no service.

A rate is (messages - 1) / (time the last one was done - time the first one was done), so the
consumer process's start-up is not counted. Printed: both rates per round, their medians and the
ratio. The issue sets no figure: the target is that every message went through the service once
(the queue and its dead-letter queue empty afterwards, none failed).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common

MESSAGES = common.env_int("BENCH_AMQP_MESSAGES", 10_000)
ROUNDS = common.env_int("BENCH_AMQP_ROUNDS", 3)
URL = common._ORIGINAL_ENV.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
TIMEOUT = common.env_float("BENCH_AMQP_TIMEOUT", 300.0)
SETTLE = common.env_float("BENCH_AMQP_SETTLE", 3.0)

SERVICE_SOURCE = '''
import time
from integration.services import Service


class BenchAMQPSink(Service):
    """Notes when the first and the last message were done; nothing else."""

    name = "bench.amqp_sink"

    def handle(self):
        mark = self.request.payload.get("mark")
        if mark:
            with open(%(marks)r, "a") as marks:
                marks.write(f"{mark} {time.time()!r}\\n")
'''


def publish(queue: str, count: int) -> float:
    """Publish ``count`` persistent JSON messages; the seconds it took."""
    from kombu import Connection, Queue

    started = time.perf_counter()
    with Connection(URL) as conn:
        Queue(queue, durable=True, channel=conn.channel()).declare()
        producer = conn.Producer()
        for n in range(count):
            body: dict[str, Any] = {"n": n, "order": f"ORD-{n:06d}", "amount": n % 1000}
            if n == 0:
                body["mark"] = "first"
            elif n == count - 1:
                body["mark"] = "last"
            producer.publish(json.dumps(body), routing_key=queue, content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2)
    return time.perf_counter() - started


def depth(queue: str) -> int:
    from kombu import Connection, Queue

    with Connection(URL) as conn:
        return Queue(queue, durable=True, channel=conn.channel()).queue_declare(passive=True).message_count


def baseline(queue: str, prefetch: int) -> float:
    """kombu consuming ``queue`` with no service: JSON-parse and acknowledge each message; messages/s."""
    from kombu import Connection, Consumer, Queue

    times: list[float] = []

    def on_message(message: Any) -> None:
        json.loads(message.body)
        message.ack()
        times.append(time.time())

    deadline = time.monotonic() + TIMEOUT
    with Connection(URL) as conn:
        channel = conn.channel()
        with Consumer(channel, queues=[Queue(queue, durable=True, channel=channel)], on_message=on_message,
                      prefetch_count=prefetch):
            while len(times) < MESSAGES:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the baseline consumed {len(times):,} of {MESSAGES:,} messages")
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
    return (MESSAGES - 1) / (times[-1] - times[0])


def ours(queue: str, marks: Path) -> float:
    """``manage.py consume_amqp`` through the channel and its service; messages/s."""
    marks.write_text("")
    consumer = common.Server("consume_amqp", [common.PYTHON, "manage.py", "consume_amqp"],
                             common.bench_env(PORT=str(common.free_port())))  # Server wants a PORT; none is used
    deadline = time.monotonic() + TIMEOUT
    try:
        consumer.start()
        while "last " not in marks.read_text():
            if not consumer.alive():
                raise RuntimeError(f"consume_amqp exited; see {consumer.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the last message was not done within {TIMEOUT:.0f} s; see {consumer.log_path}")
            time.sleep(0.1)
    finally:
        consumer.stop()
    at = dict(line.split() for line in marks.read_text().splitlines())
    return (MESSAGES - 1) / (float(at["last"]) - float(at["first"]))


def delete_queues(*names: str) -> None:
    from kombu import Connection, Queue

    with Connection(URL) as conn:
        for name in names:
            try:
                Queue(name, channel=conn.channel()).delete()
            except Exception as exc:  # already gone
                print(f"(queue {name}: {type(exc).__name__})")


def main() -> tuple[str, bool]:
    if MESSAGES < 2:
        raise SystemExit("BENCH_AMQP_MESSAGES must be at least 2")
    common.bench_django()
    from connections.models import AMQPBroker
    from integration.deploy import deploy_sources
    from integration.models import AMQPChannel, DeployedService

    print(common.wait_for_quiet())
    marks = common.empty_dir("amqp") / "marks"
    (outcome,) = deploy_sources([("bench_amqp_sink.py", SERVICE_SOURCE % {"marks": str(marks)})], "api")
    if not outcome.ok:
        raise SystemExit(f"could not deploy the bench service: {outcome.error}")
    parts = urlsplit(URL)
    broker = AMQPBroker(name="bench", host=parts.hostname or "127.0.0.1", port=parts.port or 5672,
                        username=unquote(parts.username or "guest"), vhost=unquote(parts.path[1:] or "/"))
    broker.set_password(unquote(parts.password or "guest"))
    broker.save()
    queue = f"switchboard-bench-amqp-{uuid.uuid4().hex[:10]}"
    channel = AMQPChannel.objects.create(name="bench", broker=broker, queue=queue,
                                         service=DeployedService.objects.get(name="bench.amqp_sink"))
    rows, base_rates, our_rates = [], [], []
    try:
        for n in range(1, ROUNDS + 1):
            # Alternate which goes first; each starts on a queue the broker has finished writing for
            # SETTLE seconds (right after 10,000 persistent publishes it is still busy with them).
            for which in ("base", "ours") if n % 2 else ("ours", "base"):
                published = publish(queue, MESSAGES)
                time.sleep(SETTLE)
                if which == "base":
                    base_rates.append(baseline(queue, channel.prefetch))
                else:
                    our_rates.append(ours(queue, marks))
            rows.append([n, f"{MESSAGES / published:,.0f}", f"{base_rates[-1]:,.0f}", f"{our_rates[-1]:,.0f}",
                         f"{our_rates[-1] / base_rates[-1]:.3f}"])
        left, dead = depth(queue), depth(channel.dead_letter_name)
    finally:
        delete_queues(queue, channel.dead_letter_name)

    base, mine = common.median(base_rates), common.median(our_rates)
    ratio = mine / base
    print(f"\n{MESSAGES:,} persistent JSON messages a round on {queue}; channel prefetch {channel.prefetch}, "
          f"{channel.consumers} consumer")
    print(common.table(["round", "published/s", "kombu, no service msg/s", "channel + service msg/s", "ratio"], rows))
    print(f"medians: channel {mine:,.0f} msg/s, kombu {base:,.0f} msg/s, ratio {ratio:.3f}; "
          f"left on the queue {left}, dead-lettered {dead}")
    text = (f"{mine:,.0f} msg/s through consume_amqp + service, kombu alone {base:,.0f} msg/s, ratio {ratio:.3f} "
            f"(median of {ROUNDS} x {MESSAGES:,}); none left or dead-lettered")
    return text, left == 0 and dead == 0


if __name__ == "__main__":
    common.run(main)
