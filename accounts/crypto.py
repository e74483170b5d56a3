"""Secrets at rest: the only module that touches keys.

* Secrets the platform must send out again (outgoing passwords, tokens) are encrypted
  with MultiFernet: ``FERNET_KEYS`` lists keys newest first, so a new key can be added in
  front and old ciphertexts still decrypt until ``rotate`` re-encrypts them.
* Secrets the platform only verifies (Basic Auth passwords, API keys) are stored as a
  keyed HMAC-SHA256 and compared in constant time: fast enough for every request, and
  useless to whoever reads the database without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

_HASH_PREFIX = "hmac-sha256$"


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = list(settings.FERNET_KEYS)
    if not keys:
        derived = hashlib.sha256(b"switchboard.fernet:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(key.encode()) for key in keys])


@lru_cache(maxsize=1)
def _hash_key() -> bytes:
    return hashlib.sha256(b"switchboard.hash:" + settings.SECRET_KEY.encode()).digest()


def derived_key(purpose: str) -> bytes:
    """A key for one purpose, derived from SECRET_KEY (so purposes never share a key)."""
    return hashlib.sha256(f"switchboard.{purpose}:".encode() + settings.SECRET_KEY.encode()).digest()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    """Decrypt a value from ``encrypt``; raises ``ValueError`` (never the secret) if it cannot."""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ValueError("A stored secret cannot be decrypted with the configured FERNET_KEYS") from None


def rotate(ciphertext: str) -> str:
    return _fernet().rotate(ciphertext.encode()).decode()


def hash_secret(secret: str | bytes) -> str:
    raw = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(_hash_key(), raw, hashlib.sha256).hexdigest()
    return _HASH_PREFIX + digest


def verify_secret(secret: str | bytes, stored: str) -> bool:
    """Constant-time check of a secret against ``hash_secret``'s output."""
    return hmac.compare_digest(hash_secret(secret), stored)


def random_secret() -> str:
    """A password nobody knows (Zato's uuid4 hex), for definitions that start unusable."""
    return uuid.uuid4().hex + secrets.token_hex(8)


@receiver(setting_changed)
def _forget_keys(setting: str, **kwargs: object) -> None:
    """Tests that change keys see the change at once."""
    if setting in ("FERNET_KEYS", "SECRET_KEY"):
        _fernet.cache_clear()
        _hash_key.cache_clear()
