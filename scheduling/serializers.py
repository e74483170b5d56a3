"""Job input and output for the management API and the ``zato.scheduler.job.*`` services (one path)."""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from integration.models import DeployedService
from scheduling import jobs
from scheduling.models import Job


class ServiceField(serializers.SlugRelatedField):
    def to_internal_value(self, data: Any) -> DeployedService:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            raise serializers.ValidationError(f"Service `{data}` is not deployed") from None


@extend_schema_serializer(examples=[OpenApiExample(
    "Every 30 minutes, twelve times", request_only=True,
    value={"name": "bulk-billing", "is_active": True, "service": "demo.hello", "job_type": "interval_based",
           "start_date": "2030-12-07T09:00:00Z", "minutes": 30, "repeats": 12, "extra": "region=emea"},
)])
class JobSerializer(serializers.ModelSerializer):
    service = ServiceField(slug_field="name", queryset=DeployedService.objects.all())
    next_run = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "name", "is_active", "service", "job_type", "start_date", "extra", "weeks", "days", "hours",
                  "minutes", "seconds", "repeats", "cron_definition", "timezone", "next_run", "created", "updated"]
        read_only_fields = ["created", "updated"]

    def get_next_run(self, job: Job) -> str | None:
        upcoming = job.next_run()
        return upcoming.isoformat() if upcoming else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Check the job as it would be saved (a partial update keeps the other fields).
        job = copy.copy(self.instance) if self.instance is not None else Job()
        for key, value in attrs.items():
            setattr(job, key, value)
        try:
            job.full_clean(validate_unique=False, validate_constraints=False)
            jobs.check_new_plan(job)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        if "cron_definition" in attrs:
            attrs["cron_definition"] = job.cron_definition  # normalised by clean()
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Job:
        return jobs.save_job(Job(**validated_data))

    def update(self, instance: Job, validated_data: dict[str, Any]) -> Job:
        for key, value in validated_data.items():
            setattr(instance, key, value)
        return jobs.save_job(instance)
