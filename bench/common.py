"""Shared helpers for the benchmarks: the preamble, the bench database, server processes, HTTP polling, tables.

Every benchmark script starts with the one line Python needs before it can import this module
(``sys.path.insert(0, <the repository>)``, then ``from bench import common``) and ends with
``common.run(main)``: ``main`` returns the RESULT line's text and whether the target was
reached, and ``run`` does the rest (signals, helper modes such as ``--pusher``, the RESULT
line, the exit status). ``bench_django()`` is the usual first step of ``main``: a fresh bench
database, and this process configured on it. Percentiles are ``percentile()`` here, one
definition for every benchmark.

Everything here stays on 127.0.0.1. The benchmarks never write to the database named in
``DATABASE_URL``: they use ``BENCH_DB_NAME`` (default ``switchboard_bench``) on the same
server, dropped and re-created by ``recreate_database()`` and migrated with ``manage.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import logging
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from integration.management.commands.serve import granian_argv  # noqa: E402  (needs REPO on sys.path)

_VENV_PY = REPO / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/switchboard"
BENCH_DB_NAME = os.environ.get("BENCH_DB_NAME", "switchboard_bench")
VAR_DIR = Path(os.environ.get("VAR_DIR", REPO / "var")) / "bench"
LOG_DIR = VAR_DIR / "logs"
HOST = "127.0.0.1"


# --- Environment and database ------------------------------------------------------------------


def with_db(url: str, name: str) -> str:
    """A PostgreSQL URL with its database name replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


# Read once, before setup_django() points this process's own environment at the bench database:
# the servers the benchmarks start inherit the caller's environment, not this process's settings.
_ORIGINAL_ENV = dict(os.environ)
_ORIGINAL_DATABASE_URL = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
_ORIGINAL_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1")


def bench_database_url() -> str:
    """``DATABASE_URL`` with its database name replaced by the bench database (never the original)."""
    source = _ORIGINAL_DATABASE_URL
    if not source.startswith(("postgres://", "postgresql://")):
        raise SystemExit(f"The benchmarks need PostgreSQL; DATABASE_URL is {source!r}")
    original = urlsplit(source).path.lstrip("/")
    if original == BENCH_DB_NAME:
        raise SystemExit(f"BENCH_DB_NAME ({BENCH_DB_NAME}) must differ from the database in DATABASE_URL")
    return with_db(source, BENCH_DB_NAME)


def bench_redis_url() -> str:
    """Redis for the bench processes: ``BENCH_REDIS_URL``, else ``REDIS_URL``'s server, database 2."""
    explicit = os.environ.get("BENCH_REDIS_URL")
    if explicit:
        return explicit
    parts = urlsplit(_ORIGINAL_REDIS_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/2", parts.query, parts.fragment))


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of every process the benchmarks start (and of their own Django setup)."""
    env = dict(_ORIGINAL_ENV)
    env.update(
        DATABASE_URL=bench_database_url(),
        REDIS_URL=bench_redis_url(),
        VAR_DIR=str(VAR_DIR),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PORT", None)
    env.update(extra)
    return env


_LOCK_KEY = 0x5357_4243_4E43  # "SWBENC": one benchmark at a time on this PostgreSQL server
_lock_conn: Any = None


def hold_bench_lock() -> None:
    """Take a session advisory lock held until this process exits (or dies: the server frees it).

    Two benchmarks at once would share the bench database and the two CPUs and spoil each
    other's figures, so a second one waits (at most BENCH_LOCK_WAIT s, default 900).
    """
    global _lock_conn
    import psycopg

    if _lock_conn is not None:
        return
    conn = psycopg.connect(with_db(bench_database_url(), "postgres"), autocommit=True)
    deadline = time.monotonic() + env_float("BENCH_LOCK_WAIT", 900.0)
    told = False
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()[0]:
        if time.monotonic() > deadline:
            conn.close()
            raise SystemExit("another benchmark is still running (PostgreSQL advisory lock held); giving up")
        if not told:
            print("waiting for another benchmark run to finish ...", flush=True)
            told = True
        time.sleep(1)
    _lock_conn = conn


def recreate_database() -> float:
    """Drop and re-create the bench database (and empty the bench Redis database), then migrate; returns seconds."""
    import psycopg

    admin_url = with_db(bench_database_url(), "postgres")
    hold_bench_lock()
    started = time.perf_counter()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB_NAME}"')
    _empty_bench_redis()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / "migrate.log"
    with log.open("wb") as out:
        result = subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput"],
            cwd=REPO,
            env=bench_env(PICKUP_WATCH="false"),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if result.returncode:
        raise SystemExit(f"manage.py migrate failed on {BENCH_DB_NAME}; see {log}")
    return time.perf_counter() - started


def _empty_bench_redis() -> None:
    """Empty the bench's own Redis database, as the bench database is re-created: a run must not
    inherit the last one's state (its brute-force counts would refuse the next run's logins)."""
    import redis

    url = bench_redis_url()
    if url.startswith(("redis://", "rediss://")):
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis.from_url(url).flushdb()


def setup_django(**extra: str) -> None:
    """Configure this process like a platform process on the bench database; logs go to a file."""
    os.environ.update(bench_env(**extra))
    import django

    django.setup()
    # Keep the platform's own logging (same level and format) but write it to a file, not the terminal.
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stream = (LOG_DIR / f"{Path(sys.argv[0]).stem}-django.log").open("a")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(stream)


def bench_django(**extra: str) -> float:
    """The usual start of a benchmark: re-create and migrate the bench database, then ``setup_django``.

    The pickup directory's watcher is off unless ``extra`` says otherwise. Returns the seconds
    the database took (``recreate_database``).
    """
    migrated = recreate_database()
    setup_django(**{"PICKUP_WATCH": "false", **extra})
    return migrated


def empty_dir(prefix: str) -> Path:
    """A fresh temporary directory, removed when this process exits."""
    path = Path(tempfile.mkdtemp(prefix=f"switchboard-bench-{prefix}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- Server processes --------------------------------------------------------------------------


class Server:
    """A server's process group (granian, gunicorn, daphne) started on 127.0.0.1; ``stop()`` ends the whole group."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.port = int(env["PORT"])
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> Server:
        log = self.log_path.open("ab")
        log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(self.argv)} (PORT={self.port})\n".encode())
        log.flush()
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Workers left behind by a master that died first are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def web(name: str, app: str, env: dict[str, str], **options: Any) -> Server:
    """The production HTTP server: granian with ``manage.py serve``'s command line, on ``env``'s PORT.

    ``WEB_WORKERS`` from ``env`` (2 if unset); ``options`` go to ``granian_argv``, whose other
    defaults are this process's settings (call ``setup_django`` first).
    """
    argv = granian_argv(PYTHON, int(env["PORT"]), int(env.get("WEB_WORKERS", "2")), app=app, **options)
    return Server(name, argv, env)


def gunicorn(name: str, app: str, env: dict[str, str], config: str = "bench/gunicorn_baseline.conf.py") -> Server:
    """gunicorn's sync workers, the baseline the production server is compared with."""
    return Server(name, [PYTHON, "-m", "gunicorn", "-c", config, app], env)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so every ``finally`` stopping a server runs."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- HTTP --------------------------------------------------------------------------------------


def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes, dict[str, str]]:
    """One HTTP/1.1 request to 127.0.0.1:port; raises OSError when nothing listens."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        merged: dict[str, str] = {}
        for key, value in response.getheaders():  # repeated headers (Set-Cookie) joined with ", "
            key = key.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return response.status, data, merged
    finally:
        conn.close()


def wait_for_200(
    server: Server,
    path: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.005,
    headers: dict[str, str] | None = None,
) -> tuple[float, float]:
    """Poll until ``GET path`` answers 200; returns (seconds to first TCP accept, seconds to first 200)
    measured from ``server.start()``. Raises RuntimeError on timeout or if the server exits."""
    deadline = time.perf_counter() + timeout
    connected: float | None = None
    last = "no attempt"
    while time.perf_counter() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited during start-up; see {server.log_path}")
        try:
            status, body, _ = request(server.port, "GET", path, headers=headers, timeout=5)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            now = time.perf_counter()
            if connected is None:
                connected = now - server.started_at
            if status == 200:
                return connected, now - server.started_at
            last = f"HTTP {status}: {body[:200]!r}"
        time.sleep(interval)
    raise RuntimeError(
        f"{server.name}: no 200 from {path} within {timeout:.0f} s (last: {last}); see {server.log_path}"
    )


# --- The machine ------------------------------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over the next ``seconds`` (0..1), from /proc/stat."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


_TICK = os.sysconf("SC_CLK_TCK")


def processes_cpu(match: Any) -> float:
    """CPU seconds used so far by the live processes for which ``match(command, pgrp)`` is true."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                head, _, rest = stat.read().rpartition(")")
        except OSError:
            continue
        fields = rest.split()  # after the command: state, ppid, pgrp, ... utime(11), stime(12)
        if match(head.split("(", 1)[-1], int(fields[2])):
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def group_cpu(pgid: int) -> float:
    """CPU seconds used so far by the live processes of a process group (a server and its workers)."""
    return processes_cpu(lambda _command, pgrp: pgrp == pgid)


class CPUAccount:
    """How much CPU went to processes other than this benchmark, its children and its server groups.

    ``start()`` before a measurement, ``foreign()`` after it (before the servers stop):
    returns (CPU seconds used by everything else, CPU seconds available in that time).
    """

    def __init__(self, *server_pgids: int) -> None:
        self.pgids = server_pgids

    def _ours(self) -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        servers = sum(group_cpu(pgid) for pgid in self.pgids)
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime + servers

    def start(self) -> None:
        busy, total = _cpu_times()
        self.busy0, self.total0, self.ours0 = busy / _TICK, total / _TICK, self._ours()

    def foreign(self) -> tuple[float, float]:
        busy, total = _cpu_times()
        used = busy / _TICK - self.busy0
        ours = self._ours() - self.ours0
        return max(0.0, used - ours), total / _TICK - self.total0


def wait_for_quiet(limit: float = 0.25) -> str:
    """Wait (at most BENCH_QUIET_WAIT s, default 120) until other work leaves the CPUs mostly idle.

    Nothing here runs yet, so whatever keeps the CPUs busy would compete with the benchmark;
    returns a line for the output saying how busy the machine was when it started.
    """
    deadline = time.monotonic() + env_float("BENCH_QUIET_WAIT", 120.0)
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    note = "" if busy <= limit else " -- WARNING: something else is using the CPUs; figures will be low"
    return f"CPU busy before start: {busy:.0%} of {os.cpu_count()} cores{note}"


# --- Output ------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile ``p`` (0..100) of ``values``: the one every benchmark uses.

    The smallest value with at least ``p`` % of the values at or below it: sorted ascending, the
    value at 1-based rank ``ceil(p / 100 * N)`` (rank 1 for ``p`` = 0). Always a measured value,
    never an interpolation: of 1,000 latencies p99 is the 990th smallest and p50 the 500th; of
    100, p99 is the 99th; of 10, p99 is the largest. Infinite for no values (nothing measured
    is as bad as it gets, and fails any "under" target).
    """
    if not values:
        return math.inf
    ordered = sorted(values)
    rank = math.ceil(p * len(ordered) / 100 - 1e-9)  # the epsilon: 99.9 * 1000 / 100 is 999.0000000000001
    return ordered[min(len(ordered), max(1, rank)) - 1]


def verdict(reached: bool) -> str:
    return "REACHED" if reached else "MISSED"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        padded = (c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        lines.append("  ".join(padded))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def result_line(benchmark: str, text: str, reached: bool) -> str:
    """The one summary line per benchmark that ``bench/run.sh`` collects."""
    return f"RESULT {benchmark}: {text} -> target {verdict(reached)}"


def run(main: Callable[[], tuple[str, bool]], helpers: dict[str, Callable[..., Any]] | None = None) -> None:
    """The entry point of every benchmark script: ``if __name__ == "__main__": common.run(main)``.

    ``python bench/<name>.py`` runs ``main()`` with SIGTERM and SIGHUP turned into
    ``KeyboardInterrupt`` (``stop_on_signals``: every ``finally`` that stops a server runs),
    prints its RESULT line (``main`` returns its text and whether the target was reached;
    the benchmark's name is the file's) and exits 0: a missed target is reported, not an
    error. An exception exits non-zero with its traceback, which ``bench/run.sh`` reports as
    FAILED TO RUN. ``python bench/<name>.py <mode> ARG...`` with a mode named in ``helpers``
    (``--pusher``, ``--sender``: the same file started by its benchmark as a second process)
    calls that helper with the arguments, as strings, instead.
    """
    if helpers and len(sys.argv) > 1 and sys.argv[1] in helpers:
        helpers[sys.argv[1]](*sys.argv[2:])
        sys.exit(0)
    if len(sys.argv) > 1:
        raise SystemExit(f"usage: {sys.argv[0]} (no arguments; sizes come from BENCH_* variables, see bench/README.md)")
    with stop_on_signals():
        text, reached = main()
    print(result_line(Path(sys.argv[0]).stem, text, reached), flush=True)
    sys.exit(0)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))
