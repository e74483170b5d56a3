"""A real Celery beat and worker on the Redis broker run jobs on time, once, and refuse a second beat."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from integration.deploy import deploy_sources
from integration.models import DeployedService
from scheduling import jobs
from scheduling.models import Job, JobRun
from tests.servers.procs import ManagedProcess, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs the Redis broker"),
]

CELERY = [sys.executable, "-m", "celery", "-A", "config"]


@pytest.fixture
def celery_env(server_env: dict[str, str]) -> dict[str, str]:
    # A queue of this test's own: parallel test processes share the broker, not their databases.
    return {**server_env, "CELERY_QUEUE": f"test-scheduler-{uuid.uuid4().hex[:10]}", "CONFIG_POLLER": "true"}


@pytest.fixture
def start(celery_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    started: list[ManagedProcess] = []

    def _start(kind: str, *extra: str) -> ManagedProcess:
        argv = [*CELERY, kind, "--loglevel", "INFO", *extra]
        if kind == "beat":
            argv += ["--pidfile", "", "--schedule", str(tmp_path / f"beat{len(started)}.db")]
        else:
            argv += ["--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle"]
        process = ManagedProcess(argv, env=celery_env, log_path=tmp_path / f"{kind}{len(started)}.log").start()
        started.append(process)
        return process

    yield _start
    for process in started:
        process.stop()


def recorder_service() -> DeployedService:
    (outcome,) = deploy_sources([("sched_recorder.py", (
        "from integration.services import Service\n\n"
        "class Tick(Service):\n"
        "    def handle(self):\n"
        "        self.logger.info('tick %s', self.request.payload)\n"
    ))], "api")
    assert outcome.ok, outcome.error
    return DeployedService.objects.get(name="sched-recorder.tick")


def test_beat_and_worker_run_an_interval_job_on_time_then_retire_it(start) -> None:
    service = recorder_service()
    job = jobs.save_job(Job(name="every-2s", service=service, job_type=Job.JobType.INTERVAL_BASED,
                            start_date=timezone.now() + timedelta(seconds=4), seconds=2, repeats=3, extra="hello"))
    # A one-time job whose time passed while nothing ran (saved as an import would, past its time).
    missed = Job(name="missed", service=service, job_type=Job.JobType.ONE_TIME,
                 start_date=timezone.now() - timedelta(minutes=10))
    jobs.save_job(missed, plan_changed=False)

    start("worker")
    beat = start("beat")
    wait_for(lambda: JobRun.objects.filter(job=job, status="ok").count() == 3, timeout=30,
             message="three runs of the interval job")
    runs = list(JobRun.objects.filter(job=job).order_by("scheduled_for"))
    assert [run.scheduled_for for run in runs] == [job.start_date + timedelta(seconds=2 * i) for i in range(3)]
    assert all(run.lateness_ms < 1000 for run in runs), [run.lateness_ms for run in runs]
    # The worker retires the job just after recording its last run.
    wait_for(lambda: not Job.objects.get(pk=job.pk).is_active, timeout=10, message="the job to become inactive")

    missed.refresh_from_db()
    assert not missed.is_active
    assert list(missed.runs.values_list("status", flat=True)) == ["missed"]

    # A second beat on the same deployment refuses to start, and says why.
    second = start("beat")
    wait_for(lambda: second.poll() is not None, timeout=30, message="the second beat to exit")
    assert second.poll() != 0
    assert "Only one beat may run" in second.log_path.read_text()
    assert beat.poll() is None  # the first one is unaffected


def test_a_new_job_and_an_edit_take_effect_without_a_restart(start) -> None:
    service = recorder_service()
    start("worker")
    start("beat")
    time.sleep(2)  # the beat is up and has read an empty schedule
    job = jobs.save_job(Job(name="late-comer", service=service, job_type=Job.JobType.INTERVAL_BASED,
                            start_date=timezone.now() + timedelta(seconds=2), seconds=1))
    wait_for(lambda: JobRun.objects.filter(job=job).count() >= 2, timeout=20, message="the new job to run")
    jobs.set_active(job, False)
    time.sleep(2.5)  # a tick of the beat and a run in flight
    settled = JobRun.objects.filter(job=job).count()
    time.sleep(3)
    assert JobRun.objects.filter(job=job).count() == settled, "a deactivated job kept running"
    # Never two runs for one planned time.
    times = list(JobRun.objects.filter(job=job).values_list("scheduled_for", flat=True))
    assert len(times) == len(set(times))
