from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Security"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import schema  # noqa: F401 - registers the OpenAPI authentication extension


class SwitchboardAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with ``accounts.admin_site.AdminSite`` as the default site."""

    default = False  # named in INSTALLED_APPS; accounts' own config stays AccountsConfig
    default_site = "accounts.admin_site.AdminSite"
