"""The jobs admin: the list at a glance, form errors, activate/deactivate, Execute now on a real worker."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integration.models import DeployedService
from scheduling import jobs
from scheduling.models import Job, JobRun

pytestmark = pytest.mark.django_db


def make_jobs(service: DeployedService, count: int, prefix: str = "job") -> None:
    start = timezone.now() + timedelta(days=1)
    for number in range(count):
        jobs.save_job(Job(name=f"{prefix}-{number:04d}", service=service, job_type=Job.JobType.INTERVAL_BASED,
                          start_date=start, hours=1))


def test_the_list_shows_type_plan_next_run_and_last_result(admin_client_alice, builtins) -> None:
    service = DeployedService.objects.get(name="demo.hello")
    make_jobs(service, 2)
    job = Job.objects.get(name="job-0000")
    JobRun.objects.create(job=job, scheduled_for=timezone.now(), started=timezone.now(), status="error",
                          cid="abc")
    page = admin_client_alice.get("/admin/scheduling/job/").content.decode()
    assert "interval-based" in page and "every 1:00:00" in page
    assert job.next_run().strftime("%Y-%m-%d %H:%M") in page
    assert ">error</span>" in page and "never" in page


def test_list_queries_do_not_grow_with_the_number_of_jobs(admin_client_alice, builtins) -> None:
    service = DeployedService.objects.get(name="demo.hello")
    make_jobs(service, 5, "a")
    with CaptureQueriesContext(connection) as few:
        assert admin_client_alice.get("/admin/scheduling/job/").status_code == 200
    make_jobs(service, 45, "b")
    with CaptureQueriesContext(connection) as many:
        assert admin_client_alice.get("/admin/scheduling/job/").status_code == 200
    assert len(many) == len(few)


def test_a_bad_cron_expression_is_a_form_error_and_saves_nothing(admin_client_alice, builtins) -> None:
    service = DeployedService.objects.get(name="demo.hello")
    now = timezone.now() + timedelta(hours=1)
    response = admin_client_alice.post("/admin/scheduling/job/add/", {
        "name": "broken", "is_active": "on", "service": service.pk, "job_type": "cron_style",
        "start_date_0": now.strftime("%Y-%m-%d"), "start_date_1": now.strftime("%H:%M:%S"),
        "weeks": 0, "days": 0, "hours": 0, "minutes": 0, "seconds": 0,
        "cron_definition": "0 25 * * *", "timezone": "UTC",
    })
    assert response.status_code == 200
    assert "25 is outside 0-23 in the hour field" in response.content.decode()
    assert not Job.objects.exists()


def test_deactivate_and_activate_actions(admin_client_alice, builtins) -> None:
    service = DeployedService.objects.get(name="demo.hello")
    make_jobs(service, 3)
    ids = list(Job.objects.values_list("pk", flat=True))
    admin_client_alice.post("/admin/scheduling/job/", {"action": "deactivate_selected", "_selected_action": ids})
    assert not Job.objects.filter(is_active=True).exists()
    assert not Job.objects.filter(periodic_task__enabled=True).exists()
    admin_client_alice.post("/admin/scheduling/job/", {"action": "activate_selected", "_selected_action": ids})
    assert Job.objects.filter(is_active=True, periodic_task__enabled=True).count() == 3


def test_celery_beat_pages_are_read_only(admin_client_alice, builtins) -> None:
    assert admin_client_alice.get("/admin/django_celery_beat/periodictask/").status_code == 200
    assert admin_client_alice.get("/admin/django_celery_beat/periodictask/add/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_execute_now_runs_the_job_in_a_real_celery_worker(admin_client_alice, builtins, worker_id) -> None:
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs the Redis broker (make test sets REDIS_URL)")
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    service = DeployedService.objects.get(name="demo.hello")
    job = jobs.save_job(Job(name="manual", service=service, job_type=Job.JobType.ONE_TIME,
                            start_date=timezone.now() + timedelta(days=3)))
    queue = f"test-execute-now-{worker_id}-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        with start_worker(app, queues=[queue], perform_ping_check=False, pool="solo", shutdown_timeout=10):
            response = admin_client_alice.post(f"/admin/scheduling/job/{job.pk}/execute/", follow=True)
            assert "queued to run now" in response.content.decode()
            deadline = time.monotonic() + 15
            while not JobRun.objects.filter(job=job, finished__isnull=False).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        app.conf.task_default_queue = previous
    run = JobRun.objects.get(job=job)
    assert run.manual and run.status == "ok"
    assert admin_client_alice.get(f"/admin/scheduling/job/{job.pk}/execute/").status_code == 405
