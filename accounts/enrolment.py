"""A user's TOTP device: enrolment (a pending device until a first code confirms it) and key resets.

The codes themselves (keys, time steps, provisioning URIs, QR codes) are ``accounts.totp``;
the device row is ``accounts.models.TOTPDevice``, which stores the key encrypted.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import TOTPDevice
from accounts.totp import DEVICE_NAME, Verdict, new_key


def _devices() -> Any:
    return TOTPDevice.objects


def confirmed_device(user: Any) -> TOTPDevice | None:
    """The user's confirmed device (the newest, though ``reset_key`` leaves only one)."""
    return _devices().filter(user=user, confirmed=True).order_by("-created", "-pk").first()


def reset_key(user: Any, key: bytes | None = None, name: str = DEVICE_NAME) -> tuple[TOTPDevice, bytes]:
    """Replace every device of ``user`` with one confirmed device holding ``key`` (a new one if None)."""
    key = new_key() if key is None else key
    with transaction.atomic():
        _devices().filter(user=user).delete()
        device = _devices().model(user=user, name=name, confirmed=True)
        device.set_key(key)
        device.save()
    return device, key


def start_enrolment(user: Any) -> TOTPDevice:
    """A new key for ``user``, kept in an unconfirmed device: the old key keeps working meanwhile."""
    with transaction.atomic():
        _devices().filter(user=user, confirmed=False).delete()
        device = _devices().model(user=user, name=DEVICE_NAME, confirmed=False)
        device.set_key(new_key())
        device.save()
    return device


def pending_device(user: Any) -> TOTPDevice | None:
    return _devices().filter(user=user, confirmed=False).order_by("-created", "-pk").first()


def cancel_enrolment(user: Any) -> None:
    _devices().filter(user=user, confirmed=False).delete()


def confirm_enrolment(user: Any, code: str) -> tuple[Verdict, TOTPDevice | None]:
    """Check a first code from the pending key; when it is right, that key replaces the old one.

    Returns the verdict and the device now in use (None when there is no pending key). Nothing
    changes unless the code is accepted.
    """
    with transaction.atomic():
        pending = _devices().select_for_update().filter(user=user, confirmed=False).order_by("-created", "-pk").first()
        if pending is None:
            return Verdict.WRONG, None
        verdict = pending.check_code(code)
        if verdict is not Verdict.ACCEPTED:
            return verdict, pending
        _devices().filter(user=user).exclude(pk=pending.pk).delete()
        pending.confirmed = True
        pending.save(update_fields=["confirmed"])
    return verdict, pending
