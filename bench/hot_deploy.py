"""Hot deployment: seconds from dropping 100 files into the pickup directory of a running
server until all 100 services are invocable through ``POST /manage/api/v1/invoke/{service}``.

The server is the production one (granian as ``manage.py serve`` starts it + config.wsgi:application, 2
workers, PICKUP_DIR = a fresh temp dir, default CONFIG_POLL_INTERVAL). The files are
written under dot-names (ignored by the watcher) and renamed to ``*.py`` in one burst, so
they appear at once. The clock starts just before the first rename. Two HTTP clients (one
per worker) POST to the invoke endpoint: first for the newest service until it answers,
then in rounds for every service that has not answered 200 yet; once all have, one more
round over all of them must get 200 everywhere, else the services that fell back to "no
such service" (a worker still on an older configuration) are polled again. A service's
time is its first 200 after its last failure; the figure is the latest of those. The time
at which the database holds all 100 modules is recorded too (the pickup watcher's part).

Three runs, each on a fresh server with its own 100 files:

* ``token``: management API with an API token of a superuser (what scripts use in production;
  made here as ``manage.py api_token create`` makes it);
* ``basic``: HTTP Basic as a superuser (what the brief asks for), on a server started with
  ``MANAGE_API_BASIC_AUTH=true`` as ``make run`` does (production refuses Basic);
* ``session``: the same endpoint with a logged-in session (one login, then cookie + CSRF),
  on a server with ``ADMIN_REQUIRE_TOTP=false`` as ``make run`` (the login form would ask for a
  TOTP code), which keeps the cost of the API's authentication out of the figure. Each run measures and
  prints what one invoke call costs with its authentication: when Basic costs far more (a
  full PBKDF2 password check per request, ~0.4-0.7 s on 2 cores, as before the management
  API cached verified credentials), the Basic figure measures the polling, not the deployment.

Reference: Zato took 18 s to hot-deploy 100 files; ratio = ours / 18 s (below 1 is faster).

    .venv/bin/python bench/hot_deploy.py
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

ZATO_S = 18.0
FILES = common.env_int("BENCH_HOT_FILES", 100)
TIMEOUT = common.env_float("BENCH_HOT_TIMEOUT", 180.0)
CLIENTS = common.env_int("BENCH_HOT_CLIENTS", 2)
ADMIN, ADMIN_PASSWORD = "bench-admin", "bench-admin-password-1"
BASIC = "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
# What each run's server needs beyond the production defaults (see the module docstring).
RUN_ENV = {"token": {}, "basic": {"MANAGE_API_BASIC_AUTH": "true"}, "session": {"ADMIN_REQUIRE_TOTP": "false"}}
API_TOKEN: list[str] = []  # made by prepare()

MODULE = '''"""Hot-deploy benchmark file {n} ({run})."""

from integration.services import Service


class Ping(Service):
    name = "hot.{run}.ping-{n:03d}"

    def handle(self):
        self.response.payload = {{"pong": {n}, "run": "{run}"}}
'''


def prepare() -> None:
    common.bench_django()
    from django.contrib.auth import get_user_model
    from django.db import connections

    from accounts.models import ApiToken

    admin = get_user_model().objects.create_superuser(ADMIN, "bench@example.com", ADMIN_PASSWORD)
    API_TOKEN.append(ApiToken.issue(admin, name="hot_deploy benchmark", days=1)[1])
    connections.close_all()


def count_modules(run: str) -> int:
    from integration.models import ServiceModule

    return ServiceModule.objects.filter(name__startswith=f"hot_{run}_").count()


class Auth:
    """Headers for the management API: an API token, HTTP Basic, or a session logged in through the admin."""

    def __init__(self, mode: str, port: int) -> None:
        self.mode = mode
        if mode == "token":
            self.headers = {"Authorization": f"Token {API_TOKEN[0]}"}
        else:
            self.headers = {"Authorization": BASIC} if mode == "basic" else self._login(port)

    @staticmethod
    def _login(port: int) -> dict[str, str]:
        status, body, headers = common.request(port, "GET", "/admin/login/")
        csrf = re.search(r"csrftoken=([^;]+)", headers.get("set-cookie", ""))
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        if status != 200 or not csrf or not token:
            raise SystemExit(f"admin login page: HTTP {status}")
        form = f"csrfmiddlewaretoken={token.group(1).decode()}&username={ADMIN}&password={ADMIN_PASSWORD}&next=/admin/"
        status, _, headers = common.request(
            port,
            "POST",
            "/admin/login/",
            body=form.encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf.group(1)}",
                "Referer": f"http://{common.HOST}:{port}/admin/login/",
            },
        )
        session = re.search(r"sessionid=([^;]+)", headers.get("set-cookie", ""))
        new_csrf = re.search(r"csrftoken=([^;]+)", headers.get("set-cookie", ""))
        if status != 302 or not session:
            raise SystemExit(f"admin login failed: HTTP {status}")
        token_value = new_csrf.group(1) if new_csrf else csrf.group(1)
        return {
            "Cookie": f"sessionid={session.group(1)}; csrftoken={token_value}",
            "X-CSRFToken": token_value,
            "Referer": f"http://{common.HOST}:{port}/",
        }


def invoke(port: int, auth: Auth, service: str) -> tuple[int, bytes]:
    status, body, _ = common.request(
        port,
        "POST",
        f"/manage/api/v1/invoke/{service}",
        body=b"{}",
        headers={**auth.headers, "Content-Type": "application/json"},
        timeout=30,
    )
    return status, body


def run_once(run: str) -> dict[str, float]:
    pickup = common.empty_dir(f"hot-{run}")
    port = common.free_port()
    env = common.bench_env(PORT=str(port), WEB_WORKERS="2", PICKUP_DIR=str(pickup), **RUN_ENV[run])
    server = common.web(f"hot-deploy-{run}", "config.wsgi:application", env)
    services = [f"hot.{run}.ping-{n:03d}" for n in range(FILES)]
    try:
        server.start()
        common.wait_for_200(server, "/healthz", timeout=60)
        auth = Auth(run, port)
        status, body = invoke(port, auth, "zato.ping")
        if status != 200:
            raise SystemExit(f"invoke zato.ping as {ADMIN} ({run}): HTTP {status} {body[:200]!r}")
        timings = []
        for _ in range(4):  # what one management API call costs with this authentication
            started = time.perf_counter()
            invoke(port, auth, "zato.ping")
            timings.append((time.perf_counter() - started) * 1000)
        call_ms = common.median(timings)
        # Let each worker's poller settle on an unchanged directory before the burst.
        time.sleep(1.0)
        staged = []
        for n in range(FILES):
            hidden = pickup / f".hot_{run}_{n:03d}.py"
            hidden.write_text(MODULE.format(n=n, run=run))
            staged.append(hidden)

        ok_since: dict[str, float] = {}  # service -> first 200 after its last failure (s from t0)
        state = {"requests": 0, "regressions": 0, "rounds": 0, "db": None, "first": None}
        unexpected: list[str] = []
        lock = threading.Lock()

        def call(service: str) -> bool:
            status, body = invoke(port, auth, service)
            now = time.perf_counter() - t0
            with lock:
                state["requests"] += 1
                if status == 200 and json.loads(body).get("run") == run:
                    ok_since.setdefault(service, now)
                    if state["first"] is None:
                        state["first"] = now
                    return True
                if service in ok_since:  # answered before, not now: a process with older configuration
                    state["regressions"] += 1
                    del ok_since[service]
                if status != 404:
                    unexpected.append(f"{service}: HTTP {status} {body[:160]!r}")
                return False

        def watch_db() -> None:
            from django.db import connection

            while state["db"] is None and time.perf_counter() - t0 < TIMEOUT:
                if count_modules(run) >= FILES:
                    state["db"] = time.perf_counter() - t0
                time.sleep(0.02)
            connection.close()

        t0 = time.perf_counter()
        for hidden in staged:
            hidden.rename(pickup / hidden.name[1:])
        db_thread = threading.Thread(target=watch_db, daemon=True)
        db_thread.start()
        canary = services[-1]
        with ThreadPoolExecutor(CLIENTS) as pool:
            # Until the newest file answers, nothing else is worth asking for.
            while time.perf_counter() - t0 < TIMEOUT and not any(pool.map(call, [canary] * CLIENTS)):
                time.sleep(0.01)
            # Then every service not yet answering, round after round; when all have answered,
            # one more round over all of them checks that none went back to "no such service"
            # (which happens while another worker still serves an older configuration).
            while time.perf_counter() - t0 < TIMEOUT:
                state["rounds"] += 1
                pending = [name for name in services if name not in ok_since]
                if pending:
                    list(pool.map(call, pending))
                    continue
                if all(pool.map(call, services)):
                    break
        db_thread.join(timeout=5)
        if len(ok_since) < FILES:
            raise SystemExit(
                f"{run}: only {len(ok_since)}/{FILES} services invocable after {TIMEOUT:.0f} s "
                f"(unexpected answers: {unexpected[:3]}); see {server.log_path}"
            )
        for failure in unexpected[:5]:
            print(f"  {run}: unexpected answer: {failure}")
        errors_logged = len(re.findall(r"Traceback| ERROR |\[ERROR\]", server.log_path.read_text(errors="replace")))
        return {
            "call_ms": call_ms,
            "all_ok": max(ok_since.values()),
            "first_ok": state["first"],
            "db": state["db"] if state["db"] is not None else float("nan"),
            "requests": state["requests"],
            "rounds": state["rounds"],
            "regressions": state["regressions"],
            "unexpected": len(unexpected),
            "log_errors": errors_logged,
        }
    finally:
        server.stop()


def main() -> tuple[str, bool]:
    modes = [m for m in os.environ.get("BENCH_HOT_MODES", "token,basic,session").split(",") if m]
    print(
        f"== hot deploy: {FILES} files dropped into the pickup dir of a running server (2 workers) until all "
        f"are invocable via POST /manage/api/v1/invoke/{{service}} =="
    )
    prepare()
    for name in ("hot-deploy-token", "hot-deploy-basic", "hot-deploy-session"):
        log = common.LOG_DIR / f"{name}.log"
        if log.exists():
            log.unlink()
    results = {}
    print(common.wait_for_quiet())
    for run in modes:
        results[run] = run_once(run)
    labels = {"token": "API token (production)", "basic": "HTTP Basic (brief's method; make run only)",
              "session": "session cookie"}
    rows = []
    for run, r in results.items():
        rows.append(
            [
                labels[run],
                f"{r['call_ms']:.0f}",
                f"{r['db']:.2f}",
                f"{r['first_ok']:.2f}",
                f"{r['all_ok']:.2f}",
                f"{r['all_ok'] / ZATO_S:.3f}",
                r["requests"],
                r["rounds"],
                r["regressions"],
                r["unexpected"],
                r["log_errors"],
            ]
        )
    print(
        common.table(
            [
                "management API auth",
                "ms per call",
                "s to all in DB",
                "s to 1st invocable",
                "s to all invocable",
                "ratio to Zato 18 s",
                "requests",
                "rounds",
                "200 then 404",
                "other errors",
                "log errors",
            ],
            rows,
        )
    )
    print(
        f"Zato reference: {ZATO_S:.0f} s to hot-deploy {FILES} files; ratio = ours / {ZATO_S:.0f} s (below 1 = faster)."
    )
    if "basic" in results and "session" in results:
        basic_ms, session_ms = results["basic"]["call_ms"], results["session"]["call_ms"]
        if basic_ms > 5 * session_ms + 20:
            print(
                f"The HTTP Basic figure is bound by the management API's password check: {basic_ms:.0f} ms per "
                f"call vs {session_ms:.0f} ms with a session, x {results['basic']['requests']} poll requests "
                f"over 2 workers."
            )
    regressions = sum(r["regressions"] for r in results.values())
    if regressions:
        print(
            f"{regressions} calls answered 'no such service' after the same service had answered 200: one "
            f"worker served an older configuration than the other for a while (counted in the timing)."
        )
    failures = sum(r["unexpected"] + r["log_errors"] for r in results.values())
    worst = max(r["all_ok"] for r in results.values())
    summary = ", ".join(f"{r['all_ok']:.2f} s ({run})" for run, r in results.items())
    reached = worst < ZATO_S and failures == 0
    return (
        f"{FILES} files invocable in {summary}; Zato {ZATO_S:.0f} s"
        + (f"; {failures} failed checks" if failures else ""),
        reached,
    )


if __name__ == "__main__":
    common.run(main)
