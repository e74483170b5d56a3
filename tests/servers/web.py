"""``WebServer``: granian started the way production starts it, on a free port of 127.0.0.1.

The command is the one ``manage.py serve`` runs: ``granian_argv`` in
``integration/management/commands/serve.py`` (``python -m granian --interface wsgi ...
config.wsgi:application`` in the repository root). ``start()`` returns once ``/healthz``
answers 200 and every worker process is up, that is once the database answers and the
configuration snapshot is loaded.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from integration.management.commands.serve import granian_argv
from tests.servers import client
from tests.servers.procs import REPO_ROOT, ManagedProcess, free_port

_PORT_TAKEN = ("Address already in use", "Connection in use")


def database_url(db: dict[str, Any]) -> str:
    """A ``DATABASE_URL`` for Django's ``DATABASES`` entry ``db`` (PostgreSQL only).

    In a test, pass ``settings.DATABASES["default"]`` after the test database exists:
    its NAME is then the test database (``test_switchboard_gw0`` under xdist).
    """
    if "postgresql" not in db["ENGINE"]:
        raise ValueError(f"Server processes share the test database only on PostgreSQL, not {db['ENGINE']}")
    user = quote(str(db.get("USER") or ""), safe="")
    password = quote(str(db.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = quote(str(db.get("HOST") or "127.0.0.1"), safe="")  # a socket directory is %-encoded
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(str(db['NAME']), safe='')}"


class WebServer:
    """One granian main process with ``workers`` worker processes, in its own process group.

    ``env`` is the complete environment (build it from ``os.environ``); PORT and WEB_WORKERS
    are set here. ``options`` go to ``granian_argv`` (``header_read_timeout=2``, say). Use as
    a context manager, or call ``start()`` and ``stop()``; ``stop()`` is safe to call twice.
    """

    def __init__(self, env: dict[str, str], *, log_dir: Path, workers: int = 2, name: str = "web",
                 **options: Any) -> None:
        self.env = dict(env)
        self.workers = workers
        self.name = name
        self.log_dir = Path(log_dir)
        self.options = options
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> client.Reply:
        return client.get(self.url(path), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> client.Reply:
        return client.request(method, self.url(path), **kwargs)

    def start(self, timeout: float = 45.0) -> WebServer:
        """Start granian and wait (bounded) until it serves; retry on a port someone else took."""
        for attempt in range(3):
            self.port = free_port()
            env = {**self.env, "PORT": str(self.port), "WEB_WORKERS": str(self.workers)}
            self.process = ManagedProcess(
                granian_argv(sys.executable, self.port, self.workers, **self.options),
                env=env,
                cwd=REPO_ROOT,
                log_path=self.log_dir / f"{self.name}-{attempt}.log",
            ).start()
            if self._wait_ready(timeout):
                return self
            log = self.process.log_text()
            self.process.stop()
            if not any(marker in log for marker in _PORT_TAKEN):
                break
        raise RuntimeError(f"granian ({self.name}) did not start in {timeout:.0f} s; its log:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            reply = client.try_get(self.url("/healthz"), timeout=2)
            if reply is not None and reply.status == 200:
                return self._wait_workers(deadline)
            time.sleep(0.05)
        return False

    def _wait_workers(self, deadline: float) -> bool:
        # /healthz answered, so one worker serves; the tests want all of them accepting.
        while time.monotonic() < deadline:
            if len(self.listening_worker_pids()) >= self.workers:
                return True
            time.sleep(0.05)
        return False

    @property
    def pid(self) -> int:
        """The granian main process's pid."""
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> set[int]:
        """The pids of the main process's worker processes, read from /proc."""
        assert self.process is not None
        return {stat.pid for stat in self.process.tree() if stat.ppid == self.process.pid}

    def listening_worker_pids(self) -> set[int]:
        """Workers that accept connections: each holds its own listening socket on the port (SO_REUSEPORT).

        A worker opens it once it has imported the application (and built its configuration
        snapshot), so a respawned worker is in this set exactly when it can be served requests.
        """
        inodes = _listening_inodes(self.port)
        return {pid for pid in self.worker_pids() if _socket_inodes(pid) & inodes}

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process is not None else ""

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL whatever is left after a few seconds."""
        if self.process is not None:
            self.process.stop(grace=8.0)  # granian's --workers-kill-timeout is 10 s; idle workers exit at once

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (IPv4), from /proc/net/tcp."""
    found = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        # local address "0100007F:1F90", state "0A" = LISTEN, inode in column 10
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            found.add(fields[9])
    return found


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets a process has open (``socket:[N]`` links in /proc/PID/fd)."""
    found = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found
