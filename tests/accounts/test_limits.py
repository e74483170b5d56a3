"""Brute-force limits on channel credentials (accounts/limits.py), on Redis and on the database.

The limit here is 3 failures in a 60-second window (the defaults are 10 in 300 s), with the
limits' clock under the test's control. A "process that saw nothing" is simulated with
``limits.forget()``, which drops everything this process remembers, as a fresh worker has.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from accounts import crypto, limits, tokens
from accounts.models import LoginAttempt
from tests.conftest import Clock, basic_header

pytestmark = pytest.mark.django_db
RIGHT = basic_header("crm-user", "crm-secret")
WRONG = basic_header("crm-user", "not-it")


@pytest.fixture(params=["redis", "database"])
def failures(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Clock:
    """Limits of 3 failures a minute, counted in Redis or in the database; returns their clock."""
    settings.CREDENTIAL_MAX_FAILURES = 3
    settings.CREDENTIAL_FAILURE_WINDOW = 60
    settings.CREDENTIAL_RECHECK = 1.0
    if request.param == "database":
        database = limits.DatabaseFailures()
        monkeypatch.setattr(limits, "store", lambda: database)
    elif not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    clock = Clock(1_900_000_000.0)
    monkeypatch.setattr(limits, "clock", clock)
    return clock


@pytest.fixture
def crm(builtins: None, make_channel: Any, basic_auth: Any) -> Any:
    """GET /crm behind Basic Auth `crm` (user crm-user, password crm-secret)."""
    definition = basic_auth()
    make_channel("/crm", "demo.hello", security=definition)
    return definition


def call(client: Any, authorization: str, address: str = "203.0.113.5", **extra: str) -> Any:
    return client.get("/crm", HTTP_AUTHORIZATION=authorization, REMOTE_ADDR=address, **extra)


def fail(client: Any, times: int, address: str = "203.0.113.5", **extra: str) -> None:
    for _ in range(times):
        assert call(client, WRONG, address, **extra).status_code == 401


def test_after_too_many_failures_even_the_right_password_is_refused_with_429(client, crm, failures) -> None:
    fail(client, 3)
    refused = call(client, RIGHT)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"  # the window began with the first failure, a minute long
    body = refused.json()
    assert body == {"result": "Error", "cid": refused["X-Zato-CID"],
                    "details": "Too many failed attempts; try again in 60 seconds."}


def test_the_block_ends_with_its_window_and_knocking_does_not_lengthen_it(client, crm, failures) -> None:
    fail(client, 3)
    failures.advance(30)
    for _ in range(5):  # refused attempts are not failures: they do not move the window
        assert call(client, WRONG)["Retry-After"] == "30"
    failures.advance(30.5)
    assert call(client, RIGHT).status_code == 200


def test_other_addresses_and_other_definitions_are_not_held_back(client, crm, failures, basic_auth,
                                                                 make_channel) -> None:
    make_channel("/erp", "demo.hello", security=basic_auth(name="erp", username="erp", password="erp-pw"))
    fail(client, 3, address="203.0.113.5")
    assert call(client, RIGHT, address="198.51.100.7").status_code == 200
    erp = client.get("/erp", HTTP_AUTHORIZATION=basic_header("erp", "erp-pw"), REMOTE_ADDR="203.0.113.5")
    assert erp.status_code == 200


def test_behind_a_trusted_proxy_the_right_most_forwarded_address_counts(client, crm, failures, settings) -> None:
    settings.TRUST_X_FORWARDED_FOR = True
    fail(client, 3, address="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.9")
    # Whatever the client writes on the left, the proxy's own entry on the right is what counts.
    assert call(client, RIGHT, "10.0.0.1", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.9").status_code == 429
    assert call(client, RIGHT, "10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.1").status_code == 200


def test_a_process_that_saw_none_of_the_failures_refuses_too(client, crm, failures) -> None:
    fail(client, 3)
    limits.forget()  # another worker: nothing remembered, only the shared count
    assert call(client, RIGHT).status_code == 429


def test_a_process_that_verified_the_password_before_asks_again_within_the_recheck_time(client, crm,
                                                                                       failures) -> None:
    assert call(client, RIGHT).status_code == 200  # verified and remembered here
    # Another process counts the failures: this one only learns of them from the store.
    for _ in range(3):
        limits.Attempt("channel", "crm", "203.0.113.5").failed("wrong password, in another process")
    assert LoginAttempt.objects.filter(kind="channel", definition="crm", user_agent="").count() == 3
    limits.forget()
    assert call(client, RIGHT).status_code == 429


def test_a_call_the_memo_would_answer_is_refused_once_its_address_is_blocked(client, crm, failures) -> None:
    for _ in range(2):  # checked, then answered from the authenticator's memo
        assert call(client, RIGHT).status_code == 200
    fail(client, 3)
    assert call(client, RIGHT).status_code == 429
    assert call(client, RIGHT, address="198.51.100.7").status_code == 200  # another address: not held back


def test_the_memo_learns_of_a_block_counted_elsewhere_within_the_recheck_time(client, crm, failures) -> None:
    for _ in range(2):
        assert call(client, RIGHT).status_code == 200
    # Another process counts the failures in the shared store; this one has touched nothing of its own.
    key = limits._store_key(("channel", "crm", "203.0.113.5"))
    for _ in range(3):
        limits.store().add(key, failures(), 60)
    # Within CREDENTIAL_RECHECK (1 s) of the store's last all-clear, this process may still let the
    # memoised call through (the window accounts/limits.py documents); after it, never.
    failures.advance(1.01)
    assert call(client, RIGHT).status_code == 429


def test_successes_do_not_reset_the_count(client, crm, failures) -> None:
    for _ in range(3):
        assert call(client, WRONG).status_code == 401
        assert call(client, RIGHT).status_code in (200, 429)
    assert call(client, RIGHT).status_code == 429


def test_failures_are_audited_up_to_the_limit_and_refusals_only_logged(client, crm, failures, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="accounts.limits")
    fail(client, 3)
    refused = call(client, WRONG, HTTP_USER_AGENT="guesser/1.0")
    call(client, RIGHT)
    rows = list(LoginAttempt.objects.order_by("pk").values("kind", "definition", "username", "address", "stage",
                                                           "outcome", "reason"))
    assert len(rows) == 3  # the two refused attempts left no row
    assert {row["kind"] for row in rows} == {"channel"}
    assert {(row["definition"], row["username"], row["address"], row["stage"], row["outcome"]) for row in rows} == {
        ("crm", "crm-user", "203.0.113.5", "password", "failure")}
    assert "limit reached, blocked 60 s" in rows[-1]["reason"]
    cid = refused["X-Zato-CID"]
    assert f"[{cid}] Refused: too many failed credential checks (Channel `crm`) from 203.0.113.5" in caplog.text


def test_the_audit_list_shows_kind_and_definition(admin_client_alice, client, crm, failures) -> None:
    fail(client, 1)
    page = admin_client_alice.get("/admin/accounts/loginattempt/?kind=channel").content.decode()
    assert "Channel" in page and "crm" in page and "203.0.113.5" in page


def test_a_blocked_caller_costs_no_password_hash(client, crm, failures, monkeypatch) -> None:
    fail(client, 3)
    hashed = []
    real = crypto.check_password
    monkeypatch.setattr(crypto, "check_password", lambda *args: hashed.append(1) or real(*args))
    limits.forget()  # even a process that has to ask the store refuses before hashing
    for _ in range(5):
        assert call(client, WRONG).status_code == 429
    assert hashed == []


def test_a_remembered_caller_asks_the_store_once_per_recheck_time(client, crm, failures, monkeypatch) -> None:
    store = limits.store()
    asked = []

    class Counting:
        def add(self, *args: Any) -> Any:
            return store.add(*args)

        def peek(self, *args: Any) -> Any:
            asked.append(args)
            return store.peek(*args)

    monkeypatch.setattr(limits, "store", Counting)
    assert call(client, RIGHT).status_code == 200
    assert len(asked) == 1  # before the slow hash of a password not verified here yet
    for _ in range(20):
        assert call(client, RIGHT).status_code == 200
    assert len(asked) == 1  # remembered, and the key was all clear less than a second ago
    failures.advance(1.5)
    assert call(client, RIGHT).status_code == 200
    assert len(asked) == 2


def test_refusals_that_are_not_guesses_do_not_count(client, crm, failures) -> None:
    crm.is_active = False
    crm.save()
    for _ in range(5):  # the right password of an inactive definition
        assert call(client, RIGHT).status_code == 401
    for malformed in ("Basic !!!", "Basic", "Basic " + "bm9jb2xvbg=="):  # not base64; no value; no colon
        assert call(client, malformed).status_code == 401
    crm.is_active = True
    crm.save()
    assert call(client, RIGHT).status_code == 200


def test_every_type_counts_its_wrong_credentials(client, builtins, make_channel, failures, tech_account, api_key,
                                                 jwt_def) -> None:
    make_channel("/tech", "demo.hello", security=tech_account("robot", "robot-pw"))
    definition, key = api_key("partner")
    make_channel("/keyed", "demo.hello", security=definition)
    browsers = jwt_def()
    make_channel("/events", "demo.hello", security=browsers)
    token = tokens.issue(browsers.pk, browsers.username, browsers.ttl)
    cases = [
        ("/tech", {"HTTP_X_ZATO_USER": "robot", "HTTP_X_ZATO_PASSWORD": "nope"},
         {"HTTP_X_ZATO_USER": "robot", "HTTP_X_ZATO_PASSWORD": "robot-pw"}),
        ("/keyed", {"HTTP_X_API_KEY": key[:-4] + "xxxx"}, {"HTTP_X_API_KEY": key}),
        ("/events", {"HTTP_AUTHORIZATION": "Bearer " + token[:-8] + "AAAAAAAA"},
         {"HTTP_AUTHORIZATION": "Bearer " + token}),
    ]
    for path, wrong, right in cases:
        assert client.get(path, **right).status_code == 200, path
        for _ in range(3):
            assert client.get(path, **wrong).status_code == 401, path
        assert client.get(path, **right).status_code == 429, path


def test_an_ended_jwt_session_is_no_guess(client, builtins, make_channel, failures, jwt_def) -> None:
    browsers = jwt_def()
    make_channel("/events", "demo.hello", security=browsers)
    old = tokens.issue(browsers.pk, browsers.username, browsers.ttl)
    tokens.revoke(tokens.open_token(old).sid)  # logged out
    for _ in range(5):
        assert client.get("/events", HTTP_AUTHORIZATION=f"Bearer {old}").status_code == 401
    fresh = tokens.issue(browsers.pk, browsers.username, browsers.ttl)
    assert client.get("/events", HTTP_AUTHORIZATION=f"Bearer {fresh}").status_code == 200


def test_without_redis_each_process_still_counts(client, crm, settings, caplog, monkeypatch) -> None:
    from tests.servers.procs import free_port

    settings.CREDENTIAL_MAX_FAILURES = 3
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    assert isinstance(limits.store(), limits.RedisFailures)
    monkeypatch.setattr(limits, "_down_logged_at", 0.0)  # said at most once a minute: earlier tests may have
    fail(client, 3)
    assert call(client, RIGHT).status_code == 429
    assert "counting in this process only" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_are_each_counted_once(failures) -> None:
    """Eight threads, each on its own connection, add 5 failures to one key: 40 counted, each number once."""
    store = limits.store()
    seen: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        from django.db import connection

        try:
            for _ in range(5):
                count, _ends = store.add("one-key", limits.clock(), 60)
                with lock:
                    seen.append(count)
        finally:
            connection.close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(seen) == list(range(1, 41))
    assert store.peek("one-key", limits.clock())[0] == 40


def test_a_jwt_log_in_is_limited_and_unknown_usernames_share_one_count(client, failures, jwt_def) -> None:
    jwt_def(username="frontend", password="jwt-secret-1")

    def log_in(username: str, password: str) -> Any:
        return client.post("/zato/jwt/log-in", json.dumps({"username": username, "password": password}),
                           content_type="application/json", REMOTE_ADDR="203.0.113.5")

    for name in ("alpha", "beta", "gamma"):  # three usernames that exist nowhere: one count for this address
        assert log_in(name, "x").status_code == 401
    assert log_in("delta", "x").status_code == 429
    assert log_in("frontend", "jwt-secret-1").status_code == 200  # a real definition has its own count
    for _ in range(3):
        assert log_in("frontend", "wrong").status_code == 401
    refused = log_in("frontend", "jwt-secret-1")
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert refused.json()["cid"] == refused["X-Zato-CID"]
    rows = LoginAttempt.objects.filter(kind="jwt")
    assert set(rows.values_list("definition", flat=True)) == {"?", "browsers"}
