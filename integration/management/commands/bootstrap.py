"""``python manage.py bootstrap``: first-start setup for ``make run`` (idempotent).

Records the built-in services, creates the ``admin`` user on first start (password from
``ADMIN_PASSWORD``, else generated, printed once and saved to ``var/admin-password``;
with ``ADMIN_REQUIRE_TOTP`` on, also a TOTP key, printed once with its QR code) and binds
the demo services to demo REST channels.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from integration.deploy import sync_builtin
from integration.models import DeployedService, RestChannel

DEMO_CHANNELS = [
    # name, method, path, accept, service
    ("demo.hello", "GET", "/demo/hello", "", "demo.hello"),
    ("demo.echo", "POST", "/demo/echo", "", "demo.echo"),
    ("demo.get-customer", "GET", "/demo/customer/{customer_id}", "", "demo.get-customer"),
    ("demo.create-customer", "POST", "/demo/customer", "", "demo.create-customer"),
    ("demo.invoice-json", "POST", "/demo/invoice", "application/json", "demo.invoice-json"),
    ("demo.invoice-pdf", "POST", "/demo/invoice", "application/pdf", "demo.invoice-pdf"),
]


class Command(BaseCommand):
    help = "Create the admin user and the demo channels if they are missing."

    def handle(self, *args: Any, **options: Any) -> None:
        sync_builtin()
        self._admin_user()
        with transaction.atomic():
            for name, method, url_path, accept, service in DEMO_CHANNELS:
                if RestChannel.objects.filter(name=name).exists():
                    continue
                RestChannel.objects.create(
                    name=name, method=method, url_path=url_path, accept=accept,
                    service=DeployedService.objects.get(name=service),
                )

    def _admin_user(self) -> None:
        users = get_user_model()
        if users.objects.filter(username="admin").exists():
            return
        password = settings.ADMIN_PASSWORD
        generated = not password
        if generated:
            password = secrets.token_urlsafe(18)
        users.objects.create_superuser("admin", "", password)
        if generated:
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            path = settings.VAR_DIR / "admin-password"
            path.write_text(password + "\n")
            path.chmod(0o600)
            self.stdout.write(self.style.WARNING(
                f"Created user admin with password {password} (saved to {path}; shown only this once)."
            ))
        else:
            self.stdout.write("Created user admin with the password from ADMIN_PASSWORD.")
        if settings.ADMIN_REQUIRE_TOTP:
            # Without a TOTP key the new admin could not log in at all: give it one now.
            from django.core.management import call_command

            self.stdout.write("The admin requires TOTP codes (ADMIN_REQUIRE_TOTP): the admin user's key follows.")
            call_command("reset_totp_key", "admin", stdout=self.stdout, stderr=self.stderr)
