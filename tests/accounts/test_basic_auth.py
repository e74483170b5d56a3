"""Basic Auth definitions: secrets hashed at rest, write-only in the API, never shown back."""

from __future__ import annotations

import pytest

from accounts import crypto
from accounts.models import BasicAuth

pytestmark = pytest.mark.django_db
API = "/manage/api/v1/security/basic-auth"


def test_the_password_is_stored_as_a_salted_hash_only(basic_auth) -> None:
    definition = basic_auth(password="s3cret-value")
    stored = BasicAuth.objects.values_list("password_hash", flat=True).get(pk=definition.pk)
    assert "s3cret-value" not in stored
    # The test settings hash with MD5 for speed (tests/conftest.py); production's default is PBKDF2.
    assert stored.startswith("md5$")
    assert crypto.check_password("s3cret-value", stored).ok
    assert not crypto.check_password("s3cret-valuE", stored).ok


def test_a_new_definition_without_a_password_gets_one_nobody_knows(db) -> None:
    definition = BasicAuth.objects.create(name="fresh", username="u")
    assert definition.password_hash.startswith("!")  # Django's unusable password: no input matches it
    assert not crypto.check_password("", definition.password_hash).ok


def test_fernet_round_trips_and_rotates(settings) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FERNET_KEYS = [old]
    crypto._fernet.cache_clear()
    token = crypto.encrypt("vault-token")
    settings.FERNET_KEYS = [new, old]  # new key in front; the old one still decrypts
    crypto._fernet.cache_clear()
    try:
        assert crypto.decrypt(token) == "vault-token"
        rotated = crypto.rotate(token)
        settings.FERNET_KEYS = [new]
        crypto._fernet.cache_clear()
        assert crypto.decrypt(rotated) == "vault-token"
        with pytest.raises(ValueError, match="cannot be decrypted"):
            crypto.decrypt(token)
    finally:
        crypto._fernet.cache_clear()


def test_the_api_never_returns_the_password(api) -> None:
    created = api.post(f"{API}/", {"name": "erp", "username": "erp", "password": "pw-1", "realm": "ERP"},
                       format="json")
    assert created.status_code == 201
    assert "password" not in created.json() and "password_hash" not in created.json()
    listing = api.get(f"{API}/").json()
    assert "pw-1" not in str(listing) and "md5$" not in str(listing)


def test_change_password_needs_the_same_value_twice(api, basic_auth) -> None:
    definition = basic_auth(password="old")
    mismatch = api.post(f"{API}/{definition.pk}/change-password/", {"password1": "a", "password2": "b"},
                        format="json")
    assert mismatch.status_code == 400
    assert "password2" in mismatch.json()["details"]
    ok = api.post(f"{API}/{definition.pk}/change-password/", {"password1": "new", "password2": "new"},
                  format="json")
    assert ok.status_code == 200
    definition.refresh_from_db()
    assert crypto.check_password("new", definition.password_hash).ok


@pytest.fixture
def crm_channel(builtins, make_channel, basic_auth):
    definition = basic_auth(realm="CRM")
    make_channel("/crm", "demo.hello", security=definition)
    return definition


def _basic(raw: bytes) -> str:
    import base64

    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "logged"),
    [
        (None, "no credentials sent"),
        (_basic(b"crm-user:wrong"), "invalid username or password (username given: 'crm-user')"),
        (_basic(b"someone:crm-secret"), "invalid username or password (username given: 'someone')"),
        (_basic(b"crm-user"), "no ':' between username and password"),
        ("Basic =a=", "not valid base64 UTF-8"),
        ("Basic a b", "malformed Authorization header"),
        ("Basic", "malformed Authorization header"),
        (_basic(b"crm-user:\xff\xfe"), "not valid base64 UTF-8"),
        ("Basic \xff\xfe", "not valid base64 UTF-8"),
        ("Bearer abc", "no credentials sent"),
    ],
)
def test_wrong_missing_and_malformed_credentials_are_401(client, crm_channel, caplog, header, logged) -> None:
    response = client.get("/crm", **({"HTTP_AUTHORIZATION": header} if header is not None else {}))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="CRM"'
    assert response.json() == {"result": "Error", "cid": response["X-Zato-CID"], "details": "Unauthorized"}
    assert f"[{response['X-Zato-CID']}]" in caplog.text and logged in caplog.text
    assert "crm-secret" not in caplog.text
