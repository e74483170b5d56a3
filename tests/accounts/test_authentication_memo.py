"""The authenticators' memo (accounts/authentication.py, "The hot path"): repeated calls made cheap, never wrong.

A call an authenticator let through before, with the very same credential headers, from an
address the brute-force limits recently found clear, is answered from a per-authenticator memo
keyed by a MAC of those headers. These tests pin what that may and may not change: it skips the
work (no parsing, no check), it holds no credential, it goes with the definition, and it never
changes an answer (Hypothesis, against an authenticator with an empty memo). How it meets the
limits is in test_limits.py; how it follows a Vault login's cache entry, in
tests/connections/test_vault_channel.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import AuthenticationFailed

from accounts import authentication
from integration import snapshot
from integration.cid import new_cid
from integration.errors import SwitchboardError
from tests.conftest import basic_header

pytestmark = pytest.mark.django_db

RIGHT_BASIC = basic_header("crm-user", "crm-secret")
RIGHT_TECH = {"HTTP_X_ZATO_USER": "robot", "HTTP_X_ZATO_PASSWORD": "robot-secret"}


@pytest.fixture
def definitions(settings: Any, basic_auth: Any, tech_account: Any, api_key: Any) -> dict[str, Any]:
    """One definition per memoised header type, its right headers, and a high failure limit.

    The limit is high so that the wrong credentials tried here never block the test's address:
    a block would refuse the right ones too, and hide what the memo does.
    """
    settings.CREDENTIAL_MAX_FAILURES = 1_000_000
    partner, key = api_key("partner")
    return {
        "basic": (basic_auth(), {"HTTP_AUTHORIZATION": RIGHT_BASIC}),  # crm / crm-user / crm-secret
        "tech": (tech_account("robot", "robot-secret"), dict(RIGHT_TECH)),
        "apikey": (partner, {"HTTP_X_API_KEY": key}),
    }


def authenticator(row: Any) -> Any:
    return snapshot.current().security.get(row.pk)


def answer(auth: Any, meta: dict[str, str]) -> str:
    """'none', 'ok' or 'refused', through DRF's contract with a real Django request."""
    request = RequestFactory().get("/memo", REMOTE_ADDR="203.0.113.5", **meta)
    request.cid = new_cid()
    try:
        result = auth.authenticate(request)
    except AuthenticationFailed:
        return "refused"
    except SwitchboardError as exc:
        assert exc.status_code in (429, 503), (exc.status_code, exc.details)
        return "refused"
    return "none" if result is None else "ok"


@pytest.mark.parametrize("kind", ["basic", "tech", "apikey"])
def test_a_repeated_call_is_answered_from_the_memo_without_the_check(definitions, kind, monkeypatch) -> None:
    row, right = definitions[kind]
    auth = authenticator(row)
    checks: list[str] = []
    original = type(auth).check

    def counted(self: Any, request: Any, attempt: Any) -> Any:
        checks.append(self.name)
        return original(self, request, attempt)

    monkeypatch.setattr(type(auth), "check", counted)
    for _ in range(4):
        assert answer(auth, right) == "ok"
    assert checks == [row.name]  # the first call was checked; the other three came from the memo
    assert answer(auth, {**right, "HTTP_X_SOMETHING_ELSE": "x"}) == "ok"  # other headers do not matter
    assert checks == [row.name]


def test_the_memo_holds_macs_never_credentials(definitions) -> None:
    for row, right in definitions.values():
        auth = authenticator(row)
        assert answer(auth, right) == "ok"
        (key,) = auth._memo
        assert isinstance(key, bytes) and len(key) == 16
        for value in right.values():
            assert value.encode() not in key
            assert value.split()[-1].encode() not in key


def test_a_wrong_password_after_a_memoised_success_is_still_checked_and_refused(definitions) -> None:
    row, right = definitions["basic"]
    auth = authenticator(row)
    assert answer(auth, right) == "ok"
    assert answer(auth, {"HTTP_AUTHORIZATION": basic_header("crm-user", "crm-secreT")}) == "refused"
    assert answer(auth, {"HTTP_AUTHORIZATION": basic_header("crm-usex", "crm-secret")}) == "refused"
    tech = authenticator(definitions["tech"][0])
    assert answer(tech, RIGHT_TECH) == "ok"
    # The two headers are kept apart in the MAC: moving a character across them is another key.
    # (Right after a success, so that the address is clear and the memo would be consulted.)
    assert answer(tech, {"HTTP_X_ZATO_USER": "robotr", "HTTP_X_ZATO_PASSWORD": "obot-secret"}) == "refused"
    assert answer(tech, RIGHT_TECH) == "ok"
    assert answer(tech, {**RIGHT_TECH, "HTTP_X_ZATO_PASSWORD": "robot-secret "}) == "refused"


def test_a_changed_or_deactivated_definition_starts_with_an_empty_memo(client, definitions, make_channel) -> None:
    row, _right = definitions["basic"]
    make_channel("/crm", "demo.hello", security=row)
    assert client.get("/crm", HTTP_AUTHORIZATION=RIGHT_BASIC).status_code == 200
    assert client.get("/crm", HTTP_AUTHORIZATION=RIGHT_BASIC).status_code == 200  # from the memo
    row.is_active = False
    row.save()
    assert client.get("/crm", HTTP_AUTHORIZATION=RIGHT_BASIC).status_code == 401
    row.is_active = True
    row.set_password("crm-secret-2")
    row.save()
    assert client.get("/crm", HTTP_AUTHORIZATION=RIGHT_BASIC).status_code == 401
    assert client.get("/crm", HTTP_AUTHORIZATION=basic_header("crm-user", "crm-secret-2")).status_code == 200


def test_a_full_memo_starts_again_rather_than_growing(definitions, monkeypatch) -> None:
    monkeypatch.setattr(authentication, "MAX_REMEMBERED", 2)
    row, right = definitions["basic"]
    auth = authenticator(row)
    for spaces in range(5):  # the same credentials written five ways: five memo keys
        header = right["HTTP_AUTHORIZATION"].replace(" ", " " * (spaces + 1))
        assert answer(auth, {"HTTP_AUTHORIZATION": header}) == "ok"
        assert len(auth._memo) <= 2


# What a WSGI server hands over: headers decoded as latin-1.
latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=40)


def near(value: str) -> st.SearchStrategy[str]:
    """The value itself, or the value with one character changed, added or removed."""
    index = st.integers(min_value=0, max_value=len(value))
    return st.one_of(
        st.just(value),
        st.tuples(index, st.characters(max_codepoint=255)).map(
            lambda pair: value[:pair[0]] + pair[1] + value[pair[0]:]),
        index.map(lambda at: value[:at] + value[at + 1:]),
        latin1,
    )


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_the_memo_never_changes_an_answer(definitions, data) -> None:
    """Warm memos answer every request exactly as authenticators with empty memos do."""
    encoded = RIGHT_BASIC.split()[1]
    meta = data.draw(st.fixed_dictionaries({}, optional={
        "HTTP_AUTHORIZATION": st.one_of(
            near(RIGHT_BASIC), near(encoded).map(lambda text: "Basic " + text),
            st.tuples(near("crm-user"), near("crm-secret")).map(lambda pair: basic_header(*pair))),
        "HTTP_X_ZATO_USER": near("robot"),
        "HTTP_X_ZATO_PASSWORD": near("robot-secret"),
        "HTTP_X_API_KEY": near(definitions["apikey"][1]["HTTP_X_API_KEY"]),
    }))
    for row, right in definitions.values():
        warm = authenticator(row)
        assert answer(warm, right) == "ok"  # the memo now holds the right credentials
        cold = type(warm).from_definition(type(row).objects.get(pk=row.pk))
        assert answer(warm, meta) == answer(cold, meta), (row.name, meta)


def test_the_property_above_sees_both_answers(definitions) -> None:
    """It would pass if both authenticators refused everything: the right headers must get in, once memoised too."""
    for row, right in definitions.values():
        warm = authenticator(row)
        assert [answer(warm, right) for _ in range(2)] == ["ok", "ok"]
        assert answer(warm, {key: value + "x" for key, value in right.items()}) == "refused"
        cold = type(warm).from_definition(type(row).objects.get(pk=row.pk))
        assert answer(cold, right) == "ok"  # the empty-memo side can say yes too
