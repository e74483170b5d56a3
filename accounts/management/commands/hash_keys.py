"""``manage.py hash_keys``: which stored hashes still depend on which key (before removing one).

API keys and API tokens are stored as ``hmac-sha256$<key id>$<hex>`` (``accounts.crypto``); a
hash verifies only while its key is configured (``HMAC_KEYS``, or SECRET_KEY for the last one).
Passwords migrated from the old format (``wrapped-hmac$``) need the SECRET_KEY they were made
with until their first successful use. This command counts both, so an operator rotating keys
knows when an old key (or SECRET_KEY) can go: when nothing is listed under it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand

from accounts import crypto
from accounts.models import ApiKey, ApiToken, BasicAuth, JWTDefinition, TechAccount


class Command(BaseCommand):
    help = "Count the stored hashes that still depend on each hash key (HMAC_KEYS, SECRET_KEY)."

    def handle(self, *args: Any, **options: Any) -> None:
        configured = crypto.configured_key_ids()
        by_key: Counter[str] = Counter()
        for stored in ApiKey.objects.values_list("key_hash", flat=True):
            by_key[crypto.hash_key_id(stored) or "?"] += 1
        tokens: Counter[str] = Counter()
        for stored in ApiToken.objects.filter(revoked__isnull=True).values_list("token_hash", flat=True):
            tokens[crypto.hash_key_id(stored) or "?"] += 1
        self.stdout.write("Keys, newest first (new hashes use the first):")
        for position, key_id in enumerate(configured):
            origin = "derived from SECRET_KEY" if position == len(configured) - 1 else f"HMAC_KEYS[{position}]"
            self.stdout.write(f"  {key_id}  {origin}: {by_key.pop(key_id, 0)} API key(s), "
                              f"{tokens.pop(key_id, 0)} API token(s)")
        for key_id in sorted(set(by_key) | set(tokens)):
            self.stdout.write(f"  {key_id}  NOT CONFIGURED (these no longer verify): {by_key[key_id]} API key(s), "
                              f"{tokens[key_id]} API token(s)")
        waiting = sum(
            model.objects.filter(password_hash__startswith=prefix).count()
            for model in (BasicAuth, TechAccount, JWTDefinition)
            for prefix in (crypto.WRAPPED_PREFIX, crypto.HMAC_PREFIX)
        )
        self.stdout.write(f"Passwords still needing SECRET_KEY (migrated, not used since): {waiting}")
