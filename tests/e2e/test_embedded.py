"""The embedded default that ``make run`` starts: SQLite and a file broker in VAR_DIR, no servers to install.

No database fixture here: the processes use their own SQLite file in a temporary
VAR_DIR, and pytest-django blocks any database access from this test process, so the
PostgreSQL test database is never touched.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.servers import client
from tests.servers.procs import (
    ManagedProcess,
    free_port,
    is_running,
    members_of_groups,
    run_manage,
    wait_for,
)

pytestmark = [pytest.mark.e2e]

# Settings read these to leave the embedded default; a test run sets the first two.
NOT_EMBEDDED = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ADMIN_PASSWORD", "ADMIN_PASSWORD_FILE")


@pytest.fixture
def embedded_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The test's environment without PostgreSQL, Redis or a preset admin password, VAR_DIR in tmp."""
    var_dir = tmp_path / "var"
    env = {key: value for key, value in os.environ.items() if key not in NOT_EMBEDDED}
    env.update(
        {
            "VAR_DIR": str(var_dir),
            "PICKUP_DIR": str(tmp_path / "pickup"),
            # One web worker is enough to answer, and leaves CPU to the other tests.
            "WEB_WORKERS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = run_manage(env, *args, timeout=120)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def row_counts(database: Path) -> dict[str, int]:
    tables = ("auth_user", "integration_restchannel", "integration_deployedservice", "integration_servicemodule")
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}  # noqa: S608


@pytest.fixture
def start_serve(tmp_path):  # type: ignore[no-untyped-def]
    """Start ``manage.py serve`` with an environment; it and all it started are stopped at teardown."""
    started: list[ManagedProcess] = []

    def _start(env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess([sys.executable, "manage.py", "serve"], env=env, log_path=tmp_path / "serve.log")
        started.append(process)
        return process.start()

    yield _start
    for process in started:
        # SIGTERM reaches serve, which stops its children; SIGKILL for every group it made after 8 s.
        process.stop(grace=8)


def test_the_embedded_platform_migrates_bootstraps_serves_and_stops_cleanly(embedded_env, start_serve):
    var_dir = Path(embedded_env["VAR_DIR"])
    started = time.monotonic()
    timings: dict[str, float] = {}  # printed at the end: pytest shows them when the test fails

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started - sum(timings.values()), 2)

    manage(embedded_env, "migrate", "--noinput")
    lap("migrate")
    database = var_dir / "switchboard.sqlite3"
    assert database.exists(), "migrate did not create the SQLite database in VAR_DIR"

    first = manage(embedded_env, "bootstrap")
    lap("bootstrap")
    match = re.search(r"Created user admin with password (\S+) \(saved to (\S+);", first.stdout)
    assert match, first.stdout
    password_file = var_dir / "admin-password"
    assert match.group(2) == str(password_file)
    assert password_file.read_text() == match.group(1) + "\n"
    assert password_file.stat().st_mode & 0o777 == 0o600  # a secret: for the owner only
    counts = row_counts(database)
    assert counts["auth_user"] == 1
    assert counts["integration_restchannel"] > 0  # the demo channels

    second = manage(embedded_env, "bootstrap")
    lap("bootstrap again")
    assert "Created" not in second.stdout + second.stderr
    assert row_counts(database) == counts
    assert password_file.read_text() == match.group(1) + "\n"

    port, websocket_port = free_port(), free_port()  # chosen just before use: other tests take ports too
    base = f"http://127.0.0.1:{port}"
    serve = start_serve({**embedded_env, "PORT": str(port), "WEBSOCKET_PORT": str(websocket_port)})

    def hello_answers() -> client.Reply | None:
        assert serve.poll() is None, f"serve exited early:\n{serve.log_tail()}"
        reply = client.try_get(base + "/demo/hello", timeout=2)
        return reply if reply is not None and reply.status == 200 else None

    hello = wait_for(hello_answers, timeout=60, interval=0.1, message=lambda: f"no /demo/hello\n{serve.log_tail()}")
    lap("serve: web answers")
    assert hello.headers["content-type"] == "application/json"
    assert hello.json()["hello"] == "world"
    login = client.get(base + "/admin/login/")
    assert login.status == 200
    assert 'name="username"' in login.text

    # The worker logs "celery@<host> ready." once it consumes from the broker; beat logs its start.
    wait_for(
        lambda: re.search(r"celery@\S+ ready\.", serve.log_text()) and "beat: Starting..." in serve.log_text(),
        timeout=60,
        interval=0.1,
        message=lambda: f"Celery worker or beat did not start\n{serve.log_tail()}",
    )
    lap("serve: Celery ready")
    children = {stat.pid: stat for stat in serve.tree() if stat.ppid == serve.pid}
    # Each child is `python -m MODULE ...` or `python manage.py COMMAND ...` (the file and AMQP channels' processes).
    modules = sorted(stat.cmdline.split()[2] for stat in children.values())
    assert modules == ["celery", "celery", "config.websocket_server", "consume_amqp", "granian", "watch_files"], [
        stat.cmdline for stat in children.values()]  # config.websocket_server: daphne, closing with 1009
    assert any(f" -p {websocket_port} " in stat.cmdline and " --websocket_timeout -1 " in stat.cmdline
               for stat in children.values())

    # The WebSocket demo on the embedded channel layer: a push from granian reaches daphne's client.
    notification = asyncio.run(demo_push(base, var_dir, websocket_port, serve))
    lap("serve: WebSocket demo")
    assert notification["type"] == "push"
    assert notification["data"]["text"] == "Hello from the embedded platform"
    assert any(" worker " in stat.cmdline for stat in children.values())
    assert any(" beat " in stat.cmdline for stat in children.values())
    assert "exited with code" not in serve.log_text(), serve.log_tail()

    everything = serve.tree()  # children and grandchildren (granian and Celery pool workers)
    assert all(is_running(stat) for stat in everything)
    groups = {serve.pid} | {stat.pgrp for stat in everything}
    assert len(everything) >= 6  # granian main process + worker, daphne, Celery worker + its pool, beat

    serve.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal of `make run` sends
    interrupted_at = time.monotonic()
    try:
        code = serve.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not exit within 30 s of SIGINT\n{serve.log_tail()}")
    took = time.monotonic() - interrupted_at
    lap("serve: stopped")
    print("timings (s):", timings)
    # Ctrl-C must stop everything promptly (serve itself gives its children 15 s, then SIGKILLs them).
    assert took < 20, f"serve took {took:.1f} s to stop\n{serve.log_tail()}"
    assert code == 0, serve.log_tail()
    assert "Switchboard stopped." in serve.log_text()

    # serve waits for its children, and each child for its own; allow a moment for reaping.
    wait_for(
        lambda: not any(is_running(stat) for stat in everything) and not members_of_groups(groups),
        timeout=5,
        message=lambda: f"left running: {[s.cmdline for s in members_of_groups(groups)]}",
    )


async def demo_push(base: str, var_dir: Path, websocket_port: int, serve: ManagedProcess) -> dict[str, Any]:
    """The seed's flow as `make run` sets it up: frontend token over REST, socket on daphne, backend push.

    The passwords are the ones bootstrap generated and saved in VAR_DIR. aiohttp (a dependency of
    fhirpy) is the WebSocket client; it sends no Origin header, as programs do not.
    """
    import aiohttp

    frontend = (var_dir / "demo-frontend-password").read_text().strip()
    backend = (var_dir / "demo-backend-password").read_text().strip()
    issued = await asyncio.to_thread(client.request, "POST", base + "/demo/ws-token",
                                     json={"channel": "demo.notifications"},
                                     headers=client.basic_auth("frontend", frontend))
    assert issued.status == 200, issued.text
    url = issued.json()["url"]
    assert url == f"ws://127.0.0.1:{websocket_port}/ws/demo/notifications"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:  # daphne may still be starting
            try:
                socket = await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5))
                break
            except aiohttp.ClientConnectionError:
                assert time.monotonic() < deadline, f"daphne never accepted\n{serve.log_tail()}"
                await asyncio.sleep(0.1)
        async with socket:
            await socket.send_json({"type": "auth", "token": issued.json()["token"]})
            welcome = await socket.receive_json(timeout=10)
            assert welcome["type"] == "authenticated" and welcome["username"] == "demo-user", welcome
            pushed = await asyncio.to_thread(client.request, "POST", base + "/demo/notify",
                                             json={"text": "Hello from the embedded platform"},
                                             headers=client.basic_auth("backend", backend))
            assert pushed.status == 200, pushed.text
            return await socket.receive_json(timeout=10)
