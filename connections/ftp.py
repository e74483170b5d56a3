"""FTP and FTPS as an outgoing connection (ftplib): ``self.out.ftp[name]`` / ``self.outgoing.ftp.get(name)``.

The seed's billing example::

    conn = self.out.ftp["Billings"].conn            # or self.outgoing.ftp.get("Billings")
    data = conn.getcontents("/data/current.csv")     # bytes
    conn.setcontents("/archive/2026-11.csv", data)    # atomic: a temporary name, then RNFR/RNTO

Zato gave PyFilesystem2's ``FTPFS``; these are its method names (``getcontents``,
``setcontents``, ``listdir``, ``exists``, ``isdir``, ``isfile``, ``getsize``, ``remove``,
``removedir``, ``makedir``, ``rename``) plus ``download``/``upload`` between a remote path and a
local file. A few logged-in sessions are kept (``pool_size``); each call borrows one, and a
session the server dropped while idle is replaced once, transparently. The object is also a
context manager, so Zato's ``with self.outgoing.ftp.get(name) as conn:`` reads the same.

With ``tls`` the session is explicit FTPS: ``AUTH TLS`` before the login, then ``PROT P`` so the
files travel encrypted too, checked against the CA bundle. Relative paths start at the
default directory. Errors name the connection, the action and the path; a full disk on the
server (452/552) is ``FtpDiskFull``, and an upload that fails leaves nothing under its name.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import logging
import os
import posixpath
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from connections.base import Connection, PingResult
from connections.ftp_parsing import has_line_break, parse_mlst
from integration.errors import ServiceUnavailable, SwitchboardError

if TYPE_CHECKING:
    from connections.directory_models import FtpConnection

KIND = "ftp"
BLOCK_SIZE = 256 * 1024
logger = logging.getLogger(__name__)
#: The session itself failed (dropped, timed out, 421): it is closed, not pooled again.
_SESSION_FAILURES = (OSError, EOFError, ftplib.error_temp, ftplib.error_proto, ftplib.error_reply)


class FtpError(SwitchboardError):
    """An FTP operation failed; the message names the connection, the action, the path and the server's reply."""


class FtpNotFound(FtpError):
    status_code = 404


class FtpPermissionDenied(FtpError):
    status_code = 403


class FtpDiskFull(FtpError):
    status_code = 507


class FtpUnavailable(ServiceUnavailable):
    """The server cannot be reached, refused the login or the TLS handshake failed (503)."""


@dataclass(frozen=True)
class FtpSettings:
    name: str
    host: str
    port: int = 21
    user: str = ""
    password: str = ""
    tls: bool = False
    tls_ca_cert: str = ""
    passive: bool = True
    timeout: float = 30.0
    default_directory: str = ""
    pool_size: int = 4

    def __repr__(self) -> str:
        return f"FtpSettings(name={self.name!r}, host={self.host!r}, port={self.port!r}, user={self.user!r})"

    @classmethod
    def from_row(cls, row: FtpConnection) -> FtpSettings:
        return cls(name=row.name, host=row.host.strip(), port=row.port, user=row.user, password=row.get_password(),
                   tls=row.tls, tls_ca_cert=row.tls_ca_cert.strip(), passive=row.passive, timeout=row.timeout,
                   default_directory=row.default_directory.strip(), pool_size=row.pool_size)

    @property
    def address(self) -> str:
        return f"{'ftps' if self.tls else 'ftp'}://{self.host}:{self.port}"


class FtpClient(Connection):
    """``self.out.ftp[name]`` (and ``.conn``, and ``self.outgoing.ftp.get(name)``): see the module docstring."""

    kind = KIND

    def __init__(self, settings: FtpSettings, *, is_active: bool = True) -> None:
        self.name = settings.name
        self.settings = settings
        self.is_active = is_active
        self._idle: list[ftplib.FTP] = []
        self._lock = threading.Lock()

    @classmethod
    def from_definition(cls, row: FtpConnection) -> FtpClient:
        return cls(FtpSettings.from_row(row), is_active=row.is_active)

    @property
    def conn(self) -> FtpClient:
        return self

    def __enter__(self) -> FtpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        """Sessions stay pooled for the next caller: leaving the block closes nothing."""

    # --- Sessions ---------------------------------------------------------------------------------

    def open_session(self) -> ftplib.FTP:
        """A new logged-in session in binary mode, at the default directory."""
        settings = self.settings
        where = f"FTP connection `{self.name}` ({settings.address})"
        if settings.tls:
            context = ssl.create_default_context(cadata=settings.tls_ca_cert or None)
            ftp: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=settings.timeout)  # noqa: S321 - FTPS
        else:
            # Plain FTP is what the administrator chose for this server (the tls field offers FTPS).
            ftp = ftplib.FTP(timeout=settings.timeout)  # noqa: S321
        try:
            ftp.connect(settings.host, settings.port, timeout=settings.timeout)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.auth()
            ftp.login(settings.user or "anonymous", settings.password or ("" if settings.user else "anonymous@"))
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.set_pasv(settings.passive)
            ftp.voidcmd("TYPE I")
        except ssl.SSLError as exc:
            _close(ftp)
            raise FtpUnavailable(f"{where}: TLS failed: {exc.reason or exc}") from None
        except ftplib.error_perm as exc:
            _close(ftp)
            raise FtpUnavailable(f"{where}: the server refused the login: {_reply(exc)}") from None
        except (*_SESSION_FAILURES,) as exc:
            _close(ftp)
            raise FtpUnavailable(f"{where}: cannot connect: {_reply(exc)}") from None
        if settings.default_directory:
            try:
                ftp.cwd(settings.default_directory)
            except ftplib.all_errors as exc:
                _close(ftp)
                raise FtpError(f"{where}: cannot change to the default directory "
                               f"`{settings.default_directory}`: {_reply(exc)}") from None
        return ftp

    @contextlib.contextmanager
    def _session(self) -> Iterator[tuple[ftplib.FTP, bool]]:
        with self._lock:
            ftp = self._idle.pop() if self._idle else None
        pooled = ftp is not None
        if ftp is None:
            ftp = self.open_session()
        try:
            yield ftp, pooled
        except _SESSION_FAILURES:
            _close(ftp)
            raise
        except BaseException:
            self._give_back(ftp)
            raise
        self._give_back(ftp)

    def _give_back(self, ftp: ftplib.FTP) -> None:
        with self._lock:
            if len(self._idle) < self.settings.pool_size and ftp.sock is not None:
                self._idle.append(ftp)
                return
        _close(ftp)

    def call(self, action: str, path: str, work: Callable[[ftplib.FTP], Any]) -> Any:
        """Run ``work(session)``; server replies become ``FtpError``s naming ``action`` and ``path``.

        A pooled session that fails at the transport level (the server dropped it while idle)
        is replaced by a new one and ``work`` runs once more.
        """
        if has_line_break(path):
            raise FtpError(f"FTP connection `{self.name}`: cannot {action} a path with a line break")
        for attempt in (1, 2):
            try:
                with self._session() as (ftp, pooled):
                    return work(ftp)
            except ftplib.error_perm as exc:
                raise self.error(action, path, exc) from None
            except ftplib.error_temp as exc:
                if _reply(exc).startswith(("452", "451")) or "space" in _reply(exc).lower():
                    raise self.error(action, path, exc) from None
                if attempt == 2 or not pooled:
                    raise FtpUnavailable(f"FTP connection `{self.name}`: cannot {action} `{path}`: "
                                         f"{_reply(exc)}") from None
            except (OSError, EOFError, ftplib.error_proto, ftplib.error_reply) as exc:
                if attempt == 2 or not pooled:
                    raise FtpUnavailable(f"FTP connection `{self.name}`: cannot {action} `{path}`: the connection "
                                         f"failed ({_reply(exc)})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def error(self, action: str, path: str, exc: Exception) -> FtpError:
        reply = _reply(exc)
        lowered = reply.lower()
        prefix = f"FTP connection `{self.name}`: cannot {action} `{path}`"
        if reply.startswith(("452", "552")) or "no space" in lowered:
            return FtpDiskFull(f"{prefix}: the server's disk is full ({reply})")
        if "permission denied" in lowered or "not allowed" in lowered or reply.startswith("553"):
            return FtpPermissionDenied(f"{prefix}: permission denied ({reply})")
        if "no such file" in lowered or "not found" in lowered or "does not exist" in lowered:
            return FtpNotFound(f"{prefix}: no such file or directory ({reply})")
        return FtpError(f"{prefix}: {reply}")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for ftp in idle:
            _close(ftp, polite=True)

    # --- Reading ---------------------------------------------------------------------------------

    def getcontents(self, path: str, mode: str = "rb", encoding: str = "utf-8") -> bytes | str:
        """The contents of a remote file: bytes, or text with ``mode="r"``."""
        buffer = io.BytesIO()
        self.call("read", path, lambda ftp: ftp.retrbinary(f"RETR {path}", buffer.write, BLOCK_SIZE))
        return buffer.getvalue() if "b" in mode else buffer.getvalue().decode(encoding)

    def download(self, remote_path: str, local_path: str) -> None:
        """Copy a remote file to ``local_path``, through a temporary name: a failed transfer leaves nothing there."""
        temp = f"{local_path}.{secrets.token_hex(4)}.part"
        try:
            with open(temp, "wb") as target:
                self.download_to(remote_path, target)
            os.replace(temp, local_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def download_to(self, remote_path: str, target: BinaryIO) -> None:
        self.call("download", remote_path, lambda ftp: ftp.retrbinary(f"RETR {remote_path}", target.write,
                                                                      BLOCK_SIZE))

    def listdir(self, path: str = ".") -> list[str]:
        """The names in a directory (not their paths), sorted, without . and .."""

        def names(ftp: ftplib.FTP) -> list[str]:
            try:
                return [name for name, _ in ftp.mlsd(path, facts=["type"]) if name not in (".", "..")]
            except ftplib.error_perm as exc:
                if not _reply(exc).startswith("500"):
                    raise
                return [posixpath.basename(name) for name in ftp.nlst(path)]  # a server without MLSD

        return sorted(self.call("list", path, names))

    def info(self, path: str) -> dict[str, str]:
        """The MLST facts of ``path`` (type, size, modify...); ``FtpNotFound`` if there is nothing there."""
        def facts(ftp: ftplib.FTP) -> dict[str, str]:
            try:
                return parse_mlst(ftp.sendcmd(f"MLST {path}"))
            except ftplib.error_perm as exc:
                if not _reply(exc).startswith(("500", "502")):
                    raise
            # A server without MLST (RFC 3659): a directory is one we can change into, a file one with a size.
            here = ftp.pwd()
            try:
                ftp.cwd(path)
            except ftplib.error_perm:
                ftp.voidcmd("TYPE I")
                return {"type": "file", "size": str(ftp.size(path))}
            ftp.cwd(here)
            return {"type": "dir"}

        return self.call("look up", path, facts)

    def exists(self, path: str) -> bool:
        try:
            self.info(path)
        except FtpNotFound:
            return False
        except FtpError as exc:
            if "550" in str(exc):
                return False
            raise
        return True

    def isdir(self, path: str) -> bool:
        return self.exists(path) and self.info(path).get("type", "").lower() in ("dir", "cdir", "pdir")

    def isfile(self, path: str) -> bool:
        return self.exists(path) and self.info(path).get("type", "").lower() == "file"

    def getsize(self, path: str) -> int:
        def size(ftp: ftplib.FTP) -> int | None:
            ftp.voidcmd("TYPE I")  # listings switch the session to ASCII, where SIZE is refused
            return ftp.size(path)

        return int(self.call("ask the size of", path, size) or 0)

    # --- Writing ---------------------------------------------------------------------------------

    def setcontents(self, path: str, data: bytes | str, encoding: str = "utf-8") -> None:
        """Write a remote file atomically (a temporary name next to it, then a rename)."""
        payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
        self.upload_from(io.BytesIO(payload), path)

    def upload(self, local_path: str, remote_path: str) -> None:
        with open(local_path, "rb") as source:
            self.upload_from(source, remote_path)

    def upload_from(self, source: BinaryIO, remote_path: str) -> None:
        parent, base = posixpath.split(remote_path)
        temp = posixpath.join(parent, f".{base}.{secrets.token_hex(4)}.part")
        start = source.tell()

        def store(ftp: ftplib.FTP) -> None:
            source.seek(start)
            try:
                try:
                    ftp.storbinary(f"STOR {temp}", source, BLOCK_SIZE)
                except (ConnectionError, ssl.SSLError):
                    # The server dropped the data connection while we were still sending: its reason
                    # (a full disk: 451/452/552) waits on the control connection. Read it, so the caller
                    # is told that instead of "the connection failed" (and nothing is sent twice).
                    ftp.voidresp()
                    raise
                ftp.rename(temp, remote_path)
            except BaseException:
                with contextlib.suppress(*ftplib.all_errors):
                    ftp.delete(temp)  # nothing partial stays behind, under either name
                raise

        self.call("upload", remote_path, store)

    def remove(self, path: str) -> None:
        self.call("remove", path, lambda ftp: ftp.delete(path))

    def removedir(self, path: str) -> None:
        self.call("remove the directory", path, lambda ftp: ftp.rmd(path))

    def makedir(self, path: str, recursive: bool = False, allow_recreate: bool = False) -> None:
        """Create a directory (with its parents when ``recursive``); an existing one is an error unless allowed."""
        if allow_recreate and self.isdir(path):
            return
        if recursive:
            parts = path.split("/")
            for end in range(1, len(parts)):
                partial = "/".join(parts[:end])
                if partial and not self.isdir(partial):
                    self.call("create the directory", partial, lambda ftp, p=partial: ftp.mkd(p))
        self.call("create the directory", path, lambda ftp: ftp.mkd(path))

    def rename(self, src: str, dst: str) -> None:
        self.call("rename", src, lambda ftp: ftp.rename(src, dst))

    move = rename

    # --- Ping ------------------------------------------------------------------------------------

    def ping(self) -> PingResult:
        """A new session (so the login is checked now), NOOP, and the server's welcome line."""
        started = time.perf_counter()
        try:
            ftp = self.open_session()
        except (FtpError, FtpUnavailable) as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000, str(exc))
        try:
            ftp.voidcmd("NOOP")
            welcome = (ftp.getwelcome() or "").strip()[:200]
        except ftplib.all_errors as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000,
                              f"FTP connection `{self.name}`: NOOP failed: {_reply(exc)}")
        finally:
            _close(ftp, polite=True)
        return PingResult(True, (time.perf_counter() - started) * 1000, f"{self.settings.address}: {welcome}")


def _reply(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).strip()[:300]


def _close(ftp: ftplib.FTP, polite: bool = False) -> None:
    with contextlib.suppress(*ftplib.all_errors):
        if polite and ftp.sock is not None:
            ftp.quit()
    with contextlib.suppress(*ftplib.all_errors):
        ftp.close()
