"""Management API for Vault connections: ``security/vault/`` beside the other security definitions."""

from __future__ import annotations

from accounts.api import DefinitionViewSet, definition_filter
from connections.models import VaultConnection
from connections.serializers import VaultConnectionSerializer


class VaultViewSet(DefinitionViewSet):
    """A Vault connection is a security definition, so it shares their delete rule (409 unless ?cascade=true)."""

    queryset = VaultConnection.objects.order_by("name")
    serializer_class = VaultConnectionSerializer
    search_fields = ["name", "url"]  # ?search= looks in names and Vault addresses
    filterset_class = definition_filter(VaultConnection, "default_auth_method")
