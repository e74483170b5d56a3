from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    """Security: admin logins with TOTP, API tokens, and four security types for channels."""

    name = "accounts"
    verbose_name = "Security"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import authentication, schema  # noqa: F401 - schema registers the OpenAPI extension
        from accounts.api import ApiKeyViewSet, BasicAuthViewSet, JWTViewSet, TechAccountViewSet
        from integration import api_routes
        from integration.channels import security

        for name, label, model, authenticator in (
            ("basic_auth", "HTTP Basic Auth", "accounts.BasicAuth", authentication.BasicAuthDefinitionAuthentication),
            ("tech_acc", "Technical account", "accounts.TechAccount", authentication.TechAccountAuthentication),
            ("apikey", "API key", "accounts.ApiKey", authentication.ApiKeyAuthentication),
            ("jwt", "JWT", "accounts.JWTDefinition", authentication.JWTAuthentication),
        ):
            security.register(security.SecurityType(name, label, model, authenticator.from_definition))
        api_routes.register("security/basic-auth", BasicAuthViewSet, basename="basic-auth")
        api_routes.register("security/tech-accounts", TechAccountViewSet, basename="tech-account")
        api_routes.register("security/api-keys", ApiKeyViewSet, basename="api-key")
        api_routes.register("security/jwt", JWTViewSet, basename="jwt")

        # OAuth client credentials are for outgoing connections only: no channel kind may use them.
        from accounts.api import OAuthViewSet
        from accounts.oauth import OutgoingOnly

        security.register(security.SecurityType("oauth", "OAuth", "accounts.OAuthDefinition",
                                                OutgoingOnly.from_definition, channel_kinds=frozenset()))
        api_routes.register("security/oauth", OAuthViewSet, basename="oauth")


class SwitchboardAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with ``accounts.admin_site.AdminSite`` as the default site."""

    default = False  # named in INSTALLED_APPS; accounts' own config stays AccountsConfig
    default_site = "accounts.admin_site.AdminSite"
