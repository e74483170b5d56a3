"""Jobs and their PeriodicTasks are written together; runs are recorded once per planned time.

``run_job`` is called here as the worker calls it (the task's body, in this process);
tests with a real worker and beat live beside these.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask

from integration.models import DeployedService
from scheduling import jobs
from scheduling.models import Job, JobRun
from scheduling.tasks import run_job

pytestmark = pytest.mark.django_db

RECORDER = """
    from django.core.cache import cache
    from integration.services import Service

    class Record(Service):
        def handle(self):
            cache.set("job-run-" + self.cid, {"payload": self.request.payload, "channel": self.channel.type,
                                              "name": self.channel.name}, 60)
"""


@pytest.fixture
def recorder(deploy, builtins) -> DeployedService:
    deploy("job_recorder.py", RECORDER)
    return DeployedService.objects.get(name="job-recorder.record")


def new_job(service: DeployedService, **fields) -> Job:
    fields.setdefault("name", "nightly")
    fields.setdefault("job_type", Job.JobType.INTERVAL_BASED)
    fields.setdefault("start_date", timezone.now() + timedelta(hours=1))
    if fields["job_type"] == Job.JobType.INTERVAL_BASED:
        fields.setdefault("minutes", 30)
    return jobs.save_job(Job(service=service, **fields))


def test_each_job_owns_one_periodic_task_with_a_schedule_mirroring_its_plan(recorder) -> None:
    interval = new_job(recorder, name="every-30-min", minutes=30, repeats=12)
    task = interval.periodic_task
    assert task.task == "scheduling.run_job" and task.enabled
    assert task.interval.every == 1800 and task.interval.period == IntervalSchedule.SECONDS
    assert task.start_time == interval.start_date

    cron = new_job(recorder, name="weekday-mornings", job_type=Job.JobType.CRON_STYLE,
                   cron_definition="00  3-6 * * 1-5", timezone="Europe/Warsaw")
    assert cron.cron_definition == "00 3-6 * * 1-5"  # normalised, as the API returns it
    crontab = cron.periodic_task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "00", "3-6", "1-5", "Europe/Warsaw")

    once = new_job(recorder, name="once", job_type=Job.JobType.ONE_TIME)
    assert once.periodic_task.one_off and once.periodic_task.clocked.clocked_time == once.start_date
    assert PeriodicTask.objects.filter(task="scheduling.run_job").count() == 3


def test_an_edit_rewrites_the_task_and_drops_schedule_rows_no_one_uses(recorder) -> None:
    job = new_job(recorder, job_type=Job.JobType.ONE_TIME)
    clocked_id = job.periodic_task.clocked_id
    job.job_type, job.cron_definition = Job.JobType.CRON_STYLE, "@daily"
    jobs.save_job(job)
    job.refresh_from_db()
    assert job.periodic_task.crontab is not None and job.periodic_task.clocked is None
    assert not ClockedSchedule.objects.filter(pk=clocked_id).exists()
    jobs.set_active(job, False)
    assert not PeriodicTask.objects.get(pk=job.periodic_task_id).enabled
    jobs.delete_job(job)
    assert not PeriodicTask.objects.filter(task="scheduling.run_job").exists()
    assert not CrontabSchedule.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"job_type": "cron_style", "cron_definition": "61 * * * *"}, "cron_definition"),
        ({"job_type": "cron_style", "cron_definition": "* * * * *", "timezone": "Nowhere/City"}, "timezone"),
        ({"job_type": "interval_based", "minutes": 0}, "seconds"),
        ({"job_type": "one_time", "start_date": datetime(2020, 1, 1, tzinfo=UTC)}, "start_date"),
        ({"job_type": "weekly"}, "job_type"),
    ],
)
def test_bad_plans_name_the_field_and_save_nothing(recorder, fields, field) -> None:
    with pytest.raises(ValidationError) as caught:
        new_job(recorder, **fields)
    assert field in caught.value.message_dict
    assert not Job.objects.exists() and not PeriodicTask.objects.exists()


def test_a_run_invokes_the_service_on_the_scheduler_channel_with_extra_as_payload(recorder) -> None:
    job = new_job(recorder, extra="<invoice id='1'/>")
    planned = job.start_date.isoformat()
    run_job(job.pk, planned, "c0ffee")
    run = JobRun.objects.get(job=job)
    assert run.status == "ok" and run.cid == "c0ffee" and run.finished >= run.started
    assert cache.get("job-run-c0ffee") == {"payload": "<invoice id='1'/>", "channel": "scheduler", "name": "nightly"}


def test_a_redelivered_run_for_a_recorded_time_does_nothing(recorder) -> None:
    job = new_job(recorder)
    planned = job.start_date.isoformat()
    run_job(job.pk, planned, "first")
    run_job(job.pk, planned, "second")  # the broker handing the same message out again
    assert list(JobRun.objects.values_list("cid", flat=True)) == ["first"]
    assert cache.get("job-run-second") is None


def test_a_job_becomes_inactive_after_its_last_planned_run(recorder) -> None:
    job = new_job(recorder, seconds=10, minutes=0, repeats=2)
    run_job(job.pk, job.start_date.isoformat())
    job.refresh_from_db()
    assert job.is_active
    run_job(job.pk, (job.start_date + timedelta(seconds=10)).isoformat())
    job.refresh_from_db()
    assert not job.is_active and not job.periodic_task.enabled
    assert job.runs.count() == 2  # kept, not deleted


def test_errors_are_recorded_with_their_reason(deploy, builtins) -> None:
    deploy("job_failing.py", """
        from integration.services import Service

        class Fail(Service):
            def handle(self):
                raise ValueError("backend said no")
    """)
    job = new_job(DeployedService.objects.get(name="job-failing.fail"))
    run_job(job.pk, job.start_date.isoformat())
    run = JobRun.objects.get(job=job)
    assert run.status == "error" and run.error.startswith("500")


def test_an_inactive_job_skips_scheduled_runs_but_execute_now_still_runs_it(recorder) -> None:
    job = new_job(recorder)
    jobs.set_active(job, False)
    run_job(job.pk, job.start_date.isoformat(), "scheduled")
    assert not JobRun.objects.exists()
    run_job(job.pk, None, "manual")
    run = JobRun.objects.get()
    assert run.manual and run.status == "ok"
    run_job(job.pk, None, "manual-again")  # manual runs are never deduplicated
    assert JobRun.objects.count() == 2


def test_reactivating_a_used_up_one_time_job_needs_a_new_start_date(recorder) -> None:
    job = new_job(recorder, job_type=Job.JobType.ONE_TIME, start_date=timezone.now() + timedelta(seconds=1))
    run_job(job.pk, job.start_date.isoformat())
    job.refresh_from_db()
    assert not job.is_active
    job.start_date = datetime(2021, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError):
        jobs.set_active(job, True)
    job.refresh_from_db()
    job.start_date = timezone.now() + timedelta(days=1)
    jobs.set_active(job, True)
    assert job.next_run() == job.start_date


def test_reactivating_a_used_up_interval_job_is_refused_until_it_has_runs_left(recorder) -> None:
    start = timezone.now() - timedelta(hours=3)
    job = jobs.save_job(Job(name="used-up", service=recorder, job_type=Job.JobType.INTERVAL_BASED,
                            start_date=start, minutes=30, repeats=2, is_active=False), plan_changed=False)
    with pytest.raises(ValidationError) as caught:
        jobs.set_active(job, True)
    assert "repeats" in caught.value.message_dict
    job.refresh_from_db()
    assert not job.is_active
    job.repeats = 20
    jobs.set_active(job, True)
    assert job.next_run() is not None
