"""``python manage.py bootstrap``: first-start setup for ``make run`` (idempotent).

Records the built-in services, creates the ``admin`` user on first start (password from
``ADMIN_PASSWORD``, else generated, printed once and saved to ``var/admin-password``;
with ``ADMIN_REQUIRE_TOTP`` on, also a TOTP key, printed once with its QR code) and binds
the demo services to demo channels.

The WebSocket demo is the seed's flow (JWT and WebSockets), ready to try:

* ``demo.browser``, a JWT definition (user ``demo-user``) that secures the WebSocket channel
  ``demo.notifications`` at ``/ws/demo/notifications``;
* ``POST /demo/ws-token`` (``zato.wsx.create-token``), secured with the Basic Auth definition
  ``demo.frontend`` (user ``frontend``): the frontend application asks for a browser's token;
* ``POST /demo/notify`` (``demo.notify``), secured with ``demo.backend`` (user ``backend``):
  a backend system raises a notification, pushed to every browser on the channel;
* ``GET /demo/notifications`` (open): the page that shows them as they arrive.

The two Basic Auth passwords come from ``DEMO_FRONTEND_PASSWORD`` and ``DEMO_BACKEND_PASSWORD``;
otherwise they are generated, printed once and saved to ``var/demo-frontend-password`` and
``var/demo-backend-password`` (mode 600), as the admin's is. Nothing is hard-coded.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import BasicAuth, JWTDefinition, SecurityDefinition
from integration.deploy import sync_builtin
from integration.models import DeployedService, RestChannel, WebSocketChannel
from integration.services.demo import DEMO_WEBSOCKET_CHANNEL

DEMO_CHANNELS = [
    # name, method, path, accept, service, security definition
    ("demo.hello", "GET", "/demo/hello", "", "demo.hello", None),
    ("demo.echo", "POST", "/demo/echo", "", "demo.echo", None),
    ("demo.get-customer", "GET", "/demo/customer/{customer_id}", "", "demo.get-customer", None),
    ("demo.create-customer", "POST", "/demo/customer", "", "demo.create-customer", None),
    ("demo.invoice-json", "POST", "/demo/invoice", "application/json", "demo.invoice-json", None),
    ("demo.invoice-pdf", "POST", "/demo/invoice", "application/pdf", "demo.invoice-pdf", None),
    ("demo.ws-token", "POST", "/demo/ws-token", "", "zato.wsx.create-token", "demo.frontend"),
    ("demo.notify", "POST", "/demo/notify", "", "demo.notify", "demo.backend"),
    ("demo.notifications-page", "GET", "/demo/notifications", "", "demo.notifications-page", None),
]
# name, username, the setting with its password, the file a generated one is saved to (in VAR_DIR)
DEMO_BASIC_AUTH = [
    ("demo.frontend", "frontend", "DEMO_FRONTEND_PASSWORD", "demo-frontend-password"),
    ("demo.backend", "backend", "DEMO_BACKEND_PASSWORD", "demo-backend-password"),
]
DEMO_JWT = ("demo.browser", "demo-user")
DEMO_WEBSOCKET_PATH = "/ws/demo/notifications"
DEMO_WEBSOCKET_PUSHES = (
    '{"text": "...", "from": "<the backend\'s username>", "sent_at": "<ISO 8601 UTC>"} whenever a backend '
    "system calls POST /demo/notify."
)


class Command(BaseCommand):
    help = "Create the admin user and the demo channels if they are missing."

    def handle(self, *args: Any, **options: Any) -> None:
        sync_builtin()
        self._admin_user()
        with transaction.atomic():
            generated = self._demo_definitions()
            for name, method, url_path, accept, service, security in DEMO_CHANNELS:
                if RestChannel.objects.filter(name=name).exists():
                    continue
                RestChannel.objects.create(
                    name=name, method=method, url_path=url_path, accept=accept,
                    service=DeployedService.objects.get(name=service),
                    security=SecurityDefinition.objects.get(name=security) if security else None,
                )
            if not WebSocketChannel.objects.filter(name=DEMO_WEBSOCKET_CHANNEL).exists():
                WebSocketChannel.objects.create(
                    name=DEMO_WEBSOCKET_CHANNEL, path=DEMO_WEBSOCKET_PATH,
                    service=DeployedService.objects.get(name="demo.echo"),
                    security=SecurityDefinition.objects.get(name=DEMO_JWT[0]), pushes=DEMO_WEBSOCKET_PUSHES,
                )
        # Written once the rows are committed, so a file never names a password that was rolled back.
        for name, username, password, file_name in generated:
            path = _save_secret(file_name, password)
            self.stdout.write(self.style.WARNING(
                f"Created demo security definition {name} (HTTP Basic Auth, user {username}) with password "
                f"{password} (saved to {path}; shown only this once)."
            ))

    def _demo_definitions(self) -> list[tuple[str, str, str, str]]:
        """Create the demo's definitions that are missing; (name, username, password, file) of each generated one."""
        generated = []
        for name, username, setting, file_name in DEMO_BASIC_AUTH:
            if SecurityDefinition.objects.filter(name=name).exists():
                continue
            password = getattr(settings, setting)
            if password:
                self.stdout.write(f"Created demo security definition {name} with the password from {setting}.")
            else:
                password = secrets.token_urlsafe(18)
                generated.append((name, username, password, file_name))
            definition = BasicAuth(name=name, username=username, realm="Switchboard demo")
            definition.set_password(password)
            definition.save()
        name, username = DEMO_JWT
        if not SecurityDefinition.objects.filter(name=name).exists():
            # Browsers get their tokens on this account's behalf; its own password is random and unknown.
            JWTDefinition.objects.create(name=name, username=username, ttl=3600)
        return generated

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
            path = _save_secret("admin-password", password)
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


def _save_secret(file_name: str, secret: str) -> Path:
    """Write a generated secret to VAR_DIR/file_name, readable by its owner only."""
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = settings.VAR_DIR / file_name
    path.touch(mode=0o600)
    path.chmod(0o600)  # an older file keeps its mode on touch()
    path.write_text(secret + "\n")
    return path
