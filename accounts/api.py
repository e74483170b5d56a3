"""Management API for security definitions."""

from __future__ import annotations

from django.db import transaction
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import BasicAuth
from accounts.serializers import BasicAuthSerializer, ChangePasswordSerializer
from integration.api_base import ConfigViewSet


class BasicAuthViewSet(ConfigViewSet):
    queryset = BasicAuth.objects.order_by("name")
    serializer_class = BasicAuthSerializer

    @action(detail=True, methods=["post"], url_path="change-password", serializer_class=ChangePasswordSerializer)
    def change_password(self, request: Request, pk: str | None = None) -> Response:
        definition = self.get_object()
        serializer = ChangePasswordSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            definition.set_password(serializer.validated_data["password1"])
            definition.save()
        return Response({"id": definition.pk, "name": definition.name, "password_changed": True})
