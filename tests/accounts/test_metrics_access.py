"""``/metrics`` names every service: it answers only a scraper with METRICS_TOKEN or an API token."""

from __future__ import annotations

import pytest

from accounts.models import ApiToken, LoginAttempt
from integration.invoke import invoke

pytestmark = pytest.mark.django_db
SCRAPE = "a-long-random-scrape-token-for-prometheus"


@pytest.fixture
def invoked(builtins: None) -> None:
    invoke("demo.hello", {})


def test_without_a_token_it_is_401_and_names_no_service(client, invoked, settings) -> None:
    settings.METRICS_TOKEN = SCRAPE
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    body = response.json()
    assert body["cid"] == response["X-Zato-CID"] and body["result"] == "Error"
    assert "METRICS_TOKEN" in body["details"] and "api_token create" in body["details"]
    assert b"demo.hello" not in response.content


def test_the_scrape_token_opens_it(client, invoked, settings) -> None:
    settings.METRICS_TOKEN = SCRAPE
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SCRAPE}")
    assert response.status_code == 200
    # Totals since this process started (earlier tests invoked it too): at least this test's call.
    assert 'switchboard_invocations_total{service="demo.hello"} ' in response.content.decode()
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SCRAPE}x").status_code == 401


def test_a_read_only_api_token_opens_it_too_even_without_a_scrape_token(client, invoked, alice, settings) -> None:
    settings.METRICS_TOKEN = ""
    _row, token = ApiToken.issue(alice, read_only=True)
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything-at-all").status_code == 401


def test_wrong_tokens_count_towards_the_limits(client, invoked, settings) -> None:
    settings.METRICS_TOKEN = SCRAPE
    settings.CREDENTIAL_MAX_FAILURES = 2
    for _ in range(2):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess").status_code == 401
    refused = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SCRAPE}")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["cid"] == refused["X-Zato-CID"]
    assert LoginAttempt.objects.filter(kind="api", definition="metrics").count() == 2
