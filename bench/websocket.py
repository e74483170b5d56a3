"""WebSocket channels (issue 6): idle connections per daphne process, push fan-out latency, round trips.

Every server here is one daphne process (``python -m daphne --websocket_timeout -1``, default
pings) on the bench database and Redis (database 2 of ``REDIS_URL``'s server), serving
``config.asgi:application`` with the Redis channel layer, exactly as in production. The
clients are asyncio coroutines in this process using aiohttp's WebSocket client; each
connection has a reader task that answers daphne's pings and timestamps what arrives.
The sockets are opened ``BENCH_WS_OPEN_CONCURRENCY`` (100) at a time, and this process
and daphne get ``ulimit -n`` raised to the hard limit. A connection the server closes with
4503 (it could not join its push groups: "reconnect in a few seconds"; bench/README.md says
why a burst on a fresh daphne gets a few) is opened again, as a real client does, after 1 s,
then 2, 4 ... at most ``BENCH_WS_RETRIES`` (5) times; the retries are counted and printed.

The code: ``websocket_clients.py`` (settings, set-up, the client, the pusher),
``websocket_scenarios.py`` (the three scenarios), ``websocket_echo.py`` (the baseline app),
and this file (the report, and the entry point, also of the ``--pusher`` process).

1. **Idle connections.** ``BENCH_WS_CONNECTIONS`` (5,000) browsers on a JWT channel: each
   has a token of its own (``accounts.tokens.issue``, a session in Redis, as the frontend's
   ``zato.security.jwt.create-token`` call gives one per browser), connects and sends it as
   its first message (browsers cannot set headers), and waits for ``authenticated``. Then
   they stay silent for ``BENCH_WS_IDLE_SECONDS`` (10). Measured: daphne's RSS (``/proc``)
   at zero connections after a warm-up of 20 connections, and with all of them open;
   memory per connection is the difference over the count. Baseline, in the same run: the
   same daphne serving ``echo_application`` (``websocket_echo.py``) (a WebSocket echo ASGI app with no
   Django and no Channels) with the same number of connections, each sending one message
   and receiving its echo. At the end every connection must still be open, answer a ping
   and receive one push sent to the channel (its time to the last client is printed), and
   the channel must list every client in the database. Also printed: connections opened
   per second and daphne's CPU while it holds them idle.
2. **Push fan-out.** ``BENCH_WS_FANOUT`` (1,000) such clients on one daphne process; a
   separate process (this file with ``--pusher``, like a Celery worker) calls
   ``integration.push.push(data, channel=...)`` ``BENCH_WS_PUSHES`` (20) times
   ``BENCH_WS_PUSH_INTERVAL`` (0.5 s) apart after one warm-up push; each message carries
   ``time.time()`` taken just before the call; latency = receipt time - that stamp, over
   every client and push: p50, p99 and the median time until a push's last client had it,
   and daphne's CPU per push (less its idle rate). Target: p99 under 250 ms. Then the same
   with the clients split over two daphne processes. Baseline, first: the echo app's
   ``POST /broadcast`` with the same frame to the same number of clients on one daphne
   (daphne's own floor: no channel layer, no consumers). Every run uses a channel-layer
   prefix of its own (``bench-ws-<pid>``), removed at the end.
3. **Round trips.** Request/reply over one socket on a channel without security (and no
   per-connection rate limit) against the same service (``bench.hello``) on a REST
   channel, ``POST`` with the same JSON payload: sequentially over one WebSocket and with
   ``BENCH_WS_PIPELINE`` (8) requests in flight on one WebSocket, against sequential
   requests over one HTTP/1.1 keep-alive connection to production's WSGI app on gunicorn
   (``bench/gunicorn_baseline.conf.py`` with ``--worker-class gthread``: sync workers close
   the connection after every response). Also shown: the production server (granian as
   ``manage.py serve`` starts it, keep-alive) and REST on the same daphne (Django's ASGI
   handler). ``BENCH_WS_RT_SECONDS`` (6) per target in ``BENCH_WS_RT_SLICES`` (4) slices
   taken round-robin. All use aiohttp, so the client's own cost is alike.

    .venv/bin/python bench/websocket.py
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.websocket_clients import (
    FANOUT_CLIENTS,
    IDLE_CONNECTIONS,
    IDLE_SECONDS,
    PIPELINE,
    PUSH_INTERVAL,
    PUSHES,
    RETRY_CODE,
    RT_SECONDS,
    RT_SLICES,
    TARGET_CONNECTIONS,
    TARGET_P99_MS,
    WARMUP_CONNECTIONS,
    drop_layer_keys,
    issue_tokens,
    prepare,
    pusher_main,
    raise_file_limit,
)
from bench.websocket_scenarios import fan_outs, idle_connections, round_trip_figures

# --- Report ------------------------------------------------------------------------------------------


def retried(reasons: list[str]) -> str:
    """One line on the connections the server closed with 4503 and the client opened again."""
    why = "; ".join(f"{count} x {reason!r}" for reason, count in Counter(reasons).most_common(3))
    return f"{len(reasons):,} connection attempts closed with {RETRY_CODE} and opened again ({why})"


def report_idle(idle: dict[str, dict[str, Any]], limit: int) -> tuple[bool, str]:
    ours, echo = idle["ours"], idle["echo"]

    def per_connection(r: dict[str, Any]) -> float:
        return (r["rss1"] - r["rss0"]) * 1024 / max(1, r["opened"])

    print(
        f"\n-- 1. idle connections: {IDLE_CONNECTIONS:,} per daphne process, held {IDLE_SECONDS:g} s "
        f"(ulimit -n {limit}) --"
    )
    rows = []
    for label, r in (("echo ASGI app, no Django (baseline)", echo), ("JWT channel, first-message auth", ours)):
        rows.append(
            [
                label,
                f"{r['opened']:,}",
                f"{r['opened'] / r['open_s']:,.0f}",
                f"{r['rss0']:.1f}",
                f"{r['rss1']:.1f}",
                f"{per_connection(r):.1f}",
                f"{r['rss2']:.1f}",
                f"{r['idle_cpu'] * 100:.1f}",
                f"{r['threads0']}/{r['threads1']}",
                f"{r['still_open_after']:,}",
                f"{r['answered']:,}",
            ]
        )
    print(
        common.table(
            [
                "server",
                "opened",
                "opened/s",
                "RSS at 0 MB",
                "RSS at N MB",
                "KB/conn",
                "RSS after close",
                "idle CPU %",
                "threads 0/N",
                "open at end",
                "answered ping",
            ],
            rows,
        )
    )
    ratio = per_connection(ours) / per_connection(echo)
    print(
        f"memory per connection: ours {per_connection(ours):.1f} KB, daphne alone {per_connection(echo):.1f} KB "
        f"(ratio {ratio:.2f}); daphne's RSS {ours['rss0']:.0f} MB at zero connections"
    )
    print(
        f"one push to all {ours['opened']:,}: {ours['push_received']:,} received, the last after "
        f"{ours['push_last_ms']:.0f} ms; {ours['rows']:,} clients listed for the channel in the database"
    )
    for key, r in idle.items():
        if r["retries"]:
            print(f"{key}: {retried(r['retries'])}")
        if r["open_errors"]:
            print(f"{key}: {len(r['open_errors'])} connections failed, e.g. {r['open_errors'][:3]}")
        if r["closed_codes"]:
            print(f"{key}: connections closed while idle, codes {r['closed_codes']}")
    every = ours["opened"]
    reached = (
        every >= TARGET_CONNECTIONS
        and ours["still_open_after"] == every
        and ours["answered"] == every
        and ours["push_received"] == every
        and ours["rows"] == every
    )
    text = (
        f"{every:,} idle connections held by one daphne, all open and answering; {per_connection(ours):.1f} KB "
        f"each ({ratio:.2f} x daphne alone, {per_connection(echo):.1f} KB)"
    )
    return reached, text


def report_fanout(fan: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    print(
        f"\n-- 2. push fan-out: {FANOUT_CLIENTS:,} clients, {PUSHES} pushes {PUSH_INTERVAL:g} s apart from "
        "another process; latency = receipt - stamp taken before the push call --"
    )
    labels = {
        "echo": "echo app, POST /broadcast, 1 daphne (floor)",
        "ours-1": "push(data, channel=...), 1 daphne",
        "ours-2": "push(data, channel=...), 2 daphne",
    }
    floor = fan["echo"]["p99"]
    rows = [
        [
            labels[key],
            f"{r['received']:,}/{r['expected']:,}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['max']:.1f}",
            f"{r['last_median']:.1f}",
            f"{r['call_ms']:.1f}",
            f"{r['cpu_per_push_ms']:.0f}",
            f"{r['p99'] / floor:.2f}",
            f"{r['still_open']:,}",
            f"{len(r['retries']):,}",
        ]
        for key, r in fan.items()
    ]
    headers = [
        "sender",
        "received",
        "p50 ms",
        "p99 ms",
        "max ms",
        "last client ms (median)",
        "push call ms",
        "server CPU ms/push",
        "p99 / floor",
        "open at end",
        f"reconnected after {RETRY_CODE}",
    ]
    print(common.table(headers, rows))
    for key, r in fan.items():
        if r["retries"]:
            print(f"{key}: {retried(r['retries'])}")

    def ok(r: dict[str, Any]) -> bool:
        return r["p99"] < TARGET_P99_MS and r["received"] == r["expected"] and r["clients"] == FANOUT_CLIENTS

    one, two = fan["ours-1"], fan["ours-2"]
    reached = ok(one) or ok(two)
    text = (
        f"push to {one['clients']:,} clients: p50 {one['p50']:.0f} ms / p99 {one['p99']:.0f} ms on one daphne, "
        f"p50 {two['p50']:.0f} / p99 {two['p99']:.0f} ms on two (daphne's own floor p99 {floor:.0f} ms; "
        f"target p99 < {TARGET_P99_MS:.0f} ms on one or two)"
    )
    return reached, text


def report_round_trips(rt: dict[str, dict[str, float]]) -> str:
    print(
        f"\n-- 3. request/reply round trips, same service (bench.hello), {RT_SECONDS:g} s per target in "
        f"{RT_SLICES} slices --"
    )
    labels = {
        "ws": "WebSocket, one socket, sequential",
        "ws-pipelined": f"WebSocket, one socket, {PIPELINE} in flight",
        "rest-gunicorn-keepalive": "REST POST, keep-alive, gunicorn gthread (baseline)",
        "rest-production": "REST POST, keep-alive, granian (production)",
        "rest-daphne": "REST POST, keep-alive, the same daphne",
    }
    base = rt["rest-gunicorn-keepalive"]["rps"]
    rows = [
        [
            labels[key],
            f"{r['rps']:,.0f}",
            f"{r['p50_us']:,.0f}",
            f"{r['p99_us']:,.0f}",
            f"{r['connections']:,}",
            f"{r['rps'] / base:.2f}",
        ]
        for key, r in rt.items()
    ]
    print(
        common.table(["target", "round trips/s", "p50 µs", "p99 µs", "new TCP connections", "ratio to baseline"], rows)
    )
    ws = rt["ws"]["rps"]
    return (
        f"round trips over one socket {ws:,.0f}/s = {ws / base:.2f} x REST keep-alive ({base:,.0f}/s, gunicorn "
        f"gthread), {ws / rt['rest-production']['rps']:.2f} x production granian, "
        f"{ws / rt['rest-daphne']['rps']:.2f} x REST on daphne"
    )


def main() -> tuple[str, bool]:
    limit = raise_file_limit()
    print(
        f"== WebSocket channels: {IDLE_CONNECTIONS:,} idle connections, fan-out to {FANOUT_CLIENTS:,}, "
        "round trips against REST; daphne on the Redis channel layer =="
    )
    migrated = prepare()
    began = time.monotonic() - migrated  # from when this run had the bench lock
    issued, took = issue_tokens(max(IDLE_CONNECTIONS, FANOUT_CLIENTS) + WARMUP_CONNECTIONS)
    print(f"{len(issued):,} JWT tokens issued in {took:.1f} s (one session each in Redis)")
    print(common.wait_for_quiet())
    try:
        idle = idle_connections(issued)
        fan = fan_outs(issued)
        rt = round_trip_figures()
    finally:
        drop_layer_keys()
    idle_ok, idle_text = report_idle(idle, limit)
    fan_ok, fan_text = report_fanout(fan)
    rt_text = report_round_trips(rt)
    print(f"\n(took {time.monotonic() - began:.0f} s, {migrated:.0f} s of it migrating the bench database)")
    return f"{idle_text}; {fan_text}; {rt_text}", idle_ok and fan_ok


def pusher(target: str, count: str, interval: str) -> None:
    """``--pusher TARGET COUNT INTERVAL``: this file as the pushing process (``websocket_clients.pusher_main``)."""
    pusher_main(target, int(count), float(interval))


if __name__ == "__main__":
    common.run(main, helpers={"--pusher": pusher})
