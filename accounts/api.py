"""Management API for security definitions: one viewset per type under ``security/``.

Every type shares the delete rule: a definition that channels (or outgoing connections)
use is only deleted with ``?cascade=true``, which deletes them too, as Zato does; without
it the answer is 409 listing them. Every list has ``?search=`` (names, and usernames or
headers where a type has them) and ``?is_active=true|false``, through the one base viewset.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiKey, BasicAuth, JWTDefinition, OAuthDefinition, TechAccount
from accounts.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    BasicAuthSerializer,
    ChangePasswordSerializer,
    JWTSerializer,
    NewKeySerializer,
    OAuthSerializer,
    PasswordChangedSerializer,
    TechAccountSerializer,
)
from integration.api_base import ConfigViewSet, api_error
from integration.api_filters import StrictBooleanFilter
from integration.signals import one_change

_TRUE = {"1", "true", "yes", "on"}


class DefinitionFilter(django_filters.FilterSet):
    """Filters every definition type has; a type's own filter set adds its fields."""

    is_active = StrictBooleanFilter(help_text="true or false.")


def definition_filter(model: type, *fields: str) -> type[django_filters.FilterSet]:
    """A filter set for one definition type: ``is_active`` plus exact matches on ``fields``."""
    meta = type("Meta", (), {"model": model, "fields": ["is_active", *fields]})
    return type(f"{model.__name__}Filter", (DefinitionFilter,), {"Meta": meta})


class DefinitionViewSet(ConfigViewSet):
    """A security definition type's resource; ``DELETE`` refuses to cascade silently."""

    @extend_schema(parameters=[OpenApiParameter(
        "cascade", bool, description="true: delete the channels (and connections) that use the definition too; "
        "without it a definition in use is not deleted (409 listing them).",
    )])
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

    @extend_schema(request=ChangePasswordSerializer, responses=PasswordChangedSerializer)
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
    """Basic Auth definitions. ``?search=`` looks in names and usernames; ``?username=`` is exact."""

    queryset = BasicAuth.objects.order_by("name")
    serializer_class = BasicAuthSerializer
    search_fields = ["name", "username"]
    filterset_class = definition_filter(BasicAuth, "username")


class TechAccountViewSet(ChangePasswordMixin, DefinitionViewSet):
    """Technical accounts. ``?search=`` looks in names (which are the usernames)."""

    queryset = TechAccount.objects.order_by("name")
    serializer_class = TechAccountSerializer
    filterset_class = definition_filter(TechAccount)


class JWTViewSet(ChangePasswordMixin, DefinitionViewSet):
    """JWT definitions. ``?search=`` looks in names and usernames; ``?username=`` is exact."""

    queryset = JWTDefinition.objects.order_by("name")
    serializer_class = JWTSerializer
    search_fields = ["name", "username"]
    filterset_class = definition_filter(JWTDefinition, "username")


@extend_schema_view(create=extend_schema(responses={201: ApiKeyCreatedSerializer}))
class ApiKeyViewSet(ChangePasswordMixin, DefinitionViewSet):
    """The key is in the create answer only; ``regenerate-key/`` makes a new one (shown once too).

    ``?search=`` looks in names and header names; ``?header=`` is exact.
    """

    queryset = ApiKey.objects.order_by("name")
    serializer_class = ApiKeySerializer
    search_fields = ["name", "header"]
    filterset_class = definition_filter(ApiKey, "header")

    def apply_password(self, definition: Any, password: str) -> None:
        from django.core.exceptions import ValidationError as DjangoValidationError
        from rest_framework.exceptions import ValidationError

        try:
            definition.set_key(password)  # Zato sets an API key's value with change-password
        except DjangoValidationError as exc:
            raise ValidationError({"password1": exc.message_dict["key"]}) from None

    @extend_schema(request=None, responses=NewKeySerializer)
    @action(detail=True, methods=["post"], url_path="regenerate-key", serializer_class=NewKeySerializer)
    def regenerate_key(self, request: Request, pk: str | None = None) -> Response:
        with transaction.atomic():
            definition = self.get_object()
            key = definition.new_key()
            definition.save()
        return Response(NewKeySerializer({"id": definition.pk, "name": definition.name,
                                          "key_prefix": definition.key_prefix, "key": key}).data)


class OAuthViewSet(ChangePasswordMixin, DefinitionViewSet):
    """OAuth client credentials for outgoing connections; ``change-password/`` sets the client secret.

    ``?search=`` looks in names, client ids and token URLs; ``?client_id=`` and ``?credentials_in=`` are exact.
    Deleting one that connections use is a 409 unless ``?cascade=true`` (they are deleted with it).
    """

    queryset = OAuthDefinition.objects.order_by("name")
    serializer_class = OAuthSerializer
    search_fields = ["name", "client_id", "token_url"]
    filterset_class = definition_filter(OAuthDefinition, "client_id", "credentials_in")
