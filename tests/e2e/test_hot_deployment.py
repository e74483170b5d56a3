"""Hot deployment in a running web server (granian): files dropped in the pickup directory.

Each worker process runs its own poller, which scans the pickup directory and the
configuration version every CONFIG_POLL_INTERVAL (0.25 s). A file is deployed once it
looks the same on two scans in a row, and every other worker loads it on its next poll:
under a second in all, hence the 2-second bound below.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration.models import DeployedService, ServiceModule
from tests.servers.client import Reply
from tests.servers.procs import wait_for
from tests.servers.web import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PATH = "/e2e/hot"


def hot_source(version: int, *, extra_import: str = "") -> str:
    """A module with one service that answers its version and the pid of the worker that ran it."""
    return textwrap.dedent(f"""\
        import os
        {extra_import}
        from integration.services import Service


        class Hot(Service):
            name = "e2e.hot"

            def handle(self):
                self.response.payload = {{"version": {version}, "pid": os.getpid()}}
        """)


# The same module with a colon missing on line 9 (`def handle(self)`).
BROKEN_SOURCE = hot_source(99).replace("def handle(self):", "def handle(self)")


def publish(path: Path, source: str) -> None:
    """Replace the file in one step (a hidden temporary file, then rename), as a careful deployer would.

    The watcher skips dot-files, so it never sees the temporary one.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(source)
    os.replace(temporary, path)


@dataclass(frozen=True)
class Timed:
    """A reply with when its request was sent and when the answer was in (monotonic clock)."""

    sent: float
    received: float
    reply: Reply


def call_concurrently(server: WebServer, count: int = 8, threads: int = 4) -> list[Timed]:
    """``count`` GETs, ``threads`` at a time: sync workers take one request each, so both get some."""

    def call(_: int) -> Timed:
        sent = time.monotonic()
        reply = server.get(PATH, timeout=5)
        return Timed(sent, time.monotonic(), reply)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(call, range(count)))


def wait_until_every_worker_answers(server: WebServer, version: int, timeout: float) -> dict[int, float]:
    """Call until each worker has answered ``version``; return when each did first (monotonic time).

    Fails if a worker answers an older version to a request sent after it had already
    answered ``version`` (concurrent requests are not served in the order they are listed,
    so only send and receive times can tell), or if an answer comes from a process that is
    not one of the server's workers.
    """
    workers = server.worker_pids()
    first_seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    answers: list[Timed] = []
    while time.monotonic() < deadline:
        batch = call_concurrently(server)
        answers += batch
        for timed in sorted(batch, key=lambda t: t.received):
            if timed.reply.status != 200:
                continue
            body = timed.reply.json()
            assert body["pid"] in workers, f"answer from {body['pid']}, not one of the workers {workers}"
            if body["version"] == version:
                first_seen.setdefault(body["pid"], timed.received)
        for timed in answers:
            if timed.reply.status == 200:
                body = timed.reply.json()
                new_since = first_seen.get(body["pid"])
                assert body["version"] == version or new_since is None or timed.sent < new_since, (
                    f"worker {body['pid']} answered version {body['version']} after it had answered {version}"
                )
        if set(first_seen) == workers:
            return first_seen
    raise AssertionError(
        f"Not every worker answered version {version} within {timeout} s; workers {workers}, "
        f"first answers: {first_seen}; last answers: {[(t.reply.status, t.reply.text[:200]) for t in answers[-8:]]}"
        f"\n{server.log_tail()}"
    )


def assert_every_answer_is(server: WebServer, version: int) -> None:
    replies = [timed.reply for timed in call_concurrently(server, count=12)]
    assert [(r.status, r.json()["version"]) for r in replies] == [(200, version)] * 12, server.log_tail()


def last_error(module: str) -> str:
    return ServiceModule.objects.filter(name=module).values_list("last_error", flat=True).first() or ""


def deploy_first_version(server: WebServer, pickup_dir: Path, make_channel) -> Path:  # type: ignore[no-untyped-def]
    """Drop version 1 in the pickup directory, bind it to GET /e2e/hot, wait until the server answers."""
    module_file = pickup_dir / "hot_service.py"
    publish(module_file, hot_source(1))
    # The server's pollers deploy it (nothing in this process does): wait for their row.
    wait_for(
        lambda: DeployedService.objects.filter(name="e2e.hot").exists(),
        timeout=10,
        message=lambda: f"the pickup file was not deployed\n{server.log_tail()}",
    )
    make_channel(PATH, "e2e.hot", method="GET")
    return module_file


def test_a_running_server_deploys_a_changed_file_to_every_worker_and_keeps_the_last_good_one(
    start_web, pickup_dir, make_channel
):
    server = start_web(workers=2)
    module_file = deploy_first_version(server, pickup_dir, make_channel)
    wait_until_every_worker_answers(server, 1, timeout=10)

    publish(module_file, hot_source(2))
    changed_at = time.monotonic()
    first_seen = wait_until_every_worker_answers(server, 2, timeout=10)
    # Two scans to see the file settle, one poll for the other worker: about 0.75 s.
    slowest = max(first_seen.values()) - changed_at
    print(f"every worker answered the new version within {slowest:.3f} s")
    assert slowest < 2.0, f"the last worker answered the new version after {slowest:.2f} s"
    assert_every_answer_is(server, 2)

    publish(module_file, BROKEN_SOURCE)
    error = wait_for(lambda: last_error("hot_service"), timeout=5, message="the broken file was not rejected")
    assert error.startswith("Syntax error in "), error
    assert "hot_service.py, line 9" in error, error  # the line of `def handle(self)`
    # The rejection bumped the configuration version: give every worker two polls to reload it.
    time.sleep(0.6)
    assert_every_answer_is(server, 2)
    assert ServiceModule.objects.get(name="hot_service").source == hot_source(2)

    publish(module_file, hot_source(3, extra_import="import switchboard_no_such_module"))
    error = wait_for(
        lambda: "switchboard_no_such_module" in last_error("hot_service") and last_error("hot_service"),
        timeout=5,
        message="the file with a missing import was not rejected",
    )
    assert "could not be imported" in error, error
    assert "ModuleNotFoundError: No module named 'switchboard_no_such_module'" in error, error
    time.sleep(0.6)
    assert_every_answer_is(server, 2)
    assert ServiceModule.objects.get(name="hot_service").source == hot_source(2)


def test_redeploying_a_service_while_it_is_called_fails_no_request(start_web, pickup_dir, make_channel):
    server = start_web(workers=2)
    module_file = deploy_first_version(server, pickup_dir, make_channel)
    wait_until_every_worker_answers(server, 1, timeout=10)

    failures: list[str] = []
    versions: Counter[int] = Counter()
    stop = threading.Event()

    def keep_calling() -> None:
        hard_stop = time.monotonic() + 15  # bounded even if the main thread never sets `stop`
        while not stop.is_set() and time.monotonic() < hard_stop:
            try:
                reply = server.get(PATH, timeout=5)
            except Exception as exc:  # a reset or refused connection is a failed request too
                failures.append(repr(exc))
                continue
            if reply.status == 200:
                versions[reply.json()["version"]] += 1
            else:
                failures.append(f"{reply.status}: {reply.text[:300]}")

    callers = [threading.Thread(target=keep_calling, daemon=True) for _ in range(2)]
    for caller in callers:
        caller.start()
    try:
        for version in range(2, 6):
            publish(module_file, hot_source(version))
            # Deploy the next one only once this one answers, so each swap happens under traffic.
            wait_for(lambda v=version: versions[v] > 0, timeout=5, message=f"version {version} never answered")
        time.sleep(0.3)  # and keep calling the last version for a moment
    finally:
        stop.set()
        for caller in callers:
            caller.join(timeout=10)

    assert failures == [], f"{len(failures)} failed requests, first: {failures[:5]}\n{server.log_tail()}"
    # Every version answered, so all four swaps happened while requests were running.
    assert set(versions) == {1, 2, 3, 4, 5}, versions
    assert sum(versions.values()) > 50, versions
