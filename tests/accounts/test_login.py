"""Admin login with password and TOTP code, throttling, the audit list, enrolment and bad input.

Through Django's test client against the real admin views and PostgreSQL. ``login_clock``
controls time for TOTP codes and throttling alike, so no test sleeps.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_otp import DEVICE_ID_SESSION_KEY

from accounts import enrolment, throttle, totp
from accounts.models import BasicAuth, LoginAttempt, TOTPDevice
from tests.conftest import ALICE_PASSWORD, verified_login
from tests.totp import totp_code

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
ENROL = "/admin/account/totp/"
GENERIC = "Please enter the correct username, password and authentication code for a staff account."


def post_login(client: Client, username: str = "alice", password: str = ALICE_PASSWORD, code: str = "",
               field: str = "otp_token", **extra: Any) -> Any:
    return client.post(LOGIN, {"username": username, "password": password, field: code}, **extra)


def is_logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def last_attempt() -> LoginAttempt:
    return LoginAttempt.objects.order_by("-pk").first()


def form_errors(response: Any) -> list[str]:
    form = response.context["form"]
    return [str(error) for error in form.non_field_errors()]


@pytest.fixture
def alice_key(alice: Any, totp_device: Any) -> bytes:
    return totp_device(alice)[1]


# --- Logging in -------------------------------------------------------------------------------------


def test_password_and_code_log_in_and_verify_the_session(client: Client, alice: Any, alice_key: bytes,
                                                         login_clock: Any) -> None:
    response = post_login(client, code=totp_code(alice_key, at=login_clock.now),
                          HTTP_USER_AGENT="Mozilla/5.0 test", REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    device = TOTPDevice.objects.get(user=alice)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert is_logged_in(client)
    attempt = last_attempt()
    assert (attempt.username, attempt.user, attempt.address, attempt.user_agent) == (
        "alice", alice, "192.0.2.7", "Mozilla/5.0 test")
    assert (attempt.stage, attempt.outcome, attempt.reason) == ("totp", "success", "")


def test_zato_s_field_name_for_the_code_works_too(client: Client, alice_key: bytes, login_clock: Any) -> None:
    response = post_login(client, code=totp_code(alice_key, at=login_clock.now), field="totp_code")
    assert response.status_code == 302
    assert is_logged_in(client)


def test_a_wrong_code_is_refused_with_the_same_message_as_a_wrong_password(
        client: Client, alice_key: bytes, login_clock: Any) -> None:
    good = totp_code(alice_key, at=login_clock.now)
    wrong = "000000" if good != "000000" else "111111"
    wrong_code = post_login(client, code=wrong)
    assert wrong_code.status_code == 200
    assert (last_attempt().stage, last_attempt().outcome, last_attempt().reason) == ("totp", "failure", "wrong code")
    wrong_password = post_login(client, password="not-it", code=good)
    assert (last_attempt().stage, last_attempt().reason) == ("password", "wrong password")
    # The page does not say which factor was wrong: that would confirm a guessed password.
    assert form_errors(wrong_code) == form_errors(wrong_password)
    assert form_errors(wrong_code)[0].startswith(GENERIC)
    assert not is_logged_in(client)
    # The code was not consumed by the attempt with the wrong password.
    assert post_login(client, code=good).status_code == 302


def test_a_replayed_code_is_refused_and_logged(alice_key: bytes, login_clock: Any) -> None:
    code = totp_code(alice_key, at=login_clock.now)
    first = Client()
    assert post_login(first, code=code).status_code == 302
    second = Client()
    response = post_login(second, code=code)
    assert response.status_code == 200
    assert form_errors(response)[0].startswith(GENERIC)
    assert (last_attempt().stage, last_attempt().outcome, last_attempt().reason) == ("totp", "failure", "replayed code")
    assert not is_logged_in(second)


@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (1, True), (2, False)])
def test_one_step_of_drift_logs_in_two_do_not(client: Client, alice_key: bytes, login_clock: Any, offset: int,
                                              accepted: bool) -> None:
    response = post_login(client, code=totp_code(alice_key, at=login_clock.now, step_offset=offset))
    assert (response.status_code == 302) is accepted
    assert last_attempt().reason == ("" if accepted else "wrong code")


@pytest.mark.django_db(transaction=True)
def test_ten_logins_racing_with_one_code_log_in_at_most_once(alice: Any, totp_device: Any, login_clock: Any) -> None:
    _device, key = totp_device(alice)
    code = totp_code(key, at=login_clock.now)
    start = threading.Barrier(10)
    statuses: list[int] = []

    def submit() -> None:
        try:
            client = Client()
            start.wait()
            statuses.append(post_login(client, code=code).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Never two sessions from one code. Attempts in flight count as failures for the throttle,
    # so a burst may also be refused entirely (test_totp.py's device-level race shows that
    # exactly one of ten racing checks of a code wins).
    assert statuses.count(302) <= 1 and statuses.count(200) == 10 - statuses.count(302)
    assert LoginAttempt.objects.filter(outcome="success").count() == statuses.count(302)
    # Each loser was refused as a replay or, seeing the others in flight, by the throttle.
    reasons = set(LoginAttempt.objects.exclude(outcome="success").values_list("reason", flat=True))
    assert reasons <= {"replayed code", "throttled"}


def test_without_a_device_the_user_is_told_to_ask_for_reset_totp_key(client: Client, alice: Any) -> None:
    response = post_login(client, code="123456")
    assert "Ask an administrator to run: python manage.py reset_totp_key alice" in response.content.decode()
    assert (last_attempt().stage, last_attempt().reason) == ("totp", "no TOTP device")
    assert not is_logged_in(client)


def test_a_blank_code_fails_after_the_password_like_a_wrong_one(client: Client, alice_key: bytes) -> None:
    response = post_login(client, code="")
    assert form_errors(response)[0].startswith(GENERIC)
    assert (last_attempt().stage, last_attempt().outcome, last_attempt().reason) == ("totp", "failure", "missing code")
    assert form_errors(post_login(client, password="wrong", code="")) == form_errors(response)


def test_a_user_without_a_device_learns_it_without_typing_a_code(client: Client, alice: Any) -> None:
    response = post_login(client, code="")
    assert "Ask an administrator to run: python manage.py reset_totp_key alice" in response.content.decode()
    assert last_attempt().reason == "no TOTP device"


def test_a_user_who_is_not_staff_cannot_log_in(client: Client, django_user_model: Any, totp_device: Any,
                                               login_clock: Any) -> None:
    carol = django_user_model.objects.create_user("carol", password="carol-pw")
    _device, key = totp_device(carol)
    response = post_login(client, "carol", "carol-pw", totp_code(key, at=login_clock.now))
    assert form_errors(response)[0].startswith(GENERIC)
    assert (last_attempt().reason, last_attempt().user) == ("not a staff account", carol)


def test_with_totp_off_the_password_is_enough_for_a_user_without_a_key(client: Client, alice: Any,
                                                                       settings: Any) -> None:
    settings.ADMIN_REQUIRE_TOTP = False
    assert post_login(client).status_code == 302
    assert is_logged_in(client)
    assert (last_attempt().stage, last_attempt().outcome) == ("password", "success")


def test_with_totp_off_a_user_with_a_key_still_needs_a_code(client: Client, alice_key: bytes, settings: Any,
                                                            login_clock: Any) -> None:
    settings.ADMIN_REQUIRE_TOTP = False
    refused = post_login(client)
    assert refused.status_code == 200
    assert "authentication code, if you have set up two-factor authentication" in form_errors(refused)[0]
    assert last_attempt().reason == "missing code"
    assert post_login(client, code=totp_code(alice_key, at=login_clock.now)).status_code == 302
    assert (last_attempt().stage, last_attempt().outcome) == ("totp", "success")


def test_a_session_without_a_verified_device_sees_no_admin_page(client: Client, alice: Any, alice_key: bytes) -> None:
    client.force_login(alice)  # password only, as a session from before TOTP was required
    for url in ("/admin/", "/admin/accounts/basicauth/", "/admin/django_celery_beat/periodictask/", ENROL):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/")


# --- Bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "reason", "message"), [
    ({"username": "a" * 151}, "malformed username", "at most 150 characters"),
    ({"password": "p" * 4097}, "malformed password", "at most 4096 characters"),
    ({"code": "12345"}, "malformed code", "Enter the 6-digit code from your authenticator app (digits only)."),
    ({"code": "1234567"}, "malformed code", "Enter the 6-digit code from your authenticator app (digits only)."),
    ({"code": "12a456"}, "malformed code", "Enter the 6-digit code from your authenticator app (digits only)."),
    ({"code": "9" * 100_000}, "malformed code", "Enter the 6-digit code from your authenticator app (digits only)."),
    ({"password": ""}, "malformed password", "This field is required."),
])
def test_malformed_and_over_long_input_is_a_failure_without_a_password_check(
        client: Client, alice_key: bytes, login_clock: Any, fields: dict[str, str], reason: str,
        message: str) -> None:
    data = {"username": "alice", "password": ALICE_PASSWORD, "code": totp_code(alice_key, at=login_clock.now)}
    data.update(fields)
    with CaptureQueriesContext(connections["default"]) as queries:
        response = post_login(client, data["username"], data["password"], data["code"])
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert "Traceback" not in page
    if len(data["code"]) > 6:
        assert data["code"] not in page  # a junk code is not echoed back
    # No password check and no TOTP check: nothing but the audit row and the throttle's counts.
    assert not [query for query in queries.captured_queries if "auth_user" in query["sql"]]
    assert not [query for query in queries.captured_queries if "accounts_totpdevice" in query["sql"]]
    attempt = last_attempt()
    assert (attempt.stage, attempt.outcome, attempt.reason) == ("password", "failure", reason)
    assert len(attempt.username) <= 150
    assert not is_logged_in(client)


def test_the_audit_row_truncates_what_it_keeps(client: Client, alice: Any, login_clock: Any) -> None:
    post_login(client, username="x" * 500, HTTP_USER_AGENT="U" * 5000)
    attempt = last_attempt()
    assert attempt.username == "x" * 150
    assert attempt.user_agent == "U" * 300
    assert attempt.user is None


def test_a_wrong_password_names_the_account_in_the_audit_list(client: Client, alice: Any, login_clock: Any) -> None:
    fail(client)
    assert (last_attempt().user, last_attempt().reason) == (alice, "wrong password")
    fail(client, username="mallory")
    assert (last_attempt().user, last_attempt().username) == (None, "mallory")


def test_a_csrf_failure_shows_a_clear_page_and_changes_nothing(alice: Any, totp_device: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = post_login(client, code="123456")
    assert response.status_code == 403
    page = response.content.decode()
    assert "This form has expired or was sent from another site; go back, reload the page and try again" in page
    assert "Traceback" not in page and "CSRF verification failed" not in page
    assert not LoginAttempt.objects.exists()

    device, _key = totp_device(alice)
    admin = verified_login(Client(enforce_csrf_checks=True), alice, device)
    stale = admin.post("/admin/accounts/basicauth/add/", {"name": "crm", "username": "u", "realm": "r",
                                                          "csrfmiddlewaretoken": "stale-token"})
    assert stale.status_code == 403
    assert "This form has expired" in stale.content.decode()
    assert not BasicAuth.objects.exists()


def test_an_expired_session_goes_back_to_the_login_page_and_changes_nothing(admin_client_alice: Client) -> None:
    admin_client_alice.session.flush()  # the server forgets the session; the browser still sends its cookie
    response = admin_client_alice.post("/admin/accounts/basicauth/add/", {"name": "crm", "username": "u",
                                                                          "realm": "r", "is_active": "on"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/accounts/basicauth/add/"
    assert not BasicAuth.objects.exists()
    enrol = admin_client_alice.post(ENROL, {"action": "generate"})
    assert enrol["Location"].startswith("/admin/login/")
    assert not TOTPDevice.objects.filter(confirmed=False).exists()


# --- Throttling ---------------------------------------------------------------------------------------


def fail(client: Client, username: str = "alice", **extra: Any) -> Any:
    """A wrong password, with a well-formed code so that the password is what gets checked."""
    return post_login(client, username=username, password="wrong", code="123456", **extra)


def test_failures_in_a_row_bring_growing_delays(client: Client, alice_key: bytes, login_clock: Any) -> None:
    for _ in range(3):
        fail(client)
        assert last_attempt().reason == "wrong password"  # three free failures
    waits = []
    for expected in (1, 2, 4, 8):
        refused = fail(client)
        assert form_errors(refused) == [throttle.message(expected)]
        assert (last_attempt().outcome, last_attempt().reason) == ("throttled", "throttled")
        waits.append(expected)
        login_clock.advance(expected - 0.5)
        assert last_attempt().outcome == "throttled" and fail(client) and last_attempt().outcome == "throttled"
        login_clock.advance(0.5)
        fail(client)
        assert last_attempt().reason == "wrong password"
    assert throttle.message(1) == "Too many failed attempts; try again in 1 second."
    assert throttle.message(8) == "Too many failed attempts; try again in 8 seconds."


def test_the_delay_stops_growing_at_fifteen_minutes(client: Client, alice: Any, login_clock: Any) -> None:
    now = throttle.now()
    LoginAttempt.objects.bulk_create([
        LoginAttempt(when=now, username="alice", address="203.0.113.9", stage="password", outcome="failure",
                     reason="wrong password") for _ in range(30)])
    refused = fail(client)
    assert form_errors(refused) == ["Too many failed attempts; try again in 900 seconds."]


def test_throttling_refuses_even_the_right_password_and_code_without_using_the_code(
        client: Client, alice_key: bytes, login_clock: Any) -> None:
    for _ in range(3):
        fail(client)
    code = totp_code(alice_key, at=login_clock.now)
    refused = post_login(client, code=code)
    assert form_errors(refused) == [throttle.message(1)]
    assert not is_logged_in(client)
    login_clock.advance(1)
    assert post_login(client, code=code).status_code == 302  # still unused
    # A success starts the count again: three free failures.
    other = Client()
    for _ in range(3):
        fail(other)
        assert last_attempt().reason == "wrong password"
    fail(other)
    assert last_attempt().outcome == "throttled"


def test_wrong_codes_count_like_wrong_passwords(client: Client, alice_key: bytes, login_clock: Any) -> None:
    good = totp_code(alice_key, at=login_clock.now)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(3):
        post_login(client, code=wrong)
        assert last_attempt().reason == "wrong code"
    post_login(client, code=good)
    assert last_attempt().outcome == "throttled"


def test_failures_are_counted_per_username_across_addresses(alice: Any, login_clock: Any) -> None:
    for index in range(3):
        fail(Client(), REMOTE_ADDR=f"198.51.100.{index}")
    fail(Client(), REMOTE_ADDR="198.51.100.200")
    assert last_attempt().outcome == "throttled"
    fail(Client(), username="bob", REMOTE_ADDR="198.51.100.201")  # another account is not affected
    assert last_attempt().reason == "wrong password"


def test_failures_are_counted_per_address_across_usernames(alice: Any, login_clock: Any) -> None:
    for index in range(3):
        fail(Client(), username=f"guess{index}", REMOTE_ADDR="198.51.100.66")
    post_login(Client(), REMOTE_ADDR="198.51.100.66")
    assert last_attempt().outcome == "throttled"
    fail(Client(), username="someone", REMOTE_ADDR="198.51.100.67")
    assert last_attempt().reason == "wrong password"


def _failed_hour(now: Any, count: int, **key: str) -> None:
    """``count`` failures over the last hour, each followed by a success (no delays, only the cap)."""
    rows = []
    for index in range(count):
        when = now - throttle.WINDOW + throttle.timedelta(seconds=60 + index * 30)
        rows.append(LoginAttempt(when=when, stage="password", outcome="failure", reason="wrong password",
                                 **{"username": "alice", "address": "203.0.113.1", **key}))
        rows.append(LoginAttempt(when=when + throttle.timedelta(seconds=1), stage="totp", outcome="success",
                                 **{"username": "alice", "address": "203.0.113.1", **key}))
    LoginAttempt.objects.bulk_create(rows)


def test_at_most_a_hundred_failures_an_hour_per_account(client: Client, alice_key: bytes, login_clock: Any,
                                                        settings: Any) -> None:
    assert settings.ADMIN_LOGIN_MAX_FAILURES_PER_HOUR == 100
    _failed_hour(throttle.now(), 99)
    fail(client)
    assert last_attempt().reason == "wrong password"  # the 100th failure is still allowed
    post_login(client, code=totp_code(alice_key, at=login_clock.now))
    assert last_attempt().outcome == "throttled"
    # The oldest failure was 60 s into the hour: it leaves the window 60 s from now.
    assert form_errors(post_login(client)) == [throttle.message(60)]
    login_clock.advance(60)
    assert post_login(client, code=totp_code(alice_key, at=login_clock.now)).status_code == 302


def test_at_most_a_hundred_failures_an_hour_per_address(client: Client, alice: Any, login_clock: Any) -> None:
    _failed_hour(throttle.now(), 100, username="someone-else", address="203.0.113.50")
    fail(client, REMOTE_ADDR="203.0.113.50")
    assert last_attempt().outcome == "throttled"
    fail(client, REMOTE_ADDR="203.0.113.51")
    assert last_attempt().reason == "wrong password"


def test_the_cap_is_a_setting(client: Client, alice: Any, login_clock: Any, settings: Any) -> None:
    settings.ADMIN_LOGIN_MAX_FAILURES_PER_HOUR = 5
    _failed_hour(throttle.now(), 5)
    fail(client)
    assert last_attempt().outcome == "throttled"


def test_the_client_address_ignores_x_forwarded_for_unless_trusted(client: Client, alice: Any, login_clock: Any,
                                                                   settings: Any) -> None:
    fail(client, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert last_attempt().address == "10.0.0.1"
    settings.TRUST_X_FORWARDED_FOR = True
    fail(client, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5, 198.51.100.9")
    assert last_attempt().address == "198.51.100.9"  # the entry the proxy added, not the client's claim


def test_forged_x_forwarded_for_entries_do_not_escape_the_address_limit(alice: Any, login_clock: Any,
                                                                         settings: Any) -> None:
    settings.TRUST_X_FORWARDED_FOR = True
    for index in range(3):
        fail(Client(), username=f"guess{index}", REMOTE_ADDR="10.0.0.1",
             HTTP_X_FORWARDED_FOR=f"192.0.2.{index}, 198.51.100.9")
    fail(Client(), username="guess9", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.99, 198.51.100.9")
    assert last_attempt().outcome == "throttled"


# --- Enrolment ----------------------------------------------------------------------------------------


def _shown_key(page: str) -> bytes:
    match = re.search(r'id="totp-key">([A-Z2-7 ]+)</code>', page)
    assert match, "no key on the page"
    return totp.parse_base32(match.group(1))


def test_enrolment_replaces_the_key_only_after_a_valid_code(client: Client, alice: Any, totp_device: Any,
                                                            login_clock: Any) -> None:
    old_device, old_key = totp_device(alice)
    verified_login(client, alice, old_device)
    page = client.get(ENROL).content.decode()
    assert "Generate a new key" in page and 'id="totp-key"' not in page

    assert client.post(ENROL, {"action": "generate"})["Location"] == ENROL
    shown = client.get(ENROL)
    assert "no-store" in shown["Cache-Control"]
    page = shown.content.decode()
    new_key = _shown_key(page)
    assert new_key != old_key
    assert "<svg" in page and "totp-qr" in page
    assert totp.provisioning_uri(new_key, "alice").replace("&", "&amp;") in page

    wrong = client.post(ENROL, {"action": "confirm", "code": totp_code(old_key, at=login_clock.now)})
    assert wrong.status_code == 200
    assert "That code is not the one the new key shows now" in wrong.content.decode()
    malformed = client.post(ENROL, {"action": "confirm", "code": "12"})
    assert "Enter the 6 digits your app shows" in malformed.content.decode()
    assert enrolment.confirmed_device(alice) == old_device
    assert post_login(Client(), code=totp_code(old_key, at=login_clock.now)).status_code == 302  # old key works

    done = client.post(ENROL, {"action": "confirm", "code": totp_code(new_key, at=login_clock.now)})
    assert done["Location"] == ENROL
    assert "The new key is now the one that works" in client.get(ENROL).content.decode()
    assert is_logged_in(client)  # this session moved to the new device
    (device,) = TOTPDevice.objects.filter(user=alice)
    assert device.confirmed and device.key == new_key

    login_clock.advance(30)
    assert post_login(Client(), code=totp_code(old_key, at=login_clock.now)).status_code == 200
    assert post_login(Client(), code=totp_code(new_key, at=login_clock.now)).status_code == 302


def test_a_new_key_can_be_discarded(client: Client, alice: Any, totp_device: Any) -> None:
    device, _ = totp_device(alice)
    verified_login(client, alice, device)
    client.post(ENROL, {"action": "generate"})
    assert client.post(ENROL, {"action": "cancel"}).status_code == 302
    assert list(TOTPDevice.objects.filter(user=alice)) == [device]
    assert "discarded" in client.get(ENROL).content.decode()


def test_confirming_with_no_new_key_says_so(client: Client, alice: Any, totp_device: Any) -> None:
    device, _ = totp_device(alice)
    verified_login(client, alice, device)
    response = client.post(ENROL, {"action": "confirm", "code": "123456"}, follow=True)
    assert "There is no new key waiting for a code" in response.content.decode()


def test_with_totp_off_a_user_without_a_key_can_enrol_and_then_needs_codes(
        client: Client, alice: Any, settings: Any, login_clock: Any) -> None:
    settings.ADMIN_REQUIRE_TOTP = False
    assert post_login(client).status_code == 302
    assert "Your account has no TOTP key yet" in client.get(ENROL).content.decode()
    client.post(ENROL, {"action": "generate"})
    key = _shown_key(client.get(ENROL).content.decode())
    assert client.post(ENROL, {"action": "confirm", "code": totp_code(key, at=login_clock.now)}).status_code == 302
    login_clock.advance(30)
    assert post_login(Client()).status_code == 200  # the password alone is no longer enough
    assert post_login(Client(), code=totp_code(key, at=login_clock.now)).status_code == 302


# --- The audit list and devices in the admin ----------------------------------------------------------


def test_the_audit_list_is_read_only_and_searchable(admin_client_alice: Client, alice: Any, bob: Any,
                                                    login_clock: Any) -> None:
    fail(Client(), username="mallory", REMOTE_ADDR="203.0.113.77")
    fail(Client(), username="alice", REMOTE_ADDR="203.0.113.78")
    listing = admin_client_alice.get("/admin/accounts/loginattempt/?q=mallory").content.decode()
    assert "mallory" in listing and "203.0.113.77" in listing and "203.0.113.78" not in listing
    by_address = admin_client_alice.get("/admin/accounts/loginattempt/?q=203.0.113.78").content.decode()
    assert "203.0.113.78" in by_address and "mallory" not in by_address
    filtered = admin_client_alice.get("/admin/accounts/loginattempt/?outcome__exact=failure&stage__exact=password")
    assert filtered.status_code == 200 and "wrong password" in filtered.content.decode()
    assert admin_client_alice.get("/admin/accounts/loginattempt/add/").status_code == 403
    row = LoginAttempt.objects.get(username="mallory")
    change_url = f"/admin/accounts/loginattempt/{row.pk}/change/"
    view = admin_client_alice.get(change_url).content.decode()
    assert "wrong password" in view and 'name="_save"' not in view
    assert admin_client_alice.post(change_url, {"username": "edited"}).status_code == 403
    assert LoginAttempt.objects.get(pk=row.pk).username == "mallory"
    assert admin_client_alice.get(f"/admin/accounts/loginattempt/{row.pk}/delete/").status_code == 200

    bob.user_permissions.add(Permission.objects.get(codename="view_loginattempt"))
    bob_device, _ = throttle_free_device(bob)
    bob_client = verified_login(Client(), bob, bob_device)
    assert bob_client.get("/admin/accounts/loginattempt/").status_code == 200
    assert bob_client.get(f"/admin/accounts/loginattempt/{row.pk}/delete/").status_code == 403


def throttle_free_device(user: Any) -> tuple[TOTPDevice, bytes]:
    return enrolment.reset_key(user)


def test_the_device_admin_never_shows_the_key(admin_client_alice: Client, alice: Any) -> None:
    device = TOTPDevice.objects.get(user=alice)
    secrets = (totp.key_to_base32(device.key), device.encrypted_key)
    for url in ("/admin/accounts/totpdevice/", f"/admin/accounts/totpdevice/{device.pk}/change/"):
        page = admin_client_alice.get(url).content.decode()
        assert "alice" in page
        assert not any(secret in page for secret in secrets)
    assert "reset_totp_key alice" in page
    assert admin_client_alice.get("/admin/accounts/totpdevice/add/").status_code == 403
