"""The WebSocket benchmark's three scenarios; ``bench/websocket.py`` runs them and prints the figures.

Each starts its own daphne processes (``websocket_clients.daphne``), measures, and stops them
in a ``finally``: ``idle_connections`` (many silent authenticated clients on one process, against
the echo app), ``fan_outs`` (pushes from another process to every client, against the echo
app's broadcast) and ``round_trip_figures`` (request/reply over one WebSocket against REST).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import common
from bench.websocket_clients import (
    ECHO_APP,
    FANOUT_CLIENTS,
    HELLO_RESPONSE,
    IDLE_CONNECTIONS,
    IDLE_SECONDS,
    JWT_CHANNEL,
    JWT_PATH,
    OPEN_PATH,
    PAYLOAD,
    PIPELINE,
    PLATFORM_APP,
    PUSH_INTERVAL,
    PUSHES,
    REST_PATH,
    RT_SECONDS,
    RT_SLICES,
    WARMUP_CONNECTIONS,
    Client,
    auth_message,
    close_all,
    daphne,
    echo_message,
    open_clients,
    pinged,
    receipts,
    rss_mb,
    run_pusher,
    servers_cpu,
    session,
    started,
    threads,
)

# --- 1. Idle connections -----------------------------------------------------------------------------


async def hold(
    server: common.Server, path: str, count: int, first: Callable[[int], dict[str, Any]], expect: str, ours: bool
) -> dict[str, Any]:
    """Open ``count`` connections to one daphne, hold them idle, check them, close them; figures."""
    url = f"ws://{common.HOST}:{server.port}{path}"
    pid = server.proc.pid
    result: dict[str, Any] = {}
    async with session() as http:
        warm = await open_clients(http, [url], WARMUP_CONNECTIONS, first, expect)
        if warm.errors:
            raise RuntimeError(f"warm-up connections failed: {warm.errors[:3]}")
        await close_all(warm.clients)
        await asyncio.sleep(2.0)
        result["rss0"], result["threads0"] = rss_mb(pid), threads(pid)
        opened = await open_clients(http, [url], count, first, expect)
        clients = opened.clients
        try:
            result.update(
                opened=len(clients),
                open_errors=opened.errors,
                open_s=opened.seconds,
                retries=warm.retries + opened.retries,
            )
            await asyncio.sleep(2.0)  # the rows of the last clients are written in the background
            cpu0, t0 = common.group_cpu(pid), time.monotonic()
            await asyncio.sleep(IDLE_SECONDS)
            result["idle_cpu"] = (common.group_cpu(pid) - cpu0) / (time.monotonic() - t0)
            result["rss1"], result["threads1"] = rss_mb(pid), threads(pid)
            result["still_open"] = sum(client.open for client in clients)
            result["closed_codes"] = sorted({c.close_code for c in clients if c.close_code is not None})
            if ours:
                await run_pusher(JWT_CHANNEL, 0, 0.0)  # the warm-up push alone: one push to every client
                got = await receipts(clients, 1)
                result["push_received"] = len(got)
                result["push_last_ms"] = max((lat for _, lat in got), default=float("nan")) * 1000
                result["rows"] = await _client_rows()
            result["answered"] = await pinged(clients)
            result["still_open_after"] = sum(client.open for client in clients)
        finally:
            await close_all(clients)
    await asyncio.sleep(2.0)
    result["rss2"] = rss_mb(pid)
    return result


async def _client_rows() -> int:
    from asgiref.sync import sync_to_async

    def count() -> int:
        from django.db import connection

        from integration.models import WebSocketClient

        try:
            return WebSocketClient.objects.filter(channel__name=JWT_CHANNEL).count()
        finally:
            connection.close()

    return await sync_to_async(count, thread_sensitive=False)()


def idle_connections(issued: list[str]) -> dict[str, dict[str, Any]]:
    results = {}
    for key, app, path, first, expect in (
        ("echo", ECHO_APP, "/echo", echo_message, "hello"),
        ("ours", PLATFORM_APP, JWT_PATH, auth_message(issued), "authenticated"),
    ):
        server = daphne(f"ws-idle-{key}", app)
        try:
            started(server)
            results[key] = asyncio.run(hold(server, path, IDLE_CONNECTIONS, first, expect, key == "ours"))
            if not server.alive():
                raise SystemExit(f"daphne died; see {server.log_path}")
        finally:
            server.stop()
    return results


# --- 2. Fan-out --------------------------------------------------------------------------------------


async def fan_out(servers: list[common.Server], issued: list[str] | None) -> dict[str, Any]:
    """Clients spread over ``servers``; ours (``issued`` tokens) or the echo app's broadcast (``None``)."""
    path, first, expect = (
        (JWT_PATH, auth_message(issued), "authenticated") if issued else ("/echo", echo_message, "hello")
    )
    target = JWT_CHANNEL if issued else str(servers[0].port)
    urls = [f"ws://{common.HOST}:{server.port}{path}" for server in servers]
    cpu0 = sum(common.group_cpu(server.proc.pid) for server in servers)
    async with session() as http:
        opened = await open_clients(http, urls, FANOUT_CLIENTS, first, expect)
        clients = opened.clients
        try:
            if opened.errors:
                raise RuntimeError(f"{len(opened.errors)} connections failed, e.g. {opened.errors[:3]}")
            await asyncio.sleep(2.0)  # the rows of the last clients are written
            cpu1, t1 = servers_cpu(servers), time.monotonic()
            calls = await run_pusher(target, PUSHES, PUSH_INTERVAL)
            got = await receipts(clients, PUSHES + 1)
            cpu2, t2 = servers_cpu(servers), time.monotonic()
            await asyncio.sleep(2.0)  # what the servers spend holding the clients, subtracted below
            cpu3, t3 = servers_cpu(servers), time.monotonic()
            still_open = sum(client.open for client in clients)
        finally:
            await close_all(clients)
    measured = [(seq, lat) for seq, lat in got if seq >= 0]
    latencies = [lat * 1000 for _, lat in measured]
    last: dict[int, float] = {}
    for seq, lat in measured:
        last[seq] = max(last.get(seq, 0.0), lat * 1000)
    return {
        "clients": len(clients),
        "received": len(measured),
        "expected": len(clients) * PUSHES,
        "p50": common.percentile(latencies, 50),
        "p99": common.percentile(latencies, 99),
        "max": max(latencies),
        "last_median": common.median(list(last.values())),
        "call_ms": common.median(calls) * 1000,
        "still_open": still_open,
        "retries": opened.retries,
        "cpu_open": cpu1 - cpu0,
        "cpu_per_push_ms": max(0.0, (cpu2 - cpu1) - (cpu3 - cpu2) / (t3 - t2) * (t2 - t1)) / (PUSHES + 1) * 1000,
    }


def fan_outs(issued: list[str]) -> dict[str, dict[str, Any]]:
    """The echo app's broadcast on one daphne (the floor), then ours on one and on two daphne processes."""
    results = {}
    for key, app, processes in (
        ("echo", ECHO_APP, 1),
        ("ours-1", PLATFORM_APP, 1),
        ("ours-2", PLATFORM_APP, 2),
    ):
        servers = [daphne(f"ws-fanout-{key}-{n}", app) for n in range(processes)]
        try:
            for server in servers:
                started(server)
            results[key] = asyncio.run(fan_out(servers, None if key == "echo" else issued))
            if not all(server.alive() for server in servers):
                raise SystemExit(f"daphne died; see {common.LOG_DIR}")
        finally:
            for server in servers:
                server.stop()
    return results


# --- 3. Round trips ----------------------------------------------------------------------------------


REST_TARGETS = {  # key -> server in round_trip_figures
    "rest-gunicorn-keepalive": "gunicorn-gthread",
    "rest-production": "granian",
    "rest-daphne": "daphne",
}


async def round_trips(ports: dict[str, int]) -> dict[str, dict[str, float]]:
    """Round trips/s, p50/p99 per target, slices round-robin; ``ports``: server name -> port."""
    import aiohttp

    opened = dict.fromkeys(REST_TARGETS, 0)

    def rest_session(key: str) -> Any:
        trace = aiohttp.TraceConfig()

        async def created(*_: Any) -> None:
            opened[key] += 1

        trace.on_connection_create_end.append(created)
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace])

    ws_http = session()
    rest = {key: rest_session(key) for key in REST_TARGETS}
    body = json.dumps(PAYLOAD).encode()
    headers = {"Content-Type": "application/json"}
    counter = iter(range(1, 1 << 60))
    try:
        url = f"ws://{common.HOST}:{ports['daphne']}{OPEN_PATH}"
        sequential, piped = Client(await ws_http.ws_connect(url)), Client(await ws_http.ws_connect(url))

        async def over_ws(client: Client) -> None:
            n = next(counter)
            reply = await client.call({"id": n, "payload": PAYLOAD})
            if reply.get("status") != 200 or reply.get("response") != HELLO_RESPONSE:
                raise RuntimeError(f"WebSocket reply {str(reply)[:200]}")

        def over_rest(key: str) -> Callable[[], Awaitable[None]]:
            http, rest_url = rest[key], f"http://{common.HOST}:{ports[REST_TARGETS[key]]}{REST_PATH}"

            async def call() -> None:
                async with http.post(rest_url, data=body, headers=headers) as response:
                    answer = await response.read()
                    if response.status != 200 or json.loads(answer) != HELLO_RESPONSE:
                        raise RuntimeError(f"REST answer {response.status} {answer[:200]!r}")

            return call

        targets: dict[str, tuple[Callable[[], Awaitable[None]], int]] = {
            "ws": (lambda: over_ws(sequential), 1),
            "ws-pipelined": (lambda: over_ws(piped), PIPELINE),
            **{key: (over_rest(key), 1) for key in REST_TARGETS},
        }

        async def run(call: Callable[[], Awaitable[None]], workers: int, seconds: float) -> tuple[int, float, list]:
            end = time.perf_counter() + seconds
            latencies: list[float] = []

            async def worker() -> None:
                while time.perf_counter() < end:
                    began = time.perf_counter()
                    await call()
                    latencies.append(time.perf_counter() - began)

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workers)))
            return len(latencies), time.perf_counter() - began, latencies

        for call, workers in targets.values():
            await run(call, workers, 1.0)  # warm-up
        for key in opened:
            opened[key] = 0
        totals: dict[str, list[Any]] = {key: [0, 0.0, []] for key in targets}
        for _ in range(RT_SLICES):
            for key, (call, workers) in targets.items():
                count, took, latencies = await run(call, workers, RT_SECONDS / RT_SLICES)
                totals[key][0] += count
                totals[key][1] += took
                totals[key][2].extend(latencies)
        await sequential.close()
        await piped.close()
    finally:
        for http in (ws_http, *rest.values()):
            await http.close()
    return {
        key: {
            "rps": count / took,
            "p50_us": common.percentile(lat, 50) * 1e6,
            "p99_us": common.percentile(lat, 99) * 1e6,
            "count": count,
            "connections": opened.get(key, 1),
        }
        for key, (count, took, lat) in totals.items()
    }


def gunicorn_server(name: str, *options: str) -> common.Server:
    """gunicorn (``bench/gunicorn_baseline.conf.py``, 2 workers) with production's app; options override them."""
    env = common.bench_env(
        PORT=str(common.free_port()),
        WEB_WORKERS="2",
        PICKUP_DIR=str(common.empty_dir(f"{name}-pickup")),
        VAR_DIR=str(common.VAR_DIR / name),  # a control socket of its own
    )
    argv = [
        common.PYTHON,
        "-m",
        "gunicorn",
        "-c",
        "bench/gunicorn_baseline.conf.py",
        *options,
        "config.wsgi:application",
    ]
    return common.Server(name, argv, env)


def production_server(name: str) -> common.Server:
    """The production HTTP server: granian as ``manage.py serve`` starts it, 2 workers."""
    env = common.bench_env(
        PORT=str(common.free_port()), WEB_WORKERS="2", PICKUP_DIR=str(common.empty_dir(f"{name}-pickup"))
    )
    return common.web(name, "config.wsgi:application", env)


def round_trip_figures() -> dict[str, dict[str, float]]:
    servers = {
        "daphne": daphne("ws-roundtrip"),
        "granian": production_server("ws-rt-granian"),
        # With threads: gunicorn's sync workers cannot keep a connection alive.
        "gunicorn-gthread": gunicorn_server(
            "ws-rt-gunicorn-gthread", "--worker-class", "gthread", "--threads", "2", "--keep-alive", "30"
        ),
    }
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            common.wait_for_200(server, "/zato/ping", timeout=60)
        figures = asyncio.run(round_trips({key: server.port for key, server in servers.items()}))
        if not all(server.alive() for server in servers.values()):
            raise SystemExit(f"a server died; see {common.LOG_DIR}")
        return figures
    finally:
        for server in servers.values():
            server.stop()
