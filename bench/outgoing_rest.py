"""Outgoing REST: the cost of ``self.out.rest[name].conn.get()`` over calling the backend with requests directly.

Both sides call the same loopback REST backend (``tests/servers/rest_backend.py``, its own
process) for ``GET /customers/1`` with an ``X-Zato-CID`` header and parse the JSON answer:

* baseline: a ``requests.Session`` with an adapter of the same pool size, called directly;
* ours: a ``connections.rest.RestConnection`` (path parameters filled, CID header, JSON parsed,
  errors translated), built the way the snapshot builds it.

Each runs in alternating slices at 1 and 16 concurrent threads; the figure is ours / baseline in
calls per second (target: at least 0.8). Then the token cache: the cost of getting a token that
this process already holds, and one that only the shared cache (Redis) holds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

TARGET = 0.8


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


def main() -> None:
    common.setup_django()
    import requests
    from requests.adapters import HTTPAdapter

    from accounts import oauth
    from connections.rest import RestConnection, RestSettings
    from tests.servers.http_handles import RestBackend

    seconds = common.env_float("BENCH_SECONDS", 3.0)
    slices = common.env_int("BENCH_SLICES", 3)
    with RestBackend(log_dir=Path(tempfile.mkdtemp(prefix="bench-rest-")), security="none") as backend:
        cid = "0123456789abcdef01234567"
        ours = RestConnection(RestSettings("bench", backend.url, "/customers/{cust_id}", pool_size=32))
        session = requests.Session()
        session.trust_env = False  # as the connection's session: no per-call look-up of proxy variables
        adapter = HTTPAdapter(pool_maxsize=32)
        session.mount("http://", adapter)
        url = backend.url + "/customers/1"

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
    store_name = type(oauth.store()).__name__
    print(f"\nToken cache hit: {local_us:.2f} µs held by this process, {shared_us:.0f} µs from the shared cache "
          f"({store_name})")
    worst = min(ratios)
    print(common.result_line("outgoing_rest", f"self.out / direct requests: {ratios[0]:.2f} at 1 thread, "
                             f"{ratios[1]:.2f} at 16; token hit {local_us:.1f} µs local, {shared_us:.0f} µs shared",
                             worst >= TARGET))


if __name__ == "__main__":
    main()
