"""OpenAPI description of the management API's authentication (for drf-spectacular)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AdminBasicScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.AdminBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "basic"}
