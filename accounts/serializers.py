from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import BasicAuth


class BasicAuthSerializer(serializers.ModelSerializer):
    """``password`` is write-only: it is hashed on the way in and never returned."""

    password = serializers.CharField(write_only=True, required=False, trim_whitespace=False, max_length=1024,
                                     style={"input_type": "password"})

    class Meta:
        model = BasicAuth
        fields = ["id", "name", "is_active", "username", "password", "realm", "created", "updated"]
        read_only_fields = ["created", "updated"]

    def create(self, validated_data: dict[str, Any]) -> BasicAuth:
        password = validated_data.pop("password", None)
        instance = BasicAuth(**validated_data)
        if password:
            instance.set_password(password)
        instance.save()
        return instance

    def update(self, instance: BasicAuth, validated_data: dict[str, Any]) -> BasicAuth:
        password = validated_data.pop("password", None)
        for key, value in validated_data.items():
            setattr(instance, key, value)
        if password:
            instance.set_password(password)
        instance.save()
        return instance


class ChangePasswordSerializer(serializers.Serializer):
    """Zato's change-password input: the same new password twice."""

    password1 = serializers.CharField(trim_whitespace=False, max_length=1024)
    password2 = serializers.CharField(trim_whitespace=False, max_length=1024)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["password1"] != attrs["password2"]:
            raise serializers.ValidationError({"password2": "The two passwords are not the same."})
        return attrs
