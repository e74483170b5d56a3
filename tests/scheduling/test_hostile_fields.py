"""Scheduler fields that overflow: a 400 naming the field, in the API, the admin and the services (issue 11, item 6).

Reproduced before the fix: ``days=30000`` on an interval job was a 500 (``integer out of
range`` from PostgreSQL: 2,592,000,000 seconds do not fit django-celery-beat's 32-bit
interval column) and ``weeks=2147483647`` a 500 (``timedelta`` overflow in ``Job.clean``).
A start date at the end of the calendar was saved, and the beat would then have crashed
adding the interval to it. Nothing may be half-saved either.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from integration.errors import BadRequest, NotFound
from integration.invoke import invoke
from integration.models import DeployedService
from scheduling import plans
from scheduling.models import Job

pytestmark = pytest.mark.django_db
URL = "/manage/api/v1/scheduling/jobs/"


def future(**delta: int) -> str:
    return (timezone.now() + timedelta(**(delta or {"hours": 1}))).isoformat()


OVERFLOWS = [
    # (fields, the field the answer must name)
    ({"days": 30000}, "days"),  # 82 years: over django-celery-beat's 2**31 - 1 seconds
    ({"weeks": 2147483647}, "weeks"),  # timedelta's own limit is 999,999,999 days
    ({"weeks": 2**31}, "weeks"),  # over PostgreSQL's integer column
    ({"hours": 10**30}, "hours"),
    ({"weeks": 3000, "days": 10000}, "days"),  # each fits alone; together they are 75 years
    ({"seconds": 2**31}, "seconds"),
    ({"minutes": 1, "repeats": 2**31}, "repeats"),
    ({"minutes": 1, "start_date": "9999-12-31T23:59:59Z"}, "start_date"),  # the next run would be past year 9999
    ({"minutes": 1, "start_date": "1969-12-31T23:59:59Z"}, "start_date"),
    ({"minutes": 1, "start_date": "9999-12-31T23:00:00-05:00"}, "start_date"),  # in UTC, past the calendar
]


@pytest.mark.parametrize(("fields", "field"), OVERFLOWS)
def test_the_api_answers_an_overflowing_interval_job_with_400_naming_the_field(api, builtins, fields, field) -> None:
    body = {"name": "overflow", "service": "demo.hello", "job_type": "interval_based", "start_date": future(),
            **fields}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    details = response.json()["details"]
    assert list(details) == [field], details
    assert response["X-Zato-CID"] == response.json()["cid"]
    assert not Job.objects.exists() and not PeriodicTask.objects.exists()


def test_the_messages_say_what_the_limit_is(api, builtins) -> None:
    def details(**fields: Any) -> dict[str, Any]:
        body = {"name": "x", "service": "demo.hello", "job_type": "interval_based", "start_date": future(), **fields}
        return api.post(URL, body, format="json").json()["details"]

    assert details(days=30000) == {"days": ["At most 24855 days: an interval can be at most 2147483647 seconds "
                                            "(about 68 years)"]}
    assert details(weeks=3000, days=10000) == {"days": [
        "The interval (weeks, days, hours, minutes and seconds together) can be at most 2147483647 seconds "
        "(about 68 years)"]}
    assert details(minutes=1, start_date="9999-01-01T00:00:00Z") == {
        "start_date": ["The start date must be from 1970-01-01 to 8999-12-31 (UTC)"]}


def test_the_longest_interval_is_accepted_and_stored(api, builtins) -> None:
    body = {"name": "longest", "service": "demo.hello", "job_type": "interval_based", "start_date": future(),
            "seconds": plans.MAX_INTERVAL_SECONDS, "repeats": plans.MAX_REPEATS}
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(name="longest")
    assert job.periodic_task.interval.every == 2**31 - 1  # django-celery-beat's column holds it
    assert job.next_run() is not None


def test_an_edit_that_overflows_is_400_and_keeps_the_job_as_it_was(api, builtins) -> None:
    created = api.post(URL, {"name": "edit-me", "service": "demo.hello", "job_type": "interval_based",
                             "start_date": future(), "hours": 1}, format="json").json()
    response = api.patch(f"{URL}{created['id']}/", {"days": 30000}, format="json")
    assert response.status_code == 400 and list(response.json()["details"]) == ["days"]
    job = Job.objects.get(pk=created["id"])
    assert (job.days, job.hours) == (0, 1)
    assert job.periodic_task.interval.every == 3600
    assert list(IntervalSchedule.objects.values_list("every", flat=True)) == [3600]


@pytest.mark.parametrize(("fields", "field"), OVERFLOWS[:7])
def test_the_admin_form_names_the_overflowing_field(admin_client_alice, builtins, fields, field) -> None:
    service = DeployedService.objects.get(name="demo.hello")
    start = timezone.now() + timedelta(hours=1)
    form = {
        "name": "overflow", "is_active": "on", "service": service.pk, "job_type": "interval_based",
        "start_date_0": start.strftime("%Y-%m-%d"), "start_date_1": start.strftime("%H:%M:%S"),
        "weeks": 0, "days": 0, "hours": 0, "minutes": 0, "seconds": 0, "repeats": "",
        "cron_definition": "", "timezone": "UTC", **fields,
    }
    response = admin_client_alice.post("/admin/scheduling/job/add/", form)
    assert response.status_code == 200  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert not Job.objects.exists()


@pytest.mark.parametrize(("fields", "field"), OVERFLOWS)
def test_the_builtin_services_answer_an_overflowing_job_with_400_naming_the_field(builtins, fields, field) -> None:
    body = {"name": "overflow", "service": "demo.hello", "job_type": "interval_based",
            "start_date": future(), **fields}
    with pytest.raises(BadRequest) as refused:
        invoke("zato.scheduler.job.create", body)
    assert list(refused.value.details) == [field]
    assert not Job.objects.exists()


def test_the_edit_service_answers_an_overflow_with_400(builtins) -> None:
    created = invoke("zato.scheduler.job.create", {"name": "svc", "service": "demo.hello",
                                                   "job_type": "interval_based", "start_date": future(),
                                                   "minutes": 5}).payload
    with pytest.raises(BadRequest) as refused:
        invoke("zato.scheduler.job.edit", {"id": created["id"], "weeks": 2147483647})
    assert list(refused.value.details) == ["weeks"]
    assert Job.objects.get(pk=created["id"]).weeks == 0


@pytest.mark.parametrize(
    ("service", "payload", "error"),
    [
        # Reproduced as 500s: int("²") after "²".isdigit(), a NUL PostgreSQL refuses, a dict as a name,
        # and an OFFSET past 64 bits.
        ("zato.scheduler.job.get-by-id", {"id": "²"}, BadRequest),
        ("zato.scheduler.job.get-by-id", {"id": [1]}, BadRequest),
        ("zato.scheduler.job.get-by-id", {"id": 10**30}, NotFound),
        ("zato.scheduler.job.get-by-id", {"id": "99999999999999999999"}, NotFound),
        ("zato.scheduler.job.get-by-name", {"name": "a\x00b"}, NotFound),
        ("zato.scheduler.job.get-by-name", {"name": {"a": 1}}, BadRequest),
        ("zato.scheduler.job.execute", {"id": True}, BadRequest),
        ("zato.scheduler.job.get-list", {"page_size": "many"}, BadRequest),
    ],
)
def test_the_builtin_services_answer_hostile_lookups_with_4xx(builtins, service, payload, error) -> None:
    with pytest.raises(error):
        invoke(service, payload)


def test_get_list_pages_far_past_the_end_are_empty(builtins) -> None:
    invoke("zato.scheduler.job.create", {"name": "one", "service": "demo.hello", "job_type": "interval_based",
                                         "start_date": future(), "minutes": 5})
    assert invoke("zato.scheduler.job.get-list", {"cur_page": 10**20}).payload == []
    assert invoke("zato.scheduler.job.get-list", {"service_name": "demo\x00hello"}).payload == []
    assert [job["name"] for job in invoke("zato.scheduler.job.get-list", {}).payload] == ["one"]


# Plans stop quietly at the end of the calendar (rows saved before these checks, or a far start).

END = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)


def test_an_interval_plan_whose_next_run_is_past_the_calendar_has_no_run_left() -> None:
    plan = plans.Plan.interval(END - timedelta(days=1), timedelta(days=2))
    assert plan.next_after(END - timedelta(days=2)) == END - timedelta(days=1)
    assert plan.next_after(END - timedelta(days=1)) is None  # not OverflowError
    start, every = datetime(2026, 1, 1, tzinfo=UTC), timedelta(seconds=2**31 - 1)
    last = plans.Plan.interval(start, every, repeats=2**31 - 1).last()
    # 2**31 - 1 repeats of 68 years would end long after the year 9999: the last run is the grid's last point there.
    assert last is not None and (last - start) % every == timedelta(0)
    assert datetime.max.replace(tzinfo=UTC) - last < every


def test_a_cron_plan_near_the_end_of_the_calendar_has_no_run_left() -> None:
    plan = plans.Plan.cron(END - timedelta(days=3), "0 0 29 2 *")  # Feb 29: none before the calendar ends
    assert plan.next_after(END - timedelta(days=3)) is None


@pytest.mark.parametrize("text", ["*/" + "9" * 5000 + " * * * *", "9" * 5000 + " * * * *", "*/99999 * * * *"])
def test_a_cron_number_of_thousands_of_digits_is_a_plan_error_not_a_crash(text: str) -> None:
    # int() of over 4,300 digits raises ValueError (Python's limit); the job's field must be named instead.
    with pytest.raises(plans.PlanError) as refused:
        plans.Cron.parse(text)
    assert refused.value.field == "cron_definition"
