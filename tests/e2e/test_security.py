"""Security definitions on real web servers (granian): the seed's curl sessions, run-time swaps, shared JWT sessions."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from accounts.models import BasicAuth, JWTDefinition, TechAccount
from integration.models import DeployedService, RestChannel
from tests.conftest import token_header
from tests.e2e.test_cluster import ADMIN_PASSWORD, create_admin_for_servers
from tests.servers.client import basic_auth
from tests.servers.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = """
from integration.services import Service

class Hello(Service):
    name = "seed.hello"

    def handle(self):
        self.response.payload = "Hello"
"""


def curl(url: str, *headers: str) -> tuple[str, dict[str, str], str]:
    """Run curl -v as the seed does; returns (status line, response headers with lower-case names, body).

    Header names are case-insensitive, and granian sends them in lower case (as HTTP/2 must).
    """
    assert shutil.which("curl"), "curl is needed to replay the seed's sessions"
    args = ["curl", "-sv", "--max-time", "10", url]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run(args, capture_output=True, text=True, timeout=20, check=True)
    received = [line[2:].rstrip("\r") for line in done.stderr.splitlines() if line.startswith("< ")]
    status, fields = received[0], {}
    for line in received[1:]:
        if line:
            name, _, value = line.partition(":")
            fields[name.lower()] = value.strip()
    return status, fields, done.stdout


def test_the_seeds_curl_sessions_for_technical_accounts(start_web, deploy, builtins) -> None:
    """Seed on technical accounts: /foo/bar with the myusername account, right then wrong password."""
    deploy("seed_hello.py", HELLO)
    RestChannel.objects.create(
        name="foo-bar", url_path="/foo/bar", data_format="text",
        service=DeployedService.objects.get(name="seed.hello"),
        security=_tech_account("myusername", "mypassword"),
    )
    server = start_web(workers=1)

    status, headers, body = curl(server.url("/foo/bar"), "X-Zato-User:myusername", "X-Zato-Password:mypassword")
    assert status == "HTTP/1.1 200 OK"
    assert headers["server"] == "granian"
    assert headers["content-type"].split(";")[0] == "text/plain"
    assert re.fullmatch(r"[0-9a-f]{24}", headers["x-zato-cid"])
    assert "www-authenticate" not in headers
    assert body == "Hello"

    status, headers, body = curl(server.url("/foo/bar"), "X-Zato-User:myusername", "X-Zato-Password:incorrect")
    assert status == "HTTP/1.1 401 Unauthorized"
    assert headers["server"] == "granian"
    assert headers["www-authenticate"] == "zato-tech-acc"
    cid = headers["x-zato-cid"]
    assert re.fullmatch(r"[0-9a-f]{24}", cid)
    assert body == ('{"result": "Error", "cid": "' + cid + '", "details": "The username or password is incorrect, '
                    'URI:[/foo/bar], X_ZATO_USER:[myusername]"}')
    # The server log says what actually was wrong, under the same CID.
    wait_for(lambda: "The password is incorrect" in server.log_tail(200), timeout=5, interval=0.05,
             message=lambda: server.log_tail())
    assert f"[{cid}] Security definition `myusername` rejected the caller: The password is incorrect, " \
           "URI:[/foo/bar], X_ZATO_USER:[myusername]" in server.log_tail(200)
    assert "incorrect" not in server.log_tail(200).split("X_ZATO_USER:[myusername]")[-1]


def _tech_account(name: str, password: str) -> TechAccount:
    account = TechAccount(name=name)
    account.set_password(password)
    account.save()
    return account


def test_a_definition_swapped_through_one_server_is_enforced_by_another_within_a_second(start_web,
                                                                                       builtins) -> None:
    admin = create_admin_for_servers("e2e-admin", ADMIN_PASSWORD)
    basic = BasicAuth(name="partner-basic", username="partner")
    basic.set_password("basic-pw-1")
    basic.save()
    robot = _tech_account("partner-robot", "tech-pw-1")
    channel = RestChannel.objects.create(name="swap", url_path="/e2e/swap", security=basic,
                                         service=DeployedService.objects.get(name="demo.hello"))
    # The robot's own channel, so that server B verifies its password (a slow hash, up to a second
    # on a loaded machine) before the swap: what is timed below is the swap reaching B, not PBKDF2.
    RestChannel.objects.create(name="robot", url_path="/e2e/robot", security=robot,
                               service=DeployedService.objects.get(name="demo.hello"))
    server_a, server_b = start_web(workers=1), start_web(workers=1)
    basic_headers = basic_auth("partner", "basic-pw-1")
    tech_headers = {"X-Zato-User": "partner-robot", "X-Zato-Password": "tech-pw-1"}
    assert server_b.get("/e2e/swap", headers=basic_headers).status == 200
    assert server_b.get("/e2e/swap", headers=tech_headers).status == 401
    assert server_b.get("/e2e/robot", headers=tech_headers).status == 200

    reply = server_a.request("PATCH", f"/manage/api/v1/channels/rest/{channel.pk}/", json={"security": "partner-robot"},
                             headers={"Authorization": token_header(admin)})
    swapped_at = time.monotonic()
    assert reply.status == 200, reply.text
    wait_for(lambda: server_b.get("/e2e/swap", headers=tech_headers, timeout=2).status == 200, timeout=5,
             interval=0.01, message=lambda: server_b.log_tail())
    elapsed = time.monotonic() - swapped_at
    assert elapsed < 1.0, f"server B enforced the new definition only after {elapsed:.2f} s"
    assert server_b.get("/e2e/swap", headers=basic_headers).status == 401
    assert server_a.get("/e2e/swap", headers=basic_headers).status == 401


def test_jwt_sessions_are_shared_by_every_server(start_web, builtins) -> None:
    definition = JWTDefinition(name="browsers", username="frontend", ttl=600)
    definition.set_password("jwt-pw-1")
    definition.save()
    RestChannel.objects.create(name="events", url_path="/e2e/events", security=definition,
                               service=DeployedService.objects.get(name="demo.hello"))
    server_a, server_b = start_web(workers=1), start_web(workers=1)
    login = server_a.request("POST", "/zato/jwt/log-in", json={"username": "frontend", "password": "jwt-pw-1"})
    assert login.status == 200, login.text
    token = login.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert server_b.get("/e2e/events", headers=bearer).status == 200
    assert server_a.get("/e2e/events", headers=bearer).status == 200
    assert server_b.request("POST", "/zato/jwt/log-out", headers=bearer).status == 200
    logged_out_at = time.monotonic()
    assert server_b.get("/e2e/events", headers=bearer).status == 401  # at once where it logged out
    # Server A trusts a session it has just seen live for JWT_SESSION_RECHECK (1 s) at most.
    wait_for(lambda: server_a.get("/e2e/events", headers=bearer, timeout=2).status == 401, timeout=5,
             interval=0.05, message=lambda: server_a.log_tail())
    elapsed = time.monotonic() - logged_out_at
    assert elapsed < 1.5, f"server A accepted a logged-out token for {elapsed:.2f} s"
    refused = server_a.get("/e2e/events", headers=bearer)
    assert refused.status == 401
    assert refused.headers["www-authenticate"] == "Bearer"
