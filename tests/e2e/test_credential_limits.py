"""Brute-force limits across real worker processes, on Redis and on the embedded default's database.

One server with two workers, as ``manage.py serve`` starts it. A legitimate client first gets
its password verified by both workers (each then remembers it), then an attacker from the
same address spreads wrong passwords over both until the limit; afterwards the right
password is refused by both workers, including the one that never saw the last failure.
The server log says which worker (pid) did what.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from accounts.models import BasicAuth, LoginAttempt
from integration.models import DeployedService, RestChannel
from tests.servers.client import basic_auth, request

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
LIMIT = 12  # enough failures that both workers get some, however connections are spread
RECHECK = 0.2  # how long a worker trusts an all-clear for a caller it just let through


def pids_logging(log: str, marker: str) -> set[int]:
    """Pids of the processes that wrote lines containing ``marker`` (the log format is `time level pid name msg`)."""
    return {int(match) for match in re.findall(r"^\S+ \S+ \w+ (\d+) \S+ .*" + re.escape(marker), log, re.M)}


def concurrently(count: int, call: Any) -> list[Any]:
    """``count`` calls two at a time: a worker busy hashing a password leaves the next to the other worker."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda _: call(), range(count)))


@pytest.mark.parametrize("store", ["redis", "database"])
def test_failures_spread_over_two_workers_block_the_right_password_in_both(start_web, builtins, store) -> None:
    definition = BasicAuth(name="partner", username="partner")
    definition.set_password("partner-pw-1")  # the real (slow) hasher: this test starts servers
    definition.save()
    RestChannel.objects.create(name="limited", url_path="/e2e/limited", security=definition,
                               service=DeployedService.objects.get(name="demo.hello"))
    env = {"CREDENTIAL_MAX_FAILURES": str(LIMIT), "CREDENTIAL_RECHECK": str(RECHECK)}
    if store == "database":
        env["REDIS_URL"] = ""  # the embedded default: counts in the database
    server = start_web(workers=2, **env)
    url = server.url("/e2e/limited")

    def right() -> int:
        return request("GET", url, headers=basic_auth("partner", "partner-pw-1"), timeout=15).status

    def wrong() -> int:
        return request("GET", url, headers=basic_auth("partner", "not-the-password"), timeout=15).status

    # A legitimate client from this address: the workers that serve it verify and remember its password.
    assert concurrently(6, right) == [200] * 6
    assert len(server.worker_pids()) == 2

    assert concurrently(LIMIT, wrong) == [401] * LIMIT
    log = server.process.log_text()
    failed_in = pids_logging(log, "rejected the caller: invalid username or password")
    assert failed_in == server.worker_pids(), f"failures were not spread over both workers:\n{log[-3000:]}"

    refused = [request("GET", url, headers=basic_auth("partner", "partner-pw-1"), timeout=15) for _ in range(2)]
    refused += concurrently(16, lambda: request("GET", url, headers=basic_auth("partner", "partner-pw-1"),
                                                timeout=15))
    assert [reply.status for reply in refused] == [429] * len(refused)
    for reply in refused:
        body = reply.json()
        assert body["cid"] == reply.headers["x-zato-cid"] and int(reply.headers["retry-after"]) > 0
    log = server.process.log_text()
    refused_in = pids_logging(log, "Refused: too many failed credential checks (Channel `partner`)")
    assert refused_in == server.worker_pids(), f"not every worker refused:\n{log[-3000:]}"
    # Audited up to the limit, wherever the failure happened; the refusals only in the log.
    assert LoginAttempt.objects.filter(kind="channel", definition="partner").count() == LIMIT
