"""Working without code, in headless Chromium: the Ping button, the Invoke form and the dashboard's charts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from connections.models import VaultConnection
from integration import metrics
from integration.errors import SwitchboardError
from integration.invoke import invoke
from integration.models import DeployedService
from tests.conftest import ALICE_PASSWORD
from tests.servers.vault import FakeVault

pytestmark = pytest.mark.django_db(transaction=True)

FLAKY = """
    from integration.services import Service

    class Boom(Service):
        def handle(self):
            raise RuntimeError("backend down")
"""


@pytest.fixture
def alice_key(alice: Any, totp_device: Callable[..., Any]) -> bytes:
    _device, key = totp_device(alice)
    return key


@pytest.fixture
def logged_in(page: Page, alice_key: bytes, admin_login: Callable[..., Page]) -> Page:
    return admin_login(page, "alice", ALICE_PASSWORD, alice_key)


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    with FakeVault() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_process_recorder() -> Iterator[None]:
    """The live server runs in this process: its dashboard flushes the recorder other tests filled."""
    metrics.recorder.clear()
    yield
    metrics.recorder.clear()


def test_the_ping_button_shows_the_response_time_or_the_exact_error(
    logged_in: Page, fake_vault: FakeVault, shot: Callable[[Page, str], Any],
) -> None:
    page = logged_in
    connection = VaultConnection.objects.create(name="vault-prod", url=fake_vault.url, timeout=2)
    page.goto(f"/admin/connections/vaultconnection/{connection.pk}/change/")
    page.click("#ping-button")
    success = page.locator(".messagelist .success")
    expect(success).to_contain_text(re.compile(r"Ping OK: Vault connection “vault-prod \(Vault\)” answered in "
                                               r"\d+\.\d ms\. Vault 1\.17\.2, initialized, unsealed, active"))
    assert page.url.endswith(f"/vaultconnection/{connection.pk}/change/")  # back where the button was
    assert [call.path for call in fake_vault.calls("/v1/sys/")] == ["/v1/sys/health"]
    shot(page, "vault-change")

    # Sealed: the exact reason, as an error.
    fake_vault.sealed = True
    page.click("#ping-button")
    expect(page.locator(".messagelist .error")).to_have_text(
        re.compile(rf"Ping failed: .*: Vault 1\.17\.2 at {re.escape(fake_vault.url)} is sealed \(HTTP 503\) "
                   r"\(after \d+\.\d ms\)")
    )

    # The list has a button per row, which comes back to the list.
    fake_vault.sealed = False
    page.goto("/admin/connections/vaultconnection/?q=vault")
    page.locator("#result_list button.sb-ping").first.click()
    expect(page.locator(".messagelist .success")).to_contain_text("Ping OK")
    assert page.url.endswith("/admin/connections/vaultconnection/?q=vault")
    shot(page, "vault-list")


def test_the_invoke_form_shows_status_cid_time_and_response(
    logged_in: Page, builtins: None, shot: Callable[[Page, str], Any],
) -> None:
    page = logged_in
    service = DeployedService.objects.get(name="demo.get-customer")
    page.goto(f"/admin/integration/deployedservice/{service.pk}/invoke/")
    page.fill("#id_payload", '{"customer_id": 3}')
    page.click("#invoke-submit")
    expect(page.locator("#invoke-status")).to_have_text("200")
    expect(page.locator("#invoke-cid")).to_have_text(re.compile(r"^[0-9a-f]{24}$"))
    expect(page.locator("#invoke-time")).to_have_text(re.compile(r"^\d+\.\d\d ms$"))
    expect(page.locator("#invoke-body")).to_contain_text('"customer_id": 3')
    expect(page.locator("#invoke-error")).to_have_count(0)
    shot(page, "invoke")

    # Not JSON: a clear message, nothing invoked, the text kept for correcting.
    page.fill("#id_payload", '{"customer_id": 3')
    page.click("#invoke-submit")
    expect(page.locator("#invoke-form-error")).to_have_text(re.compile("Nothing was invoked"))
    expect(page.locator(".errorlist")).to_contain_text("Not valid JSON")
    expect(page.locator("#invoke-result")).to_have_count(0)
    expect(page.locator("#id_payload")).to_have_value('{"customer_id": 3')

    # Input the service refuses: the status and the details, flagged as an error.
    page.fill("#id_payload", '{"customer_id": "three"}')
    page.click("#invoke-submit")
    expect(page.locator("#invoke-status")).to_have_text("400")
    expect(page.locator("#invoke-error")).to_contain_text("status 400")
    expect(page.locator("#invoke-body")).to_contain_text("customer_id")
    shot(page, "invoke-error")

    # A service listed in the admin that no deployed module provides any more: a 404, said plainly.
    ghost = DeployedService.objects.create(name="gone.service", module=service.module, class_name="Gone")
    page.goto(f"/admin/integration/deployedservice/{ghost.pk}/invoke/")
    page.click("#invoke-submit")
    expect(page.locator("#invoke-status")).to_have_text("404")
    expect(page.locator("#invoke-error")).to_contain_text("status 404")
    expect(page.locator("#invoke-body")).to_contain_text("gone.service")


def _record_history() -> None:
    """Invocations spread over the last minutes (as several processes would have written them), plus live ones."""
    for minutes_ago, count in ((9, 4), (7, 9), (5, 6), (3, 12), (2, 7), (1, 10)):
        earlier = metrics.Recorder(lambda ago=minutes_ago: time.time() - ago * 60)
        for n in range(count):
            earlier.record("crm.get-customer", 2.0 + n * 3, False)
            earlier.record("erp.sync-orders", 40.0 + n * 25, n % 4 == 0)
        earlier.flush()


def test_the_dashboard_draws_its_charts_from_recorded_invocations(
    page: Page, phone_page: Page, alice_key: bytes, admin_login: Callable[..., Page], builtins: None,
    deploy: Callable[..., Any], codes: Any, shot: Callable[[Page, str], Any],
) -> None:
    admin_login(page, "alice", ALICE_PASSWORD, alice_key)
    page.goto("/admin/dashboard/")
    expect(page.locator("#dashboard-empty")).to_have_text("No invocations recorded in this range yet.")

    deploy("flaky.py", FLAKY)
    for _ in range(5):
        invoke("demo.hello", {"name": "Ann"})
    with pytest.raises(SwitchboardError):
        invoke("flaky.boom", {})
    _record_history()

    page.goto("/admin/dashboard/")
    charts = page.locator("svg.sb-chart")
    expect(charts).to_have_count(3)
    for index in range(3):
        paths = [d or "" for d in charts.nth(index).locator("path.sb-line").evaluate_all(
            "paths => paths.map(p => p.getAttribute('d'))")]
        assert any(" L" in d for d in paths), paths  # at least one drawn segment per chart
        for d in paths:
            points = re.findall(r"[ML]([\d.]+) ([\d.]+)", d)
            assert points and len(points) == d.count("M") + d.count("L")
            assert all(0 <= float(x) <= 640 and 0 <= float(y) <= 240 for x, y in points)  # inside the viewBox
    # The services' lines, by name, in the invocations chart and the table.
    invocations = page.locator("#chart-invocations")
    expect(invocations.locator("svg path.sb-line title", has_text="crm.get-customer")).to_have_count(1)
    expect(invocations.locator(".sb-legend")).to_contain_text("erp.sync-orders")
    row = page.locator("#dashboard-table tbody tr", has_text="demo.hello")
    expect(row.locator("td").nth(1)).to_have_text("5")
    expect(page.locator("#dashboard-table tbody tr", has_text="flaky.boom").locator("td").nth(2)).to_have_text("1")
    box = charts.first.bounding_box()
    assert box is not None and box["width"] > 400  # scaled to the page, not a thumbnail
    shot(page, "dashboard")

    page.click("#range-24h")
    expect(page.locator("#range-24h")).to_have_attribute("aria-current", "page")
    expect(page.locator("svg.sb-chart")).to_have_count(3)
    expect(page.locator("#chart-invocations h2")).to_have_text("Invocations per 15 minutes")
    shot(page, "dashboard-24h")

    # On a phone: the page itself never scrolls sideways; only a chart's own box may.
    admin_login(phone_page, "alice", ALICE_PASSWORD, alice_key)
    phone_page.goto("/admin/dashboard/")
    expect(phone_page.locator("svg.sb-chart")).to_have_count(3)
    overflow = phone_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    shot(phone_page, "dashboard-phone")
