"""OpenAPI description of the management API's authentication (for drf-spectacular).

Each scheme is one alternative (OR): an API token (``Token`` or ``Bearer``), a TOTP-verified
admin session, or HTTP Basic, which is listed as accepted only while ``MANAGE_API_BASIC_AUTH``
is on.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api_auth.ApiTokenAuthentication"
    name = ["tokenAuth", "bearerAuth"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"tokenAuth": []}, {"bearerAuth": []}]  # either header form, not both

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        made = ("Make one in the admin (API tokens) or with `python manage.py api_token create USER "
                "[--name NAME] [--expires-in DAYS] [--read-only]`; it is shown once. A read-only token gets 403 "
                "on anything but GET, HEAD and OPTIONS.")
        return [
            {"type": "apiKey", "in": "header", "name": "Authorization",
             "description": f"`Authorization: Token <token>` with an API token. {made}"},
            {"type": "http", "scheme": "bearer", "description": f"The same API token as a Bearer token. {made}"},
        ]


class VerifiedSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api_auth.VerifiedSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME,
                "description": "The admin's session (with its CSRF token on writes), once it passed the TOTP step "
                               "when ADMIN_REQUIRE_TOTP is on."}


class AdminBasicScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api_auth.AdminBasicAuthentication"
    name = "basicAuth"

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[Any]] | None:
        return {self.name: []} if settings.MANAGE_API_BASIC_AUTH else None

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "basic",
                "description": "A staff user's password: accepted only when MANAGE_API_BASIC_AUTH is on (local "
                               "development), throttled like the admin login."}
