"""TOTP keys and codes: RFC 6238 arithmetic, replay and drift, encryption at rest, enrolment, reset_totp_key.

Codes are computed by ``tests.totp``, written from the RFCs independently of the platform.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from accounts import enrolment, totp
from accounts.models import TOTPDevice
from tests.totp import decode_qr_text, totp_code

REPO_ROOT = Path(__file__).resolve().parents[2]
RFC_KEY = b"12345678901234567890"


@pytest.mark.parametrize(
    ("unix_time", "eight_digits"),
    [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
     (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")],
)
def test_codes_match_the_rfc_6238_test_vectors(unix_time: int, eight_digits: str) -> None:
    # RFC 6238 appendix B gives 8-digit SHA1 codes; 6-digit codes are the same number modulo 10^6.
    assert totp.code_at(RFC_KEY, totp.time_step(unix_time)) == eight_digits[-6:]
    assert totp_code(RFC_KEY, at=unix_time) == eight_digits[-6:]


@pytest.fixture
def device(alice: Any, totp_device: Any) -> tuple[TOTPDevice, bytes]:
    return totp_device(alice)


def test_a_code_works_once(device: tuple[TOTPDevice, bytes], login_clock: Any) -> None:
    dev, key = device
    code = totp_code(key, at=login_clock.now)
    assert dev.check_code(code) is totp.Verdict.ACCEPTED
    assert dev.check_code(code) is totp.Verdict.REPLAYED
    # Another instance of the same row (another process) is refused too: the state is in the database.
    assert TOTPDevice.objects.get(pk=dev.pk).check_code(code) is totp.Verdict.REPLAYED
    login_clock.advance(30)
    assert dev.check_code(code) is totp.Verdict.REPLAYED  # now the previous step: still used
    assert dev.check_code(totp_code(key, at=login_clock.now)) is totp.Verdict.ACCEPTED


@pytest.mark.parametrize(("offset", "verdict"), [(-2, totp.Verdict.WRONG), (-1, totp.Verdict.ACCEPTED),
                                                 (0, totp.Verdict.ACCEPTED), (1, totp.Verdict.ACCEPTED),
                                                 (2, totp.Verdict.WRONG)])
def test_one_step_of_clock_drift_is_accepted_two_are_not(device: tuple[TOTPDevice, bytes], login_clock: Any,
                                                         offset: int, verdict: totp.Verdict) -> None:
    dev, key = device
    assert dev.check_code(totp_code(key, at=login_clock.now, step_offset=offset)) is verdict


def test_a_code_from_the_next_step_uses_up_the_current_one(device: tuple[TOTPDevice, bytes],
                                                           login_clock: Any) -> None:
    dev, key = device
    assert dev.check_code(totp_code(key, at=login_clock.now, step_offset=1)) is totp.Verdict.ACCEPTED
    # Accepting step t+1 means every code up to t+1 has had its chance: t's code is a replay now.
    assert dev.check_code(totp_code(key, at=login_clock.now)) is totp.Verdict.REPLAYED
    assert dev.check_code(totp_code(key, at=login_clock.now, step_offset=-1)) is totp.Verdict.REPLAYED


FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"  # str.isdigit() says yes; they are no code


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345a", FULLWIDTH_DIGITS, "1" * 10_000, "-12345"])
def test_malformed_codes_are_refused_without_touching_the_device(device: tuple[TOTPDevice, bytes],
                                                                 login_clock: Any, code: str,
                                                                 django_assert_num_queries: Any) -> None:
    dev, _key = device
    with django_assert_num_queries(0):
        assert dev.check_code(code) is totp.Verdict.MALFORMED


def test_spaces_inside_a_code_are_ignored(device: tuple[TOTPDevice, bytes], login_clock: Any) -> None:
    dev, key = device
    code = totp_code(key, at=login_clock.now)
    assert dev.check_code(f" {code[:3]} {code[3:]} ") is totp.Verdict.ACCEPTED


def test_django_otp_verify_token_uses_the_same_rules(device: tuple[TOTPDevice, bytes], login_clock: Any) -> None:
    dev, key = device
    code = totp_code(key, at=login_clock.now)
    assert dev.verify_token(code) is True
    assert dev.verify_token(code) is False


def test_the_key_is_encrypted_at_rest(device: tuple[TOTPDevice, bytes]) -> None:
    dev, key = device
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_totpdevice WHERE id = %s", [dev.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    for form in (totp.key_to_base32(key), key.hex(), base64.b64encode(key).decode(),
                 base64.b32encode(key).decode()):
        assert form not in row
        assert form.lower() not in row.lower()
    assert TOTPDevice.objects.get(pk=dev.pk).key == key


@pytest.mark.django_db(transaction=True)
def test_ten_threads_with_the_same_code_exactly_one_succeeds(alice: Any, totp_device: Any) -> None:
    dev, key = totp_device(alice)
    at = 1_899_999_995.0
    code = totp_code(key, at=at)
    start = threading.Barrier(10)
    verdicts: list[totp.Verdict] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            own = TOTPDevice.objects.get(pk=dev.pk)  # this thread's own connection and instance
            start.wait()
            verdicts.append(own.check_code(code, at=at))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert verdicts.count(totp.Verdict.ACCEPTED) == 1
    assert verdicts.count(totp.Verdict.REPLAYED) == 9


def test_the_provisioning_uri_is_what_authenticator_apps_expect() -> None:
    key = totp.new_key()
    uri = totp.provisioning_uri(key, "ann smith@example.com", "Acme: Switchboard")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Acme: Switchboard:ann smith@example.com"
    assert parts.path == "/Acme%3A%20Switchboard:ann%20smith%40example.com"  # only the separator is a bare colon
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query == {"secret": totp.key_to_base32(key), "issuer": "Acme: Switchboard", "algorithm": "SHA1",
                     "digits": "6", "period": "30"}
    assert base64.b32decode(query["secret"] + "=" * (-len(query["secret"]) % 8)) == key
    assert len(key) == 20


def test_the_terminal_qr_code_decodes_to_the_uri() -> None:
    uri = totp.provisioning_uri(totp.new_key(), "alice")
    assert decode_qr_text(totp.qr_text(uri)) == uri


def test_the_svg_qr_code_is_inline_and_sizeable() -> None:
    svg = totp.qr_svg("otpauth://totp/Switchboard:alice?secret=X")
    assert svg.startswith("<svg") and "viewBox" in svg and "width=" not in svg.split(">")[0]


@pytest.mark.parametrize(("text", "problem"), [
    ("JBSWY3DP", "5 bytes long; at least 16 bytes (26 base32 characters)"),
    ("not base32!", "must be base32"),
    ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPA", "cannot be decoded"),
    ("A" * 300, "at most 128 bytes"),
    ("", "must be base32"),
])
def test_bad_base32_keys_are_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as error:
        totp.parse_base32(text)
    assert problem in str(error.value)


def test_base32_keys_may_be_typed_loosely() -> None:
    key = totp.parse_base32("jbsw y3dp-ehpk 3pxp jbsw y3dp ehpk 3pxp")
    assert key == base64.b32decode("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")


def test_reset_key_leaves_one_confirmed_device(alice: Any, totp_device: Any) -> None:
    totp_device(alice)
    enrolment.start_enrolment(alice)
    device, key = enrolment.reset_key(alice)
    assert list(TOTPDevice.objects.filter(user=alice)) == [device]
    assert device.confirmed and device.key == key


def test_enrolment_replaces_the_key_only_after_a_valid_code(alice: Any, totp_device: Any, login_clock: Any) -> None:
    old, old_key = totp_device(alice)
    pending = enrolment.start_enrolment(alice)
    new_key = pending.key
    assert new_key != old_key and not pending.confirmed
    assert enrolment.confirmed_device(alice) == old  # the old key still logs in meanwhile

    wrong = totp_code(old_key, at=login_clock.now)  # a code from the old key is not one from the new
    verdict, _device = enrolment.confirm_enrolment(alice, wrong)
    assert verdict is totp.Verdict.WRONG
    assert set(TOTPDevice.objects.filter(user=alice)) == {old, pending}
    assert enrolment.confirmed_device(alice) == old

    verdict, device = enrolment.confirm_enrolment(alice, totp_code(new_key, at=login_clock.now))
    assert verdict is totp.Verdict.ACCEPTED and device == pending
    assert list(TOTPDevice.objects.filter(user=alice)) == [pending]
    assert TOTPDevice.objects.get(pk=pending.pk).confirmed


def test_confirming_without_a_pending_key_changes_nothing(alice: Any, totp_device: Any) -> None:
    old, _key = totp_device(alice)
    verdict, device = enrolment.confirm_enrolment(alice, "123456")
    assert (verdict, device) == (totp.Verdict.WRONG, None)
    assert list(TOTPDevice.objects.filter(user=alice)) == [old]


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("reset_totp_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_reset_totp_key_prints_the_key_its_uri_and_a_qr_code(alice: Any, totp_device: Any,
                                                             login_clock: Any) -> None:
    old, _ = totp_device(alice)
    output, errors = _run("alice", "--issuer", "Acme")
    lines = output.splitlines()
    key_text = next(line for line in lines if line.startswith("Key: "))[5:]
    uri = next(line for line in lines if line.startswith("URI: "))[5:]
    key = totp.parse_base32(key_text)
    assert uri == totp.provisioning_uri(key, "alice", "Acme")
    qr = output.split("Google Authenticator, Authy or FreeOTP:\n", 1)[1]
    assert decode_qr_text(qr) == uri
    assert errors == ""
    (device,) = TOTPDevice.objects.filter(user=alice)
    assert device != old and device.confirmed and device.key == key
    assert device.check_code(totp_code(key, at=login_clock.now)) is totp.Verdict.ACCEPTED


def test_reset_totp_key_with_a_given_key_checks_it_and_prints_ok(alice: Any) -> None:
    output, _ = _run("alice", "--key", "jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp")
    assert output == "OK\n"
    assert TOTPDevice.objects.get(user=alice).key == base64.b32decode("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")


@pytest.mark.parametrize(("args", "message"), [
    (("alice", "--key", "JBSWY3DP"), "at least 16 bytes"),
    (("alice", "--key", "0000 1111 not base32 !!"), "must be base32"),
    (("nobody",), "There is no user named 'nobody'"),
    (("alice", "--issuer", " "), "--issuer must be 1 to 100 characters"),
])
def test_reset_totp_key_refuses_bad_input_and_changes_nothing(alice: Any, totp_device: Any, args: tuple[str, ...],
                                                              message: str) -> None:
    old, old_key = totp_device(alice)
    with pytest.raises(CommandError, match=message) as error:
        _run(*args)
    assert error.value.returncode == 1
    assert [(device.pk, device.key) for device in TOTPDevice.objects.filter(user=alice)] == [(old.pk, old_key)]


def test_reset_totp_key_warns_about_a_user_who_cannot_use_the_admin(bob: Any, django_user_model: Any) -> None:
    carol = django_user_model.objects.create_user("carol", password="x")
    _, errors = _run("carol")
    assert "carol is not an active staff user" in errors
    assert TOTPDevice.objects.filter(user=carol, confirmed=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_reset_totp_key_from_the_command_line(alice: Any, settings: Any) -> None:
    """The real command in a process of its own: output, stored key and exit codes."""
    db = settings.DATABASES["default"]
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "ADMIN_REQUIRE_TOTP": "true"}
    command = [sys.executable, "manage.py", "reset_totp_key"]
    done = subprocess.run([*command, "alice"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    key_text = next(line for line in done.stdout.splitlines() if line.startswith("Key: "))[5:]
    assert TOTPDevice.objects.get(user=alice).key == totp.parse_base32(key_text)

    missing = subprocess.run([*command, "nobody"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert "There is no user named 'nobody'" in missing.stderr
    assert "Traceback" not in missing.stderr
