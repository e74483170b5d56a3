"""What every management API viewset shares: atomic writes, pagination, one error shape.

Errors come back as ``{"result": "Error", "cid": ..., "details": ...}`` with ``X-Zato-CID``,
like channel errors; for invalid input ``details`` maps each bad field to its messages.
Deleting an object that others still use gives 409 naming them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from rest_framework import status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from integration.errors import error_body
from integration.invoke import new_cid


def _cid(request: Any) -> str:
    django_request = getattr(request, "_request", request)
    cid = getattr(django_request, "cid", None)
    if cid is None:
        cid = new_cid()
        django_request.cid = cid
    return cid


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    cid = _cid(request) if request is not None else new_cid()
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})
    if isinstance(exc, ProtectedError):
        used_by = sorted({f"{type(obj)._meta.verbose_name} `{obj}`" for obj in exc.protected_objects})
        response = Response(error_body(cid, f"In use by {', '.join(used_by)}"), status=status.HTTP_409_CONFLICT)
        response["X-Zato-CID"] = cid
        return response
    if isinstance(exc, IntegrityError):
        response = Response(error_body(cid, "Conflicts with an existing object"), status=status.HTTP_409_CONFLICT)
        response["X-Zato-CID"] = cid
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    details = response.data
    if isinstance(details, dict) and set(details) == {"detail"}:
        details = details["detail"]
    response.data = error_body(cid, details)
    response["X-Zato-CID"] = cid
    return response


def api_error(request: Any, status_code: int, details: Any, **extra: Any) -> Response:
    """An error answer in the one shape, from a view (not an exception)."""
    cid = _cid(request)
    response = Response({**error_body(cid, details), **extra}, status=status_code)
    response["X-Zato-CID"] = cid
    return response


class ConfigViewSet(viewsets.ModelViewSet):
    """A model viewset whose writes are atomic: an error leaves nothing half-saved."""

    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            return super().create(request, *args, **kwargs)

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            return super().update(request, *args, **kwargs)

    def destroy(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            return super().destroy(request, *args, **kwargs)


def full_clean_into(instance: Any) -> None:
    """Run a model's ``clean()`` and raise DRF validation errors naming the fields."""
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict) from None
