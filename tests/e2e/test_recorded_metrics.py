"""Invocation statistics written by real processes: web server workers and a Celery worker, by poller and at exit."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Sum

from integration.models import DeployedService, InvocationStat, RestChannel
from integration.tasks import invoke_async
from tests.servers.procs import ManagedProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def recorded(service: str) -> tuple[int, int]:
    """(invocations, errors) of ``service`` summed over its rows."""
    sums = InvocationStat.objects.filter(service=service).aggregate(count=Sum("count"), errors=Sum("errors"))
    return sums["count"] or 0, sums["errors"] or 0


@pytest.fixture
def hello_channel(builtins: None) -> None:
    RestChannel.objects.create(name="e2e hello", url_path="/e2e/hello", method="GET",
                               service=DeployedService.objects.get(name="demo.hello"))


def test_web_workers_write_their_counts_into_shared_rows(start_web: Callable[..., Any],
                                                               hello_channel: None) -> None:
    server = start_web(workers=2, METRICS_FLUSH_INTERVAL="0.3")
    for _ in range(30):
        assert server.get("/e2e/hello?name=Ann").status == 200
    # Both workers flush on their own poller; the rows add up to every request, whichever served it.
    wait_for(lambda: recorded("demo.hello") == (30, 0), timeout=10,
             message=lambda: f"recorded {recorded('demo.hello')}\n{server.log_tail()}")
    assert InvocationStat.objects.filter(service="demo.hello").count() <= 2  # one row per minute


def test_a_worker_writes_what_it_still_holds_when_it_stops(start_web: Callable[..., Any],
                                                            hello_channel: None) -> None:
    # An hour between flushes: only the flush at exit can write these.
    server = start_web(workers=1, METRICS_FLUSH_INTERVAL="3600")
    time.sleep(1.0)  # past the poller's first round, which flushes at once
    for _ in range(7):
        assert server.get("/e2e/hello").status == 200
    time.sleep(1.0)  # several poller rounds
    assert recorded("demo.hello") == (0, 0)
    server.stop()
    assert recorded("demo.hello") == (7, 0)


@pytest.fixture
def celery_worker_process(server_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A real Celery worker on its own queue, running the poller (as in production); yields the queue."""
    queue = f"test-metrics-{uuid.uuid4().hex[:10]}"
    env = {**server_env, "CELERY_QUEUE": queue, "CONFIG_POLLER": "true", "METRICS_FLUSH_INTERVAL": "0.3"}
    argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--pool", "solo",
            "--without-heartbeat", "--without-gossip", "--without-mingle"]
    process = ManagedProcess(argv, env=env, log_path=tmp_path / "worker.log").start()
    try:
        yield queue
    finally:
        process.stop()


@pytest.mark.skipif(not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs the Redis broker")
def test_asynchronous_invocations_in_a_celery_worker_are_recorded(celery_worker_process: str, builtins: None,
                                                                  deploy: Any) -> None:
    deploy("e2e_flaky.py", """
        from integration.services import Service

        class Boom(Service):
            def handle(self):
                raise RuntimeError("backend down")
    """)
    for n in range(3):
        invoke_async.apply_async(("demo.hello", {"name": f"n{n}"}, f"{n:024x}"), queue=celery_worker_process)
    invoke_async.apply_async(("e2e-flaky.boom", {}, "f" * 24), queue=celery_worker_process)
    wait_for(lambda: recorded("demo.hello") == (3, 0) and recorded("e2e-flaky.boom") == (1, 1), timeout=30,
             message=lambda: f"recorded {recorded('demo.hello')} and {recorded('e2e-flaky.boom')}")
