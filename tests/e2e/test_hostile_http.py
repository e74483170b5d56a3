"""Hostile JSON over HTTP against the real web server: 400 in the one shape, no traceback in its log.

Reproduced before the fix (issue 11, item 6), on the server ``manage.py serve`` runs: JSON
nested about 1,000 levels deep, or an integer of more than 4,300 digits, was a 500 with a
logged traceback on REST channels and on ``/zato/jwt/log-in``, where no credentials are
needed. The same requests now get 400 with ``X-Zato-CID``, the server logs no traceback,
and it goes on serving.
"""

from __future__ import annotations

import re

import pytest

from accounts.models import JWTDefinition
from integration.models import DeployedService, RestChannel

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BODIES = {
    "nested 1,000 deep": b"[" * 1000 + b"]" * 1000,
    "objects nested 1,000 deep": b'{"a":' * 1000 + b"1" + b"}" * 1000,
    "an integer of 5,000 digits": b"1" * 5000,
    "an integer of 5,000 digits in an object": b'{"username": "frontend", "password": ' + b"7" * 5000 + b"}",
}


def test_hostile_json_is_400_on_a_rest_channel_and_on_jwt_log_in_and_the_server_logs_no_traceback(
        start_web, builtins) -> None:
    RestChannel.objects.create(name="echo", url_path="/e2e/echo", service=DeployedService.objects.get(name="demo.echo"))
    definition = JWTDefinition(name="browsers", username="frontend", ttl=60)
    definition.set_password("jwt-secret-1")
    definition.save()
    server = start_web(workers=1)

    for path in ("/e2e/echo", "/zato/jwt/log-in"):
        for name, body in BODIES.items():
            reply = server.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            assert reply.status == 400, (path, name, reply.status, reply.text)
            error = reply.json()
            assert error["result"] == "Error" and reply.headers["x-zato-cid"] == error["cid"]
            assert re.fullmatch(r"[0-9a-f]{24}", error["cid"])
            assert error["details"].startswith("Invalid JSON in request body: "), (path, name, error)

    # Still serving, both doors.
    echo = server.request("POST", "/e2e/echo", json={"fine": [1, 2]})
    assert echo.status == 200 and echo.json() == {"fine": [1, 2]}
    login = server.request("POST", "/zato/jwt/log-in", json={"username": "frontend", "password": "jwt-secret-1"})
    assert login.status == 200 and login.json()["token"]
    assert server.process is not None
    assert "Traceback" not in server.process.log_text(), server.log_tail()
