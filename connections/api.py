"""Management API for Vault connections: ``security/vault/`` beside the other security definitions."""

from __future__ import annotations

from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import DefinitionViewSet, definition_filter
from connections.models import AMQPBroker, OutgoingAMQP, VaultConnection
from connections.serializers import AMQPBrokerSerializer, OutgoingAMQPSerializer, VaultConnectionSerializer
from integration.api_base import ConfigViewSet


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
