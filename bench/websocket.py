"""WebSocket channels (issue 6): idle connections per daphne process, push fan-out latency, round trips.

Every server here is one daphne process (``python -m daphne --websocket_timeout -1``, default
pings) on the bench database and Redis (database 2 of ``REDIS_URL``'s server), serving
``config.asgi:application`` with the Redis channel layer, exactly as in production. The
clients are asyncio coroutines in this process using aiohttp's WebSocket client; each
connection has a reader task that answers daphne's pings and timestamps what arrives.
The sockets are opened ``BENCH_WS_OPEN_CONCURRENCY`` (100) at a time, and this process
and daphne get ``ulimit -n`` raised to the hard limit.

1. **Idle connections.** ``BENCH_WS_CONNECTIONS`` (5,000) browsers on a JWT channel: each
   has a token of its own (``accounts.tokens.issue``, a session in Redis, as the frontend's
   ``zato.security.jwt.create-token`` call gives one per browser), connects and sends it as
   its first message (browsers cannot set headers), and waits for ``authenticated``. Then
   they stay silent for ``BENCH_WS_IDLE_SECONDS`` (10). Measured: daphne's RSS (``/proc``)
   at zero connections after a warm-up of 20 connections, and with all of them open;
   memory per connection is the difference over the count. Baseline, in the same run: the
   same daphne serving ``echo_application`` below (a WebSocket echo ASGI app with no
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

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

IDLE_CONNECTIONS = common.env_int("BENCH_WS_CONNECTIONS", 5000)
IDLE_SECONDS = common.env_float("BENCH_WS_IDLE_SECONDS", 10.0)
FANOUT_CLIENTS = common.env_int("BENCH_WS_FANOUT", 1000)
PUSHES = common.env_int("BENCH_WS_PUSHES", 20)
PUSH_INTERVAL = common.env_float("BENCH_WS_PUSH_INTERVAL", 0.5)
RT_SECONDS = common.env_float("BENCH_WS_RT_SECONDS", 6.0)
RT_SLICES = max(1, common.env_int("BENCH_WS_RT_SLICES", 4))
PIPELINE = common.env_int("BENCH_WS_PIPELINE", 8)
OPENING = common.env_int("BENCH_WS_OPEN_CONCURRENCY", 100)
WARMUP_CONNECTIONS = 20
TARGET_CONNECTIONS = 5000
TARGET_P99_MS = 250.0

JWT_TTL = 1800
JWT_CHANNEL, JWT_PATH = "bench-ws-browsers", "/ws/bench"
OPEN_CHANNEL, OPEN_PATH = "bench-ws-open", "/ws/bench-open"
REST_PATH = "/rt/bench-hello"
# A channel-layer prefix of this run's own: groups left by earlier runs (daphne stopped with
# connections open never leaves them) would otherwise be in every group_send.
LAYER_PREFIX = f"bench-ws-{os.getpid()}"
PAYLOAD = {"customer": 123, "action": "lookup"}
HELLO_RESPONSE = {"hello": "world"}


# --- The baseline application ----------------------------------------------------------------------


_sockets: set[Any] = set()  # the echo app's open connections (their ASGI send callables)


async def echo_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baselines: a WebSocket echo ASGI app with no Django and no Channels, served by the same daphne.

    ``POST /broadcast`` sends its body as a text frame to every connection of the process, one
    ``send`` after the other: daphne's own cost of a fan-out, without a channel layer or consumers.
    """
    if scope["type"] == "http":
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        if scope["path"] == "/broadcast":
            text = body.decode()
            for target in list(_sockets):
                await target({"type": "websocket.send", "text": text})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                _sockets.add(send)
            elif event["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": event.get("text") or ""})
            else:
                return
    finally:
        _sockets.discard(send)


# --- Set-up ------------------------------------------------------------------------------------------


def raise_file_limit() -> int:
    """``ulimit -n`` up to the hard limit, here and (inherited) in every server started after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def prepare() -> float:
    """The service, a JWT channel for browsers, an open channel and a REST channel for the same service.

    Returns the seconds spent re-creating and migrating the bench database.
    """
    from bench.rest_throughput import HELLO

    migrated = common.recreate_database()
    common.setup_django(PICKUP_WATCH="false")
    from django.db import connections

    from accounts.models import JWTDefinition
    from integration.deploy import deploy_sources
    from integration.models import DeployedService, RestChannel, ServiceModule, WebSocketChannel

    (outcome,) = deploy_sources([("bench_hello.py", HELLO)], ServiceModule.Origin.CLI)
    if not outcome.ok:
        raise SystemExit(outcome.error)
    service = DeployedService.objects.get(name="bench.hello")
    definition = JWTDefinition(name="bench-browsers", username="bench-frontend-user", ttl=JWT_TTL)
    definition.set_password("bench-jwt-password")
    definition.save()
    # The browsers' channel keeps every default (idle timeout 300 s, 50 messages/s per connection).
    WebSocketChannel.objects.create(name=JWT_CHANNEL, path=JWT_PATH, service=service, security=definition)
    # Round trips: a service-to-service socket, so no per-connection rate limit.
    WebSocketChannel.objects.create(name=OPEN_CHANNEL, path=OPEN_PATH, service=service, max_messages_per_second=0)
    RestChannel.objects.create(name="bench-ws-rest", method="POST", url_path=REST_PATH, service=service)
    connections.close_all()
    return migrated


def issue_tokens(count: int) -> tuple[list[str], float]:
    """One token (and Redis session) per browser, as the frontend would obtain them; and the seconds taken."""
    from accounts import tokens
    from accounts.models import JWTDefinition

    definition = JWTDefinition.objects.get(name="bench-browsers")
    started = time.perf_counter()
    issued = [tokens.issue(definition.pk, definition.username, definition.ttl) for _ in range(count)]
    return issued, time.perf_counter() - started


def drop_layer_keys() -> int:
    """Remove this run's channel-layer keys from the bench Redis database; how many there were."""
    import redis

    client = redis.Redis.from_url(common.bench_redis_url())
    try:
        keys = list(client.scan_iter(match=f"{LAYER_PREFIX}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        client.close()


def daphne(name: str, app: str = "config.asgi:application") -> common.Server:
    port = common.free_port()
    env = common.bench_env(
        PORT=str(port), PICKUP_DIR=str(common.empty_dir(f"{name}-pickup")), CHANNEL_LAYER_PREFIX=LAYER_PREFIX
    )
    argv = [common.PYTHON, "-m", "daphne", "-b", common.HOST, "-p", str(port), "--websocket_timeout", "-1", app]
    return common.Server(name, argv, env)


def started(server: common.Server) -> common.Server:
    server.start()
    common.wait_for_200(server, "/zato/ping" if "config." in server.argv[-1] else "/", timeout=60)
    return server


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def servers_cpu(servers: list[common.Server]) -> float:
    return sum(common.group_cpu(server.proc.pid) for server in servers)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- Clients -----------------------------------------------------------------------------------------


class Client:
    """One WebSocket connection: a reader task answers pings, resolves replies by id, timestamps pushes."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pending: dict[Any, asyncio.Future] = {}
        self.pushes: list[tuple[float, str]] = []
        self.unexpected: list[Any] = []
        self.close_code: int | None = None
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        import aiohttp

        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    received = time.time()
                    text = msg.data
                    if text.startswith('{"type":"push"'):
                        self.pushes.append((received, text))  # parsed later: keep the receipt time honest
                        continue
                    frame = json.loads(text)
                    waiter = self.pending.pop(frame.get("id"), None) if isinstance(frame, dict) else None
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
                    else:
                        self.unexpected.append(frame)
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    break
        finally:
            self.close_code = ws.close_code if ws.close_code is not None else -1
            for waiter in self.pending.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"closed with {self.close_code}"))

    @property
    def open(self) -> bool:
        return self.close_code is None and not self.ws.closed

    async def call(self, message: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        waiter = asyncio.get_running_loop().create_future()
        self.pending[message["id"]] = waiter
        await self.ws.send_str(json.dumps(message, separators=(",", ":")))
        return await asyncio.wait_for(waiter, timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 10)
        self.reader.cancel()


def session(limit: int = 0) -> Any:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))


async def open_clients(
    http: Any, urls: list[str], count: int, first: Callable[[int], dict[str, Any]], expect: str
) -> tuple[list[Client], list[str], float]:
    """``count`` connections spread over ``urls``, each sending ``first(i)`` and awaiting a reply of ``expect``.

    Returns (clients, errors, seconds taken).
    """
    gate = asyncio.Semaphore(OPENING)
    errors: list[str] = []

    async def one(n: int) -> Client | None:
        async with gate:
            try:
                ws = await http.ws_connect(urls[n % len(urls)], autoping=True)
                client = Client(ws)
                reply = await client.call(first(n))
                if reply.get("type") != expect:
                    raise RuntimeError(f"answered {str(reply)[:200]}")
                return client
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                return None

    began = time.perf_counter()
    found = await asyncio.gather(*(one(n) for n in range(count)))
    return [client for client in found if client is not None], errors, time.perf_counter() - began


async def close_all(clients: list[Client]) -> None:
    gate = asyncio.Semaphore(200)

    async def one(client: Client) -> None:
        async with gate:
            await client.close()

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(one(c) for c in clients)), 120)


def auth_message(issued: list[str]) -> Callable[[int], dict[str, Any]]:
    return lambda n: {"type": "auth", "token": issued[n], "id": f"auth-{n}"}


def echo_message(n: int) -> dict[str, Any]:
    return {"type": "hello", "id": f"hello-{n}"}


async def pinged(clients: list[Client]) -> int:
    """How many clients answer a ping (ours: ``pong``; the echo app: the echo)."""
    gate = asyncio.Semaphore(500)

    async def one(n: int, client: Client) -> bool:
        async with gate:
            try:
                reply = await client.call({"type": "ping", "id": f"ping-{n}"}, timeout=30)
            except Exception:
                return False
            return reply.get("type") in ("pong", "ping")

    return sum(await asyncio.gather(*(one(n, c) for n, c in enumerate(clients))))


# --- Pushes ------------------------------------------------------------------------------------------


def pusher_main(target: str, count: int, interval: float) -> None:
    """``--pusher``: a separate process pushing stamped messages to every client of a channel.

    ``target`` is a WebSocket channel's name (``integration.push.push``, as a Celery worker
    would), or a port of the echo app's daphne (``POST /broadcast`` of the frame ours would send).
    """
    if target.isdigit():
        import http.client

        conn = http.client.HTTPConnection(common.HOST, int(target), timeout=30)

        def push(data: dict[str, Any], channel: str) -> None:
            frame = json.dumps({"type": "push", "cid": "0" * 24, "data": data}, separators=(",", ":"))
            conn.request("POST", "/broadcast", body=frame.encode())
            conn.getresponse().read()

    else:
        import django  # the parent passed the bench environment (common.setup_django would redo it from scratch)

        django.setup()
        from integration import snapshot
        from integration.push import push  # type: ignore[assignment]

        snapshot.current()  # the configuration is loaded before the first stamp, as in a running worker
    push({"seq": -1, "sent": time.time()}, channel=target)  # warm-up (the one push when count is 0)
    time.sleep(interval)
    calls: list[float] = []
    next_at = time.monotonic()
    for seq in range(count):
        sent = time.time()
        push({"seq": seq, "sent": sent}, channel=target)
        calls.append(time.time() - sent)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(json.dumps({"calls": calls}), flush=True)


async def run_pusher(channel: str, count: int, interval: float) -> list[float]:
    """Run ``--pusher`` to its end (bounded); the durations of its ``push()`` calls."""
    with (common.LOG_DIR / "websocket-pusher.log").open("ab") as log:
        return await _pusher(channel, count, interval, log)


async def _pusher(channel: str, count: int, interval: float, log: Any) -> list[float]:
    proc = await asyncio.create_subprocess_exec(
        common.PYTHON,
        __file__,
        "--pusher",
        channel,
        str(count),
        str(interval),
        cwd=common.REPO,
        env=common.bench_env(PICKUP_WATCH="false", CHANNEL_LAYER_PREFIX=LAYER_PREFIX),
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60 + count * interval)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("the pusher did not finish in time") from None
    if proc.returncode:
        raise RuntimeError(f"the pusher failed ({proc.returncode}); see {common.LOG_DIR}")
    return json.loads(out.decode().strip().splitlines()[-1])["calls"]


async def receipts(clients: list[Client], expected: int, wait: float = 10.0) -> list[tuple[int, float]]:
    """(seq, latency in s) of every push received, once each client has ``expected`` or ``wait`` passed."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(len(c.pushes) < expected for c in clients):
        await asyncio.sleep(0.05)
    found = []
    for client in clients:
        for received, text in client.pushes:
            data = json.loads(text)["data"]
            found.append((data["seq"], received - data["sent"]))
        client.pushes.clear()
    return found


# --- 1. Idle connections -----------------------------------------------------------------------------


async def hold(
    server: common.Server, path: str, count: int, first: Callable[[int], dict[str, Any]], expect: str, ours: bool
) -> dict[str, Any]:
    """Open ``count`` connections to one daphne, hold them idle, check them, close them; figures."""
    url = f"ws://{common.HOST}:{server.port}{path}"
    pid = server.proc.pid
    result: dict[str, Any] = {}
    async with session() as http:
        warm, errors, _ = await open_clients(http, [url], WARMUP_CONNECTIONS, first, expect)
        if errors:
            raise RuntimeError(f"warm-up connections failed: {errors[:3]}")
        await close_all(warm)
        await asyncio.sleep(2.0)
        result["rss0"], result["threads0"] = rss_mb(pid), threads(pid)
        clients, errors, took = await open_clients(http, [url], count, first, expect)
        try:
            result.update(opened=len(clients), open_errors=errors, open_s=took)
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
        ("echo", "bench.websocket:echo_application", "/echo", echo_message, "hello"),
        ("ours", "config.asgi:application", JWT_PATH, auth_message(issued), "authenticated"),
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
        clients, errors, _ = await open_clients(http, urls, FANOUT_CLIENTS, first, expect)
        try:
            if errors:
                raise RuntimeError(f"{len(errors)} connections failed, e.g. {errors[:3]}")
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
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "last_median": common.median(list(last.values())),
        "call_ms": common.median(calls) * 1000,
        "still_open": still_open,
        "cpu_open": cpu1 - cpu0,
        "cpu_per_push_ms": max(0.0, (cpu2 - cpu1) - (cpu3 - cpu2) / (t3 - t2) * (t2 - t1)) / (PUSHES + 1) * 1000,
    }


def fan_outs(issued: list[str]) -> dict[str, dict[str, Any]]:
    """The echo app's broadcast on one daphne (the floor), then ours on one and on two daphne processes."""
    results = {}
    for key, app, processes in (
        ("echo", "bench.websocket:echo_application", 1),
        ("ours-1", "config.asgi:application", 1),
        ("ours-2", "config.asgi:application", 2),
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
            "p50_us": percentile(lat, 0.5) * 1e6,
            "p99_us": percentile(lat, 0.99) * 1e6,
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
    argv = [common.PYTHON, "-m", "gunicorn", "-c", "bench/gunicorn_baseline.conf.py", *options,
            "config.wsgi:application"]
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


# --- Report ------------------------------------------------------------------------------------------


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
    ]
    print(common.table(headers, rows))

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


def main() -> int:
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
    print(common.result_line("websocket", f"{idle_text}; {fan_text}; {rt_text}", idle_ok and fan_ok))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--pusher":
        pusher_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        with common.stop_on_signals():
            sys.exit(main())
