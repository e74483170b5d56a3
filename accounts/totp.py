"""TOTP (RFC 6238) for admin logins: keys, codes, provisioning URIs, QR codes and enrolment.

The parameters are fixed to what every authenticator app understands (Google Authenticator,
Authy, FreeOTP): SHA1, 6 digits, 30-second steps. Keys are 20 random bytes, the size RFC 4226
recommends for SHA1. The model, ``accounts.models.TOTPDevice``, stores them encrypted and
consumes codes; this module holds the arithmetic and the operations on a user's devices.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import io
import re
import secrets
import time
from urllib.parse import quote, urlencode

import segno
from django_otp.oath import hotp

STEP = 30
DIGITS = 6
DRIFT_STEPS = 1  # a phone's clock may be one step ahead or behind, no more
KEY_BYTES = 20
MIN_KEY_BYTES = 16  # RFC 4226's minimum (128 bits)
MAX_KEY_BYTES = 128
DEFAULT_ISSUER = "Switchboard"
DEVICE_NAME = "Authenticator app"

_BASE32 = re.compile(r"[A-Z2-7]+=*")
_SEPARATORS = re.compile(r"[\s-]+")


class Verdict(enum.Enum):
    """The result of checking a code; the value is the reason written to the login audit list."""

    ACCEPTED = ""
    MALFORMED = "malformed code"
    WRONG = "wrong code"
    REPLAYED = "replayed code"


def clock() -> float:
    """Unix time used for codes; tests replace it to check drift without waiting for the clock."""
    return time.time()


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def key_to_base32(key: bytes) -> str:
    """Base32 without padding: what apps expect in URIs and what people type."""
    return base64.b32encode(key).decode().rstrip("=")


def parse_base32(text: str, min_bytes: int = MIN_KEY_BYTES) -> bytes:
    """Decode a key typed by a person (any case, spaces or dashes, padding optional).

    Raises ``ValueError`` with a message fit for the person who typed it.
    """
    cleaned = _SEPARATORS.sub("", text).upper()
    if not _BASE32.fullmatch(cleaned):
        raise ValueError("The key must be base32: letters A-Z and digits 2-7.")
    cleaned = cleaned.rstrip("=")
    try:
        key = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except binascii.Error:
        raise ValueError(f"The key is not valid base32 ({len(cleaned)} characters cannot be decoded).") from None
    if len(key) < min_bytes:
        raise ValueError(f"The key is {len(key)} bytes long; at least {min_bytes} bytes "
                         f"({-(-min_bytes * 8 // 5)} base32 characters) are needed.")
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(f"The key is {len(key)} bytes long; at most {MAX_KEY_BYTES} bytes are accepted.")
    return key


def normalise_code(code: str) -> str | None:
    """The 6 digits of a code as typed ("123 456" is fine), or None if it cannot be a code."""
    digits = code.replace(" ", "")
    if len(digits) == DIGITS and digits.isascii() and digits.isdigit():
        return digits
    return None


def code_at(key: bytes, step: int) -> str:
    return f"{hotp(key, step, digits=DIGITS):0{DIGITS}d}"


def time_step(at: float) -> int:
    return int(at // STEP)


def matching_step(key: bytes, code: str, at: float) -> int | None:
    """The latest step within the allowed drift whose code is ``code`` (None if none is).

    Every candidate is compared, in constant time, so timing tells nothing about which matched.
    """
    now = time_step(at)
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(key, step), code):
            found = step
    return found


def provisioning_uri(key: bytes, account: str, issuer: str = DEFAULT_ISSUER) -> str:
    """The ``otpauth://`` URI that apps scan or import (Google's Key Uri Format)."""
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    query = urlencode(
        {"secret": key_to_base32(key), "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS, "period": STEP},
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str, title: str = "QR code of the TOTP key") -> str:
    """The URI as an inline SVG QR code that scales with the page (a white background, so dark themes scan)."""
    return segno.make(uri, error="m").svg_inline(
        omitsize=True, title=title, dark="#000", light="#fff", svgclass="totp-qr", border=4,
    )


def qr_text(uri: str) -> str:
    """The URI as a QR code drawn with block characters, two rows of modules per line of text."""
    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()
