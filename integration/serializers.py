from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from accounts.models import SecurityDefinition
from connections.models import AMQPBroker
from integration.api_base import full_clean_into, unstorable_reason
from integration.models import (
    AMQPChannel,
    DeployedService,
    FileChannel,
    RestChannel,
    ServiceModule,
    WebSocketChannel,
    WebSocketClient,
)


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


@extend_schema_serializer(examples=[OpenApiExample(
    "A module with one service", request_only=True,
    value={"filename": "my_api.py", "source": "from integration.services import Service\n\n\n"
           "class GetCustomer(Service):\n    def handle(self):\n        self.response.payload = {'name': 'Ann'}\n"},
)])
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
            reason = unstorable_reason(attrs["source"])
            if reason:  # the JSON `source` field refuses these itself; an upload is read here
                raise serializers.ValidationError({"file": f"The file is not Python source: {reason}"})
            attrs.setdefault("filename", upload.name)
        if not attrs.get("source"):
            raise serializers.ValidationError({"source": "Send the module's source, or upload it as `file`."})
        if not attrs.get("filename"):
            raise serializers.ValidationError({"filename": "Name the module file, e.g. my_api.py."})
        return attrs


class DeployResultSerializer(serializers.Serializer):
    """What a deployment did: the module's name, its services, and whether anything changed."""

    module = serializers.CharField(read_only=True, help_text="The module's name, from the file name.")
    services = serializers.ListField(child=serializers.CharField(), read_only=True,
                                     help_text="The names of the services the module now has.")
    changed = serializers.BooleanField(read_only=True, help_text="False when the same source was deployed already.")


class ModuleSerializer(serializers.ModelSerializer):
    """A deployed module; ``last_error`` says why its latest upload was rejected (it keeps its last good source)."""

    services = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = ServiceModule
        fields = ["name", "filename", "origin", "deployed_at", "services", "last_error", "last_error_at"]
        read_only_fields = fields


class ModuleDetailSerializer(ModuleSerializer):
    class Meta(ModuleSerializer.Meta):
        fields = [*ModuleSerializer.Meta.fields, "source"]
        read_only_fields = fields


@extend_schema_serializer(examples=[OpenApiExample(
    "GET with a path parameter", request_only=True,
    value={"name": "get-customer", "url_path": "/api/customer/{customer_id}", "method": "GET",
           "service": "demo.hello", "security": None, "data_format": "json"},
)])
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


class LinesField(serializers.ListField):
    """A list of names in JSON, one name per line in the model's text field."""

    child = serializers.CharField(max_length=200)

    def to_representation(self, value: str) -> list[str]:
        return [line.strip() for line in (value or "").splitlines() if line.strip()]

    def to_internal_value(self, data: Any) -> str:
        return "\n".join(super().to_internal_value(data))


@extend_schema_serializer(examples=[OpenApiExample(
    "An open channel", request_only=True,
    value={"name": "orders", "path": "/ws/orders", "service": "demo.echo", "allowed_services": ["demo.hello"],
           "idle_timeout": 60},
)])
class WebSocketChannelSerializer(serializers.ModelSerializer):
    service = serializers.SlugRelatedField(slug_field="name", queryset=DeployedService.objects.all())
    security = serializers.SlugRelatedField(
        slug_field="name", queryset=SecurityDefinition.objects.all(), allow_null=True, required=False
    )
    allowed_services = LinesField(required=False)
    connected_clients = serializers.IntegerField(read_only=True, source="client_count", default=0)

    class Meta:
        model = WebSocketChannel
        fields = [
            "id", "name", "is_active", "path", "service", "security", "allowed_services", "new_token_wait_time",
            "token_ttl", "idle_timeout", "max_message_size", "max_messages_per_second", "pushes",
            "connected_clients", "created", "updated",
        ]
        read_only_fields = ["created", "updated"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Check the row as it would be saved (a partial update keeps the other fields).
        instance = copy.copy(self.instance) if self.instance is not None else WebSocketChannel()
        for key, value in attrs.items():
            setattr(instance, key, value)
        full_clean_into(instance)
        for field in ("path", "allowed_services"):  # clean() normalises them
            if field in attrs:
                attrs[field] = getattr(instance, field)
        return attrs


class WebSocketClientSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebSocketClient
        fields = [
            "client_id", "username", "remote_addr", "connected_at", "last_seen", "messages_in", "messages_out",
            "server_host", "server_pid",
        ]
        read_only_fields = fields


class FileChannelSerializer(serializers.ModelSerializer):
    service = serializers.SlugRelatedField(slug_field="name", queryset=DeployedService.objects.all())

    class Meta:
        model = FileChannel
        fields = [
            "id", "name", "is_active", "directory", "patterns", "recursive", "on_created", "on_modified", "on_moved",
            "service", "pass_contents", "max_contents_size", "pass_event", "after_success", "done_directory",
            "after_failure", "error_directory", "stable_seconds", "use_polling", "created", "updated",
        ]
        read_only_fields = ["created", "updated"]


class AMQPChannelSerializer(serializers.ModelSerializer):
    service = serializers.SlugRelatedField(slug_field="name", queryset=DeployedService.objects.all())
    broker = serializers.SlugRelatedField(slug_field="name", queryset=AMQPBroker.objects.all())

    class Meta:
        model = AMQPChannel
        fields = [
            "id", "name", "is_active", "broker", "queue", "prefetch", "consumers", "service", "data_format",
            "max_requeues", "dead_letter_queue", "created", "updated",
        ]
        read_only_fields = ["created", "updated"]
