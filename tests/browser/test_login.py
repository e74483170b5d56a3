"""Logging in to the admin in Chromium: password and TOTP code, refusals, throttling, enrolling a new key.

Codes are computed in the test (``tests.totp``, independent of the platform). The QR code on the
enrolment page is rasterised by the browser and read back with a real decoder, as a phone would.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from accounts import throttle, totp
from accounts.models import LoginAttempt
from tests.conftest import ALICE_PASSWORD
from tests.totp import decode_qr_pixels, totp_code

pytestmark = pytest.mark.django_db(transaction=True)

GENERIC = "Please enter the correct username, password and authentication code"
ENROL = "/admin/account/totp/"
QR_PIXELS = 400

# Draws the inline SVG on a canvas (white behind it) and returns one grey byte per pixel.
RASTERISE_SVG = """async ([selector, size]) => {
  const svg = document.querySelector(selector);
  const xml = new XMLSerializer().serializeToString(svg);
  const image = new Image();
  image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(xml);
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = size; canvas.height = size;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; context.fillRect(0, 0, size, size);
  context.drawImage(image, 0, 0, size, size);
  const rgba = context.getImageData(0, 0, size, size).data;
  const grey = new Array(size * size);
  for (let i = 0; i < size * size; i++) grey[i] = rgba[4 * i];
  return grey;
}"""


def fill_login(page: Page, code: str, username: str = "alice", password: str = ALICE_PASSWORD) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.fill("#id_otp_token", code)
    page.click("#login-form [type=submit]")
    page.wait_for_load_state()


def expect_logged_in(page: Page) -> None:
    expect(page.locator("#logout-form")).to_be_visible()
    assert urlsplit(page.url).path == "/admin/"


def expect_refused(page: Page, message: str) -> None:
    expect(page.locator(".errornote").first).to_contain_text(message)
    assert urlsplit(page.url).path == "/admin/login/"
    expect(page.locator("#logout-form")).to_have_count(0)


def log_out(page: Page) -> None:
    page.click("#logout-form button")
    page.wait_for_load_state()


def another_code(key: bytes) -> str:
    """A well-formed code that is valid in no step the server accepts now."""
    valid = {totp_code(key, step_offset=offset) for offset in (-2, -1, 0, 1, 2)}
    return next(code for code in ("000000", "111111", "222222", "333333", "444444", "555555") if code not in valid)


def test_log_in_with_password_and_code(page: Page, phone_page: Page, alice: Any, totp_device: Any, codes: Any,
                                       shot: Any) -> None:
    _device, key = totp_device(alice)
    for each, name in ((page, "login"), (phone_page, "login-phone")):
        each.goto("/admin/login/?next=/admin/")
        expect(each.locator("#id_otp_token")).to_be_visible()
        assert each.get_attribute("#id_otp_token", "autocomplete") == "one-time-code"
        shot(each, name)
    fill_login(page, codes.fresh(key))
    expect_logged_in(page)
    shot(page, "admin-index")
    assert LoginAttempt.objects.filter(username="alice", outcome="success", stage="totp").count() == 1


def test_a_wrong_code_is_refused(page: Page, alice: Any, totp_device: Any, shot: Any) -> None:
    _device, key = totp_device(alice)
    fill_login(page, another_code(key))
    expect_refused(page, GENERIC)
    shot(page, "login-wrong-code")
    assert LoginAttempt.objects.get().reason == "wrong code"


def test_a_replayed_code_is_refused(page: Page, alice: Any, totp_device: Any, codes: Any) -> None:
    _device, key = totp_device(alice)
    code = codes.fresh(key)
    fill_login(page, code)
    expect_logged_in(page)
    log_out(page)
    fill_login(page, code)
    expect_refused(page, GENERIC)
    assert LoginAttempt.objects.order_by("-pk").first().reason == "replayed code"


def test_failures_are_throttled(page: Page, alice: Any, totp_device: Any, login_clock: Any, shot: Any) -> None:
    _device, key = totp_device(alice)
    for _ in range(3):
        fill_login(page, totp_code(key, at=login_clock.now), password="wrong")
        expect_refused(page, GENERIC)
    fill_login(page, totp_code(key, at=login_clock.now))  # the right password and code, too soon
    expect_refused(page, "Too many failed attempts; try again in 1 second.")
    shot(page, "login-throttled")
    login_clock.advance(1)
    fill_login(page, totp_code(key, at=login_clock.now))
    expect_logged_in(page)
    assert list(LoginAttempt.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "failure", "failure", "failure", "throttled", "success"]
    assert throttle.FREE_FAILURES == 3


def read_qr(page: Page, selector: str) -> str:
    grey = page.evaluate(RASTERISE_SVG, [selector, QR_PIXELS])
    return decode_qr_pixels(bytes(grey), QR_PIXELS, QR_PIXELS)


def test_enrol_a_new_key_through_the_qr_page(admin_page: Page, alice: Any, codes: Any, shot: Any) -> None:
    from accounts.models import TOTPDevice

    page = admin_page
    old_key = TOTPDevice.objects.get(user=alice).key
    page.click("#nav-totp")
    expect(page.locator("h1")).to_have_text("Two-factor authentication")
    page.click("#totp-generate")
    expect(page.locator("#totp-qr svg")).to_be_visible()
    shot(page, "totp-enrol")

    key = totp.parse_base32(page.inner_text("#totp-key"))
    uri = read_qr(page, "#totp-qr svg")  # what a phone scanning the page would get
    assert uri.startswith("otpauth://totp/Switchboard:alice?")
    assert totp.parse_base32(parse_qs(urlsplit(uri).query)["secret"][0]) == key
    page.click(".totp-enrol details summary")  # the URI is folded away
    assert page.inner_text("#totp-uri") == uri

    page.fill("input[name=code]", another_code(key))
    page.click("#totp-confirm")
    expect(page.locator(".errorlist")).to_contain_text("That code is not the one the new key shows now")
    assert TOTPDevice.objects.get(user=alice, confirmed=True).key == old_key

    page.fill("input[name=code]", codes.fresh(key))
    page.click("#totp-confirm")
    expect(page.locator(".messagelist")).to_contain_text("The new key is now the one that works")
    assert [device.key for device in TOTPDevice.objects.filter(user=alice)] == [key]

    log_out(page)
    fill_login(page, codes.fresh(old_key))
    expect_refused(page, GENERIC)
    fill_login(page, codes.fresh(key))
    expect_logged_in(page)


def test_the_enrolment_page_on_a_phone(phone_page: Page, alice: Any, totp_device: Any, admin_login: Any,
                                       shot: Any) -> None:
    _device, key = totp_device(alice)
    admin_login(phone_page, "alice", ALICE_PASSWORD, key)
    phone_page.goto(ENROL)
    phone_page.click("#totp-generate")
    qr = phone_page.locator("#totp-qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box is not None and box["width"] >= 150 and box["x"] + box["width"] <= 390  # on screen, scannable
    assert read_qr(phone_page, "#totp-qr svg").startswith("otpauth://totp/Switchboard:alice?")
    shot(phone_page, "totp-enrol-phone")
