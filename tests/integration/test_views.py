"""Reserved endpoints: health, metrics and Zato's ping."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_reports_the_loaded_configuration(client, builtins) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["services"] >= 9


def test_zato_ping_answers_as_zato_does(client, builtins) -> None:
    response = client.get("/zato/ping")
    body = response.json()
    assert body["pong"] == "zato"
    assert body["zato_env"] == {"result": "ZATO_OK", "cid": response["X-Zato-CID"], "details": ""}


def test_metrics_count_invocations_per_service(client, builtins, make_channel) -> None:
    make_channel("/api/hello", "demo.hello")
    client.get("/api/hello")
    text = client.get("/metrics").content.decode()
    assert 'switchboard_invocations_total{service="demo.hello"}' in text
