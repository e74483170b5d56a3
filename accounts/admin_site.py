"""The admin site: TOTP-verified logins, the dashboard and the TOTP enrolment page.

It is Django's default admin site (``accounts.apps.SwitchboardAdminConfig``), so every
``admin.register`` lands here, django-celery-beat's included. Every registered admin gets
``integration.admin_base.ListingMixin`` (selectable page size, no full-table counts).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.urls import path
from django_otp.admin import OTPAdminSite

from accounts.forms import AdminLoginForm
from integration.admin_base import ListingMixin


class AdminSite(OTPAdminSite):
    site_url = None  # "/" belongs to the REST channels, not to a public site
    site_header = "Switchboard"
    site_title = "Switchboard admin"
    index_title = "Administration"
    # Password and TOTP code on one page, both checked before a session exists (accounts.forms).
    login_form = AdminLoginForm
    login_template = "admin/login.html"  # templates/admin/login.html: Django's page plus the code field

    def has_permission(self, request: HttpRequest) -> bool:
        if settings.ADMIN_REQUIRE_TOTP:
            return super().has_permission(request)  # active staff with a verified TOTP device
        return admin.AdminSite.has_permission(self, request)

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, ListingMixin):
            admin_class = type(
                admin_class.__name__, (ListingMixin, admin_class), {"__module__": admin_class.__module__}
            )
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self) -> list[Any]:
        from accounts.admin_totp import totp_enrol_view
        from integration.dashboard import dashboard_view

        extra = [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            path("account/totp/", self.admin_view(totp_enrol_view), name="totp-enrol"),
        ]
        return extra + super().get_urls()
