"""Management API resource ``scheduling/jobs/``: create, edit, delete, list, get, execute now."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from integration.api_base import ConfigViewSet
from scheduling import jobs
from scheduling.models import Job
from scheduling.serializers import JobSerializer
from scheduling.tasks import execute_now


class JobViewSet(ConfigViewSet):
    """Filters: ``?search=`` (name), ``?service=``, ``?job_type=``, ``?is_active=true|false``."""

    queryset = Job.objects.select_related("service").order_by("name")
    serializer_class = JobSerializer

    @property
    def required_permission(self) -> str | None:
        """Running a job is invoking its service; other actions need the job model's permissions."""
        return "integration.invoke_service" if getattr(self, "action", None) == "execute" else None

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()
        params = self.request.query_params
        if params.get("search"):
            queryset = queryset.filter(name__icontains=params["search"])
        if params.get("service"):
            queryset = queryset.filter(service__name=params["service"])
        if params.get("job_type"):
            queryset = queryset.filter(job_type=params["job_type"])
        if params.get("is_active") in ("true", "false"):
            queryset = queryset.filter(is_active=params["is_active"] == "true")
        return queryset

    def perform_destroy(self, instance: Job) -> None:
        jobs.delete_job(instance)

    @extend_schema(request=None, responses={202: dict})
    @action(detail=True, methods=["post"])
    def execute(self, request: Request, pk: str | None = None) -> Response:
        """Run the job now, whether it is active or not; answers 202 with the run's CID."""
        job = self.get_object()
        cid = execute_now(job)
        return Response({"id": job.pk, "name": job.name, "cid": cid}, status=status.HTTP_202_ACCEPTED)
