"""``manage.py reset_totp_key USER [--key BASE32] [--issuer LABEL]``: set a user's TOTP key.

The first key of every user comes from here (the admin cannot be entered without one when
``ADMIN_REQUIRE_TOTP`` is on), and so does the way back for a user who lost their phone.
Without ``--key`` a new key is printed three ways: base32 to type, the ``otpauth://`` URI,
and a QR code drawn in the terminal to scan. With ``--key`` (a key brought from Zato, say)
the key is checked and ``OK`` printed, as Zato's command does. Either way the new key
replaces every key the user had.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import enrolment, totp

MAX_ISSUER_LENGTH = 100


class Command(BaseCommand):
    help = "Set a new TOTP key for an admin user and print it as base32, an otpauth:// URI and a QR code."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user whose key is replaced.")
        parser.add_argument("--key", help="Use this base32 key (at least 16 bytes) instead of a new random one.")
        parser.add_argument("--issuer", default=totp.DEFAULT_ISSUER,
                            help=f"The name apps show next to the code (default {totp.DEFAULT_ISSUER}).")

    def handle(self, *args: Any, username: str, key: str | None, issuer: str, **options: Any) -> None:
        user = _user(username)
        issuer = issuer.strip()
        if not issuer or len(issuer) > MAX_ISSUER_LENGTH:
            raise CommandError(f"--issuer must be 1 to {MAX_ISSUER_LENGTH} characters.")
        if key is not None:
            try:
                key_bytes = totp.parse_base32(key)
            except ValueError as error:
                raise CommandError(str(error)) from None
            enrolment.reset_key(user, key_bytes)
            self.stdout.write("OK")
            return
        _, key_bytes = enrolment.reset_key(user)
        uri = totp.provisioning_uri(key_bytes, user.get_username(), issuer)
        self.stdout.write(f"New TOTP key for {user.get_username()} (SHA1, 6 digits, 30 seconds); the old one no "
                          "longer works.")
        self.stdout.write(f"Key: {totp.key_to_base32(key_bytes)}")
        self.stdout.write(f"URI: {uri}")
        self.stdout.write("Scan this QR code with Google Authenticator, Authy or FreeOTP:")
        self.stdout.write(totp.qr_text(uri), ending="")
        if not (user.is_active and user.is_staff):
            self.stderr.write(f"Note: {user.get_username()} is not an active staff user, so cannot use the admin.")


def _user(username: str) -> Any:
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CommandError(f"There is no user named {username!r}.") from None
