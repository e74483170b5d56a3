"""Built-in services ``zato.scheduler.job.*``: the scheduler's public API for service code.

They take the fields Zato's services take (``cluster_id`` is accepted and ignored) and
go through the same serializer and ``scheduling.jobs`` functions as the management API,
so a job made by a service is validated and synchronised exactly like one made in the
admin::

    from scheduling import SCHEDULER

    self.invoke("zato.scheduler.job.create", {
        "name": "bulk-billing", "is_active": True, "service": "billing.transfer",
        "job_type": SCHEDULER.JOB_TYPE.INTERVAL_BASED, "start_date": "2026-12-07 09:00:00",
        "minutes": 30, "repeats": 12, "extra": "region=emea",
    })
"""

from __future__ import annotations

from typing import Any

from integration.errors import BadRequest, NotFound
from integration.services import Service

#: Pages of zato.scheduler.job.get-list beyond this are empty (250 x 10**9 jobs would be needed to fill one).
MAX_PAGE = 10**9


def _payload(service: Service) -> dict[str, Any]:
    data = service.request.payload
    if not isinstance(data, dict):
        raise BadRequest("Send a JSON object")
    return {key: value for key, value in data.items() if key != "cluster_id"}


def _job(data: dict[str, Any]) -> Any:
    from scheduling.models import Job

    query = Job.objects.select_related("service")
    if data.get("id") is not None:
        job_id = _whole_number(data["id"])
        if job_id is None:
            raise BadRequest({"id": ["A job id is a whole number"]})
        job = query.filter(pk=job_id).first()  # Django answers nothing for an id past the column's range
        label = f"id {job_id}"
    elif data.get("name"):
        name = _name(data["name"], "name")
        # A name with NUL cannot exist (serializers refuse it), and PostgreSQL refuses to compare one.
        job = None if "\x00" in name else query.filter(name=name).first()
        label = f"name `{name[:200]}`"
    else:
        raise BadRequest("Give the job's `id` or `name`")
    if job is None:
        raise NotFound(f"No job with {label}")
    return job


def _whole_number(value: Any) -> int | None:
    """An id as Zato's clients send it (a number, or digits in a string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 100:
        return int(value)
    return None


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRequest({field: ["Must be a string"]})
    return value


def _save(data: dict[str, Any], instance: Any = None) -> dict[str, Any]:
    from scheduling.serializers import JobSerializer

    serializer = JobSerializer(instance, data=data, partial=instance is not None)
    if not serializer.is_valid():
        raise BadRequest({field: [str(message) for message in messages] if isinstance(messages, list)
                          else str(messages) for field, messages in serializer.errors.items()})
    job = serializer.save()
    return {"id": job.pk, "name": job.name, "cron_definition": job.cron_definition}


def _describe(job: Any) -> dict[str, Any]:
    return {
        "id": job.pk, "name": job.name, "is_active": job.is_active, "job_type": job.job_type,
        "start_date": job.start_date.isoformat(), "service_id": job.service_id, "service_name": job.service.name,
        "extra": job.extra, "weeks": job.weeks, "days": job.days, "hours": job.hours, "minutes": job.minutes,
        "seconds": job.seconds, "repeats": job.repeats, "cron_definition": job.cron_definition,
        "timezone": job.timezone,
    }


class CreateJob(Service):
    name = "zato.scheduler.job.create"

    def handle(self) -> None:
        self.response.payload = _save(_payload(self))


class EditJob(Service):
    """Input ``id`` plus the fields to change (others keep their values)."""

    name = "zato.scheduler.job.edit"

    def handle(self) -> None:
        data = _payload(self)
        job = _job({"id": data.get("id")} if data.get("id") is not None else data)
        self.response.payload = _save({k: v for k, v in data.items() if k != "id"}, job)


class DeleteJob(Service):
    name = "zato.scheduler.job.delete"

    def handle(self) -> None:
        from scheduling.jobs import delete_job

        delete_job(_job(_payload(self)))
        self.response.payload = {}


class GetJobById(Service):
    name = "zato.scheduler.job.get-by-id"

    def handle(self) -> None:
        data = _payload(self)
        if data.get("id") is None:
            raise BadRequest("Give the job's `id`")
        self.response.payload = _describe(_job({"id": data["id"]}))


class GetJobByName(Service):
    name = "zato.scheduler.job.get-by-name"

    def handle(self) -> None:
        data = _payload(self)
        if not data.get("name"):
            raise BadRequest("Give the job's `name`")
        self.response.payload = _describe(_job({"name": data["name"]}))


class GetJobList(Service):
    """Optional ``service_name`` filter; ``cur_page`` (1-based) and ``page_size`` (default 50, max 250)."""

    name = "zato.scheduler.job.get-list"

    def handle(self) -> None:
        from scheduling.models import Job

        data = self.request.payload if isinstance(self.request.payload, dict) else {}
        query = Job.objects.select_related("service").order_by("name")
        if data.get("service_name"):
            service_name = _name(data["service_name"], "service_name")
            query = query.none() if "\x00" in service_name else query.filter(service__name=service_name)
        try:
            page = max(1, int(data.get("cur_page") or 1))
            size = min(250, max(1, int(data.get("page_size") or 50)))
        except (TypeError, ValueError, OverflowError):
            raise BadRequest("`cur_page` and `page_size` must be numbers") from None
        # Past MAX_PAGE every page is empty; the cap keeps the database's OFFSET within its 64 bits.
        page = min(page, MAX_PAGE)
        self.response.payload = [_describe(job) for job in query[(page - 1) * size: page * size]]


class ExecuteJob(Service):
    """Run a job now, active or not; answers the run's CID."""

    name = "zato.scheduler.job.execute"

    def handle(self) -> None:
        from scheduling.tasks import execute_now

        job = _job(_payload(self))
        self.response.payload = {"id": job.pk, "cid": execute_now(job)}


class SetJobActiveStatus(Service):
    name = "zato.scheduler.job.set-active-status"

    def handle(self) -> None:
        from django.core.exceptions import ValidationError

        from scheduling.jobs import set_active

        data = _payload(self)
        if not isinstance(data.get("is_active"), bool):
            raise BadRequest({"is_active": ["Must be true or false"]})
        job = _job({"id": data.get("id")} if data.get("id") is not None else data)
        try:
            set_active(job, data["is_active"])
        except ValidationError as exc:
            raise BadRequest(exc.message_dict) from None
        self.response.payload = {"id": job.pk, "is_active": job.is_active}
