"""Wrap the old, fast password hashes of security definitions in a slow one, without the passwords.

Until this release the passwords of Basic Auth definitions, technical accounts and JWT definitions
were stored as one round of HMAC-SHA256 keyed from SECRET_KEY (``hmac-sha256$<hex>``). Anyone holding
the database and SECRET_KEY could test billions of guesses a second against them.

The passwords themselves are unknown here, but the old digest is all a check needs: this migration
stores ``wrapped-hmac$<Django hash of that hex digest>`` (PBKDF2 by default, salted, slow). A guess
then costs the HMAC plus the slow hash, as for any new password. ``accounts.crypto.check_password``
verifies the wrapped form (which still needs the SECRET_KEY the digest was made with), and the first
successful use of each definition replaces it with a plain Django hash of the password, after which
SECRET_KEY no longer matters for it.

Cost: one slow hash per definition (about 0.3-0.5 s each with PBKDF2): a few seconds for tens of
definitions, minutes for thousands. Reversing it keeps the wrapped hashes (the old digests cannot be
recovered from them): after a downgrade, set those definitions' passwords again.

API keys stay keyed hashes (they are random, 256 bits, not guessable); nothing to do for them.
"""

from django.contrib.auth.hashers import make_password
from django.db import migrations

OLD_PREFIX = "hmac-sha256$"
WRAPPED_PREFIX = "wrapped-hmac$"


def wrap_hmac(stored: str) -> str:
    """``hmac-sha256$<hex>`` -> ``wrapped-hmac$<slow hash of hex>``; anything else is left as it is."""
    if not stored.startswith(OLD_PREFIX) or stored.count("$") != 1:
        return stored
    return WRAPPED_PREFIX + make_password(stored[len(OLD_PREFIX):])


def wrap_all(apps, schema_editor):  # type: ignore[no-untyped-def]
    for model_name in ("BasicAuth", "TechAccount", "JWTDefinition"):
        model = apps.get_model("accounts", model_name)
        for pk, stored in model.objects.filter(password_hash__startswith=OLD_PREFIX).values_list(
                "pk", "password_hash"):
            wrapped = wrap_hmac(stored)
            if wrapped != stored:
                model.objects.filter(pk=pk, password_hash=stored).update(password_hash=wrapped)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0005_api_tokens_credential_limits"),
    ]

    operations = [
        migrations.RunPython(wrap_all, migrations.RunPython.noop, elidable=True),
    ]
