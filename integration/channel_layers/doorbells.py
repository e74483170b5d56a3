"""Doorbells: how a sender wakes another process's poller (a FIFO per process, one byte a ring)."""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import selectors
import threading
from pathlib import Path

logger = logging.getLogger(__name__)


def open_bell(directory: Path, key: str) -> int | None:
    """A write end of the doorbell of the process with this key, or None when there is nobody to wake.

    No FIFO: that process has no poller (nobody there waits), or FIFOs are off. No reader
    (ENXIO): the process died; its doorbell goes.
    """
    path = directory / f"{key}.fifo"
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            with contextlib.suppress(OSError):
                path.unlink()
        return None


def ring_fd(fd: int) -> bool:
    """One byte into a doorbell; never blocks. False when its reader is gone (EPIPE)."""
    try:
        os.write(fd, b"\0")
    except BlockingIOError:
        pass  # the pipe is full: it is being rung already
    except OSError:
        return False
    return True


def ring(directory: Path, key: str) -> None:
    """Ring a doorbell once (opening and closing it)."""
    fd = open_bell(directory, key)
    if fd is not None:
        ring_fd(fd)
        os.close(fd)


class Ringer:
    """Rings other processes' doorbells from the writer thread, keeping each one open between rings
    (one ``write`` per push instead of open, write and close)."""

    MAX_OPEN = 64

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fds: dict[str, int] = {}

    def ring(self, key: str) -> None:
        fd = self.fds.get(key)
        if fd is None:
            fd = open_bell(self.directory, key)
            if fd is None:
                return
            if len(self.fds) >= self.MAX_OPEN:
                os.close(self.fds.pop(next(iter(self.fds))))
            self.fds[key] = fd
        if not ring_fd(fd):  # that process died since: its doorbell goes
            os.close(self.fds.pop(key))
            with contextlib.suppress(OSError):
                (self.directory / f"{key}.fifo").unlink()

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


class Doorbell:
    """What a poller sleeps on: a FIFO other processes can write to, or a plain Event without one.

    The poller keeps a write end open itself, so the FIFO never reads as closed and this
    process's own threads ring through it too.
    """

    def __init__(self, directory: Path | None, key: str) -> None:
        self.pid = os.getpid()
        self.event = threading.Event()
        self.path: Path | None = None
        self.read_fd = self.write_fd = -1
        self.selector: selectors.BaseSelector | None = None
        if directory is not None and hasattr(os, "mkfifo"):
            try:
                self._open(directory, key)
            except OSError as exc:
                logger.warning("channel layer: no doorbell at %s (%s); polling instead", directory, exc)
                self.close()

    def _open(self, directory: Path, key: str) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("*.fifo"):  # processes that died without closing theirs
            ring(directory, stale.name.removesuffix(".fifo"))
        self.path = directory / f"{key}.fifo"
        os.mkfifo(self.path, 0o600)
        atexit.register(self.unlink)
        self.read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.write_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        # epoll or kqueue: select() would fail on a descriptor above 1,024 (daphne holding many sockets).
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.read_fd, selectors.EVENT_READ)

    @property
    def remote(self) -> bool:
        """True when other processes can wake this one."""
        return self.read_fd >= 0

    def ring(self) -> None:
        if self.write_fd < 0:
            self.event.set()
            return
        with contextlib.suppress(OSError):  # a full pipe is rung already
            os.write(self.write_fd, b"\0")

    def wait(self, timeout: float) -> None:
        """Sleep until rung or ``timeout`` seconds passed; swallows the rings that came."""
        if self.read_fd < 0:
            self.event.wait(timeout)
            self.event.clear()
            return
        if self.selector is not None and self.selector.select(timeout):
            with contextlib.suppress(BlockingIOError):
                while os.read(self.read_fd, 4096):
                    pass

    def unlink(self) -> None:
        if self.path is not None and os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def close(self) -> None:
        self.unlink()
        atexit.unregister(self.unlink)
        if self.selector is not None:
            self.selector.close()
            self.selector = None
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.read_fd = self.write_fd = -1
