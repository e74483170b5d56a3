"""The WebSocket benchmark's settings, set-up and clients (``bench/websocket.py`` runs the scenarios).

The clients are asyncio coroutines using aiohttp's WebSocket client: a ``Client`` is one
connection whose reader task answers daphne's pings, resolves replies by id and timestamps
pushes. ``open_clients`` opens many, ``OPENING`` at a time, and reconnects a connection that
the server closed with 4503 ("cannot be reached now, reconnect in a few seconds": it could not
join its push groups) after ``RETRY_AFTER`` seconds, at most
``RETRIES`` times, as a real client does; every such retry is counted and printed. The pusher
(``pusher_main``) is the separate process that calls ``integration.push.push``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
RETRIES = common.env_int("BENCH_WS_RETRIES", 5)  # reconnections of one client closed with 4503
RETRY_AFTER = common.env_float("BENCH_WS_RETRY_AFTER", 1.0)  # seconds before the first, doubling
RETRY_CODE = 4503  # the server's "try again later" (integration/channels/websocket.py)
WARMUP_CONNECTIONS = 20
TARGET_CONNECTIONS = 5000
TARGET_P99_MS = 250.0

JWT_TTL = 1800
JWT_CHANNEL, JWT_PATH = "bench-ws-browsers", "/ws/bench"
OPEN_CHANNEL, OPEN_PATH = "bench-ws-open", "/ws/bench-open"
REST_PATH = "/rt/bench-hello"
ECHO_APP = "bench.websocket_echo:echo_application"
PLATFORM_APP = "config.asgi:application"
# A channel-layer prefix of this run's own: groups left by earlier runs (daphne stopped with
# connections open never leaves them) would otherwise be in every group_send.
LAYER_PREFIX = f"bench-ws-{os.getpid()}"
PAYLOAD = {"customer": 123, "action": "lookup"}
HELLO_RESPONSE = {"hello": "world"}
MAIN_SCRIPT = Path(__file__).with_name("websocket.py")  # run with --pusher for the pushing process


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

    migrated = common.bench_django()
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


def daphne(name: str, app: str = PLATFORM_APP) -> common.Server:
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


@dataclass
class Opened:
    """What ``open_clients`` opened: the clients, the connections that failed, the 4503 retries, the time taken."""

    clients: list[Client]
    errors: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)  # why each retried attempt was closed (the server's message)
    seconds: float = 0.0


def _refusal(client: Client) -> str:
    """The server's error message before it closed ``client`` (the close reason does not reach the client)."""
    for frame in client.unexpected:
        if isinstance(frame, dict) and frame.get("type") == "error":
            error = frame.get("error")
            return str(error.get("details", error) if isinstance(error, dict) else error)[:120]
    return f"closed with {client.close_code}"


async def open_clients(
    http: Any, urls: list[str], count: int, first: Callable[[int], dict[str, Any]], expect: str
) -> Opened:
    """``count`` connections spread over ``urls``, each sending ``first(i)`` and awaiting a reply of ``expect``.

    A connection closed with 4503 before that reply is opened again, as the server asks, after
    ``RETRY_AFTER`` s (doubling), at most ``RETRIES`` times; its place in the ``OPENING``
    gate is free while it waits.
    """
    gate = asyncio.Semaphore(OPENING)
    opened = Opened([])

    async def attempt(n: int) -> Client | None:
        """One connection; None when the server closed it with 4503 (to be retried)."""
        ws = await http.ws_connect(urls[n % len(urls)], autoping=True)
        client = Client(ws)
        try:
            reply = await client.call(first(n))
        except ConnectionError:
            if client.close_code != RETRY_CODE:
                raise
            opened.retries.append(_refusal(client))
            await client.close()
            return None
        if reply.get("type") != expect:
            await client.close()
            raise RuntimeError(f"answered {str(reply)[:200]}")
        return client

    async def one(n: int) -> None:
        try:
            for retry in range(RETRIES + 1):
                if retry:
                    await asyncio.sleep(RETRY_AFTER * 2 ** (retry - 1))
                async with gate:
                    client = await attempt(n)
                if client is not None:
                    opened.clients.append(client)
                    return
            raise RuntimeError(f"closed with {RETRY_CODE} on each of {RETRIES + 1} attempts")
        except Exception as exc:
            opened.errors.append(f"{type(exc).__name__}: {exc}"[:300])

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    opened.seconds = time.perf_counter() - began
    return opened


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
    """``websocket.py --pusher TARGET COUNT INTERVAL``: a separate process pushing stamped messages to every client.

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
        str(MAIN_SCRIPT),
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
