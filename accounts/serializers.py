"""Management API serializers for security definitions. Secrets are write-only, always."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from accounts.models import (
    API_KEY_MIN_LENGTH,
    JWT_MAX_TTL,
    ApiKey,
    BasicAuth,
    JWTDefinition,
    OAuthDefinition,
    TechAccount,
)


def _secret_field(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(write_only=True, trim_whitespace=False, max_length=1024,
                                 style={"input_type": "password"}, **kwargs)


class PasswordDefinitionSerializer(serializers.ModelSerializer):
    """Definitions with a verify-only password: optional on create (else a random one), hashed, never returned."""

    password = _secret_field(required=False)

    def create(self, validated_data: dict[str, Any]) -> Any:
        password = validated_data.pop("password", None)
        instance = self.Meta.model(**validated_data)
        if password:
            instance.set_password(password)
        instance.save()
        return instance

    def update(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        password = validated_data.pop("password", None)
        for key, value in validated_data.items():
            setattr(instance, key, value)
        if password:
            instance.set_password(password)
        instance.save()
        return instance


class BasicAuthSerializer(PasswordDefinitionSerializer):
    class Meta:
        model = BasicAuth
        fields = ["id", "name", "is_active", "username", "password", "realm", "created", "updated"]
        read_only_fields = ["created", "updated"]


class TechAccountSerializer(PasswordDefinitionSerializer):
    """The name is the username callers send in X-Zato-User."""

    class Meta:
        model = TechAccount
        fields = ["id", "name", "is_active", "password", "created", "updated"]
        read_only_fields = ["created", "updated"]


class JWTSerializer(PasswordDefinitionSerializer):
    class Meta:
        model = JWTDefinition
        fields = ["id", "name", "is_active", "username", "password", "ttl", "created", "updated"]
        read_only_fields = ["created", "updated"]
        extra_kwargs = {"ttl": {"max_value": JWT_MAX_TTL}}  # the model's clean() bound, which serializers skip


class ApiKeySerializer(serializers.ModelSerializer):
    """``key`` is returned once, in the answer to the create call (or to regenerate-key); never again.

    Omit ``key`` on create to have a strong one generated; give one (at least
    ``API_KEY_MIN_LENGTH`` characters) to bring an existing key along.
    """

    key = _secret_field(required=False, min_length=API_KEY_MIN_LENGTH)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "is_active", "header", "key_prefix", "key", "created", "updated"]
        read_only_fields = ["key_prefix", "created", "updated"]

    def create(self, validated_data: dict[str, Any]) -> ApiKey:
        key = validated_data.pop("key", None) or ApiKey.generate_key()
        instance = ApiKey(**validated_data)
        try:
            instance.set_key(key)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        instance.save()
        instance.shown_key = key  # type: ignore[attr-defined]
        return instance

    def update(self, instance: ApiKey, validated_data: dict[str, Any]) -> ApiKey:
        if "key" in validated_data:
            raise serializers.ValidationError({"key": "Change a key with regenerate-key/ or change-password/."})
        return super().update(instance, validated_data)

    def to_representation(self, instance: ApiKey) -> dict[str, Any]:
        data = super().to_representation(instance)
        shown = getattr(instance, "shown_key", None)
        if shown is not None:
            data["key"] = shown
        return data


# Used only to describe the create answer in the OpenAPI schema; ApiKeySerializer writes that answer.
class ApiKeyCreatedSerializer(ApiKeySerializer):
    """The answer to creating an API key: the definition and, this once, its key.

    ``key`` is write-only everywhere else; the create answer is the one place it is read.
    """

    key = serializers.CharField(read_only=True, help_text="The key, in this answer only: store it now.")


class NewKeySerializer(serializers.Serializer):
    """The answer to regenerate-key: the new key, shown this once."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    key_prefix = serializers.CharField(read_only=True)
    key = serializers.CharField(read_only=True)


class PasswordChangedSerializer(serializers.Serializer):
    """The answer to change-password: which definition, and that its password (or key) was changed."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    password_changed = serializers.BooleanField(read_only=True)


@extend_schema_serializer(examples=[OpenApiExample(
    "The same new password twice", request_only=True,
    value={"password1": "correct-horse-battery-staple-42", "password2": "correct-horse-battery-staple-42"},
)])
class ChangePasswordSerializer(serializers.Serializer):
    """Zato's change-password input: the same new password twice."""

    password1 = serializers.CharField(trim_whitespace=False, max_length=1024)
    password2 = serializers.CharField(trim_whitespace=False, max_length=1024)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["password1"] != attrs["password2"]:
            raise serializers.ValidationError({"password2": "The two passwords are not the same."})
        return attrs


class OAuthSerializer(serializers.ModelSerializer):
    """OAuth client credentials. ``client_secret`` is write-only (encrypted at rest); ``has_secret`` says if set.

    Leaving ``client_secret`` out of an update keeps the stored one; ``change-password/`` also sets it.
    """

    client_secret = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False,
                                          max_length=4096, style={"input_type": "password"})
    has_secret = serializers.BooleanField(read_only=True)

    class Meta:
        model = OAuthDefinition
        fields = ["id", "name", "is_active", "token_url", "client_id", "client_secret", "has_secret", "scopes",
                  "extra_params", "credentials_in", "timeout", "tls_verify", "tls_ca_cert", "created", "updated"]
        read_only_fields = ["created", "updated"]

    def create(self, validated_data: dict[str, Any]) -> OAuthDefinition:
        return self._save(OAuthDefinition(), validated_data)

    def update(self, instance: OAuthDefinition, validated_data: dict[str, Any]) -> OAuthDefinition:
        return self._save(instance, validated_data)

    @staticmethod
    def _save(instance: OAuthDefinition, validated_data: dict[str, Any]) -> OAuthDefinition:
        secret = validated_data.pop("client_secret", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        if secret:
            instance.set_secret(secret)
        instance.save()  # validates the whole row: bad input is a 400 naming the field
        return instance
