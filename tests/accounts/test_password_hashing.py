"""Passwords of security definitions: slow salted hashes, remembered once verified, old hashes upgraded.

Most of the suite hashes with MD5 for speed (tests/conftest.py); the first test here uses the
real default hasher. ``CountingHasher`` is MD5 that counts its work, so tests can tell a
remembered credential (no hash) from a checked one.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import os
from typing import Any, ClassVar

import pytest
from django.conf import global_settings
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.management import call_command

from accounts import authentication, crypto
from accounts.models import ApiKey, BasicAuth, JWTDefinition
from integration import snapshot
from integration.models import ConfigVersion
from tests.conftest import basic_header

pytestmark = pytest.mark.django_db
wrap_migration = importlib.import_module("accounts.migrations.0006_wrap_password_hmacs")


class CountingHasher(MD5PasswordHasher):
    """MD5, counting every hash it computes (``verify`` encodes too)."""

    algorithm = "counting_md5"
    hashes: ClassVar[list[str]] = []

    def encode(self, password: str, salt: str) -> str:
        type(self).hashes.append(password)
        return super().encode(password, salt)


@pytest.fixture
def counting(settings: Any) -> list[str]:
    settings.PASSWORD_HASHERS = ["tests.accounts.test_password_hashing.CountingHasher"]
    CountingHasher.hashes = []
    return CountingHasher.hashes


@pytest.fixture
def crm(builtins: None, make_channel: Any, basic_auth: Any) -> BasicAuth:
    definition = basic_auth()  # crm-user / crm-secret
    make_channel("/crm", "demo.hello", security=definition)
    return definition


def legacy_hmac(password: str) -> str:
    """What this platform stored before: one HMAC-SHA256 round keyed from SECRET_KEY."""
    from django.conf import settings

    key = hashlib.sha256(b"switchboard.hash:" + settings.SECRET_KEY.encode()).digest()
    return "hmac-sha256$" + hmac.new(key, password.encode(), hashlib.sha256).hexdigest()


def test_with_the_real_default_hasher_passwords_get_a_salted_slow_hash(settings, client, builtins,
                                                                      make_channel) -> None:
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # production's: PBKDF2 first
    one = BasicAuth(name="one", username="u1")
    one.set_password("same-password")
    one.save()
    two = BasicAuth(name="two", username="u2")
    two.set_password("same-password")
    two.save()
    algorithm, iterations, salt, _digest = one.password_hash.split("$")
    assert algorithm == "pbkdf2_sha256" and int(iterations) >= 1_000_000  # Django 5.2's work factor
    assert two.password_hash.split("$")[2] != salt  # salted: the same password hashes differently
    make_channel("/one", "demo.hello", security=one)
    assert client.get("/one", HTTP_AUTHORIZATION=basic_header("u1", "same-password")).status_code == 200
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40  # rotating SECRET_KEY no longer touches passwords
    assert crypto.check_password("same-password", one.password_hash).ok


def test_a_verified_password_is_remembered_until_it_changes(client, crm, counting) -> None:
    crm.set_password("crm-secret")  # with the counting hasher
    crm.save()
    counting.clear()
    for _ in range(5):
        assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret")).status_code == 200
    assert counting == ["crm-secret"]  # hashed once, by the first call
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-wrong")).status_code == 401
    assert counting[-1] == "crm-wrong"  # wrong passwords are hashed every time: never remembered
    crm.set_password("new-secret")
    crm.save()
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret")).status_code == 401
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "new-secret")).status_code == 200


def test_a_right_password_with_a_wrong_username_is_not_remembered(client, crm, counting) -> None:
    crm.set_password("crm-secret")
    crm.save()
    counting.clear()
    for _ in range(2):
        assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("someone", "crm-secret")).status_code == 401
    assert counting == ["crm-secret", "crm-secret"]  # the full check, each time, as for any failure


def test_what_is_remembered_is_a_mac_never_the_password(client, crm) -> None:
    authentication._verified.clear()
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret")).status_code == 200
    (entry,) = authentication._verified
    assert len(entry) == 32 and b"crm-secret" not in entry
    assert entry == authentication._fingerprint(crm.password_hash, "crm-user", "crm-secret")


def test_a_forked_worker_gets_a_key_of_its_own_and_remembers_nothing(client, crm) -> None:
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret")).status_code == 200
    parent_key = authentication._process_key
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, touching nothing else
        os.write(write, b"1" if authentication._process_key != parent_key and not authentication._verified else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_an_old_hmac_password_still_works_and_is_upgraded_on_first_use(client, crm, counting) -> None:
    BasicAuth.objects.filter(pk=crm.pk).update(password_hash=legacy_hmac("crm-secret"))
    snapshot.changed()
    version = ConfigVersion.objects.get().version
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret")).status_code == 200
    stored = BasicAuth.objects.get(pk=crm.pk).password_hash
    assert stored.startswith("counting_md5$")  # a Django hash now, made with the preferred hasher
    assert ConfigVersion.objects.get().version > version  # every process reloads the definition
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret")).status_code == 200
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-wrong")).status_code == 401


def test_the_migration_wraps_old_hashes_without_the_passwords_and_use_unwraps_them(client, crm, jwt_def,
                                                                                   counting) -> None:
    from django.apps import apps

    browsers = jwt_def(password="jwt-secret-1")
    JWTDefinition.objects.filter(pk=browsers.pk).update(password_hash=legacy_hmac("jwt-secret-1"))
    BasicAuth.objects.filter(pk=crm.pk).update(password_hash=legacy_hmac("crm-secret"))
    untouched = BasicAuth.objects.create(name="fresh", username="fresh").password_hash
    wrap_migration.wrap_all(apps, None)
    wrapped = BasicAuth.objects.get(pk=crm.pk).password_hash
    assert wrapped.startswith("wrapped-hmac$counting_md5$")
    assert legacy_hmac("crm-secret")[len("hmac-sha256$"):] not in wrapped  # the old digest is gone
    assert BasicAuth.objects.get(name="fresh").password_hash == untouched
    assert JWTDefinition.objects.get(pk=browsers.pk).password_hash.startswith("wrapped-hmac$")
    assert not crypto.check_password("crm-wrong", wrapped).ok
    snapshot.changed()
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret")).status_code == 200
    assert BasicAuth.objects.get(pk=crm.pk).password_hash.startswith("counting_md5$")
    login = client.post("/zato/jwt/log-in", {"username": "frontend", "password": "jwt-secret-1"},
                        content_type="application/json")
    assert login.status_code == 200
    assert JWTDefinition.objects.get(pk=browsers.pk).password_hash.startswith("counting_md5$")


def test_a_jwt_log_in_hashes_once_whether_or_not_the_user_exists(client, jwt_def, counting) -> None:
    jwt_def(username="frontend", password="jwt-secret-1")
    counting.clear()
    for username in ("frontend", "nobody-by-that-name"):
        response = client.post("/zato/jwt/log-in", {"username": username, "password": "guess"},
                                content_type="application/json")
        assert response.status_code == 401
    assert len(counting) == 2  # one hash each: timing does not tell which usernames exist


def test_api_keys_keep_a_keyed_hash_that_names_its_key_and_rotate(client, builtins, make_channel, settings,
                                                                 capsys) -> None:
    definition = ApiKey(name="partner")
    key = definition.new_key()
    definition.save()
    make_channel("/keyed", "demo.hello", security=definition)
    old_id = crypto.configured_key_ids()[-1]  # without HMAC_KEYS: the key derived from SECRET_KEY
    assert definition.key_hash.startswith(f"hmac-sha256${old_id}$")

    settings.HMAC_KEYS = ["a-new-hash-key-of-at-least-32-characters"]
    new_id = crypto.configured_key_ids()[0]
    assert new_id != old_id and crypto.verify_secret(key, definition.key_hash)
    call_command("hash_keys")
    assert f"{old_id}  derived from SECRET_KEY: 1 API key(s)" in capsys.readouterr().out
    snapshot.changed()
    assert client.get("/keyed", HTTP_X_API_KEY=key).status_code == 200
    stored = ApiKey.objects.get(pk=definition.pk).key_hash
    assert stored.startswith(f"hmac-sha256${new_id}$")  # rewritten with the newest key on use
    call_command("hash_keys")
    assert f"{new_id}  HMAC_KEYS[0]: 1 API key(s)" in capsys.readouterr().out

    settings.SECRET_KEY = "a-rotated-secret-key-" + "y" * 40  # the old key is gone; the new one is not
    assert crypto.verify_secret(key, stored)
    assert not crypto.verify_secret(key, definition.key_hash)


def test_a_legacy_api_key_hash_without_a_key_id_still_verifies(db) -> None:
    assert crypto.verify_secret("sbk_" + "k" * 40, legacy_hmac("sbk_" + "k" * 40))
    assert not crypto.verify_secret("sbk_" + "k" * 40, legacy_hmac("sbk_" + "j" * 40))
    assert not crypto.verify_secret("anything", "hmac-sha256$unknownid$" + "0" * 64)
    assert not crypto.verify_secret("anything", "md5$not-a-keyed-hash")


def test_short_hmac_keys_stop_the_process_at_start_up() -> None:
    from tests.test_settings import _manage

    done = _manage("check", HMAC_KEYS="too-short")
    assert done.returncode != 0
    assert "HMAC_KEYS: every key must be at least 32 characters" in done.stderr
