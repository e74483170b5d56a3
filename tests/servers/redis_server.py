"""``RedisServer``: a private ``redis-server`` on a free port of 127.0.0.1, for outage tests.

The machine's shared Redis must never be killed or paused by a test, so tests that take
Redis away start their own: no persistence (``--save ""``, no AOF), so a kill followed by
``start()`` gives an *empty* Redis on the same port, as after a crash of a cache-only
Redis in production. ``kill()`` is SIGKILL (no shutdown, no goodbye to clients),
``pause()`` / ``resume()`` are SIGSTOP / SIGCONT: the port still accepts connections
(the kernel completes the handshake) but nothing answers, the worst case for a client.

Everything is bounded: ``start()`` waits at most ``timeout`` seconds for PING to answer,
and ``stop()`` resumes a paused server before killing it, so nothing outlives the test.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers.procs import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on the port within ``timeout`` seconds (raw RESP, no client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; ``url(db)`` is what REDIS_URL should say.

    The port is chosen once, so a restart after ``kill()`` comes back where the clients
    (the platform's processes) expect it.
    """

    def __init__(self, log_dir: Path | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sb-redis-"))
        self.log_path = (Path(log_dir) if log_dir else self.dir) / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (or restart, empty) on the same port; returns once PING answers."""
        if self.running:
            raise RuntimeError("redis-server is running already")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.02)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the data is gone, clients' connections are reset."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, but nothing answers."""
        assert self.running, "not running"
        self.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        self.paused = True

    def resume(self) -> None:
        if self.paused and self.running:
            self.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        self.paused = False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Resume if paused, kill, and remove the working directory; safe to call twice."""
        self.resume()
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
