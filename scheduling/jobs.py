"""The one way jobs are written: ``save_job`` and ``delete_job``.

Admin, management API, built-in services and tests all call these, so a job and its
django-celery-beat ``PeriodicTask`` (with its schedule row) always change together, in
one transaction. The beat process notices through django-celery-beat's own change
marker (``PeriodicTasks.last_update``), which ``PeriodicTask.save`` bumps.

The PeriodicTask's schedule row mirrors the job's plan so that django-celery-beat's
tables read truthfully (a clocked time, an interval, a crontab in the job's zone); the
times themselves are computed by ``scheduling.plans`` in the beat (``scheduling.beat``).
"""

from __future__ import annotations

import json
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduling import plans
from scheduling.models import PLAN_FIELDS, Job

TASK_NAME = "scheduling.run_job"


def periodic_task_name(job: Job) -> str:
    return f"switchboard-job-{job.pk}"


def plan_changed(job: Job) -> bool:
    """Whether ``job`` (new, or edited in memory) has a plan other than the one stored."""
    if job.pk is None:
        return True
    stored = Job.objects.filter(pk=job.pk).values(*PLAN_FIELDS).first()
    return stored is None or any(stored[name] != getattr(job, name) for name in PLAN_FIELDS)


def check_new_plan(job: Job, *, now: datetime | None = None, changed: bool | None = None) -> None:
    """A new or edited plan must be able to run (see ``Job.validate_new_plan``); a rename need not."""
    if plan_changed(job) if changed is None else changed:
        job.validate_new_plan(now or timezone.now())


@transaction.atomic
def save_job(job: Job, *, now: datetime | None = None, plan_changed: bool | None = None) -> Job:
    """Validate and save ``job`` with its PeriodicTask; raises ValidationError naming the field.

    A new or changed plan must also pass ``check_new_plan``; ``plan_changed`` overrides
    the comparison with the stored row (False: save a plan as it is, as an import would).
    """
    job.full_clean()
    check_new_plan(job, now=now, changed=plan_changed)
    job.save()
    _sync_periodic_task(job)
    return job


@transaction.atomic
def set_active(job: Job, active: bool) -> Job:
    """Activate or deactivate; re-activating a used-up or past plan is refused by save_job's checks."""
    job.is_active = active
    return save_job(job)


@transaction.atomic
def delete_job(job: Job) -> None:
    task = job.periodic_task
    job.delete()
    if task is not None:
        _delete_task(task)


def _sync_periodic_task(job: Job) -> None:
    task = job.periodic_task or PeriodicTask(name=periodic_task_name(job), task=TASK_NAME)
    previous = _schedule_of(task)
    task.interval = task.crontab = task.clocked = task.solar = None
    task.one_off = False
    task.start_time = job.start_date
    if job.job_type == plans.ONE_TIME:
        task.clocked, _ = ClockedSchedule.objects.get_or_create(clocked_time=job.start_date)
        task.one_off = True
    elif job.job_type == plans.INTERVAL_BASED:
        task.interval, _ = IntervalSchedule.objects.get_or_create(
            every=int(job.interval.total_seconds()), period=IntervalSchedule.SECONDS
        )
    else:
        fields = plans.Cron.parse(job.cron_definition).expression.split()
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
            day_of_week=day_of_week, timezone=job.timezone or "UTC",
        )
    task.kwargs = json.dumps({"job_id": job.pk})
    task.enabled = job.is_active
    task.description = f"Switchboard job {job.name}: invokes {job.service.name}"
    task.save()
    if job.periodic_task_id != task.pk:
        job.periodic_task = task
        job.save(update_fields=["periodic_task"])
    if previous is not None and previous != _schedule_of(task):
        _drop_if_unused(previous)


def _schedule_of(task: PeriodicTask) -> object | None:
    if task.pk is None:
        return None
    return task.clocked or task.interval or task.crontab or task.solar


def _delete_task(task: PeriodicTask) -> None:
    schedule = _schedule_of(task)
    task.delete()
    if schedule is not None:
        _drop_if_unused(schedule)


def _drop_if_unused(schedule: object) -> None:
    """Remove a schedule row no task uses any more (clocked rows are one per job and would pile up)."""
    if isinstance(schedule, ClockedSchedule | IntervalSchedule | CrontabSchedule) and not (
        schedule.periodictask_set.exists()
    ):
        schedule.delete()
