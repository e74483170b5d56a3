"""Paging and searching through 1,000 REST channels in headless Chromium, on a laptop and on a phone."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from accounts.models import BasicAuth
from integration.models import DeployedService, RestChannel
from tests.conftest import ALICE_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

CHANNELS_URL = "/admin/integration/restchannel/"
ROWS = "#result_list tbody tr"


@pytest.fixture
def thousand_channels(builtins: None, basic_auth: Callable[..., BasicAuth]) -> None:
    """channel-00000 .. channel-00999 on /api/things/<n>; every third behind the CRM's Basic Auth."""
    service = DeployedService.objects.get(name="demo.get-customer")
    crm = basic_auth(name="crm-callers", username="crm")
    methods = ["GET", "POST", "PUT", "DELETE", ""]
    RestChannel.objects.bulk_create(
        RestChannel(name=f"channel-{i:05d}", url_path=f"/api/things/{i:05d}", method=methods[i % 5],
                    service=service, security=crm if i % 3 == 0 else None)
        for i in range(1000)
    )


@pytest.fixture
def alice_key(alice: Any, totp_device: Callable[..., Any]) -> bytes:
    _device, key = totp_device(alice)
    return key


def first_names(page: Page, count: int = 1) -> list[str]:
    return [text.strip() for text in page.locator(f"{ROWS} th.field-name").all_inner_texts()[:count]]


def test_an_administrator_pages_and_searches_through_a_thousand_channels(
    page: Page, thousand_channels: None, alice_key: bytes, admin_login: Callable[..., Page],
    shot: Callable[[Page, str], Any],
) -> None:
    admin_login(page, "alice", ALICE_PASSWORD, alice_key)
    page.goto(CHANNELS_URL)
    expect(page.locator(ROWS)).to_have_count(50)
    expect(page.locator(".sb-count")).to_have_text("1000 REST channels")
    assert first_names(page) == ["channel-00000"]
    # The row shows method, path, service and security at a glance.
    first_row = page.locator(ROWS).first
    expect(first_row.locator("td.field-method_display")).to_have_text("GET")
    expect(first_row.locator("td.field-url_path")).to_have_text("/api/things/00000")
    expect(first_row.locator("td.field-service")).to_have_text("demo.get-customer")
    expect(first_row.locator("td.field-security_display")).to_have_text("crm-callers")

    # A smaller page, then its second page: the size sticks.
    page.click('#page-size a[data-page-size="25"]')
    expect(page.locator(ROWS)).to_have_count(25)
    expect(page.locator("#page-size .this-page")).to_have_text("25")
    page.locator(".sb-pages a", has_text=re.compile(r"^2$")).click()
    expect(page).to_have_url(re.compile(r"[?&]p=2\b"))
    assert "page_size=25" in page.url
    expect(page.locator(ROWS)).to_have_count(25)
    assert first_names(page) == ["channel-00025"]

    # The search narrows the list and keeps the page size.
    page.fill("#searchbar", "/api/things/0012")
    page.locator("#changelist-search [type=submit]").click()
    expect(page.locator(".sb-count")).to_have_text("10 REST channels")
    expect(page.locator(ROWS)).to_have_count(10)
    assert first_names(page, 10) == [f"channel-{i:05d}" for i in range(120, 130)]
    assert "page_size=25" in page.url

    # A filter on top of the search.
    page.locator("#changelist-filter a", has_text="GET").first.click()
    expect(page.locator(".sb-count")).to_have_text("2 REST channels")  # 00120 and 00125
    assert first_names(page, 2) == ["channel-00120", "channel-00125"]

    page.goto(CHANNELS_URL + "?page_size=100&p=3")
    expect(page.locator(ROWS)).to_have_count(100)
    assert first_names(page) == ["channel-00200"]
    page.goto(CHANNELS_URL)
    shot(page, "channels-list-desktop")


def test_the_channel_list_is_usable_on_a_phone(
    phone_page: Page, thousand_channels: None, alice_key: bytes, admin_login: Callable[..., Page],
    shot: Callable[[Page, str], Any],
) -> None:
    page = phone_page
    admin_login(page, "alice", ALICE_PASSWORD, alice_key)
    page.goto(CHANNELS_URL + "?page_size=25")
    expect(page.locator(ROWS)).to_have_count(25)
    viewport = page.viewport_size
    assert viewport is not None
    # The page itself does not scroll sideways; the wide table scrolls inside its own box.
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= viewport["width"] + 1
    results = page.locator("#changelist .results")
    assert results.evaluate("e => e.scrollWidth > e.clientWidth")
    assert results.evaluate("e => getComputedStyle(e).overflowX") == "auto"
    # Paging and searching work by touch.
    page.locator(".sb-pages a", has_text=re.compile(r"^2$")).tap()
    expect(page.locator(ROWS)).to_have_count(25)
    assert first_names(page) == ["channel-00025"]
    page.fill("#searchbar", "channel-0099")
    page.locator("#searchbar").press("Enter")
    expect(page.locator(".sb-count")).to_have_text("10 REST channels")
    page.goto(CHANNELS_URL + "?page_size=25")
    shot(page, "channels-list-phone")
    page.goto(CHANNELS_URL + "add/")
    form_width = page.evaluate("document.documentElement.scrollWidth")
    assert form_width <= viewport["width"] + 1
    shot(page, "channel-form-phone")
