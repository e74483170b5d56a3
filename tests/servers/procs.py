"""Processes for end-to-end tests: free ports, bounded waits, process trees, clean stops.

Everything here is bounded in time and reads process state from ``/proc`` (Linux), so
the tests need nothing beyond the standard library to find and stop what they started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

#: The repository root (where manage.py and config/ live), found from this file.
REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def run_manage(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python manage.py ARGS`` in the repository with ``env``, bounded by ``timeout`` seconds."""
    import sys

    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The port is released before the caller binds it, so another process could take it
    in between; ``WebServer`` retries on a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.05, message: str | Callable[[], str] = ""
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that; bounded.

    Raises ``TimeoutError`` after ``timeout`` seconds, saying ``message``; pass a callable
    to build the message only then (say, with the tail of a log as it is at the timeout).
    Exceptions raised by the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"Not true after {timeout:.1f} s: {text or predicate}")
        time.sleep(interval)


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the tests need; ``starttime`` tells reused pids apart."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    starttime: int

    @property
    def cmdline(self) -> str:
        """The command line, arguments joined by spaces ("" once the process is gone)."""
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def proc_stat(pid: int) -> ProcStat | None:
    """The process's stat line, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    left, right = raw.find("("), raw.rfind(")")
    fields = raw[right + 2 :].split()
    # After comm: state(3) ppid(4) pgrp(5) session(6) ... starttime(22), numbered from 1.
    return ProcStat(pid, raw[left + 1 : right], fields[0], int(fields[1]), int(fields[2]), int(fields[19]))


def all_processes() -> list[ProcStat]:
    """Every process visible in /proc right now."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None:
                found.append(stat)
    return found


def descendants(pid: int) -> list[ProcStat]:
    """Children, grandchildren, ... of ``pid`` (whatever their process group), live ones only."""
    children: dict[int, list[ProcStat]] = {}
    for stat in all_processes():
        children.setdefault(stat.ppid, []).append(stat)
    found: list[ProcStat] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.state not in "ZX":
                found.append(child)
                todo.append(child.pid)
    return found


def is_running(stat: ProcStat) -> bool:
    """True while that very process (same pid and start time) exists and is not a zombie."""
    now = proc_stat(stat.pid)
    return now is not None and now.starttime == stat.starttime and now.state not in "ZX"


def members_of_groups(pgids: Iterable[int]) -> list[ProcStat]:
    """Live processes whose process group is one of ``pgids`` (like ``pgrep -g``)."""
    wanted = set(pgids)
    return [stat for stat in all_processes() if stat.pgrp in wanted and stat.state not in "ZX"]


def _signal_group(pgid: int, sig: int) -> None:
    # Never signal our own group, init's, or the whole session by accident.
    if pgid <= 1 or pgid == os.getpgrp():
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ManagedProcess:
    """A command run in its own session (so its own process group), output to a log file.

    ``stop()`` sends SIGTERM to the process group, waits ``grace`` seconds, then SIGKILLs
    that group and the group of every descendant it has seen (children that started
    their own sessions, as ``manage.py serve``'s do), so nothing outlives the test.
    """

    def __init__(self, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = REPO_ROOT) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = Path(log_path)
        self.popen: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, ProcStat] = {}  # every descendant observed, by pid
        self._log: Any = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    def poll(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def tree(self) -> list[ProcStat]:
        """The live descendants now; also remembered, so ``stop()`` can reach them later."""
        found = descendants(self.pid)
        for stat in found:
            self.seen[stat.pid] = stat
        return found

    def send_signal(self, sig: int) -> None:
        """Signal the process itself (not its group), as a terminal's Ctrl-C reaches a foreground command."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the exit code; raises ``subprocess.TimeoutExpired`` when it is not there in time."""
        assert self.popen is not None
        return self.popen.wait(timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the process and everything it started: SIGTERM the group, then SIGKILL after ``grace`` s."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.tree()
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left (in the main group or in descendants' own groups) gets SIGKILL.
        groups = {self.popen.pid} | {stat.pgrp for stat in self.seen.values() if is_running(stat)}
        if self.popen.poll() is None or any(is_running(stat) for stat in self.seen.values()):
            for pgid in groups:
                _signal_group(pgid, signal.SIGKILL)
            for stat in self.seen.values():
                if is_running(stat):
                    try:
                        os.kill(stat.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
