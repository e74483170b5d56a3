from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers

from accounts.models import SecurityDefinition
from integration.api_base import full_clean_into
from integration.models import DeployedService, RestChannel


class ServiceSerializer(serializers.ModelSerializer):
    module = serializers.CharField(source="module.name", read_only=True)
    origin = serializers.CharField(source="module.origin", read_only=True)

    class Meta:
        model = DeployedService
        fields = ["name", "module", "class_name", "origin", "deployed_at"]


class ServiceDetailSerializer(ServiceSerializer):
    source = serializers.CharField(source="module.source", read_only=True)

    class Meta(ServiceSerializer.Meta):
        fields = [*ServiceSerializer.Meta.fields, "source"]


class DeploySerializer(serializers.Serializer):
    """Deploy a module: JSON ``{"filename", "source"}`` or a multipart ``file``."""

    filename = serializers.CharField(required=False, max_length=255)
    source = serializers.CharField(required=False, trim_whitespace=False, allow_blank=False)
    file = serializers.FileField(required=False, write_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        upload = attrs.pop("file", None)
        if upload is not None:
            try:
                attrs["source"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise serializers.ValidationError({"file": "The file is not UTF-8 text."}) from None
            attrs.setdefault("filename", upload.name)
        if not attrs.get("source"):
            raise serializers.ValidationError({"source": "Send the module's source, or upload it as `file`."})
        if not attrs.get("filename"):
            raise serializers.ValidationError({"filename": "Name the module file, e.g. my_api.py."})
        return attrs


class RestChannelSerializer(serializers.ModelSerializer):
    service = serializers.SlugRelatedField(slug_field="name", queryset=DeployedService.objects.all())
    security = serializers.SlugRelatedField(
        slug_field="name", queryset=SecurityDefinition.objects.all(), allow_null=True, required=False
    )
    # Any case is accepted ("get"); the model's clean() upper-cases and validates it.
    method = serializers.CharField(allow_blank=True, required=False, max_length=10)

    class Meta:
        model = RestChannel
        fields = [
            "id", "name", "is_active", "url_path", "method", "accept", "service", "security", "data_format",
            "merge_url_params", "created", "updated",
        ]
        read_only_fields = ["created", "updated"]

    def validate_method(self, value: str) -> str:
        return value.strip().upper()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Check the row as it would be saved (a partial update keeps the other fields).
        instance = copy.copy(self.instance) if self.instance is not None else RestChannel()
        for key, value in attrs.items():
            setattr(instance, key, value)
        full_clean_into(instance)
        # clean() normalises (strips, upper-cases): keep what it produced.
        for field in ("url_path", "method", "accept"):
            if field in attrs:
                attrs[field] = getattr(instance, field)
        return attrs
