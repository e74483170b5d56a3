"""Management API serializers for LDAP, SFTP and FTP connections. Secrets are write-only, always.

``password`` (and SFTP's ``private_key``) are accepted on the way in and encrypted; answers
say only whether one is stored (``has_password``, ``has_private_key``). Leaving a secret out
keeps the stored one; ``null`` or ``""`` removes it (an LDAP connection then gets a new random
password, as a new one does).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts import crypto
from connections.directory_models import FtpConnection, LdapConnection, SftpConnection

_UNSET = object()
_COMMON = ["id", "name", "is_active", "password", "has_password"]


def _secret_field(max_length: int) -> serializers.CharField:
    return serializers.CharField(write_only=True, required=False, allow_null=True, allow_blank=True,
                                 trim_whitespace=False, max_length=max_length, style={"input_type": "password"})


class _SecretsSerializer(serializers.ModelSerializer):
    password = _secret_field(4096)
    has_password = serializers.BooleanField(read_only=True)
    secrets: tuple[str, ...] = ("password",)

    def create(self, validated_data: dict[str, Any]) -> Any:
        return self._save(self.Meta.model(), validated_data)

    def update(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        return self._save(instance, validated_data)

    def _save(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        given = {name: validated_data.pop(name, _UNSET) for name in self.secrets}
        for name, value in validated_data.items():
            setattr(instance, name, value)
        password = given["password"]
        if password is not _UNSET:
            if not password and isinstance(instance, LdapConnection):
                password = crypto.random_secret()
            instance.set_password(password or "")
        if given.get("private_key", _UNSET) is not _UNSET:
            instance.set_private_key(given["private_key"] or "")
        instance.save()  # validates the whole row (model clean): bad input is a 400 naming the field
        return instance


class LdapConnectionSerializer(_SecretsSerializer):
    class Meta:
        model = LdapConnection
        fields = [*_COMMON, "servers", "pool_strategy", "auth_type", "username", "tls_mode", "tls_ca_cert",
                  "tls_validate", "connect_timeout", "operation_timeout", "pool_size", "pool_exhaust_timeout",
                  "created", "updated"]
        read_only_fields = ["created", "updated"]


class SftpConnectionSerializer(_SecretsSerializer):
    private_key = _secret_field(65536)
    has_private_key = serializers.BooleanField(read_only=True)
    secrets = ("password", "private_key")

    class Meta:
        model = SftpConnection
        fields = [*_COMMON, "host", "port", "username", "private_key", "has_private_key", "host_key",
                  "accept_unknown_host_key", "preserve_metadata", "bandwidth_limit", "log_level", "ssh_options",
                  "ping_command", "default_directory", "timeout", "created", "updated"]
        read_only_fields = ["created", "updated"]


class FtpConnectionSerializer(_SecretsSerializer):
    class Meta:
        model = FtpConnection
        fields = [*_COMMON, "host", "port", "user", "tls", "tls_ca_cert", "passive", "timeout",
                  "default_directory", "pool_size", "created", "updated"]
        read_only_fields = ["created", "updated"]


class SftpExecuteSerializer(serializers.Serializer):
    data = serializers.CharField(max_length=100_000, trim_whitespace=False)
    log_level = serializers.IntegerField(min_value=0, max_value=4, default=0)


class PingAnswerSerializer(serializers.Serializer):
    """``POST {id}/ping/``: whether the server answered, in how many ms, and a line saying which and how."""

    ok = serializers.BooleanField()
    ms = serializers.FloatField()
    info = serializers.CharField()
    name = serializers.CharField()


class SftpOutputSerializer(serializers.Serializer):
    """``POST {id}/execute/``: Zato's SFTPOutput."""

    is_ok = serializers.BooleanField()
    command = serializers.CharField()
    command_no = serializers.IntegerField(help_text="The line of the command that ran last.")
    stdout = serializers.CharField(allow_blank=True)
    stderr = serializers.CharField(allow_blank=True)
    details = serializers.CharField(allow_blank=True, help_text="The protocol log, with a log level of 1-4.")
    response_time = serializers.FloatField(help_text="Seconds.")
