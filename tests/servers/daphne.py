"""``Daphne``: one daphne process started as ``manage.py serve`` starts it, on a free port of 127.0.0.1.

The command line is ``daphne_argv`` from ``integration/management/commands/serve.py``, the
one production runs. ``start()`` returns once ``/healthz`` answers 200 (database up,
snapshot loaded), trying another port when someone took the chosen one meanwhile.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from integration.management.commands.serve import daphne_argv
from tests.servers import client
from tests.servers.procs import ManagedProcess, free_port

_PORT_TAKEN = "Address already in use"


class Daphne:
    """``env`` is the complete environment; WEBSOCKET_PORT is set to the chosen port (pages point there)."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "daphne",
                 max_message_size: int = 1024 * 1024) -> None:
        self.env, self.log_dir, self.name = dict(env), Path(log_dir), name
        self.max_message_size = max_message_size
        self.port = 0
        self.process: ManagedProcess | None = None
        self.attempt = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 45.0) -> Daphne:
        deadline = time.monotonic() + timeout
        self._launch()
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                if _PORT_TAKEN in self.process.log_text() and self.attempt < 3:
                    self._launch()
                    continue
                break
            reply = client.try_get(self.base_url + "/healthz", timeout=2)
            if reply is not None and reply.status == 200:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not serve within {timeout:.0f} s:\n{self.log_tail()}")

    def _launch(self) -> None:
        self.port = free_port()
        self.attempt += 1
        env = {**self.env, "WEBSOCKET_PORT": str(self.port)}
        self.process = ManagedProcess(daphne_argv(sys.executable, self.port, self.max_message_size), env=env,
                                      log_path=self.log_dir / f"{self.name}-{self.attempt}.log").start()

    def log_text(self) -> str:
        return self.process.log_text() if self.process is not None else ""

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process is not None else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=8)

    def __enter__(self) -> Daphne:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
