"""Management API for LDAP, SFTP and FTP connections: ``outgoing/ldap/``, ``outgoing/sftp/``, ``outgoing/ftp/``.

Each has ``?search=`` (names and hosts), filters (``is_active`` and the main choices) and a
``POST {id}/ping/`` answering ``{"ok", "ms", "info"}`` as the admin's Ping button does; SFTP
adds ``POST {id}/execute/`` (``data``, ``log_level``), the admin shell's call. Pings and scripts
run on a connection built from the row just for the call, so they test what is stored now.
"""

from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import DefinitionFilter
from connections.directory_models import FtpConnection, LdapConnection, SftpConnection
from connections.directory_serializers import (
    FtpConnectionSerializer,
    LdapConnectionSerializer,
    PingAnswerSerializer,
    SftpConnectionSerializer,
    SftpExecuteSerializer,
    SftpOutputSerializer,
)
from integration.api_base import ConfigViewSet


def _filter(model: type, *fields: str) -> type[django_filters.FilterSet]:
    meta = type("Meta", (), {"model": model, "fields": ["is_active", *fields]})
    return type(f"{model.__name__}Filter", (DefinitionFilter,), {"Meta": meta})


def build_connection(row: Any) -> Any:
    """The connection of ``row`` as a snapshot would build it (no network until used)."""
    from connections.ftp import FtpClient
    from connections.ldap import LdapClient
    from connections.sftp import SftpClient

    builders = {LdapConnection: LdapClient, SftpConnection: SftpClient, FtpConnection: FtpClient}
    return builders[type(row)].from_definition(row)


def ping_row(row: Any) -> dict[str, Any]:
    connection = build_connection(row)
    try:
        return {**connection.ping().as_json(), "name": row.name}
    finally:
        connection.close()


class _PingMixin:
    @extend_schema(request=None, responses=PingAnswerSerializer)
    @action(detail=True, methods=["post"])
    def ping(self, request: Request, pk: Any = None) -> Response:
        return Response(ping_row(self.get_object()))  # type: ignore[attr-defined]


class LdapViewSet(_PingMixin, ConfigViewSet):
    queryset = LdapConnection.objects.order_by("name")
    serializer_class = LdapConnectionSerializer
    search_fields = ["name", "servers", "username"]
    filterset_class = _filter(LdapConnection, "auth_type", "tls_mode", "pool_strategy")


class SftpViewSet(_PingMixin, ConfigViewSet):
    queryset = SftpConnection.objects.order_by("name")
    serializer_class = SftpConnectionSerializer
    search_fields = ["name", "host", "username"]
    filterset_class = _filter(SftpConnection, "host", "accept_unknown_host_key")

    @extend_schema(request=SftpExecuteSerializer, responses=SftpOutputSerializer)
    @action(detail=True, methods=["post"], serializer_class=SftpExecuteSerializer)
    def execute(self, request: Request, pk: Any = None) -> Response:
        """Run SFTP commands (the admin shell's call); failures are in the answer, not an error status."""
        row = self.get_object()
        given = SftpExecuteSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        client = build_connection(row)
        try:
            output = client.execute(given.validated_data["data"], log_level=given.validated_data["log_level"],
                                    raise_on_error=False, allow_local=False)
        finally:
            client.close()
        return Response(output.as_dict())


class FtpViewSet(_PingMixin, ConfigViewSet):
    queryset = FtpConnection.objects.order_by("name")
    serializer_class = FtpConnectionSerializer
    search_fields = ["name", "host", "user"]
    filterset_class = _filter(FtpConnection, "host", "tls")
