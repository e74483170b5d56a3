"""An independent RFC 6238 code generator for tests, written from the RFCs with hmac and hashlib.

It deliberately shares no code with ``accounts.totp`` or django-otp, so tests that log in with
its codes check the platform's implementation rather than agree with it by construction.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time

STEP = 30


def hotp_code(key: bytes, counter: int, digits: int = 6) -> str:
    """RFC 4226 section 5.3: HMAC-SHA1 of the counter, dynamic truncation, modulo 10^digits."""
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    (number,) = struct.unpack(">I", digest[offset : offset + 4])
    return str((number & 0x7FFFFFFF) % 10**digits).zfill(digits)


def totp_code(key: bytes, at: float | None = None, step_offset: int = 0) -> str:
    """The 6-digit code for Unix time ``at`` (now by default), ``step_offset`` steps later or earlier."""
    moment = time.time() if at is None else at
    return hotp_code(key, int(moment // STEP) + step_offset)


# Reading QR codes back, with a real decoder (zxing-cpp), to check what people will scan.

_HALF_BLOCKS = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}


def decode_qr_pixels(gray: bytes, width: int, height: int) -> str:
    """The text of the one QR code in a grayscale image (one byte per pixel, 255 = white)."""
    import zxingcpp

    image = memoryview(gray).cast("B", shape=[height, width])
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    if len(found) != 1:
        raise AssertionError(f"expected one QR code, found {len(found)}")
    return found[0].text


def decode_qr_text(text: str, scale: int = 4) -> str:
    """Decode a QR code drawn in a terminal with half blocks (each character is two rows of modules).

    Block characters are light modules, as on a dark terminal; the decoder sees them as white.
    """
    rows: list[list[bool]] = []
    for line in text.splitlines():
        if not line:
            continue
        pairs = [_HALF_BLOCKS[char] for char in line]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    width = max(len(row) for row in rows)
    pixels = bytearray()
    for row in rows:
        line = bytearray()
        for column in range(width):
            light = row[column] if column < len(row) else True
            line += (b"\xff" if light else b"\x00") * scale
        pixels += bytes(line) * scale
    return decode_qr_pixels(bytes(pixels), width * scale, len(rows) * scale)
