"""The admin dashboard: charts and a table drawn from the recorded invocation statistics."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integration import metrics
from integration.errors import SwitchboardError
from integration.invoke import invoke
from integration.metrics import Recorder
from integration.models import InvocationStat
from tests.conftest import verified_login

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"
EMPTY = "No invocations recorded in this range yet"

SERVICES = """
    from integration.services import Service

    class Boom(Service):
        def handle(self):
            raise RuntimeError("backend down")
"""


@pytest.fixture(autouse=True)
def _fresh_process_recorder() -> Any:
    """The dashboard flushes this process's recorder: start without other tests' invocations."""
    metrics.recorder.clear()
    yield
    metrics.recorder.clear()


class At:
    """A recorder whose clock says ``minutes_ago`` before now: rows for other times of the range."""

    def __init__(self, minutes_ago: float) -> None:
        self.recorder = Recorder(lambda: time.time() - minutes_ago * 60)

    def record(self, service: str, ms: float, count: int = 1, failed: bool = False) -> At:
        for _ in range(count):
            self.recorder.record(service, ms, failed)
        return self

    def flush(self) -> None:
        self.recorder.flush()


def page(client: Any, **query: str) -> str:
    response = client.get(URL, query)
    assert response.status_code == 200
    return response.content.decode()


def charts(text: str) -> list[str]:
    return re.findall(r'<svg class="sb-chart".*?</svg>', text, re.S)


def table_row(text: str, service: str) -> list[str]:
    match = re.search(r'<td class="service">' + re.escape(html.escape(service)) + r"</td>(.*?)</tr>", text, re.S)
    assert match, f"no table row for {service}"
    return [html.unescape(cell) for cell in re.findall(r'<td class="num">(.*?)</td>', match.group(1))]


def test_it_says_so_when_nothing_was_recorded(admin_client_alice: Any) -> None:
    text = page(admin_client_alice)
    assert EMPTY in text
    assert charts(text) == []
    assert 'aria-current="page">Last hour<' in text


def test_it_draws_the_invocations_of_the_last_hour(admin_client_alice: Any, builtins: None, deploy: Any) -> None:
    deploy("shaky.py", SERVICES)
    for _ in range(3):
        invoke("demo.hello", {"name": "Ann"})
    with pytest.raises(SwitchboardError):
        invoke("shaky.boom", {})
    # Not flushed yet: the page writes this process's pending counts before reading.
    assert InvocationStat.objects.count() == 0

    text = page(admin_client_alice)
    assert EMPTY not in text
    invocations, errors, latency = charts(text)
    for chart in (invocations, errors, latency):
        assert 'viewBox="0 0 640 240"' in chart
        assert 'width="100%"' in chart
        # Each line is a path; a lone point (one minute with data) is a dot.
        assert re.search(r'<(path class="sb-line" d="M[\d. ]+|circle )', chart)
    assert "<title>demo.hello</title>" in invocations  # its line
    assert "demo.hello: 3" in invocations and "shaky.boom: 1" in invocations  # the current minute's tooltip
    assert "errors: 25 %" in errors  # one failure out of four
    assert "p99:" in latency
    assert table_row(text, "demo.hello")[:3] == ["3", "0", "0.0"]
    assert table_row(text, "shaky.boom")[:3] == ["1", "1", "100"]
    assert re.search(r'id="summary-count">4<', text)


def test_ranges_show_the_right_time_window(admin_client_alice: Any) -> None:
    At(minutes_ago=3 * 60).record("crm.sync", 12.0, count=2).flush()  # 3 hours ago
    At(minutes_ago=2 * 24 * 60).record("crm.nightly", 900.0).flush()  # 2 days ago

    last_hour = page(admin_client_alice, range="1h")
    assert EMPTY in last_hour
    day = page(admin_client_alice, range="24h")
    assert 'aria-current="page">Last 24 hours<' in day
    assert table_row(day, "crm.sync")[0] == "2"
    assert "crm.nightly" not in day
    week = page(admin_client_alice, range="7d")
    assert table_row(week, "crm.sync")[0] == "2"
    assert table_row(week, "crm.nightly")[0] == "1"
    assert len(charts(week)) == 3
    assert "Invocations per hour" in week


def test_an_unknown_range_falls_back_to_the_last_hour_with_a_message(admin_client_alice: Any) -> None:
    text = page(admin_client_alice, range="1y<script>")
    assert "Unknown range" in text
    assert "<script>" not in text.split("Unknown range", 1)[1][:80]  # escaped
    assert 'aria-current="page">Last hour<' in text


def test_percentiles_in_the_table_come_from_the_histograms(admin_client_alice: Any) -> None:
    at = At(minutes_ago=1)
    for ms in range(1, 101):  # 1..100 ms: p50 50, p95 95, p99 99, max 100
        at.record("crm.get", float(ms))
    at.flush()
    count, errors, _pct, p50, p95, p99, max_ms = table_row(page(admin_client_alice), "crm.get")
    assert (count, errors, max_ms) == ("100", "0", "100")
    assert float(p50) == pytest.approx(50, rel=0.12)
    assert float(p95) == pytest.approx(95, rel=0.12)
    assert float(p99) == pytest.approx(99, rel=0.12)


def test_service_names_are_escaped_in_charts_and_table(admin_client_alice: Any) -> None:
    At(minutes_ago=0).record('<img src=x onerror="alert(1)">', 3.0).flush()
    text = page(admin_client_alice)
    assert "<img src=x" not in text
    assert "&lt;img src=x" in text


def test_queries_do_not_grow_with_the_number_of_services(admin_client_alice: Any) -> None:
    def queries() -> int:
        admin_client_alice.get(URL)  # warm the session and the permission cache alike
        with CaptureQueriesContext(connection) as captured:
            page(admin_client_alice, range="24h")
        return len(captured)

    At(minutes_ago=5).record("svc.0", 2.0).flush()
    few = queries()
    many = At(minutes_ago=5)
    for n in range(40):
        many.record(f"svc.many.{n}", 2.0 + n, count=2)
    many.flush()
    At(minutes_ago=200).record("svc.many.1", 5.0).flush()
    assert queries() == few
    assert few <= 8  # session, user, permissions and three aggregates


def test_staff_without_the_permission_to_view_services_is_refused(client: Any, bob: Any, totp_device: Any) -> None:
    device, _ = totp_device(bob)
    verified_login(client, bob, device)
    assert client.get(URL).status_code == 403
    bob.user_permissions.add(Permission.objects.get(codename="view_deployedservice"))
    assert client.get(URL).status_code == 200


def test_anonymous_visitors_are_sent_to_the_login_page(client: Any) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
