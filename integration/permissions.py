"""Who may use the management API: superusers, or staff holding the model's permissions; read-only tokens only read."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import ApiToken

_ACTIONS = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "POST": "add", "PUT": "change", "PATCH": "change",
            "DELETE": "delete"}
READ_ONLY_REFUSED = ("This API token is read-only: it may only read (GET, HEAD, OPTIONS). Writes, deployments, "
                     "invocations and job runs need a token made without --read-only.")


class IsPlatformAdmin(BasePermission):
    """Superusers may do anything; other staff need Django's per-model permission for the action.

    Views without a model (invoke) name the permission they need in ``required_permission``.
    A read-only API token (``accounts.models.ApiToken``) is refused every method but GET, HEAD and
    OPTIONS, whoever its user is: every change, deployment, invocation and job run is a POST, PUT,
    PATCH or DELETE.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        if isinstance(request.auth, ApiToken) and request.auth.read_only and request.method not in SAFE_METHODS:
            self.message = READ_ONLY_REFUSED
            return False
        if user.is_superuser:
            return True
        required = getattr(view, "required_permission", None)
        if required is None:
            queryset = getattr(view, "queryset", None)
            if queryset is None:
                return False
            meta = queryset.model._meta
            required = f"{meta.app_label}.{_ACTIONS.get(request.method, 'change')}_{meta.model_name}"
        return user.has_perm(required)
