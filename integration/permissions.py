"""Who may use the management API: superusers, or staff holding the model's permissions."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

_ACTIONS = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "POST": "add", "PUT": "change", "PATCH": "change",
            "DELETE": "delete"}


class IsPlatformAdmin(BasePermission):
    """Superusers may do anything; other staff need Django's per-model permission for the action.

    Views without a model (invoke) name the permission they need in ``required_permission``.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
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
