"""Secrets at rest: the only module that touches keys.

Three kinds of secret, three treatments:

* **Secrets the platform must send out again** (outgoing passwords, Vault tokens) are
  encrypted with MultiFernet: ``FERNET_KEYS`` lists keys newest first, so a new key can be
  added in front and old ciphertexts still decrypt until ``rotate`` re-encrypts them.
* **Passwords people choose** (Basic Auth, technical accounts, JWT definitions) are stored
  with Django's password hashers (``PASSWORD_HASHERS``: PBKDF2 by default, salted and slow,
  ~0.3-0.5 s of CPU per check). A leaked database, even with ``SECRET_KEY``, then allows only
  slow guessing, one salt at a time, and rotating ``SECRET_KEY`` no longer touches them.
  Channels stay fast because each process remembers the credentials it has verified
  (``accounts.authentication``); the brute-force limits (``accounts.limits``) keep wrong
  passwords from turning that CPU cost into a denial of service.
* **Random machine keys** (API keys of security definitions, management API tokens) carry
  256 bits of randomness: nobody can guess them, however fast the hash. They keep a fast
  keyed hash, ``hmac-sha256$<key id>$<hex>``, with keys from ``HMAC_KEYS`` (newest first)
  followed by one derived from ``SECRET_KEY``. A hash names the key that made it, so keys
  can rotate: a new key goes in front, old hashes still verify and are rewritten with the
  newest key on their next successful use (``needs_rehash``).

Hashes written before this scheme:

* ``hmac-sha256$<hex>`` (no key id) was made with the ``SECRET_KEY``-derived key; machine
  keys in that form still verify, and are rewritten on use once ``HMAC_KEYS`` names a newer key.
* Passwords in that form are wrapped by migration ``0006_wrap_password_hmacs`` into
  ``wrapped-hmac$<Django hash of the old hex digest>``: slow to guess from then on, without
  knowing the plaintext. Verifying one still needs the ``SECRET_KEY`` it was made with;
  the first successful use replaces it with a plain Django hash (``PasswordCheck.upgrade``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.contrib.auth.hashers import make_password, verify_password
from django.core.signals import setting_changed
from django.dispatch import receiver

HMAC_PREFIX = "hmac-sha256$"
WRAPPED_PREFIX = "wrapped-hmac$"


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = list(settings.FERNET_KEYS)
    if not keys:
        derived = hashlib.sha256(b"switchboard.fernet:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(key.encode()) for key in keys])


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


# --- Machine keys: a fast keyed hash that names its key --------------------------------------------


def _key_id(key: bytes) -> str:
    """A short, stable name for a hash key (not secret: it is a hash of the key, cut short)."""
    return hashlib.sha256(b"switchboard.key-id:" + key).hexdigest()[:8]


@lru_cache(maxsize=1)
def _hash_keys() -> tuple[tuple[str, bytes], ...]:
    """(key id, key) pairs, newest first: ``HMAC_KEYS``, then the key derived from SECRET_KEY."""
    keys = [hashlib.sha256(b"switchboard.hash:" + entry.encode()).digest() for entry in settings.HMAC_KEYS]
    legacy = hashlib.sha256(b"switchboard.hash:" + settings.SECRET_KEY.encode()).digest()
    keys.append(legacy)  # what every hash was made with before HMAC_KEYS existed
    return tuple((_key_id(key), key) for key in keys)


@lru_cache(maxsize=1)
def _keys_by_id() -> dict[str, bytes]:
    return dict(_hash_keys())


def _legacy_key_id() -> str:
    return _hash_keys()[-1][0]


def hash_secret(secret: str | bytes) -> str:
    """``hmac-sha256$<key id>$<hex>`` with the newest key: for random machine keys only, never passwords."""
    key_id, key = _hash_keys()[0]
    return f"{HMAC_PREFIX}{key_id}${_hmac_hex(key, secret)}"


def _hmac_hex(key: bytes, secret: str | bytes) -> str:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.digest(key, raw, "sha256").hex()  # the one-shot C call: API keys are checked on every request


def _parse_hmac(stored: str) -> tuple[str, str] | None:
    """(key id, hex digest) of a machine-key hash, None when ``stored`` is not one."""
    if not stored.startswith(HMAC_PREFIX):
        return None
    parts = stored[len(HMAC_PREFIX):].split("$")
    if len(parts) == 1:
        return _legacy_key_id(), parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


def verify_secret(secret: str | bytes, stored: str) -> bool:
    """Constant-time check of a machine key against ``hash_secret``'s output (any configured key)."""
    parsed = _parse_hmac(stored)
    if parsed is None:
        return False
    key_id, digest = parsed
    key = _keys_by_id().get(key_id)
    if key is None:
        # Made with a key no longer listed: fail, after the same amount of work as a real check.
        hmac.compare_digest(_hmac_hex(_hash_keys()[0][1], secret), digest)
        return False
    return hmac.compare_digest(_hmac_hex(key, secret), digest)


def secret_checker(stored: str) -> Callable[[bytes], bool]:
    """``verify_secret`` for one stored hash, with its key and digest resolved once.

    Authenticators are rebuilt with every configuration snapshot, so they resolve the hash
    when built and pay one HMAC per request, nothing more. A hash whose key is not configured
    gives a checker that does the same work and always says no.
    """
    parsed = _parse_hmac(stored)
    key = _keys_by_id().get(parsed[0]) if parsed else None
    if key is None or parsed is None:
        newest = _hash_keys()[0][1]

        def never(secret: bytes) -> bool:
            hmac.digest(newest, secret, "sha256")  # the same work as a real check
            return False

        return never
    try:
        expected = bytes.fromhex(parsed[1])
    except ValueError:
        return lambda secret: False
    return lambda secret: hmac.compare_digest(hmac.digest(key, secret, "sha256"), expected)


def needs_rehash(stored: str) -> bool:
    """Whether a verified machine-key hash was made with a key other than the newest (rewrite it)."""
    parsed = _parse_hmac(stored)
    return parsed is not None and parsed[0] != _hash_keys()[0][0]


def hash_key_id(stored: str) -> str | None:
    """The id of the key a machine-key hash was made with (for ``manage.py hash_keys``)."""
    parsed = _parse_hmac(stored)
    return parsed[0] if parsed else None


def configured_key_ids() -> list[str]:
    """Ids of the keys hashes can be checked with, newest first (the last is SECRET_KEY's)."""
    return [key_id for key_id, _ in _hash_keys()]


# --- Passwords: Django's slow, salted hashers ------------------------------------------------------


@dataclass(frozen=True)
class PasswordCheck:
    """The outcome of a password check; ``upgrade`` asks the caller to store ``hash_password`` anew."""

    ok: bool
    upgrade: bool = False


def hash_password(password: str) -> str:
    """A salted, slow hash with Django's preferred hasher (``PASSWORD_HASHERS[0]``)."""
    return make_password(password)


def unusable_password() -> str:
    """A stored value no password matches (Zato's rule: a definition starts with a password nobody knows)."""
    return make_password(None)


def check_password(password: str, stored: str) -> PasswordCheck:
    """Check a password against any stored form; the cost is one slow hash whatever ``stored`` is.

    Unknown users, unusable passwords and malformed values run Django's default hasher once
    anyway (``verify_password`` does), so timing does not tell them apart from a wrong password.
    """
    if stored.startswith(HMAC_PREFIX):  # from before migration 0006 (never written since)
        ok = verify_secret(password, stored)
        if not ok:
            make_password(password)  # the same work as a real wrong password
        return PasswordCheck(ok, upgrade=ok)
    if stored.startswith(WRAPPED_PREFIX):
        legacy = _hmac_hex(_hash_keys()[-1][1], password)
        ok, _ = verify_password(legacy, stored[len(WRAPPED_PREFIX):])
        return PasswordCheck(ok, upgrade=ok)
    ok, must_update = verify_password(password, stored)
    return PasswordCheck(ok, upgrade=ok and must_update)


def random_secret() -> str:
    """A password nobody knows (Zato's uuid4 hex), for definitions that start unusable."""
    return uuid.uuid4().hex + secrets.token_hex(8)


@receiver(setting_changed)
def _forget_keys(setting: str, **kwargs: object) -> None:
    """Tests that change keys see the change at once."""
    if setting in ("FERNET_KEYS", "SECRET_KEY", "HMAC_KEYS"):
        _fernet.cache_clear()
        _hash_keys.cache_clear()
        _keys_by_id.cache_clear()
