"""Technical accounts: X-Zato-User / X-Zato-Password, as the seed on technical accounts specifies."""

from __future__ import annotations

import logging

import pytest

from accounts import crypto
from accounts.models import TechAccount

pytestmark = pytest.mark.django_db
API = "/manage/api/v1/security/tech-accounts"
SEED_MESSAGE = "The username or password is incorrect, URI:[/foo/bar], X_ZATO_USER:[myusername]"


@pytest.fixture
def foo_bar(builtins, make_channel, tech_account):
    definition = tech_account()
    make_channel("/foo/bar", "demo.hello", security=definition, name="foo-bar")
    return definition


def test_good_credentials_run_the_service(client, foo_bar) -> None:
    response = client.get("/foo/bar", HTTP_X_ZATO_USER="myusername", HTTP_X_ZATO_PASSWORD="mypassword")
    assert response.status_code == 200
    assert response.json()["hello"] == "world"
    assert len(response["X-Zato-CID"]) == 24


def test_a_wrong_password_is_401_with_the_seed_message_and_the_log_says_which(client, foo_bar, caplog) -> None:
    caplog.set_level(logging.WARNING)
    response = client.get("/foo/bar", HTTP_X_ZATO_USER="myusername", HTTP_X_ZATO_PASSWORD="incorrect")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "zato-tech-acc"
    cid = response["X-Zato-CID"]
    assert response.json() == {"result": "Error", "cid": cid, "details": SEED_MESSAGE}
    logged = [r.getMessage() for r in caplog.records if cid in r.getMessage()]
    assert any("The password is incorrect, URI:[/foo/bar], X_ZATO_USER:[myusername]" in m for m in logged)
    assert "incorrect" not in str(caplog.text).replace("The password is incorrect", "").replace(
        "username or password is incorrect", "")  # the only reasons logged are the ones above


def test_an_unknown_user_gets_the_same_answer_but_the_log_says_username(client, foo_bar, caplog) -> None:
    caplog.set_level(logging.WARNING)
    response = client.get("/foo/bar", HTTP_X_ZATO_USER="someone", HTTP_X_ZATO_PASSWORD="mypassword")
    assert response.status_code == 401
    assert response.json()["details"] == "The username or password is incorrect, URI:[/foo/bar], X_ZATO_USER:[someone]"
    assert f"[{response['X-Zato-CID']}]" in caplog.text
    assert "The username is incorrect, URI:[/foo/bar], X_ZATO_USER:[someone]" in caplog.text


@pytest.mark.parametrize(
    ("headers", "logged"),
    [
        ({}, "X-Zato-User is missing or empty"),
        ({"HTTP_X_ZATO_USER": ""}, "X-Zato-User is missing or empty"),
        ({"HTTP_X_ZATO_USER": "myusername"}, "X-Zato-Password is missing"),
        ({"HTTP_X_ZATO_USER": "my username", "HTTP_X_ZATO_PASSWORD": "mypassword"}, "The username is incorrect"),
        ({"HTTP_X_ZATO_USER": "myusername", "HTTP_X_ZATO_PASSWORD": "my password"}, "The password is incorrect"),
        # WSGI hands over header bytes as latin-1: these are bytes that are not UTF-8.
        ({"HTTP_X_ZATO_USER": "\xff\xfe", "HTTP_X_ZATO_PASSWORD": "mypassword"}, "not valid UTF-8"),
        ({"HTTP_X_ZATO_USER": "myusername", "HTTP_X_ZATO_PASSWORD": "\xc3\x28"}, "not valid UTF-8"),
        ({"HTTP_X_ZATO_USER": "my\x01user", "HTTP_X_ZATO_PASSWORD": "mypassword"}, "not valid UTF-8"),
        ({"HTTP_AUTHORIZATION": "Basic =a="}, "X-Zato-User is missing or empty"),
    ],
)
def test_missing_and_malformed_headers_are_401_never_500(client, foo_bar, caplog, headers, logged) -> None:
    caplog.set_level(logging.WARNING)
    response = client.get("/foo/bar", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "zato-tech-acc"
    assert response.json()["details"].startswith("The username or password is incorrect, URI:[/foo/bar]")
    assert logged in caplog.text


def test_a_utf8_username_and_password_work(client, builtins, make_channel, tech_account) -> None:
    make_channel("/foo/utf", "demo.hello", security=tech_account(name="zażółć", password="gęślą jaźń"))
    response = client.get("/foo/utf", HTTP_X_ZATO_USER="zażółć".encode().decode("latin-1"),
                          HTTP_X_ZATO_PASSWORD="gęślą jaźń".encode().decode("latin-1"))
    assert response.status_code == 200


def test_an_inactive_definition_rejects_good_credentials(client, builtins, make_channel, tech_account,
                                                          caplog) -> None:
    make_channel("/foo/off", "demo.hello", security=tech_account(is_active=False))
    response = client.get("/foo/off", HTTP_X_ZATO_USER="myusername", HTTP_X_ZATO_PASSWORD="mypassword")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "zato-tech-acc"
    assert "The definition is inactive" in caplog.text


def test_a_new_account_has_a_random_password_nobody_knows(client, builtins, make_channel) -> None:
    definition = TechAccount.objects.create(name="fresh")
    make_channel("/foo/fresh", "demo.hello", security=definition)
    assert definition.password_hash.startswith("!")  # Django's unusable password
    for guess in ("", "fresh", "None", "password"):
        response = client.get("/foo/fresh", HTTP_X_ZATO_USER="fresh", HTTP_X_ZATO_PASSWORD=guess)
        assert response.status_code == 401


def test_the_api_creates_changes_the_password_and_never_returns_it(api, client, builtins, make_channel,
                                                                   caplog) -> None:
    caplog.set_level(logging.DEBUG)
    created = api.post(f"{API}/", {"name": "erp-robot"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert set(body) == {"id", "name", "is_active", "created", "updated"}
    make_channel("/erp", "demo.hello", security=TechAccount.objects.get(pk=body["id"]))
    assert client.get("/erp", HTTP_X_ZATO_USER="erp-robot", HTTP_X_ZATO_PASSWORD="").status_code == 401

    mismatch = api.post(f"{API}/{body['id']}/change-password/", {"password1": "Xy-1", "password2": "Xy-2"},
                        format="json")
    assert mismatch.status_code == 400
    changed = api.post(f"{API}/{body['id']}/change-password/",
                       {"password1": "robot-secret-77", "password2": "robot-secret-77"}, format="json")
    assert changed.status_code == 200
    assert client.get("/erp", HTTP_X_ZATO_USER="erp-robot",
                      HTTP_X_ZATO_PASSWORD="robot-secret-77").status_code == 200
    stored = TechAccount.objects.get(pk=body["id"]).password_hash
    assert crypto.check_password("robot-secret-77", stored).ok and "robot-secret-77" not in stored
    assert "robot-secret-77" not in str(api.get(f"{API}/").json())
    assert "robot-secret-77" not in caplog.text


def test_the_admin_change_password_form(admin_client_alice, tech_account) -> None:
    definition = tech_account(password="old-password")
    page = admin_client_alice.get(f"/admin/accounts/techaccount/{definition.pk}/change/")
    assert page.status_code == 200
    assert b"Change password" in page.content and b"old-password" not in page.content
    url = f"/admin/accounts/techaccount/{definition.pk}/password/"
    form = admin_client_alice.get(url)
    assert form.status_code == 200 and b"password2" in form.content
    mismatch = admin_client_alice.post(url, {"password1": "a-new-one", "password2": "another"})
    assert mismatch.status_code == 200 and b"not the same" in mismatch.content
    done = admin_client_alice.post(url, {"password1": "a-new-one", "password2": "a-new-one"})
    assert done.status_code == 302
    definition.refresh_from_db()
    assert crypto.check_password("a-new-one", definition.password_hash).ok
