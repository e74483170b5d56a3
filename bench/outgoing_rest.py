"""Outgoing REST: a service calling a REST backend end to end, and the cost of ``self.out`` over requests directly.

Both sides call the same loopback REST backend (``tests/servers/rest_backend.py``, its own
process) for ``GET /customers/1`` with an ``X-Zato-CID`` header and parse the JSON answer:

* baseline: a ``requests.Session`` with an adapter of the same pool size, called directly;
* ours: a ``connections.rest.RestConnection`` (path parameters filled, CID header, JSON parsed,
  errors translated), built the way the snapshot builds it.

Each runs in alternating slices at 1 and 16 concurrent threads; the figure is ours / baseline in
calls per second (target: at least 0.8). Then the token cache: the cost of getting a token that
this process already holds, and one that only the shared cache (Redis) holds.

End to end (no target in the issue; the figure says what a channel, a service and an outgoing
call cost on top of the backend's own answer): wrk drives, at ``BENCH_OUT_CONNECTIONS`` (16,64)
connections with keep-alive, in interleaved slices,

* baseline: the loopback backend directly, ``GET /customers/1``;
* ours: ``GET /rt/outgoing``, a REST channel without security on ``manage.py serve``'s HTTP
  server (granian, 2 workers, as bench/rest_throughput.py starts it), bound to a service whose
  ``handle()`` makes that same call through ``self.out.rest["bench backend"].conn.get()`` and
  returns the backend's JSON;

and the figure is ours / baseline in requests per second, with both latencies.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

TARGET = 0.8
E2E_CONNECTIONS = [int(c) for c in os.environ.get("BENCH_OUT_CONNECTIONS", "16,64").split(",")]
CALLER = '''"""One outgoing REST call per request, for the end-to-end benchmark."""

from integration.services import Service


class CallBackend(Service):
    name = "bench.outgoing"

    def handle(self):
        self.response.payload = self.out.rest["bench backend"].conn.get(self.cid, {"cust_id": 1}).data
'''


def rate(call: object, threads: int, seconds: float) -> float:
    """Calls per second of ``call`` from ``threads`` threads during ``seconds``."""
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        n = 0
        while time.monotonic() < stop:
            call()  # type: ignore[operator]
            n += 1
        counts[index] = n

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def overhead(backend_url: str, seconds: float, slices: int) -> list[float]:
    """``self.out`` against requests directly, in this process, at 1 and 16 threads; prints the table."""
    import requests
    from requests.adapters import HTTPAdapter

    from connections.rest import RestConnection, RestSettings

    cid = "0123456789abcdef01234567"
    ours = RestConnection(RestSettings("bench", backend_url, "/customers/{cust_id}", pool_size=32))
    session = requests.Session()
    session.trust_env = False  # as the connection's session: no per-call look-up of proxy variables
    session.mount("http://", HTTPAdapter(pool_maxsize=32))
    url = backend_url + "/customers/1"

    def direct() -> None:
        session.get(url, headers={"X-Zato-CID": cid, "Accept": "application/json"}, timeout=10).json()

    def through_out() -> None:
        ours.get(cid, {"cust_id": 1})

    rows, ratios = [], []
    for threads in (1, 16):
        rate(direct, threads, min(1.0, seconds))  # warm both pools
        rate(through_out, threads, min(1.0, seconds))
        base, mine = [], []
        for _ in range(slices):
            base.append(rate(direct, threads, seconds / slices))
            mine.append(rate(through_out, threads, seconds / slices))
        ratio = sum(mine) / sum(base)
        ratios.append(ratio)
        rows.append([threads, f"{sum(base) / slices:.0f}", f"{sum(mine) / slices:.0f}", f"{ratio:.2f}"])
    ours.close()
    session.close()
    print("Outgoing REST call vs requests directly (GET /customers/1 on the loopback backend)")
    print(common.table(["threads", "direct calls/s", "self.out calls/s", "ratio"], rows))
    return ratios


def token_hit() -> tuple[float, float]:
    """Microseconds to get a token held by this process, and one only the shared cache holds."""
    from accounts import oauth

    config = oauth.ClientConfig("bench", "http://127.0.0.1:9/token", "bench-client", "bench-secret-" + str(os.getpid()))
    source = oauth.TokenSource(config)
    token = oauth.parse_token_response({"access_token": "t" * 40, "expires_in": 3600}, time.time())
    oauth.store().put(source.key, token, time.time())
    n = 20000 if not os.environ.get("BENCH_SMOKE") else 200
    started = time.perf_counter()
    for _ in range(n):
        source.token()
    local_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n // 20):
        source._local = None  # only the shared cache holds it
        source.token()
    shared_us = (time.perf_counter() - started) / (n // 20) * 1e6
    oauth.store().invalidate(source.key, token.access_token)
    print(f"\nToken cache hit: {local_us:.2f} µs held by this process, {shared_us:.0f} µs from the shared cache "
          f"({type(oauth.store()).__name__})")
    return local_us, shared_us


def prepare_channel(backend_url: str) -> None:
    """The service, its REST channel and the outgoing connection it calls, in the bench database."""
    from django.db import connections

    from connections.models import OutgoingRest
    from integration.deploy import deploy_sources
    from integration.models import DeployedService, RestChannel, ServiceModule

    (outcome,) = deploy_sources([("bench_outgoing.py", CALLER)], ServiceModule.Origin.CLI)
    if not outcome.ok:
        raise SystemExit(outcome.error)
    OutgoingRest.objects.create(name="bench backend", address=backend_url, url_path="/customers/{cust_id}",
                                timeout=10.0, pool_size=64)
    RestChannel.objects.create(name="bench.outgoing", method="GET", url_path="/rt/outgoing",
                               service=DeployedService.objects.get(name="bench.outgoing"))
    connections.close_all()


def end_to_end(backend_url: str, seconds: float, slices: int) -> dict[int, float]:
    """wrk against the backend directly and against the channel whose service calls it; ours / direct by connections."""
    from bench import rest_throughput as rt

    binary = rt.ensure_wrk()
    prepare_channel(backend_url)
    env = common.bench_env(PORT=str(common.free_port()), WEB_WORKERS="2", DJANGO_SETTINGS_MODULE="bench.settings",
                           PICKUP_DIR=str(common.empty_dir("outgoing-pickup")))
    server = common.web("outgoing-rest-granian", "bench.wsgi:application", env)
    backend_port = int(backend_url.rsplit(":", 1)[1])
    targets = {"direct": (backend_port, "/customers/1"), "channel": (server.port, "/rt/outgoing")}
    headers = {"Accept": "application/json"}
    slice_s = max(1, round(seconds / slices))
    measured: dict[tuple[str, int], list[dict]] = {}
    with server:
        common.wait_for_200(server, "/rt/outgoing", timeout=60)
        status, body, _ = common.request(server.port, "GET", "/rt/outgoing")
        direct = common.request(backend_port, "GET", "/customers/1", headers=headers)[1]
        if status != 200 or json.loads(body)["customer"] != json.loads(direct)["customer"]:  # "echo" differs
            raise SystemExit(f"GET /rt/outgoing answered {status} {body[:200]!r}, not the backend's {direct[:200]!r}")
        for port, path in targets.values():
            rt.wrk(binary, port, path, headers, 16, max(1, common.env_int("BENCH_WARMUP_SECONDS", 2)))
        for connections in E2E_CONNECTIONS:
            for _ in range(slices):
                for key, (port, path) in targets.items():
                    measured.setdefault((key, connections), []).append(
                        rt.wrk(binary, port, path, headers, connections, slice_s))
                if not server.alive():
                    raise SystemExit(f"the server died; see {server.log_path}")
    results = {key: rt.combine(runs) for key, runs in measured.items()}
    rows, ratios = [], {}
    for connections in E2E_CONNECTIONS:
        base, ours = results["direct", connections], results["channel", connections]
        ratios[connections] = ours["rps"] / base["rps"]
        failed = sum(r["non2xx"] + r["errors"] for r in (base, ours))
        rows.append([connections, f"{base['rps']:,.0f}", f"{base['p50']:.2f}", f"{ours['rps']:,.0f}",
                     f"{ours['p50']:.2f}", f"{ours['p99']:.2f}", failed, f"{ratios[connections]:.2f}"])
    print("\nEnd to end: wrk -> REST channel -> service -> self.out.rest -> backend, against wrk -> backend")
    print(common.table(["conns", "direct req/s", "direct p50 ms", "channel req/s", "channel p50 ms",
                        "channel p99 ms", "failed", "ratio"], rows))
    return ratios


def main() -> tuple[str, bool]:
    from tests.servers.http_handles import RestBackend

    seconds = common.env_float("BENCH_SECONDS", 3.0)
    slices = common.env_int("BENCH_SLICES", 3)
    common.bench_django()
    print(common.wait_for_quiet())
    with RestBackend(log_dir=Path(tempfile.mkdtemp(prefix="bench-rest-")), security="none") as backend:
        ratios = overhead(backend.url, seconds, slices)
        local_us, shared_us = token_hit()
        e2e = end_to_end(backend.url, common.env_float("BENCH_E2E_SECONDS", 10.0 if seconds >= 3 else seconds),
                         slices)
    text = (f"self.out / direct requests: {ratios[0]:.2f} at 1 thread, {ratios[1]:.2f} at 16 (target >= {TARGET}); "
            f"token hit {local_us:.1f} µs local, {shared_us:.0f} µs shared; end to end channel+service+call / "
            "backend direct: " + ", ".join(f"{v:.2f} at {c} conns" for c, v in e2e.items()))
    return text, min(ratios) >= TARGET


if __name__ == "__main__":
    common.run(main)
