"""Hypothesis: credential headers as the security definitions' authenticators parse them.

Each authenticator is called through its public contract (DRF's): ``authenticate(request)``
answers None ("not mine"), a (caller, definition) pair, or raises ``AuthenticationFailed``.
Fuzzed request headers, as a WSGI server hands them over (latin-1 text), must never make
one raise anything else, and must never authenticate without the right credential. Two
more answers are allowed because they are refusals too: 429 once the brute-force limit
is reached (issue 11, item 3) and 503 when the JWT session store cannot be reached.

Authenticators come from the snapshot, as channels get them, and are fed a real Django
request (``RequestFactory``) carrying the fuzzed headers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import AuthenticationFailed, Throttled

from accounts import tokens
from accounts.models import ApiKey, BasicAuth, JWTDefinition, TechAccount
from integration import snapshot
from integration.cid import new_cid
from integration.errors import SwitchboardError

pytestmark = pytest.mark.django_db

HEADERS = settings(max_examples=150, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# What a WSGI server hands over: headers decoded as latin-1, so any of the 256 code points.
latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=80)


def utf8_as_wsgi(text: str) -> str:
    """A header a client sent in UTF-8, as the WSGI environ holds it."""
    return text.encode("utf-8").decode("latin-1")


@pytest.fixture
def accounts(db: None) -> dict[str, Any]:
    """One definition of each header-based type, with its right credentials."""
    basic = BasicAuth(name="crm", username="crm-user")
    basic.set_password("crm-secret")
    basic.save()
    tech = TechAccount(name="robot")
    tech.set_password("robot-secret")
    tech.save()
    api_key = ApiKey(name="partner")
    key = api_key.new_key()
    api_key.save()
    jwt = JWTDefinition(name="browsers", username="frontend", ttl=600)
    jwt.set_password("jwt-secret-1")
    jwt.save()
    token = tokens.issue(jwt.pk, jwt.username, jwt.ttl)
    security = snapshot.current().security
    return {
        "basic": security.get(basic.pk), "tech": security.get(tech.pk), "apikey": security.get(api_key.pk),
        "jwt": security.get(jwt.pk), "key": key, "token": token,
        "basic_header": "Basic " + base64.b64encode(b"crm-user:crm-secret").decode(),
    }


def metas(accounts: dict[str, Any]) -> st.SearchStrategy[dict[str, str]]:
    """Request headers: random, nearly right, or right."""
    token, key = accounts["token"], accounts["key"]
    user_pass = st.tuples(st.text(max_size=20), st.text(max_size=20)).map(lambda pair: f"{pair[0]}:{pair[1]}")
    authorization = st.one_of(
        latin1,
        st.binary(max_size=60).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
        user_pass.map(lambda text: "Basic " + base64.b64encode(text.encode()).decode()),
        st.sampled_from(["Basic", "Basic ", "basic Y3JtLXVzZXI6Y3JtLXNlY3JldA==", "Basic ===", "Bearer", "Bearer  ",
                         accounts["basic_header"], accounts["basic_header"] + " extra", f"Bearer {token}",
                         f"bearer {token}", f"Bearer {token[:-1]}", f"Bearer {token}x", f"Bearer {token[::-1]}"]),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=200).map(
            lambda text: "Bearer gAAAAA" + text),
    )
    secrets = st.one_of(latin1, st.text(max_size=30).map(utf8_as_wsgi),
                        st.sampled_from(["robot", "robot-secret", key, key[:8], key + " ", " " + key]))
    return st.fixed_dictionaries({}, optional={
        "HTTP_AUTHORIZATION": authorization,
        "HTTP_X_ZATO_USER": secrets,
        "HTTP_X_ZATO_PASSWORD": secrets,
        "HTTP_X_API_KEY": secrets,
    })


def answer(authenticator: Any, meta: dict[str, str]) -> str:
    """'none', 'ok' or 'refused'; anything else fails the test."""
    request = RequestFactory().get("/fuzz/credentials", **meta)
    request.cid = new_cid()
    try:
        result = authenticator.authenticate(request)
    except (AuthenticationFailed, Throttled):
        return "refused"
    except SwitchboardError as exc:
        assert exc.status_code in (429, 503), (exc.status_code, exc.details)
        return "refused"
    if result is None:
        return "none"
    identity, definition = result
    assert definition == authenticator.name and identity.definition == authenticator.name
    return "ok"


def basic_credentials(meta: dict[str, str]) -> bytes | None:
    parts = meta.get("HTTP_AUTHORIZATION", "").split()
    try:
        return base64.b64decode(parts[1], validate=True) if len(parts) == 2 else None
    except (binascii.Error, ValueError):
        return None


@HEADERS
@given(data=st.data())
@example(data=None)
def test_no_header_crashes_an_authenticator_or_lets_a_caller_in_without_the_right_credential(accounts, data) -> None:
    meta = data.draw(metas(accounts)) if data is not None else {
        "HTTP_AUTHORIZATION": "Basic \xff\xfe", "HTTP_X_ZATO_USER": "\x00", "HTTP_X_ZATO_PASSWORD": "\xc3\x28",
        "HTTP_X_API_KEY": "\x7f" * 10000,
    }
    if answer(accounts["basic"], meta) == "ok":
        assert basic_credentials(meta) == b"crm-user:crm-secret"
    if answer(accounts["tech"], meta) == "ok":
        assert (meta.get("HTTP_X_ZATO_USER"), meta.get("HTTP_X_ZATO_PASSWORD")) == ("robot", "robot-secret")
    if answer(accounts["apikey"], meta) == "ok":
        assert meta["HTTP_X_API_KEY"].strip() == accounts["key"]
    if answer(accounts["jwt"], meta) == "ok":
        assert meta["HTTP_AUTHORIZATION"].split(None, 1)[1].strip() == accounts["token"]


def test_the_right_credentials_still_get_in(accounts) -> None:
    """The property above would pass if every authenticator refused everything: it must not."""
    assert answer(accounts["basic"], {"HTTP_AUTHORIZATION": accounts["basic_header"]}) == "ok"
    assert answer(accounts["tech"], {"HTTP_X_ZATO_USER": "robot", "HTTP_X_ZATO_PASSWORD": "robot-secret"}) == "ok"
    assert answer(accounts["apikey"], {"HTTP_X_API_KEY": accounts["key"]}) == "ok"
    assert answer(accounts["jwt"], {"HTTP_AUTHORIZATION": f"Bearer {accounts['token']}"}) == "ok"
