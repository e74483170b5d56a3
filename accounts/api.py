"""Management API for security definitions: one viewset per type under ``security/``.

Every type shares the delete rule: a definition that channels (or outgoing connections)
use is only deleted with ``?cascade=true``, which deletes them too, as Zato does; without
it the answer is 409 listing them.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiKey, BasicAuth, JWTDefinition, TechAccount
from accounts.serializers import (
    ApiKeySerializer,
    BasicAuthSerializer,
    ChangePasswordSerializer,
    JWTSerializer,
    NewKeySerializer,
    TechAccountSerializer,
)
from integration.api_base import ConfigViewSet, api_error
from integration.signals import one_change

_TRUE = {"1", "true", "yes", "on"}


class DefinitionViewSet(ConfigViewSet):
    """A security definition type's resource; ``DELETE`` refuses to cascade silently."""

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            definition = self.get_object()
            dependants = definition.dependants()
            if dependants and request.query_params.get("cascade", "").lower() not in _TRUE:
                listed = ", ".join(f"{kind} `{name}`" for kind, name, _ in dependants)
                return api_error(
                    request, status.HTTP_409_CONFLICT,
                    f"In use by {listed}; add ?cascade=true to delete them with the definition",
                    dependants=[{"type": kind, "name": name, "id": pk} for kind, name, pk in dependants],
                )
            with one_change():
                definition.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChangePasswordMixin:
    """``POST {id}/change-password/`` with ``password1`` and ``password2`` (Zato's form)."""

    @action(detail=True, methods=["post"], url_path="change-password", serializer_class=ChangePasswordSerializer)
    def change_password(self, request: Request, pk: str | None = None) -> Response:
        definition = self.get_object()  # type: ignore[attr-defined]
        serializer = ChangePasswordSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            self.apply_password(definition, serializer.validated_data["password1"])
            definition.save()
        return Response({"id": definition.pk, "name": definition.name, "password_changed": True})

    def apply_password(self, definition: Any, password: str) -> None:
        definition.set_password(password)


class BasicAuthViewSet(ChangePasswordMixin, DefinitionViewSet):
    queryset = BasicAuth.objects.order_by("name")
    serializer_class = BasicAuthSerializer


class TechAccountViewSet(ChangePasswordMixin, DefinitionViewSet):
    queryset = TechAccount.objects.order_by("name")
    serializer_class = TechAccountSerializer


class JWTViewSet(ChangePasswordMixin, DefinitionViewSet):
    queryset = JWTDefinition.objects.order_by("name")
    serializer_class = JWTSerializer


class ApiKeyViewSet(ChangePasswordMixin, DefinitionViewSet):
    """The key is in the create answer only; ``regenerate-key/`` makes a new one (shown once too)."""

    queryset = ApiKey.objects.order_by("name")
    serializer_class = ApiKeySerializer

    def apply_password(self, definition: Any, password: str) -> None:
        from django.core.exceptions import ValidationError as DjangoValidationError
        from rest_framework.exceptions import ValidationError

        try:
            definition.set_key(password)  # Zato sets an API key's value with change-password
        except DjangoValidationError as exc:
            raise ValidationError({"password1": exc.message_dict["key"]}) from None

    @action(detail=True, methods=["post"], url_path="regenerate-key", serializer_class=NewKeySerializer)
    def regenerate_key(self, request: Request, pk: str | None = None) -> Response:
        with transaction.atomic():
            definition = self.get_object()
            key = definition.new_key()
            definition.save()
        return Response(NewKeySerializer({"id": definition.pk, "name": definition.name,
                                          "key_prefix": definition.key_prefix, "key": key}).data)
