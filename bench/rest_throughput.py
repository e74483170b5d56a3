"""REST throughput with wrk: the REST channel on the production server against a bare Django view
on the same server, and against the same application on gunicorn's sync workers.

Two servers run side by side, both serving bench.wsgi (config/wsgi.py plus a /bench/ route to
Django's full handler) with 2 worker processes:

* granian, started with ``manage.py serve``'s own command line (``granian_argv``): production;
* gunicorn, 2 sync workers, preloaded (bench/gunicorn_baseline.conf.py): the server the
  platform used before, as the baseline.

Targets, each answering ``{"hello": "world"}``:

* bare:  GET /bench/bare, a JSON view behind Django's whole middleware and URL resolver (granian);
* open:  GET /rt/hello, a REST channel without security bound to a hello-world user service;
* basic: GET /rt/basic, the same service behind an HTTP Basic Auth security definition;

open and basic on both servers. Measured at 1, 16 and 64 connections (wrk threads =
min(connections, 2)), with keep-alive on (wrk's default) and off (``Connection: close``: a
new TCP connection per request), for ``BENCH_SECONDS`` (10) per target, cut into
``BENCH_SLICES`` (5) slices taken round-robin across all targets, so background load hits the
baselines and the channels alike.

Targets (issue 11): each channel path reaches at least 0.8 of the bare view's req/s on the
same server, at every concurrency and both keep-alive modes; and the REST channel on granian
reaches at least 1.6 times its gunicorn figure at 64 connections with keep-alive (how a load
balancer talks to it; the keep-alive-off ratio is printed too). Every ratio is printed.

    BENCH_SECONDS=10 .venv/bin/python bench/rest_throughput.py
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

SECONDS = common.env_int("BENCH_SECONDS", 10)
WARMUP = common.env_int("BENCH_WARMUP_SECONDS", 2)
SLICES = max(1, common.env_int("BENCH_SLICES", 5))
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1,16,64").split(",")]
# "on": wrk's keep-alive; "off": Connection: close, a new TCP connection for every request.
KEEP_ALIVE = [mode.strip() == "on" for mode in os.environ.get("BENCH_KEEPALIVE", "on,off").split(",")]
BARE_RATIO = 0.8  # each channel path / the bare Django view, same server
GUNICORN_RATIO = 1.6  # REST channel on granian / on gunicorn sync workers, at GUNICORN_AT connections
GUNICORN_AT = 64
USERNAME, PASSWORD = "bench-caller", "bench-secret-password"
AUTH = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()

HELLO = '''"""Hello world, for the throughput benchmark."""

from integration.services import Service


class Hello(Service):
    name = "bench.hello"

    def handle(self):
        self.response.payload = {"hello": "world"}
'''

CHANNELS = {
    # key: label, path, headers
    "open": ("REST channel, no security", "/rt/hello", {}),
    "basic": ("REST channel, HTTP Basic Auth", "/rt/basic", {"Authorization": AUTH}),
}
BARE = ("bare Django JSON view (full stack)", "/bench/bare", {})
# (server, key): what is measured; the bare view on the production server only.
TARGETS = [("granian", "bare"), *[(server, key) for server in ("granian", "gunicorn") for key in CHANNELS]]


def target(key: str) -> tuple[str, str, dict[str, str]]:
    return BARE if key == "bare" else CHANNELS[key]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk")
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, check=False, capture_output=True, timeout=600).returncode:
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, timeout=600)
        subprocess.run(install, check=True, capture_output=True, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def prepare() -> None:
    common.bench_django()
    from django.db import connections

    from accounts.models import BasicAuth
    from integration.deploy import deploy_sources
    from integration.models import DeployedService, RestChannel, ServiceModule

    (outcome,) = deploy_sources([("bench_hello.py", HELLO)], ServiceModule.Origin.CLI)
    if not outcome.ok:
        raise SystemExit(outcome.error)
    service = DeployedService.objects.get(name="bench.hello")
    definition = BasicAuth(name="bench-basic", username=USERNAME)
    definition.set_password(PASSWORD)
    definition.save()
    RestChannel.objects.create(name="bench.open", method="GET", url_path="/rt/hello", service=service)
    RestChannel.objects.create(
        name="bench.basic", method="GET", url_path="/rt/basic", service=service, security=definition
    )
    connections.close_all()


def check(port: int, keys: list[str]) -> None:
    """Every target answers 200 with the same JSON; the Basic channel refuses a caller without credentials."""
    for key in keys:
        _, path, headers = target(key)
        status, body, _ = common.request(port, "GET", path, headers=headers)
        if status != 200 or json.loads(body) != {"hello": "world"}:
            raise SystemExit(f"{key}: GET {path} on port {port} answered {status} {body[:200]!r}")
    status, _, _ = common.request(port, "GET", "/rt/basic")
    if status != 401:
        raise SystemExit(f"GET /rt/basic without credentials answered {status}, expected 401")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(binary: str, port: int, path: str, headers: dict[str, str], connections: int, seconds: int,
        *, keep_alive: bool = True) -> dict:
    argv = [
        binary,
        "-t",
        str(min(connections, 2)),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    for key, value in {**headers, **({} if keep_alive else {"Connection": "close"})}.items():
        argv += ["-H", f"{key}: {value}"]
    argv.append(f"http://{common.HOST}:{port}{path}")
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk printed no rate:\n{out[-2000:]}")
    p50, p99 = (re.search(rf"^\s+{pct}%\s+(\S+)$", out, re.M) for pct in (50, 99))
    result = {
        "rps": float(rps.group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        # No latency lines when no request completed in time (a warm-up whose first slow password
        # checks outlast it): infinite latency, not a crash.
        "p50": _ms(p50.group(1)) if p50 else float("inf"),
        "p99": _ms(p99.group(1)) if p99 else float("inf"),
        "non2xx": 0,
        "errors": 0,
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        result["non2xx"] = int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        # A server closing the connection after its response (sync workers, Connection: close) may
        # be counted as a read error by wrk; connect errors and timeouts are real failures.
        result["errors"] = int(errors.group(1)) + int(errors.group(4))
    return result


def combine(slices: list[dict]) -> dict:
    """One figure from a target's slices: total requests / total time; medians of the slices' percentiles."""
    seconds = sum(s["requests"] / s["rps"] for s in slices if s["rps"])
    return {
        "rps": sum(s["requests"] for s in slices) / seconds,
        "p50": common.median([s["p50"] for s in slices]),
        "p99": common.median([s["p99"] for s in slices]),
        "min": min(s["rps"] for s in slices),
        "max": max(s["rps"] for s in slices),
        "non2xx": sum(s["non2xx"] for s in slices),
        "errors": sum(s["errors"] for s in slices),
    }


def servers() -> dict[str, common.Server]:
    """The production server and the baseline, both serving bench.wsgi with 2 workers on free ports."""
    made = {}
    for name in ("granian", "gunicorn"):
        env = common.bench_env(
            PORT=str(common.free_port()),
            WEB_WORKERS="2",
            PICKUP_DIR=str(common.empty_dir(f"rt-{name}-pickup")),
            DJANGO_SETTINGS_MODULE="bench.settings",
        )
        start = common.web if name == "granian" else common.gunicorn
        made[name] = start(f"rest-throughput-{name}", "bench.wsgi:application", env)
    return made


Key = tuple[str, str, int, bool]  # server, target, connections, keep-alive


def measure(binary: str, running: dict[str, common.Server]) -> dict[Key, dict]:
    """Every target at every concurrency and keep-alive mode; slices round-robin within each group."""
    for server_name, key in TARGETS:
        _, path, headers = target(key)
        wrk(binary, running[server_name].port, path, headers, 16, WARMUP)
    slice_s = max(1, round(SECONDS / SLICES))
    slices: dict[Key, list[dict]] = {}
    for keep_alive in KEEP_ALIVE:
        for connections in CONNECTIONS:
            for _ in range(SLICES):
                for server_name, key in TARGETS:
                    _, path, headers = target(key)
                    server = running[server_name]
                    slices.setdefault((server_name, key, connections, keep_alive), []).append(
                        wrk(binary, server.port, path, headers, connections, slice_s, keep_alive=keep_alive)
                    )
                    if not server.alive():
                        raise SystemExit(f"{server.name} died; see {server.log_path}")
    return {k: combine(v) for k, v in slices.items()}


def mode(keep_alive: bool) -> str:
    return "on" if keep_alive else "off"


def report(results: dict[Key, dict]) -> tuple[dict, dict]:
    """Print the table and every ratio; returns (channel / bare, granian / gunicorn) by (key, conns, keep-alive)."""
    rows = []
    for keep_alive in KEEP_ALIVE:
        for connections in CONNECTIONS:
            bare = results["granian", "bare", connections, keep_alive]["rps"]
            for server_name, key in TARGETS:
                r = results[server_name, key, connections, keep_alive]
                versus = ""
                if server_name == "granian" and key in CHANNELS:
                    versus = f"{r['rps'] / results['gunicorn', key, connections, keep_alive]['rps']:.2f}"
                rows.append([
                    f"{target(key)[0]}, {server_name}", connections, mode(keep_alive), f"{r['rps']:,.0f}",
                    f"{r['min']:,.0f}-{r['max']:,.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", r["non2xx"],
                    r["errors"], f"{r['rps'] / bare:.2f}", versus,
                ])
    print(common.table(
        ["target", "conns", "keep-alive", "req/s", "slices req/s", "p50 ms", "p99 ms", "non-2xx", "errors",
         "/ bare (granian)", "granian / gunicorn"],
        rows,
    ))
    cells = [(key, c, ka) for key in CHANNELS for c in CONNECTIONS for ka in KEEP_ALIVE]
    to_bare = {(k, c, ka): results["granian", k, c, ka]["rps"] / results["granian", "bare", c, ka]["rps"]
               for k, c, ka in cells}
    to_gunicorn = {(k, c, ka): results["granian", k, c, ka]["rps"] / results["gunicorn", k, c, ka]["rps"]
                   for k, c, ka in cells}
    print("channel / bare view, both on granian: "
          + ", ".join(f"{k}@{c}/{mode(ka)}={v:.2f}" for (k, c, ka), v in to_bare.items())
          + f"   (target >= {BARE_RATIO})")
    print("granian / gunicorn, same channel: "
          + ", ".join(f"{k}@{c}/{mode(ka)}={v:.2f}" for (k, c, ka), v in to_gunicorn.items())
          + f"   (target >= {GUNICORN_RATIO} at {GUNICORN_AT} connections, keep-alive on)")
    return to_bare, to_gunicorn


def main() -> tuple[str, bool]:
    binary = ensure_wrk()
    print(
        f"== REST throughput: wrk {SECONDS} s per target at {CONNECTIONS} connections, keep-alive "
        f"{'/'.join(mode(k) for k in KEEP_ALIVE)} (in {SLICES} interleaved slices); granian (production) "
        f"against gunicorn sync workers, 2 workers each =="
    )
    prepare()
    running = servers()
    print(common.wait_for_quiet())
    try:
        for server in running.values():
            server.start()
        for name, server in running.items():
            common.wait_for_200(server, "/bench/bare", timeout=60)
            check(server.port, [key for server_name, key in TARGETS if server_name == name])
        # Other work on the machine: everything but this benchmark, wrk and the two servers.
        account = common.CPUAccount(running["granian"].proc.pid, running["gunicorn"].proc.pid)
        account.start()
        results = measure(binary, running)
        foreign, available = account.foreign()
    finally:
        for server in running.values():
            server.stop()

    to_bare, to_gunicorn = report(results)
    failures = sum(r["non2xx"] + r["errors"] for r in results.values())
    if failures:
        print(f"WARNING: {failures} failed requests (non-2xx, connect errors or timeouts); see {common.LOG_DIR}")
    share = foreign / available if available else 0.0
    print(
        f"CPU used by other processes during the measurement: {foreign:.1f} s of {available:.0f} s available "
        f"({share:.0%})" + (" -- WARNING: figures disturbed by other work on this machine" if share > 0.05 else "")
    )
    worst = min(to_bare, key=to_bare.get)
    judged = {k: v for k, v in to_gunicorn.items() if k[1] == GUNICORN_AT and k[2]}
    if judged:
        weakest = min(judged, key=judged.get)
        versus = (f"granian/gunicorn at {GUNICORN_AT} conns with keep-alive {judged[weakest]:.2f} ({weakest[0]}; "
                  f"target >= {GUNICORN_RATIO})")
    else:
        versus = f"granian/gunicorn not judged ({GUNICORN_AT} connections with keep-alive not measured)"
    reached = to_bare[worst] >= BARE_RATIO and failures == 0 and bool(judged) and min(judged.values()) >= GUNICORN_RATIO
    top = results["granian", "open", CONNECTIONS[-1], KEEP_ALIVE[0]]["rps"]
    return (
        f"worst channel/bare {to_bare[worst]:.2f} ({worst[0]} at {worst[1]} conns, keep-alive {mode(worst[2])}; "
        f"target >= {BARE_RATIO}); {versus}; open channel on granian {top:,.0f} req/s at {CONNECTIONS[-1]} conns "
        f"keep-alive {mode(KEEP_ALIVE[0])}",
        reached,
    )


if __name__ == "__main__":
    common.run(main)
