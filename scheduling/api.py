"""Management API resource ``scheduling/jobs/``: create, edit, delete, list, get, execute now."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from integration.api_base import ConfigViewSet
from integration.api_filters import StrictBooleanFilter, names_filter
from scheduling import jobs
from scheduling.models import Job
from scheduling.serializers import JobSerializer
from scheduling.tasks import execute_now


class JobFilter(django_filters.FilterSet):
    service = names_filter("service__name", "Only jobs that invoke this service (by name).")
    job_type = django_filters.ChoiceFilter(choices=Job.JobType.choices)
    is_active = StrictBooleanFilter(help_text="true or false.")

    class Meta:
        model = Job
        fields = ["service", "job_type", "is_active"]


class JobViewSet(ConfigViewSet):
    """Filters: ``?search=`` (name), ``?service=``, ``?job_type=``, ``?is_active=true|false``."""

    queryset = Job.objects.select_related("service").order_by("name")
    serializer_class = JobSerializer
    filterset_class = JobFilter

    @property
    def required_permission(self) -> str | None:
        """Running a job is invoking its service; other actions need the job model's permissions."""
        return "integration.invoke_service" if getattr(self, "action", None) == "execute" else None

    def perform_destroy(self, instance: Job) -> None:
        jobs.delete_job(instance)

    @extend_schema(request=None, responses={202: inline_serializer("JobExecuted", {
        "id": serializers.IntegerField(), "name": serializers.CharField(),
        "cid": serializers.CharField(help_text="The run's correlation id, as in the logs and the job's runs."),
    })})
    @action(detail=True, methods=["post"])
    def execute(self, request: Request, pk: str | None = None) -> Response:
        """Run the job now, whether it is active or not; answers 202 with the run's CID."""
        job = self.get_object()
        cid = execute_now(job)
        return Response({"id": job.pk, "name": job.name, "cid": cid}, status=status.HTTP_202_ACCEPTED)
