"""`manage.py bootstrap` (run by `make run`): the first admin can log in, TOTP or not."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts import totp

pytestmark = pytest.mark.django_db


def test_with_totp_required_the_new_admin_gets_a_key_printed_once(settings) -> None:
    settings.ADMIN_PASSWORD = "first-admin-password"
    settings.ADMIN_REQUIRE_TOTP = True
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    admin = get_user_model().objects.get(username="admin")
    device = totp.confirmed_device(admin)
    assert device is not None
    assert "otpauth://totp/" in out.getvalue() and totp.key_to_base32(device.key) in out.getvalue()
    again = io.StringIO()
    call_command("bootstrap", stdout=again)  # idempotent: the key is not replaced or shown again
    assert "otpauth://" not in again.getvalue()
    assert totp.confirmed_device(admin).pk == device.pk


def test_without_totp_no_key_is_made(settings) -> None:
    settings.ADMIN_PASSWORD = "first-admin-password"
    settings.ADMIN_REQUIRE_TOTP = False
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    assert totp.confirmed_device(get_user_model().objects.get(username="admin")) is None
    assert "otpauth://" not in out.getvalue()
