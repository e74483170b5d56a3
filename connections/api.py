"""Management API for connections: Vault (``security/vault/``), ``outgoing/rest/``, ``outgoing/fhir/``, AMQP."""

from __future__ import annotations

import logging

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import DefinitionViewSet, definition_filter
from connections.base import PingResult
from connections.models import AMQPBroker, OutgoingAMQP, OutgoingFhir, OutgoingRest, VaultConnection
from connections.serializers import (
    AMQPBrokerSerializer,
    OutgoingAMQPSerializer,
    OutgoingFhirSerializer,
    OutgoingRestSerializer,
    VaultConnectionSerializer,
)
from integration.api_base import ConfigViewSet
from integration.api_filters import StrictBooleanFilter

logger = logging.getLogger(__name__)


class VaultViewSet(DefinitionViewSet):
    """A Vault connection is a security definition, so it shares their delete rule (409 unless ?cascade=true)."""

    queryset = VaultConnection.objects.order_by("name")
    serializer_class = VaultConnectionSerializer
    search_fields = ["name", "url"]  # ?search= looks in names and Vault addresses
    filterset_class = definition_filter(VaultConnection, "default_auth_method")


class AMQPBrokerViewSet(ConfigViewSet):
    """AMQP broker connections. ``?search=`` looks in names and hosts; ``POST {id}/ping/`` connects and logs in."""

    queryset = AMQPBroker.objects.order_by("name")
    serializer_class = AMQPBrokerSerializer
    search_fields = ["name", "host", "vhost"]
    filterset_fields = ["is_active", "tls"]

    @action(detail=True, methods=["post"])
    def ping(self, request: Request, pk: str | None = None) -> Response:
        """Connect to the broker and log in: ``{"ok", "ms", "info"}`` (200 whether or not it answered)."""
        broker = self.get_object()
        return Response({**broker.ping().as_json(), "name": broker.name})


class OutgoingAMQPViewSet(ConfigViewSet):
    """Outgoing AMQP connections (``self.out.amqp[name]``). ``?search=`` looks in names, exchanges and routing keys."""

    queryset = OutgoingAMQP.objects.select_related("broker").order_by("name")
    serializer_class = OutgoingAMQPSerializer
    search_fields = ["name", "exchange", "routing_key"]
    filterset_fields = ["is_active", "delivery_mode"]

    @action(detail=True, methods=["post"])
    def ping(self, request: Request, pk: str | None = None) -> Response:
        """Ping the connection's broker."""
        outgoing = self.get_object()
        return Response({**outgoing.ping().as_json(), "name": outgoing.name})


class PingResultSerializer(serializers.Serializer):
    """The answer to a ping: whether the other side answered as it should, how fast, and what it said."""

    ok = serializers.BooleanField()
    ms = serializers.FloatField()
    info = serializers.CharField()
    name = serializers.CharField()


def http_filter(model: type, *fields: str) -> type[django_filters.FilterSet]:
    """``?is_active=``, ``?auth_type=`` and exact matches on ``fields``."""
    meta = type("Meta", (), {"model": model, "fields": ["is_active", "auth_type", *fields]})
    return type(f"{model.__name__}Filter", (django_filters.FilterSet,),
                {"Meta": meta, "is_active": StrictBooleanFilter(help_text="true or false.")})


class PingActionMixin:
    """``POST {id}/ping/``: ``{"ok", "ms", "info", "name"}``; a failed ping is still a 200 with ``ok`` false."""

    @extend_schema(request=None, responses=PingResultSerializer)
    @action(detail=True, methods=["post"], serializer_class=PingResultSerializer)
    def ping(self, request: Request, pk: str | None = None) -> Response:
        obj = self.get_object()  # type: ignore[attr-defined]
        try:
            result = obj.ping()
        except Exception as exc:
            cid = getattr(request, "cid", "")
            logger.exception("[%s] Pinging `%s` failed", cid, obj)
            # Only the type: exception texts can quote request headers, tokens included.
            result = PingResult(False, 0.0, f"unexpected error {type(exc).__name__} (see the server log, CID {cid})")
        return Response({**result.as_json(), "name": obj.name})


class OutgoingRestViewSet(PingActionMixin, ConfigViewSet):
    """Outgoing REST connections. ``?search=`` looks in names, addresses and URL paths."""

    queryset = OutgoingRest.objects.order_by("name")
    serializer_class = OutgoingRestSerializer
    search_fields = ["name", "address", "url_path"]
    filterset_class = http_filter(OutgoingRest, "data_format")


class OutgoingFhirViewSet(PingActionMixin, ConfigViewSet):
    """Outgoing HL7 FHIR connections. ``?search=`` looks in names and base URLs."""

    queryset = OutgoingFhir.objects.order_by("name")
    serializer_class = OutgoingFhirSerializer
    search_fields = ["name", "address"]
    filterset_class = http_filter(OutgoingFhir)
