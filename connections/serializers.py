"""Management API serializer for Vault connections. Secrets are write-only, always.

``token`` (Switchboard's own Vault token) and ``tls_client_key`` are accepted on the way
in and encrypted; answers say only whether one is stored (``has_token``,
``has_tls_client_key``). Leaving a secret out keeps the stored one; ``null`` or ``""``
removes it.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import OAuthDefinition
from connections.models import AMQPBroker, OutgoingAMQP, OutgoingFhir, OutgoingRest, VaultConnection

_UNSET = object()


def _secret_field(max_length: int) -> serializers.CharField:
    return serializers.CharField(write_only=True, required=False, allow_null=True, allow_blank=True,
                                 trim_whitespace=False, max_length=max_length, style={"input_type": "password"})


class VaultConnectionSerializer(serializers.ModelSerializer):
    token = _secret_field(4096)
    tls_client_key = _secret_field(65536)
    has_token = serializers.BooleanField(read_only=True)
    has_tls_client_key = serializers.BooleanField(read_only=True)

    class Meta:
        model = VaultConnection
        fields = [
            "id", "name", "is_active", "url", "token", "has_token", "default_auth_method", "service_name",
            "mount_point", "github_mount_point", "timeout", "cache_ttl", "tls_verify", "tls_ca_cert",
            "tls_client_cert", "tls_client_key", "has_tls_client_key", "created", "updated",
        ]
        read_only_fields = ["created", "updated"]

    def create(self, validated_data: dict[str, Any]) -> VaultConnection:
        return self._save(VaultConnection(), validated_data)

    def update(self, instance: VaultConnection, validated_data: dict[str, Any]) -> VaultConnection:
        return self._save(instance, validated_data)

    @staticmethod
    def _save(instance: VaultConnection, validated_data: dict[str, Any]) -> VaultConnection:
        token = validated_data.pop("token", _UNSET)
        key = validated_data.pop("tls_client_key", _UNSET)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        if token is not _UNSET:
            instance.set_token(token or "")
        if key is not _UNSET:
            instance.set_tls_client_key(key or "")
        instance.save()  # validates the whole row (model clean): bad input is a 400 naming the field
        return instance


class PasswordSerializer(serializers.ModelSerializer):
    """A row with a send-again password (``connections.encrypted``): ``password`` is write-only and set
    through ``set_password``; leaving it out keeps the stored one, ``""`` or null removes it."""

    def create(self, validated_data: dict[str, Any]) -> Any:
        return self._save(self.Meta.model(), validated_data)

    def update(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        return self._save(instance, validated_data)

    @staticmethod
    def _save(instance: Any, validated_data: dict[str, Any]) -> Any:
        password = validated_data.pop("password", _UNSET)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        if password is not _UNSET:
            instance.set_password(password or "")
        instance.save()  # validates the whole row (model clean): bad input is a 400 naming the field
        return instance


class AMQPBrokerSerializer(PasswordSerializer):
    """``password`` is write-only; answers say ``has_password``. Leaving it out keeps the stored one."""

    password = _secret_field(1024)
    has_password = serializers.BooleanField(read_only=True)

    class Meta:
        model = AMQPBroker
        fields = ["id", "name", "is_active", "host", "port", "vhost", "username", "password", "has_password", "tls",
                  "tls_verify", "tls_ca_cert", "heartbeat", "timeout", "created", "updated"]
        read_only_fields = ["created", "updated"]


class OutgoingAMQPSerializer(serializers.ModelSerializer):
    broker = serializers.SlugRelatedField(slug_field="name", queryset=AMQPBroker.objects.all())

    class Meta:
        model = OutgoingAMQP
        fields = ["id", "name", "is_active", "broker", "exchange", "routing_key", "delivery_mode", "priority",
                  "content_type", "expiration", "app_id", "pool_size", "created", "updated"]
        read_only_fields = ["created", "updated"]


class OutgoingHttpSerializer(PasswordSerializer):
    """Shared by REST and FHIR: ``password`` (Basic password or API key) is write-only; ``oauth`` by name."""

    password = _secret_field(4096)
    has_password = serializers.BooleanField(read_only=True)
    oauth = serializers.SlugRelatedField(slug_field="name", queryset=OAuthDefinition.objects.all(), allow_null=True,
                                         required=False, help_text="The OAuth definition's name (auth_type oauth).")
    common_fields = ["id", "name", "is_active", "address", "auth_type", "username", "password", "has_password",
                     "oauth", "oauth_scopes", "timeout", "tls_verify", "tls_ca_cert"]


class OutgoingRestSerializer(OutgoingHttpSerializer):
    class Meta:
        model = OutgoingRest
        fields = [*OutgoingHttpSerializer.common_fields, "url_path", "data_format", "default_headers",
                  "api_key_header", "pool_size", "ping_method", "ping_path", "created", "updated"]
        read_only_fields = ["created", "updated"]


class OutgoingFhirSerializer(OutgoingHttpSerializer):
    class Meta:
        model = OutgoingFhir
        fields = [*OutgoingHttpSerializer.common_fields, "created", "updated"]
        read_only_fields = ["created", "updated"]
