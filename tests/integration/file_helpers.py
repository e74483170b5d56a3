"""Helpers for the file channel tests: a watcher process on the test's database, and the services they call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from tests.servers.procs import REPO_ROOT, wait_for
from tests.servers.web import database_url

# The seed's service (Zato's file.notifications), which also notes what it read in a log of its own.
NOTIFICATIONS = '''
import json, os
from integration.services import Service

class FileNotifications(Service):
    name = "file.notifications"

    class SimpleIO:
        input_required = ("path",)

    def handle(self):
        path = self.request.input.path
        with open(path, "rb") as handle:
            data = handle.read()
        payload = self.request.payload
        if data.startswith(b"fail"):
            raise ValueError("this file asks to fail")
        line = {"path": path, "size": len(data), "event": payload.get("event"), "data": payload.get("data"),
                "omitted": payload.get("data_omitted", False), "pid": os.getpid(), "cid": self.cid,
                "channel": self.channel.name, "type": self.channel.type}
        with open(%(log)r, "a") as log:
            log.write(json.dumps(line) + "\\n")
'''


# A service that notes its start, then waits (bounded) until the test creates ``release``: the
# test can do something to the file while the service runs. It never opens the file.
HOLD = '''
import json, os, time
from integration.services import Service

class FileHold(Service):
    name = "file.hold"

    def handle(self):
        with open(%(log)r, "a") as log:
            log.write(json.dumps({"path": self.request.payload["path"], "cid": self.cid}) + "\\n")
        deadline = time.monotonic() + 30
        while not os.path.exists(%(release)r) and time.monotonic() < deadline:
            time.sleep(0.05)
'''


def hold_source(log: Path, release: Path) -> str:
    return HOLD % {"log": str(log), "release": str(release)}


def watcher_log(tmp_path: Path, name: str = "watcher") -> str:
    """What ``watcher(tmp_path, name)`` has written so far."""
    return (tmp_path / f"{name}.log").read_text(errors="replace")


def notifications_source(log: Path) -> str:
    return NOTIFICATIONS % {"log": str(log)}


def read_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def watcher_env(tmp_path: Path) -> dict[str, str]:
    var_dir = tmp_path / "var"
    var_dir.mkdir(exist_ok=True)
    return {**os.environ, "DATABASE_URL": database_url(settings.DATABASES["default"]), "VAR_DIR": str(var_dir),
            "SECRET_KEY": settings.SECRET_KEY, "PYTHONUNBUFFERED": "1", "CONFIG_POLLER": "0"}


@contextmanager
def watcher(tmp_path: Path, name: str = "watcher", *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A running ``manage.py watch_files``, stopped (SIGTERM, then SIGKILL) on exit; its output in a log."""
    log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "manage.py", "watch_files", "--rescan-interval", "1", *args],
                            cwd=REPO_ROOT, env=watcher_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for(lambda: b"Watching file channels" in (tmp_path / f"{name}.log").read_bytes() or proc.poll(),
                 30, message=lambda: (tmp_path / f"{name}.log").read_text(errors="replace"))
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text(errors="replace")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
