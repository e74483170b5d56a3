"""Browser tests: Debian's Chromium, driven by Playwright, against a live server.

``make test`` installs the ``chromium`` package; Playwright is told where it is
(``executable_path``) and never downloads a browser. The live server is pytest-django's
(a threaded WSGI server in the test process, on 127.0.0.1 and a free port, on the
test database), so a test can prepare data with the ORM and then click through it.

Screenshots of the main pages are saved under ``var/screenshots/`` in every run
(``shot``), for a person to look at; no assertion depends on them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.totp import totp_code

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def _async_unsafe_allowed() -> Iterator[None]:
    """Let the ORM run beside Playwright, for one browser test module at a time.

    Playwright's sync API keeps an asyncio loop running in the main thread while it is
    started, and Django refuses ORM calls from a thread with a running loop. The tests
    here are plain synchronous code, so that check does not apply to them; it is lifted
    only while a browser module runs and restored after, so no other test is affected.
    """
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(django_db_setup: None, _async_unsafe_allowed: None) -> Iterator[Browser]:
    """One headless Chromium per test module (each test gets its own context).

    Per module, not per session: Playwright's loop stops with it, so tests in other
    modules of the same worker never run beside it. The test database exists first.
    """
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        # --no-sandbox: the test machines run as root, where Chromium's sandbox cannot start.
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


def _page(browser: Browser, base_url: str, viewport: dict[str, int], **options: Any) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url, viewport=viewport, **options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, live_server: Any) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies) at laptop size; relative URLs go to the live server."""
    yield from _page(browser, live_server.url, DESKTOP)


@pytest.fixture
def phone_page(browser: Browser, live_server: Any) -> Iterator[Page]:
    """The same at phone size, with touch and a phone's pixel density."""
    yield from _page(browser, live_server.url, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)


@pytest.fixture(scope="session")
def shot() -> Callable[[Page, str], Path]:
    """``shot(page, name)`` saves a full-page PNG as var/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def _shot(page: Page, name: str) -> Path:
        target = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        return target

    return _shot


class CodeClock:
    """Hands out TOTP codes that have not been used yet, so logins in one test never replay one.

    The server accepts the current step and one step either side; after the current
    step's code is used, the next step's code is still good, and after that we wait.
    """

    def __init__(self) -> None:
        self._used: dict[bytes, int] = {}

    def fresh(self, key: bytes) -> str:
        while True:
            step = int(time.time()) // 30
            for candidate in (step, step + 1):
                if candidate > self._used.get(key, -1):
                    self._used[key] = candidate
                    return totp_code(key, at=candidate * 30)
            time.sleep(max(0.05, (step + 1) * 30 - time.time()))


@pytest.fixture
def codes() -> CodeClock:
    return CodeClock()


@pytest.fixture
def admin_login(codes: CodeClock) -> Callable[..., Page]:
    """``admin_login(page, username, password, key)`` logs in through the real login form."""

    def _login(page: Page, username: str, password: str, key: bytes | None) -> Page:
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        if key is not None:
            page.fill("#id_otp_token", codes.fresh(key))
        page.click("[type=submit]")
        page.wait_for_load_state()
        if page.url.rstrip("/").endswith("/admin/login"):
            errors = page.locator(".errornote, .errorlist").all_inner_texts()
            raise AssertionError(f"login as {username} failed: {errors}")
        return page

    return _login


@pytest.fixture
def admin_page(page: Page, alice: Any, totp_device: Callable[..., Any], admin_login: Callable[..., Page]) -> Page:
    """A desktop page logged in to the admin as Alice (password and TOTP code)."""
    from tests.conftest import ALICE_PASSWORD

    _device, key = totp_device(alice)
    return admin_login(page, "alice", ALICE_PASSWORD, key)
