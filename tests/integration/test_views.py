"""Reserved endpoints: health, metrics and Zato's ping."""

from __future__ import annotations

import json

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


def test_metrics_count_invocations_per_service(client, builtins, make_channel, settings) -> None:
    settings.METRICS_TOKEN = "scrape-token-for-the-tests"  # /metrics names every service: it needs a token
    make_channel("/api/hello", "demo.hello")
    client.get("/api/hello")
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-for-the-tests").content.decode()
    assert 'switchboard_invocations_total{service="demo.hello"}' in text


def test_an_unknown_management_api_url_is_404_in_the_one_shape(api) -> None:
    response = api.get("/manage/api/v1/no-such-resource/")
    assert response.status_code == 404
    assert response.json()["result"] == "Error"
    assert response.json()["cid"] == response["X-Zato-CID"]


def test_a_failure_on_a_reserved_path_is_a_500_without_a_traceback(rf) -> None:
    from integration.views import server_error

    request = rf.get("/manage/api/v1/services/")
    request.cid = "0123456789abcdef01234567"
    response = server_error(request)
    assert response.status_code == 500
    assert json.loads(response.content) == {
        "result": "Error", "cid": "0123456789abcdef01234567", "details": "Internal server error"
    }
