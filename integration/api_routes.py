"""The management API's resources, registered by the app that owns each (``AppConfig.ready()``).

``integration.urls`` builds the router from this list when the URLconf is first loaded, after
every app is ready, so a plug-in app adds its resource with one call and no edit here::

    api_routes.register("security/api-keys", ApiKeyViewSet, basename="api-key")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Route:
    prefix: str  # under /manage/api/v1/
    viewset: Any
    basename: str


_routes: dict[str, Route] = {}


def register(prefix: str, viewset: Any, *, basename: str) -> None:
    """Add a resource; a prefix or basename registered twice is an error at start-up."""
    for route in _routes.values():
        if route.prefix == prefix or route.basename == basename:
            raise ImproperlyConfigured(f"API resource `{prefix}` ({basename}) is registered twice")
    _routes[prefix] = Route(prefix, viewset, basename)


def routes() -> list[Route]:
    return list(_routes.values())
