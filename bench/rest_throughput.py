"""REST throughput: requests/s and p50/p99 latency with wrk, channel paths vs a bare Django view.

One gunicorn (config/gunicorn.conf.py: 2 sync workers, preloaded) serves bench.wsgi, which
is config/wsgi.py plus a /bench/ route to Django's full handler. Measured, interleaved at
1, 16 and 64 connections (wrk threads = min(connections, 2)) for BENCH_SECONDS (10) each:

* bare:  GET /bench/bare, a JSON view behind Django's whole middleware and URL resolver;
* open:  GET /rt/hello, a REST channel without security bound to a hello-world user service;
* basic: GET /rt/basic, the same service behind an HTTP Basic Auth security definition.

Target: each channel path reaches at least 0.7 of the bare view's requests/s. For
reference (the issue's figures on a machine like this): gunicorn 2 sync workers on a bare
Django JSON view ~4,900 req/s; Zato 3.2 with 2 workers, hello-world REST channel ~3,200
req/s, which Switchboard must beat.

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
TARGET_RATIO = 0.7
REF_BARE = 4900.0
REF_ZATO = 3200.0
USERNAME, PASSWORD = "bench-caller", "bench-secret-password"
AUTH = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()

HELLO = '''"""Hello world, for the throughput benchmark."""

from integration.services import Service


class Hello(Service):
    name = "bench.hello"

    def handle(self):
        self.response.payload = {"hello": "world"}
'''

TARGETS = [
    # key, label, path, headers
    ("bare", "bare Django JSON view (full stack)", "/bench/bare", {}),
    ("open", "REST channel, no security", "/rt/hello", {}),
    ("basic", "REST channel, HTTP Basic Auth", "/rt/basic", {"Authorization": AUTH}),
]


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
    common.recreate_database()
    common.setup_django(PICKUP_WATCH="false")
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


def check(port: int) -> None:
    """Every target answers 200 with the same JSON; the Basic channel refuses a caller without credentials."""
    for key, _, path, headers in TARGETS:
        status, body, _ = common.request(port, "GET", path, headers=headers)
        if status != 200 or json.loads(body) != {"hello": "world"}:
            raise SystemExit(f"{key}: GET {path} answered {status} {body[:200]!r}")
    status, _, _ = common.request(port, "GET", "/rt/basic")
    if status != 401:
        raise SystemExit(f"GET /rt/basic without credentials answered {status}, expected 401")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(binary: str, port: int, path: str, headers: dict[str, str], connections: int, seconds: int) -> dict:
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
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    argv.append(f"http://{common.HOST}:{port}{path}")
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1)),
        "non2xx": 0,
        "errors": 0,
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        result["non2xx"] = int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        # Sync workers close every connection after its response: wrk may count those closes as
        # read errors; connect errors and timeouts are real failures.
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


def main() -> int:
    binary = ensure_wrk()
    print(
        f"== REST throughput: wrk {SECONDS} s per target at {CONNECTIONS} connections (in {SLICES} interleaved "
        f"slices); gunicorn 2 sync workers =="
    )
    prepare()
    port = common.free_port()
    env = common.bench_env(
        PORT=str(port),
        WEB_WORKERS="2",
        PICKUP_DIR=str(common.empty_dir("rt-pickup")),
        DJANGO_SETTINGS_MODULE="bench.settings",
    )
    server = common.gunicorn("rest-throughput", "bench.wsgi:application", env)
    print(common.wait_for_quiet())
    results: dict[tuple[str, int], dict] = {}
    with common.stop_on_signals():
        try:
            server.start()
            common.wait_for_200(server, "/bench/bare", timeout=60)
            check(port)
            for _, _, path, headers in TARGETS:
                wrk(binary, port, path, headers, 16, WARMUP)
            # Each run is cut into slices taken round-robin across the three targets, so any
            # background load on the machine hits the baseline and the channels alike.
            slice_s = max(1, round(SECONDS / SLICES))
            slices: dict[tuple[str, int], list[dict]] = {}
            account = common.CPUAccount(server.proc.pid)
            account.start()
            for connections in CONNECTIONS:
                for _ in range(SLICES):
                    for key, _, path, headers in TARGETS:
                        slices.setdefault((key, connections), []).append(
                            wrk(binary, port, path, headers, connections, slice_s)
                        )
                        if not server.alive():
                            raise SystemExit(f"the server died; see {server.log_path}")
            results = {k: combine(v) for k, v in slices.items()}
            foreign, available = account.foreign()
        finally:
            server.stop()

    rows = []
    for connections in CONNECTIONS:
        bare = results["bare", connections]["rps"]
        for key, label, _, _ in TARGETS:
            r = results[key, connections]
            rows.append(
                [
                    label,
                    connections,
                    f"{r['rps']:,.0f}",
                    f"{r['min']:,.0f}-{r['max']:,.0f}",
                    f"{r['p50']:.2f}",
                    f"{r['p99']:.2f}",
                    r["non2xx"],
                    r["errors"],
                    f"{r['rps'] / bare:.2f}",
                ]
            )
    print(
        common.table(
            ["target", "conns", "req/s", "slices req/s", "p50 ms", "p99 ms", "non-2xx", "errors", "ratio to bare"], rows
        )
    )
    failures = sum(r["non2xx"] + r["errors"] for r in results.values())
    ratios = {
        (key, c): results[key, c]["rps"] / results["bare", c]["rps"] for key in ("open", "basic") for c in CONNECTIONS
    }
    worst_key, worst_c = min(ratios, key=ratios.get)
    best_open = max(results["open", c]["rps"] for c in CONNECTIONS)
    best_bare = max(results["bare", c]["rps"] for c in CONNECTIONS)
    print(
        "channel / bare ratios: "
        + ", ".join(f"{k}@{c}={v:.2f}" for (k, c), v in ratios.items())
        + f"   (target >= {TARGET_RATIO})"
    )
    print(
        f"reference (issue): bare Django view ~{REF_BARE:,.0f} req/s -> here {best_bare:,.0f} "
        f"(ratio {best_bare / REF_BARE:.2f}); Zato 3.2 hello-world channel ~{REF_ZATO:,.0f} req/s -> "
        f"ours {best_open:,.0f} (ratio {best_open / REF_ZATO:.2f}, must be > 1: "
        f"{'yes' if best_open > REF_ZATO else 'NO'})"
    )
    print(
        f"same comparison relative to the bare view (machine-independent): Zato reached "
        f"{REF_ZATO / REF_BARE:.2f} of bare Django; our open channel reaches {best_open / best_bare:.2f} "
        f"(best vs best)"
    )
    if failures:
        print(f"WARNING: {failures} failed requests (non-2xx, connect errors or timeouts); see {server.log_path}")
    share = foreign / available if available else 0.0
    print(
        f"CPU used by other processes during the measurement: {foreign:.1f} s of {available:.0f} s available "
        f"({share:.0%})" + (" -- WARNING: figures disturbed by other work on this machine" if share > 0.05 else "")
    )
    reached = min(ratios.values()) >= TARGET_RATIO and failures == 0
    print(
        common.result_line(
            "rest_throughput",
            f"worst channel/bare ratio {ratios[worst_key, worst_c]:.2f} ({worst_key} at {worst_c} conns; "
            f"target >= {TARGET_RATIO}); open channel best {best_open:,.0f} req/s vs Zato's {REF_ZATO:,.0f} "
            f"({'beaten' if best_open > REF_ZATO else 'NOT beaten'} on this machine)",
            reached,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
