"""Hypothesis tests for every parser of credential headers: whatever a caller sends, a clear answer.

Headers reach the authenticators as WSGI hands them over: text whose characters are the raw
bytes (latin-1). The parsers must return "not mine" (None), refuse (a 401, or a 429 once the
limits bite), or accept exactly the right credentials; never raise anything else.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.exceptions import AuthenticationFailed, Throttled

from accounts import crypto
from accounts.api_auth import ApiTokenAuthentication, parse_token
from accounts.authentication import (
    ApiKeyAuthentication,
    BasicAuthDefinitionAuthentication,
    CredentialsRefused,
    JWTAuthentication,
    TechAccountAuthentication,
    header_text,
    parse_basic,
)
from integration.errors import TooManyRequests

pytestmark = pytest.mark.django_db
EXAMPLES = hypothesis_settings(max_examples=150, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture])

wsgi_text = st.text(st.characters(max_codepoint=255), max_size=300)  # what WSGI can hand over
words = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)  # any Unicode a client may mean


def as_wsgi(text: str) -> str:
    """A header value as WSGI gives it: the UTF-8 bytes, each read as one latin-1 character."""
    return text.encode("utf-8").decode("latin-1")


@dataclass
class FakeRequest:
    """What the authenticators read from a request (as the WebSocket consumer builds one)."""

    META: dict[str, str]
    cid: str = "0" * 24
    path_info: str = "/parsers"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def no_limits(settings: Any) -> None:
    """Far more failures than the examples: these tests look at parsing, not at blocking."""
    settings.CREDENTIAL_MAX_FAILURES = 1_000_000


@EXAMPLES
@given(header=wsgi_text)
def test_parse_basic_never_raises_and_says_why_it_refuses(header: str) -> None:
    result = parse_basic(header)
    assert result is None or isinstance(result, str) or (
        isinstance(result, tuple) and all(isinstance(part, str) for part in result))
    if not header.strip().lower().startswith("basic"):
        assert result is None


@EXAMPLES
@given(username=words.filter(lambda name: ":" not in name), password=words, scheme=st.sampled_from(
    ["Basic", "basic", "BASIC"]))
def test_parse_basic_reads_back_any_utf8_username_and_password(username: str, password: str, scheme: str) -> None:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    assert parse_basic(f"{scheme} {encoded}") == (username, password)
    assert isinstance(parse_basic(f"{scheme} {encoded} trailing"), str)


@EXAMPLES
@given(header=wsgi_text)
def test_parse_token_gives_one_plausible_token_or_a_reason(header: str) -> None:
    try:
        token = parse_token(header)
    except ValueError as exc:
        assert "<token>" in str(exc)
        return
    if token is not None:
        assert 0 < len(token) <= 200 and header.strip().endswith(token)
        assert not any(char.isspace() or not char.isprintable() for char in token)


@EXAMPLES
@given(value=wsgi_text)
def test_header_text_gives_text_without_control_characters_or_refuses(value: str) -> None:
    try:
        text = header_text({"HTTP_X_ZATO_USER": value}, "HTTP_X_ZATO_USER")
    except (UnicodeDecodeError, ValueError):
        return
    assert text is not None and not any(ord(char) < 32 or ord(char) == 127 for char in text)


@EXAMPLES
@given(user=words, password=words)
def test_header_text_reads_back_utf8(user: str, password: str) -> None:
    clean = "".join(char for char in user if ord(char) >= 32 and ord(char) != 127)
    assert header_text({"K": as_wsgi(clean)}, "K") == clean


@EXAMPLES
@given(authorization=st.one_of(wsgi_text, st.builds(lambda body: "Basic " + body, wsgi_text)))
@example(authorization="Basic " + base64.b64encode(b"crm-user:crm-secret").decode())
def test_a_basic_auth_definition_refuses_anything_but_its_credentials(no_limits, authorization: str) -> None:
    authenticator = BasicAuthDefinitionAuthentication("crm", True, "crm-user", crypto.hash_password("crm-secret"),
                                                      "CRM")
    try:
        result = authenticator.authenticate(FakeRequest({"HTTP_AUTHORIZATION": authorization}))
    except (CredentialsRefused, TooManyRequests):
        return
    assert result is None or parse_basic(authorization) == ("crm-user", "crm-secret")


@EXAMPLES
@given(user=st.one_of(st.none(), wsgi_text), password=st.one_of(st.none(), wsgi_text))
@example(user="robot", password="robot-pw")
def test_a_technical_account_refuses_anything_but_its_credentials(no_limits, user: str | None,
                                                                 password: str | None) -> None:
    authenticator = TechAccountAuthentication("robot", True, crypto.hash_password("robot-pw"))
    meta = {key: value for key, value in (("HTTP_X_ZATO_USER", user), ("HTTP_X_ZATO_PASSWORD", password))
            if value is not None}
    try:
        result = authenticator.authenticate(FakeRequest(meta))
    except (CredentialsRefused, TooManyRequests):
        return
    assert result is not None and (user, password) == ("robot", "robot-pw")


@EXAMPLES
@given(value=wsgi_text)
@example(value=" sbk_" + "k" * 43)
def test_an_api_key_definition_refuses_anything_but_its_key(no_limits, value: str) -> None:
    key = "sbk_" + "k" * 43
    authenticator = ApiKeyAuthentication("partner", True, "X-API-Key", key[:8], crypto.hash_secret(key))
    try:
        result = authenticator.authenticate(FakeRequest({"HTTP_X_API_KEY": value}))
    except (CredentialsRefused, TooManyRequests):
        return
    if result is None:
        assert not value  # no header value: not this definition's business
    else:
        assert value.strip() == key


@EXAMPLES
@given(authorization=st.one_of(wsgi_text, st.builds(lambda body: "Bearer " + body, wsgi_text),
                               st.builds(lambda body: "bearer " + body, st.from_regex(r"[A-Za-z0-9_=-]{0,400}"))))
def test_a_jwt_definition_refuses_anything_but_a_token_it_issued(no_limits, authorization: str) -> None:
    authenticator = JWTAuthentication("browsers", True, 1, "frontend", crypto.hash_password("jwt-secret-1"), 60)
    try:
        result = authenticator.authenticate(FakeRequest({"HTTP_AUTHORIZATION": authorization}))
    except (CredentialsRefused, TooManyRequests):
        return
    assert result is None and not authorization  # no token was issued here: nothing may be accepted


@EXAMPLES
@given(authorization=st.one_of(wsgi_text, st.builds(lambda body: "Token " + body, wsgi_text),
                               st.builds(lambda body: "Bearer sbt_" + body, wsgi_text)))
def test_management_api_tokens_refuse_anything_but_a_real_token(no_limits, authorization: str) -> None:
    try:
        result = ApiTokenAuthentication().authenticate(FakeRequest({"HTTP_AUTHORIZATION": authorization}))
    except (AuthenticationFailed, Throttled):
        return
    assert result is None  # no token exists in this test: nothing may be accepted
