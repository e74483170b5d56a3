"""The scheduler's public API: management API ``scheduling/jobs/`` and the ``zato.scheduler.job.*`` services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from integration.invoke import invoke
from scheduling.models import Job

pytestmark = pytest.mark.django_db
URL = "/manage/api/v1/scheduling/jobs/"


def future(**delta: int) -> str:
    return (timezone.now() + timedelta(**(delta or {"hours": 1}))).isoformat()


def test_create_get_edit_list_and_delete_through_the_api(api, builtins) -> None:
    created = api.post(URL, {"name": "hourly", "service": "demo.hello", "job_type": "interval_based",
                             "start_date": future(), "hours": 1, "extra": "a,b,c"}, format="json")
    assert created.status_code == 201, created.json()
    job = created.json()
    assert job["next_run"] is not None and job["is_active"]
    assert PeriodicTask.objects.get(pk=Job.objects.get(pk=job["id"]).periodic_task_id).enabled

    edited = api.patch(f"{URL}{job['id']}/", {"name": "weekday-mornings", "job_type": "cron_style",
                                              "cron_definition": "00 3-6 * * 1-5", "timezone": "Europe/Warsaw"},
                       format="json")
    assert edited.status_code == 200, edited.json()
    assert edited.json()["cron_definition"] == "00 3-6 * * 1-5"
    assert api.get(URL, {"job_type": "cron_style"}).json()["results"][0]["name"] == "weekday-mornings"
    assert api.get(URL, {"is_active": "false"}).json()["results"] == []

    assert api.delete(f"{URL}{job['id']}/").status_code == 204
    assert not Job.objects.exists() and not PeriodicTask.objects.filter(task="scheduling.run_job").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job_type": "cron_style", "cron_definition": "0 0 32 * *"}, "cron_definition"),
        ({"job_type": "cron_style", "cron_definition": "@daily", "timezone": "Europe/Atlantis"}, "timezone"),
        ({"job_type": "interval_based", "minutes": -5}, "minutes"),
        ({"job_type": "interval_based"}, "seconds"),
        ({"job_type": "one_time", "start_date": "2020-01-01T00:00:00Z"}, "start_date"),
        ({"job_type": "one_time", "service": "no.such.service"}, "service"),
        ({"job_type": "every-tuesday"}, "job_type"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_saves_nothing(api, builtins, body, field) -> None:
    payload = {"name": "bad", "service": "demo.hello", "start_date": future(), **body}
    response = api.post(URL, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["details"], response.json()
    assert response["X-Zato-CID"]
    assert not Job.objects.exists() and not PeriodicTask.objects.exists()


def test_services_can_manage_jobs_with_zato_fields(builtins, deploy) -> None:
    deploy("job_admin.py", """
        from integration.services import Service
        from scheduling import SCHEDULER

        class Plan(Service):
            def handle(self):
                created = self.invoke("zato.scheduler.job.create", {
                    "cluster_id": 1, "name": "bulk-billing", "is_active": True, "service": "demo.hello",
                    "job_type": SCHEDULER.JOB_TYPE.INTERVAL_BASED, "start_date": self.request.payload["start"],
                    "minutes": 30, "repeats": 12, "extra": "region=emea",
                })
                self.invoke("zato.scheduler.job.set-active-status", {"id": created["id"], "is_active": False})
                self.response.payload = {
                    "created": created,
                    "by_name": self.invoke("zato.scheduler.job.get-by-name", {"name": "bulk-billing"}),
                    "list": self.invoke("zato.scheduler.job.get-list", {"service_name": "demo.hello"}),
                }
    """)
    start = (timezone.now() + timedelta(weeks=2)).strftime("%Y-%m-%d %H:%M:%S")
    result = invoke("job-admin.plan", {"start": start}).payload
    assert result["created"]["name"] == "bulk-billing" and result["created"]["cron_definition"] == ""
    assert result["by_name"]["repeats"] == 12 and result["by_name"]["service_name"] == "demo.hello"
    assert result["by_name"]["is_active"] is False
    assert [job["name"] for job in result["list"]] == ["bulk-billing"]

    edited = invoke("zato.scheduler.job.edit", {"id": result["created"]["id"], "minutes": 15}).payload
    assert edited["id"] == result["created"]["id"]
    assert Job.objects.get().minutes == 15
    invoke("zato.scheduler.job.delete", {"id": edited["id"]})
    assert not Job.objects.exists()


def test_service_errors_are_400_with_the_field(builtins) -> None:
    from integration.errors import BadRequest, NotFound

    with pytest.raises(BadRequest) as caught:
        invoke("zato.scheduler.job.create", {"name": "x", "service": "demo.hello", "job_type": "cron_style",
                                             "start_date": future(), "cron_definition": "* * *"})
    assert "cron_definition" in caught.value.details
    with pytest.raises(NotFound):
        invoke("zato.scheduler.job.get-by-id", {"id": 424242})
    assert not Job.objects.exists()


def test_execute_needs_the_invoke_permission_not_add_job(builtins, bob) -> None:
    from django.contrib.auth.models import Permission

    from integration.models import DeployedService
    from scheduling import jobs
    from tests.conftest import api_client_for

    job = jobs.save_job(Job(name="nightly", service=DeployedService.objects.get(name="demo.hello"),
                            job_type="interval_based", start_date=timezone.now() + timedelta(hours=1), hours=1))
    client = api_client_for(bob)
    bob.user_permissions.add(Permission.objects.get(codename="add_job"))
    assert client.post(f"{URL}{job.pk}/execute/").status_code == 403
