"""What every management API viewset shares: atomic writes, search, filters, paging, one error shape.

Errors come back as ``{"result": "Error", "cid": ..., "details": ...}`` with ``X-Zato-CID``,
like channel errors; for invalid input ``details`` maps each bad field (or query parameter)
to its messages. Deleting an object that others still use gives 409 naming them.

``ManagementViewSet`` is the one base (after NetBox's ``NetBoxModelViewSet``):

* **search and filters**: ``?search=`` looks through ``search_fields`` (names, and paths
  where a resource has them) and ``filterset_class`` (django-filter) gives the filters over
  a resource's main fields. A value a filter does not understand is a 400 naming the
  parameter; an unknown parameter is ignored, as HTTP APIs usually do;
* **text the database cannot hold**: PostgreSQL refuses NUL characters in text, and
  unpaired surrogates cannot be encoded to send it. Such a value in a query parameter, in
  the path (``{id}``, ``{name}``) or anywhere in a request body would reach a query and
  end in a 500; it is refused here first, before any view code runs, as a 400 naming
  the parameter or field;
* **writes** (in ``ConfigViewSet``) run in ``transaction.atomic()``, so an error leaves
  nothing half-saved.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.filters import SearchFilter
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from integration.api_schema import ManagementSchema
from integration.cid import new_cid
from integration.errors import error_body

# NUL (PostgreSQL text cannot contain it) and lone surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


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
    if isinstance(exc, SuspiciousOperation):
        # Raised while a form or multipart body is read; Django would answer with an HTML page.
        if isinstance(exc, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            response = Response(error_body(cid, f"The request body is larger than {limit} bytes"),
                                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        else:
            response = Response(error_body(cid, str(exc) or "Bad request"), status=status.HTTP_400_BAD_REQUEST)
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


def unstorable_reason(value: str) -> str | None:
    """Why the database cannot hold the text ``value``, or None if it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "NUL characters are not allowed."
    return "Unpaired surrogate characters are not allowed."


def _first_unstorable(value: Any) -> str | None:
    """The reason for the first string anywhere in ``value`` (nested JSON) that the database cannot hold."""
    if isinstance(value, str):
        return unstorable_reason(value)
    if isinstance(value, dict):
        for key, item in value.items():
            reason = _first_unstorable(key) or _first_unstorable(item)
            if reason:
                return reason
    elif isinstance(value, list | tuple):
        for item in value:
            reason = _first_unstorable(item)
            if reason:
                return reason
    return None


def _field_label(name: Any) -> str:
    """A parameter or field name fit to be a key of ``details``, even when the name itself is the problem."""
    text = str(name)
    return text if unstorable_reason(text) is None else repr(text)[1:-1]


def reject_unstorable(request: Any, path_values: dict[str, Any], path_names: dict[str, str]) -> None:
    """Raise a 400 naming each path value, query parameter or body field the database cannot hold."""
    errors: dict[str, list[str]] = {}
    for kwarg, value in path_values.items():
        reason = unstorable_reason(str(value))
        if reason:
            errors[path_names.get(kwarg, kwarg)] = [reason]
    for name, values in request.query_params.lists():
        reason = unstorable_reason(name) or next(filter(None, map(unstorable_reason, values)), None)
        if reason:
            errors[_field_label(name)] = [reason]
    if request.method in _BODY_METHODS:
        data = request.data  # parses the body; a parse error is DRF's 400
        items = data.lists() if hasattr(data, "lists") else data.items() if isinstance(data, dict) else None
        if items is None:
            reason = _first_unstorable(data)
            if reason:
                errors["non_field_errors"] = [reason]
        else:
            for name, value in items:
                reason = _first_unstorable(name) or _first_unstorable(value)
                if reason:
                    errors[_field_label(name)] = [reason]
    if errors:
        raise ValidationError(errors)


class ManagementViewSet(viewsets.GenericViewSet):
    """The base of every management API viewset: search, filters, refused text, documented errors.

    Subclasses set ``search_fields`` (``name`` by default) and ``filterset_class``. The
    checks in ``initial`` run after authentication and permissions, so a caller without
    rights learns nothing from them.
    """

    filter_backends = [DjangoFilterBackend, SearchFilter]
    search_fields: list[str] = ["name"]
    schema = ManagementSchema()
    # Extra documented error statuses per action (see integration.api_schema).
    error_statuses: dict[str, tuple[int, ...]] = {}

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        lookup = self.lookup_url_kwarg or self.lookup_field
        # The path names the lookup as the schema does: `{id}` for primary keys.
        reject_unstorable(request, self.kwargs, {lookup: "id" if lookup == "pk" else lookup})


class ConfigViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    ManagementViewSet,
):
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
