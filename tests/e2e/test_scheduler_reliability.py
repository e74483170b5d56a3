"""Real Celery beat and worker processes through crashes: time zones, restarts, a worker killed mid-run, RabbitMQ.

The service these jobs invoke appends one line per invocation to a file (``SCHED_RUN_LOG``, set
in the workers' environment): its CID, the job (channel name), the channel type and the payload
it received. That is the count of real invocations, kept apart from the ``JobRun`` rows the
scheduler writes, so "no planned time ran twice" is checked against what actually ran.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from integration.deploy import deploy_sources
from integration.models import DeployedService
from scheduling import jobs
from scheduling.beat import _LOCK_KEY
from scheduling.models import Job, JobRun
from tests.servers.procs import ManagedProcess, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs the Redis broker"),
]

CELERY = [sys.executable, "-m", "celery", "-A", "config"]
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

RECORDER = """
import json
import os
import time

from integration.services import Service


class Record(Service):
    def handle(self):
        payload = self.request.payload
        line = {"cid": self.cid, "job": self.channel.name, "channel": self.channel.type, "payload": payload}
        with open(os.environ["SCHED_RUN_LOG"], "a") as log:
            log.write(json.dumps(line) + "\\n")
        if isinstance(payload, str) and payload.startswith("sleep="):
            time.sleep(float(payload.removeprefix("sleep=")))
"""


@pytest.fixture
def run_log(tmp_path: Path) -> Path:
    return tmp_path / "invocations.jsonl"


@pytest.fixture
def celery_env(server_env: dict[str, str], run_log: Path) -> dict[str, str]:
    # A queue of this test's own: parallel test processes share the broker, not their databases.
    return {**server_env, "CELERY_QUEUE": f"test-reliability-{uuid.uuid4().hex[:10]}", "CONFIG_POLLER": "true",
            "SCHED_RUN_LOG": str(run_log)}


@pytest.fixture
def start(celery_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """``start("worker" | "beat", *args, **env)`` -> a running ``ManagedProcess``; all stopped at teardown."""
    started: list[ManagedProcess] = []

    def _start(kind: str, *extra: str, **env: str) -> ManagedProcess:
        argv = [*CELERY, kind, "--loglevel", "INFO", *extra]
        if kind == "beat":
            argv += ["--pidfile", "", "--schedule", str(tmp_path / f"beat{len(started)}.db")]
        else:
            argv += ["--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle"]
        process = ManagedProcess(argv, env={**celery_env, **env}, log_path=tmp_path / f"{kind}{len(started)}.log")
        started.append(process.start())
        return process

    yield _start
    for process in started:
        process.stop()


def beat_holds_its_lock() -> bool:
    """True once a beat has taken the single-beat lock on this test's database (its first act on starting)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", [_LOCK_KEY])
        return cursor.fetchone()[0] == 1


def start_both(start: Any, *worker_args: str, **env: str) -> tuple[ManagedProcess, ManagedProcess]:
    """A worker and a beat, returned once both are up (jobs written after that are noticed within a tick).

    Process start-up takes seconds on a busy machine, and a beat that starts after a recurring job's
    first run goes on from its next one, by design; tests that count runs from the start wait for this.
    """
    worker = start("worker", *worker_args, **env)
    beat = start("beat", **env)
    wait_for(lambda: " ready." in worker.log_text(), timeout=30, message=lambda: f"the worker:\n{worker.log_tail()}")
    wait_for(beat_holds_its_lock, timeout=30, message=lambda: f"the beat:\n{beat.log_tail()}")
    return worker, beat


def recorder() -> DeployedService:
    (outcome,) = deploy_sources([("sched_witness.py", RECORDER)], "api")
    assert outcome.ok, outcome.error
    return DeployedService.objects.get(name="sched-witness.record")


def invocations(run_log: Path, job: Job | None = None) -> list[dict[str, Any]]:
    """What the service saw, one dict per real invocation (of ``job`` only, if given)."""
    if not run_log.exists():
        return []
    lines = [json.loads(line) for line in run_log.read_text().splitlines() if line.strip()]
    return [line for line in lines if job is None or line["job"] == job.name]


def crash(process: ManagedProcess) -> None:
    """SIGKILL the process's whole group, as a crash or an OOM kill would: no shutdown code runs."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def save(service: DeployedService, name: str, job_type: str, start_date: datetime, **fields: Any) -> Job:
    return jobs.save_job(Job(name=name, service=service, job_type=job_type, start_date=start_date, **fields))


def unacked(queue: str) -> dict[str, str]:
    """Messages for ``queue`` a worker took but has not acknowledged (Redis transport): delivery tag -> task id."""
    with Connection(settings.CELERY_BROKER_URL) as broker:
        channel: Any = broker.default_channel
        entries = channel.client.hgetall(channel.unacked_key)
    found = {}
    for tag, raw in entries.items():
        message, _exchange, routing_key = json.loads(raw)
        if routing_key == queue:
            found[tag.decode()] = message["headers"]["id"]
    return found


def test_a_one_time_job_and_a_cron_job_in_new_york_run_once_with_their_extra(start, run_log) -> None:
    service = recorder()
    start_both(start)
    now = timezone.now()
    once = save(service, "once", Job.JobType.ONE_TIME, now + timedelta(seconds=3), extra="<order id='7'>Zoë</order>")
    # The next whole minute at least 3 s away, written as New York wall-clock time: a beat reading the
    # expression in UTC would not fire then (New York is 4 or 5 hours behind). At most a minute's wait.
    fire = (now + timedelta(seconds=3)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    local = fire.astimezone(ZoneInfo("America/New_York"))
    cron = save(service, "new-york", Job.JobType.CRON_STYLE, now - timedelta(days=1), timezone="America/New_York",
                cron_definition=f"{local.minute} {local.hour} * * *", extra='{"region": "us-east"}')
    assert local.hour != fire.hour

    wait_for(lambda: JobRun.objects.filter(job=once, status="ok").exists(), timeout=30, message="the one-time run")
    wait_for(lambda: JobRun.objects.filter(job=cron, status="ok").exists(),
             timeout=(fire - timezone.now()).total_seconds() + 15, message=f"the cron run at {fire}")

    for job, planned in ((once, once.start_date), (cron, fire)):
        (run,) = JobRun.objects.filter(job=job)
        assert run.scheduled_for == planned and not run.manual
        assert run.lateness_ms < 1000, run.lateness_ms
        assert invocations(run_log, job) == [
            {"cid": run.cid, "job": job.name, "channel": "scheduler", "payload": job.extra}
        ]
    once.refresh_from_db()
    cron.refresh_from_db()
    assert not once.is_active and cron.is_active  # the one-time job is done; the cron job runs again tomorrow
    assert cron.next_run(fire) == fire + timedelta(days=1)


def test_a_crash_of_beat_and_worker_repeats_nothing_and_runs_the_times_it_missed_by_less_than_the_grace(
    start, run_log
) -> None:
    service = recorder()
    worker, beat = start_both(start)
    job = save(service, "every-second", Job.JobType.INTERVAL_BASED, timezone.now() + timedelta(seconds=2), seconds=1,
               extra="tick")
    wait_for(lambda: JobRun.objects.filter(job=job, status="ok").count() >= 3, timeout=30, message="three runs")
    crash(beat)
    crash(worker)
    killed = timezone.now()
    time.sleep(3)  # down: three planned runs pass
    restarted = timezone.now()
    worker, beat = start("worker"), start("beat")
    wait_for(lambda: JobRun.objects.filter(job=job, status="ok", scheduled_for__gt=restarted).count() >= 3,
             timeout=30, message="three runs after the restart")
    beat.stop()
    worker.stop()  # a warm stop: the run in hand, if any, finishes

    runs = list(JobRun.objects.filter(job=job).order_by("scheduled_for"))
    planned = [run.scheduled_for for run in runs]
    assert len(planned) == len(set(planned))
    assert all((time_ - job.start_date).total_seconds() % 1 == 0 for time_ in planned)  # on the grid
    # Down for 3 s, well within SCHEDULER_MISFIRE_GRACE (30 s): what was planned meanwhile ran, late,
    # once each, when the new beat started (times over the grace period late would be missed).
    first = math.floor((killed - job.start_date).total_seconds())
    grid = [job.start_date + timedelta(seconds=k) for k in range(first, first + 10)]
    while_down = [time_ for time_ in grid if killed < time_ <= restarted]
    assert while_down and set(while_down) <= set(planned), (while_down, planned)
    assert all(run.started > restarted for run in runs if run.scheduled_for in while_down)
    # Each recorded run invoked the service exactly once, and nothing ran without a record.
    seen = invocations(run_log, job)
    assert sorted(line["cid"] for line in seen) == sorted(run.cid for run in runs if run.status == "ok")
    assert all(run.status == "ok" or run.error.startswith("Interrupted") for run in runs)


def test_a_worker_killed_mid_run_does_not_run_it_again_when_the_message_comes_back(start, run_log,
                                                                                   celery_env) -> None:
    service = recorder()
    # Hourly, twice: the first run is cut off and the job goes on, so the redelivered message
    # finds an active job and only the run's record stops it.
    name = f"victim-{uuid.uuid4().hex[:6]}@localhost"
    worker, _beat = start_both(start, "-n", name)
    job = save(service, "slow", Job.JobType.INTERVAL_BASED, timezone.now() + timedelta(seconds=3), hours=1,
               repeats=2, extra="sleep=60")
    wait_for(lambda: invocations(run_log, job), timeout=30, message="the service to start")
    run = JobRun.objects.get(job=job)
    assert run.status == "running" and run.worker == name
    crash(worker)

    # Late acknowledgement: the message is still the broker's, handed out but not acknowledged.
    queue = celery_env["CELERY_QUEUE"]
    ((tag, task_id),) = wait_for(lambda: unacked(queue).items(), timeout=10, message="the unacknowledged message")
    # The broker gives it out again once its visibility timeout (an hour by default) has passed;
    # do that now, for this message only (other tests share the broker).
    with Connection(settings.CELERY_BROKER_URL) as broker:
        broker.default_channel.qos.restore_by_tag(tag)

    again = start("worker", "-n", name)  # the same worker, restarted
    wait_for(lambda: f"run_job[{task_id}] succeeded" in again.log_text(), timeout=30,
             message=lambda: f"the redelivered message to be taken and finished:\n{again.log_tail()}")
    assert "already recorded; not running it again" in again.log_text()
    assert not unacked(queue)  # acknowledged this time
    run.refresh_from_db()
    assert run.status == "error" and run.error.startswith("Interrupted"), (run.status, run.error)
    assert run.finished is not None
    assert len(invocations(run_log, job)) == 1  # started once, killed, never started again
    assert JobRun.objects.filter(job=job).count() == 1
    job.refresh_from_db()
    assert job.is_active  # its second run is an hour away


def _rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def rabbitmq_queue(celery_env: dict[str, str]) -> Iterator[str]:
    """This test's queue on RabbitMQ, deleted at the end (after ``start`` has stopped the processes using it)."""
    yield celery_env["CELERY_QUEUE"]
    with Connection(AMQP_URL) as broker:  # RabbitMQ keeps durable queues: leave none behind
        broker.default_channel.queue_delete(celery_env["CELERY_QUEUE"])


@pytest.mark.skipif(not _rabbitmq_reachable(), reason="needs RabbitMQ on 127.0.0.1:5672")
def test_on_rabbitmq_an_interval_job_runs_once_per_planned_time(rabbitmq_queue, start, run_log) -> None:
    service = recorder()
    # A name of its own: RabbitMQ allows one consumer of a worker's control queue (celery@host) at a time.
    worker, beat = start_both(start, "-n", f"rabbit-{uuid.uuid4().hex[:6]}@localhost", CELERY_BROKER_URL=AMQP_URL)
    job = save(service, "on-rabbit", Job.JobType.INTERVAL_BASED, timezone.now() + timedelta(seconds=2), seconds=1,
               repeats=3, extra="amqp")
    wait_for(lambda: JobRun.objects.filter(job=job, status="ok").count() == 3, timeout=30,
             message=lambda: f"three runs over RabbitMQ:\n{worker.log_tail()}")
    wait_for(lambda: not Job.objects.get(pk=job.pk).is_active, timeout=10, message="the job to retire")
    beat.stop()
    worker.stop()
    assert "amqp://guest:**@127.0.0.1:5672" in worker.log_text()  # the worker's banner names its broker
    runs = list(JobRun.objects.filter(job=job).order_by("scheduled_for"))
    assert [run.scheduled_for for run in runs] == [job.start_date + timedelta(seconds=k) for k in range(3)]
    assert sorted(line["cid"] for line in invocations(run_log, job)) == sorted(run.cid for run in runs)
    assert {line["payload"] for line in invocations(run_log, job)} == {"amqp"}
