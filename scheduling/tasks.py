"""The Celery task behind every job run: ``run_job``.

A run is recorded before the service is invoked, as a ``JobRun`` unique per (job,
scheduled time). A redelivered message for a run already recorded (the broker handing
the task out again after a worker died, with late acknowledgement) finds the row and
does nothing. "Execute now" runs are manual: no scheduled time, never deduplicated.

A worker killed in the middle of a run leaves its row ``running``; when a worker of the
same name starts again, it marks such rows as interrupted (``error``), since a run is
never started twice. A worker that never comes back leaves them ``running``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.db import IntegrityError, transaction
from django.utils import timezone

from integration.errors import SwitchboardError
from integration.invoke import invoke, new_cid
from integration.services import ChannelInfo
from scheduling.models import Job, JobRun

logger = logging.getLogger(__name__)


@shared_task(name="scheduling.run_job", ignore_result=True, acks_late=True)
def run_job(job_id: int, scheduled_for: str | None = None, cid: str | None = None) -> None:
    """Run job ``job_id`` for its planned time ``scheduled_for`` (ISO 8601), or now if manual."""
    job = Job.objects.select_related("service").filter(pk=job_id).first()
    if job is None:
        logger.info("Job %s no longer exists; run for %s dropped", job_id, scheduled_for)
        return
    manual = scheduled_for is None
    if not manual and not job.is_active:
        logger.info("Job %s was deactivated; run for %s dropped", job.name, scheduled_for)
        return
    run = _record_start(job, scheduled_for, cid or new_cid(), run_job.request.hostname or "")
    if run is None:
        return
    execute(job, run)
    if not manual:
        _retire_if_done(job, run.scheduled_for)


def _record_start(job: Job, scheduled_for: str | None, cid: str, worker: str) -> JobRun | None:
    now = timezone.now()
    planned = datetime.fromisoformat(scheduled_for) if scheduled_for else now
    try:
        with transaction.atomic():
            return JobRun.objects.create(
                job=job, scheduled_for=planned, manual=scheduled_for is None, started=now, cid=cid, worker=worker
            )
    except IntegrityError:
        logger.warning("Job %s: the run for %s is already recorded; not running it again", job.name, planned)
        return None


def execute(job: Job, run: JobRun) -> JobRun:
    """Invoke the job's service through the one invocation path and record the outcome."""
    started = time.perf_counter()
    channel = ChannelInfo(type="scheduler", name=job.name)
    payload: Any = job.extra or None
    try:
        invoke(job.service.name, payload, channel=channel, cid=run.cid)
        run.status, run.error = JobRun.Status.OK, ""
    except SwitchboardError as exc:
        run.status, run.error = JobRun.Status.ERROR, f"{exc.status_code} {exc.details}"
    run.duration_ms = (time.perf_counter() - started) * 1000
    run.finished = timezone.now()
    run.save(update_fields=["status", "error", "duration_ms", "finished"])
    return run


def _retire_if_done(job: Job, planned: datetime) -> None:
    """A job whose plan has no run after this one becomes inactive (kept, not deleted)."""
    from scheduling.jobs import set_active

    if job.plan().next_after(planned) is not None:
        return
    with transaction.atomic():
        current = Job.objects.select_for_update().filter(pk=job.pk).first()
        if current is not None and current.is_active and current.plan().next_after(planned) is None:
            set_active(current, False)
            logger.info("Job %s has no more runs planned and is now inactive", job.name)


@worker_ready.connect
def _mark_interrupted_runs(sender: Any = None, **kwargs: Any) -> None:
    """Runs this worker (by name) had started before it was killed will not finish: say so.

    An interrupted run still counts as the job's run for that time, so a job it was the last
    run of (a one-time job, the last repeat) becomes inactive, as after any other last run.
    """
    hostname = getattr(sender, "hostname", None)
    if not hostname:
        return
    running = JobRun.objects.filter(status=JobRun.Status.RUNNING, worker=hostname)
    scheduled = list(running.filter(manual=False).select_related("job"))
    count = running.update(
        status=JobRun.Status.ERROR, finished=timezone.now(),
        error="Interrupted: the worker stopped during the run; it is not run again",
    )
    for run in scheduled:
        _retire_if_done(run.job, run.scheduled_for)
    if count:
        logger.warning("%s run(s) interrupted when worker %s stopped are marked as failed", count, hostname)


def execute_now(job: Job) -> str:
    """Queue a manual run of ``job`` (even an inactive one) and return its CID."""
    cid = new_cid()
    run_job.delay(job.pk, None, cid)
    return cid
