"""The management API's OpenAPI description (drf-spectacular), made to say what the API does.

drf-spectacular documents the answer a view gives when all goes well. Every operation of
the management API can also fail, always in the one error shape (``integration.errors``):
``ManagementSchema`` adds those answers to each operation, by what the operation can meet:

* any operation: 401 (no or wrong credentials), 403 (not allowed), 429 (too many failed
  credential checks), and 400 (a query parameter or path value the database cannot hold,
  such as a NUL character);
* an operation on one object (a path with ``{id}`` or ``{name}``): 404;
* a list: 404 for a page past the last one;
* a write: 409 when it conflicts with another object or deletes one still in use;
* a request with a body: 415 when its Content-Type is not one the operation reads, 413
  when a form or multipart body is larger than Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

A view adds others in ``error_statuses`` (action name -> status codes), e.g. 503 where a
backend may be down. schemathesis checks the result against the running API in the test
suite (tests/integration/test_schema.py), so a wrong description is a failing test.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

_DESCRIPTIONS = {
    "400": "Invalid input: `details` names each bad field or parameter with its messages.",
    "401": "No credentials, or wrong ones.",
    "403": "The user may not do this.",
    "404": "No such object (or page).",
    "409": "Conflicts with another object, or the object is still in use (`details` names the users).",
    "413": "The request body is too large.",
    "415": "The request body's Content-Type is not one this operation reads (JSON; multipart where noted).",
    "429": "Too many failed credential checks from this address; retry after `Retry-After` seconds.",
    "503": "A backend the operation needs cannot be reached.",
}
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODIES = frozenset({"POST", "PUT", "PATCH"})


class ErrorSerializer(serializers.Serializer):
    """Every error the platform answers with, from channels and from the management API alike."""

    result = serializers.ChoiceField(choices=["Error"], help_text="Always `Error`.")
    cid = serializers.CharField(help_text="The correlation id; the same value is in the `X-Zato-CID` header.")
    details = serializers.JSONField(
        help_text="What went wrong: a message, or an object mapping each bad field to its messages."
    )


class ManagementSchema(AutoSchema):
    """drf-spectacular's schema for a management API view, with its error answers added (module docstring)."""

    def error_statuses(self) -> list[str]:
        codes = {"400", "401", "403", "429"}
        if "{" in self.path:
            codes.add("404")
        if self.method == "GET" and self._is_list_view():
            codes.add("404")  # ?page= past the last page
        if self.method in _WRITES:
            codes.add("409")
        if self.method in _BODIES:
            codes.update(("413", "415"))
        action = getattr(self.view, "action", None)
        extra = getattr(self.view, "error_statuses", {}) or {}
        codes.update(str(code) for code in extra.get(action, ()))
        return sorted(codes)

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self.error_statuses():
            if code not in responses and "default" not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS.get(code, "")), code,
                    direction=direction,
                )
        return responses
