"""`manage.py bootstrap` and `serve` (run by `make run`): the first admin, the demo, daphne's command line."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts import enrolment, totp

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_var_dir(settings, tmp_path) -> None:
    """Generated secrets (the demo's passwords) are written here, not into the shared VAR_DIR."""
    settings.VAR_DIR = tmp_path


def test_with_totp_required_the_new_admin_gets_a_key_printed_once(settings) -> None:
    settings.ADMIN_PASSWORD = "first-admin-password"
    settings.ADMIN_REQUIRE_TOTP = True
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    admin = get_user_model().objects.get(username="admin")
    device = enrolment.confirmed_device(admin)
    assert device is not None
    assert "otpauth://totp/" in out.getvalue() and totp.key_to_base32(device.key) in out.getvalue()
    again = io.StringIO()
    call_command("bootstrap", stdout=again)  # idempotent: the key is not replaced or shown again
    assert "otpauth://" not in again.getvalue()
    assert enrolment.confirmed_device(admin).pk == device.pk


def test_without_totp_no_key_is_made(settings) -> None:
    settings.ADMIN_PASSWORD = "first-admin-password"
    settings.ADMIN_REQUIRE_TOTP = False
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    assert enrolment.confirmed_device(get_user_model().objects.get(username="admin")) is None
    assert "otpauth://" not in out.getvalue()


def test_the_websocket_demo_is_set_up_with_passwords_generated_once(settings, tmp_path) -> None:
    """The demo's Basic Auth passwords: generated, printed once and saved for the owner only, never hard-coded."""
    from accounts.models import BasicAuth, JWTDefinition
    from integration.models import RestChannel, WebSocketChannel

    settings.ADMIN_PASSWORD, settings.ADMIN_REQUIRE_TOTP = "first-admin-password", False
    settings.DEMO_FRONTEND_PASSWORD = settings.DEMO_BACKEND_PASSWORD = ""
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    passwords = {}
    for name, user, file_name in [("demo.frontend", "frontend", "demo-frontend-password"),
                                  ("demo.backend", "backend", "demo-backend-password")]:
        path = tmp_path / file_name
        password = path.read_text().strip()
        assert len(password) >= 20 and path.stat().st_mode & 0o777 == 0o600
        assert f"{name} (HTTP Basic Auth, user {user}) with password {password} (saved to {path}" in out.getvalue()
        definition = BasicAuth.objects.get(name=name)
        assert definition.username == user and crypto_verify(password, definition.password_hash)
        passwords[name] = password
    assert passwords["demo.frontend"] != passwords["demo.backend"]
    channel = WebSocketChannel.objects.select_related("security", "service").get(name="demo.notifications")
    assert (channel.path, channel.service.name, channel.security.name) == (
        "/ws/demo/notifications", "demo.echo", "demo.browser")
    assert JWTDefinition.objects.get(name="demo.browser").username == "demo-user"
    secured = dict(RestChannel.objects.filter(name__in=["demo.ws-token", "demo.notify", "demo.notifications-page"])
                   .values_list("name", "security__name"))
    assert secured == {"demo.ws-token": "demo.frontend", "demo.notify": "demo.backend",
                       "demo.notifications-page": None}

    again = io.StringIO()
    call_command("bootstrap", stdout=again)  # idempotent: nothing new, no password shown again
    assert "Created" not in again.getvalue()
    assert (tmp_path / "demo-frontend-password").read_text().strip() == passwords["demo.frontend"]
    assert WebSocketChannel.objects.count() == 1 and BasicAuth.objects.count() == 2


def test_demo_passwords_from_the_environment_are_used_and_not_shown(settings, tmp_path) -> None:
    from accounts.models import BasicAuth

    settings.ADMIN_PASSWORD, settings.ADMIN_REQUIRE_TOTP = "first-admin-password", False
    settings.DEMO_FRONTEND_PASSWORD, settings.DEMO_BACKEND_PASSWORD = "fe-from-env-1", "be-from-env-1"
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    assert "with the password from DEMO_FRONTEND_PASSWORD" in out.getvalue()
    assert "fe-from-env-1" not in out.getvalue() and "be-from-env-1" not in out.getvalue()
    assert not (tmp_path / "demo-frontend-password").exists()
    assert crypto_verify("fe-from-env-1", BasicAuth.objects.get(name="demo.frontend").password_hash)
    assert crypto_verify("be-from-env-1", BasicAuth.objects.get(name="demo.backend").password_hash)


def crypto_verify(password: str, stored: str) -> bool:
    from accounts import crypto

    return crypto.check_password(password, stored).ok


def test_serve_raises_daphnes_message_limit_above_every_channels_own(settings, builtins) -> None:
    """A message one byte over a channel's limit must reach the channel, which says why it closes (4009)."""
    from integration.management.commands.serve import daphne_argv, daphne_message_limit
    from integration.models import DeployedService, WebSocketChannel

    settings.WEBSOCKET_MAX_MESSAGE_SIZE = 1024 * 1024
    assert daphne_message_limit() == 1024 * 1024  # no channel allows more than the default
    WebSocketChannel.objects.create(name="uploads", path="/ws/uploads", max_message_size=4 * 1024 * 1024,
                                    service=DeployedService.objects.get(name="demo.echo"))
    assert daphne_message_limit() == 4 * 1024 * 1024 + 1
    settings.WEBSOCKET_PING_INTERVAL, settings.WEBSOCKET_PING_TIMEOUT = 7, 9
    argv = " ".join(daphne_argv("python", 8001, daphne_message_limit()))
    assert argv.startswith("python -m config.websocket_server -b 127.0.0.1 -p 8001 --websocket_timeout -1 ")
    assert "--websocket-max-message-size 4194305 --websocket-max-frame-size 4194305" in argv
    assert "--ping-interval 7 --ping-timeout 9" in argv and argv.endswith(" config.asgi:application")
