"""SFTP as an outgoing connection (paramiko): ``self.out.sftp[name].conn`` and the seed's whole Python API.

::

    conn = self.out.sftp["My SFTP Connection"].conn
    conn.execute("ls -la /remote/path")          # a script of SFTP commands, as in the admin's shell
    conn.write("My data", "/remote/path")          # atomic: a temporary name, then a rename
    data = conn.read("/remote/path")               # bytes
    for info in conn.list("/remote"): ...          # SftpInfo: type, size, owner, permissions...

One SSH transport per connection, opened on first use and again after it drops, carries a
small pool of SFTP sessions (channels); each call borrows one. Inside ``execute`` every
method uses the script's own session, so ``cd`` holds for the commands after it.

Host keys: the server's key must be one of the connection's ``host_key`` lines, or the
connection refuses it (``SftpHostKeyError``, naming the fingerprint it saw). Accepting unknown
keys is a field of its own, and each such connection logs a warning with the key.

Errors are ``SftpError`` subclasses whose message names the connection, the action and the
path: ``SFTP connection `files`: cannot read `/in/a.csv`: no such file or directory``. A
path of the wrong kind (``delete_file`` on a directory) is ``SftpPathTypeError``
("Expected `p` to be a file, not a directory"); a full disk ``SftpDiskFull`` (SFTP v3 only
says "Failure", so the server's free space is asked through OpenSSH's statvfs extension).
``write`` and ``upload`` never leave a partial file under the promised name: they write to
``.<name>.<random>.part`` next to it and rename, and delete the temporary file on failure.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import posixpath
import secrets
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

from connections.base import Connection, PingResult
from connections.sftp_errors import (
    SftpDiskFull,
    SftpError,
    SftpExists,
    SftpHostKeyError,
    SftpNotFound,
    SftpPathTypeError,
    SftpPermissionDenied,
    SftpUnavailable,
    wire_log_level,
)
from connections.sftp_info import SftpInfo, info_from_attributes
from connections.sftp_parsing import load_private_key
from connections.sftp_settings import SftpSettings, Throttle, kind_of, octal_mode
from connections.sftp_shell import SftpOutput, run_script

if TYPE_CHECKING:
    from connections.directory_models import SftpConnection

KIND = "sftp"
logger = logging.getLogger(__name__)
_POOL_SIZE = 8
#: Failures of the transport itself (the session is dropped), as opposed to a status the server sent.
_TRANSPORT_FAILURES = (paramiko.SSHException, EOFError, socket.timeout, TimeoutError, ConnectionError)


class SftpClient(Connection):
    """``self.out.sftp[name]`` (and its ``.conn``): the seed's SFTP API over one paramiko transport."""

    kind = KIND

    def __init__(self, settings: SftpSettings, *, is_active: bool = True) -> None:
        self.name = settings.name
        self.settings = settings
        self.is_active = is_active
        self._transport: paramiko.Transport | None = None
        self._idle: list[paramiko.SFTPClient] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self.wire_logger = f"connections.sftp.wire.{settings.name.replace('.', '_')[:80]}"

    @classmethod
    def from_definition(cls, row: SftpConnection) -> SftpClient:
        return cls(SftpSettings.from_row(row), is_active=row.is_active)

    @property
    def conn(self) -> SftpClient:
        return self

    # --- Transport and sessions -----------------------------------------------------------------

    def open_transport(self, log_channel: str | None = None, log_level: int | None = None) -> paramiko.Transport:
        """A new, authenticated transport to the server; ``SftpUnavailable`` / ``SftpHostKeyError`` if not."""
        settings, options = self.settings, dict(self.settings.options)
        where = f"SFTP connection `{self.name}` ({settings.username}@{settings.address})"
        try:
            sock = socket.create_connection((settings.host, settings.port),
                                            timeout=options.get("ConnectTimeout") or settings.timeout)
        except OSError as exc:
            raise SftpUnavailable(f"{where}: cannot connect: {exc.strerror or exc}") from None
        transport = paramiko.Transport(sock)
        transport.set_log_channel(log_channel or self.wire_logger)
        level = settings.log_level if log_level is None else log_level
        logging.getLogger(log_channel or self.wire_logger).setLevel(wire_log_level(level))
        transport.set_hexdump(level >= 4)
        if options.get("Compression"):
            transport.use_compression(True)
        try:
            transport.start_client(timeout=settings.timeout)
            self._check_host_key(transport.get_remote_server_key(), where)
            self._authenticate(transport, where)
        except SftpUnavailable:
            transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise SftpUnavailable(f"{where}: SSH failed: {exc or type(exc).__name__}") from None
        if options.get("ServerAliveInterval"):
            transport.set_keepalive(int(options["ServerAliveInterval"]))
        return transport

    def _check_host_key(self, key: paramiko.PKey, where: str) -> None:
        if any(known.get_name() == key.get_name() and known.asbytes() == key.asbytes()
               for known in self.settings.host_keys):
            return
        seen = f"{key.get_name()} {key.fingerprint}"
        if self.settings.accept_unknown_host_key:
            logger.warning("%s: accepting the unknown host key %s (the connection accepts unknown keys)", where, seen)
            return
        raise SftpHostKeyError(f"{where}: the server's host key {seen} is not a known host key of this connection; "
                               "add it to the connection if it is the right server")

    def _authenticate(self, transport: paramiko.Transport, where: str) -> None:
        settings = self.settings
        refused = ""
        if settings.private_key:
            try:
                transport.auth_publickey(settings.username, load_private_key(settings.private_key))
                return
            except paramiko.AuthenticationException:
                refused = "the key was refused"
        if settings.password:
            try:
                transport.auth_password(settings.username, settings.password)
                return
            except paramiko.AuthenticationException:
                refused = f"{refused + ', ' if refused else ''}the password was refused"
        raise SftpUnavailable(f"{where}: login failed: {refused or 'no password or key is set'}")

    def _live_transport(self) -> paramiko.Transport:
        with self._lock:
            if self._transport is None or not self._transport.is_active():
                stale, self._idle = self._idle, []
                for sftp in stale:
                    _quietly(sftp.close)
                if self._transport is not None:
                    _quietly(self._transport.close)
                self._transport = None
                self._transport = self.open_transport()
            return self._transport

    def _new_session(self, transport: paramiko.Transport) -> paramiko.SFTPClient:
        sftp = paramiko.SFTPClient.from_transport(transport)
        if sftp is None:
            raise SftpUnavailable(f"SFTP connection `{self.name}`: the server refused the SFTP subsystem")
        sftp.get_channel().settimeout(self.settings.timeout)
        if self.settings.default_directory:
            sftp.chdir(self.settings.default_directory)
        return sftp

    @contextlib.contextmanager
    def session(self) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session for the block: the script's own inside ``execute``, else one from the pool."""
        current = getattr(self._local, "sftp", None)
        if current is not None:
            yield current
            return
        with self._lock:
            sftp = self._idle.pop() if self._idle else None
        if sftp is None or sftp.get_channel().closed:
            try:
                sftp = self._new_session(self._live_transport())
            except _TRANSPORT_FAILURES as exc:
                raise SftpUnavailable(f"SFTP connection `{self.name}`: cannot open a session: {exc}") from None
        try:
            yield sftp
        except _TRANSPORT_FAILURES:
            _quietly(sftp.close)
            raise
        except BaseException:
            self._give_back(sftp)
            raise
        self._give_back(sftp)

    def _give_back(self, sftp: paramiko.SFTPClient) -> None:
        try:
            # A script may have changed directory: the next borrower starts at the default one.
            sftp.chdir(self.settings.default_directory or None)
        except (OSError, paramiko.SSHException, EOFError):
            _quietly(sftp.close)
            return
        with self._lock:
            if len(self._idle) < _POOL_SIZE and not sftp.get_channel().closed:
                self._idle.append(sftp)
                return
        _quietly(sftp.close)

    @contextlib.contextmanager
    def operation(self, action: str, path: str) -> Iterator[paramiko.SFTPClient]:
        """A session whose OS errors become ``SftpError``s naming the connection, ``action`` and ``path``."""
        try:
            with self.session() as sftp:
                yield sftp
        except SftpError:
            raise
        except OSError as exc:
            if isinstance(exc, _TRANSPORT_FAILURES):
                raise SftpUnavailable(f"SFTP connection `{self.name}`: cannot {action} `{path}`: the connection "
                                      f"failed ({exc or type(exc).__name__})") from None
            raise self.error(action, path, exc) from None
        except (paramiko.SSHException, EOFError) as exc:
            raise SftpUnavailable(f"SFTP connection `{self.name}`: cannot {action} `{path}`: the connection "
                                  f"failed ({exc or type(exc).__name__})") from None

    def error(self, action: str, path: str, exc: OSError) -> SftpError:
        prefix = f"SFTP connection `{self.name}`: cannot {action} `{path}`"
        code = exc.errno
        if isinstance(exc, FileNotFoundError) or code == errno.ENOENT:
            return SftpNotFound(f"{prefix}: no such file or directory")
        if isinstance(exc, PermissionError) or code == errno.EACCES:
            return SftpPermissionDenied(f"{prefix}: permission denied")
        reason = exc.strerror or (exc.args[0] if exc.args else "") or type(exc).__name__
        return SftpError(f"{prefix}: {reason}")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            transport, self._transport = self._transport, None
        for sftp in idle:
            _quietly(sftp.close)
        if transport is not None:
            _quietly(transport.close)

    # --- Scripts and ping ------------------------------------------------------------------------

    def execute(self, script: str, log_level: int | None = None, raise_on_error: bool = True, *,
                allow_local: bool = True) -> SftpOutput:
        """Run SFTP commands (one a line, see ``connections.sftp_shell``); raises on failure unless told not to."""
        output = run_script(self, script, self.settings.log_level if log_level is None else log_level,
                            allow_local=allow_local)
        if not output.is_ok and raise_on_error:
            raise SftpError(f"SFTP connection `{self.name}`: command #{output.command_no} failed: "
                            f"{output.stderr.strip()[:1000]}")
        return output

    def ping(self) -> PingResult:
        started = time.perf_counter()
        try:
            output = self.execute(self.settings.ping_command, raise_on_error=False, allow_local=False)
        except (SftpError, SftpUnavailable) as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000, str(exc))
        ms = (time.perf_counter() - started) * 1000
        if not output.is_ok:
            return PingResult(False, ms, f"`{self.settings.ping_command}` failed: {output.stderr.strip()[:500]}")
        version = self._transport.remote_version if self._transport else ""
        return PingResult(True, ms, f"{self.settings.address} ran `{self.settings.ping_command}` ({version})")

    # --- Information about paths -----------------------------------------------------------------

    def get_info(self, path: str) -> SftpInfo:
        """What is at ``path`` (not following a symlink): type, size, owner, group, permissions, times."""
        with self.operation("get information about", path) as sftp:
            attributes = sftp.lstat(path)
            owner = self._owner_names(sftp, path)
            target = sftp.readlink(path) if stat.S_ISLNK(attributes.st_mode or 0) else None
        return info_from_attributes(posixpath.basename(path.rstrip("/")) or path, path, attributes, owner, target)

    def _owner_names(self, sftp: paramiko.SFTPClient, path: str) -> tuple[str, str] | None:
        # SFTP v3's stat carries numbers only; the names are in the server's `ls -l` line of the parent's listing.
        parent, base = posixpath.split(path.rstrip("/"))
        try:
            for attributes in sftp.listdir_iter(parent or "."):
                if attributes.filename == base:
                    words = (attributes.longname or "").split()
                    return (words[2], words[3]) if len(words) > 3 else None
        except OSError:
            return None
        return None

    def exists(self, path: str) -> bool:
        return self._kind(path) is not None

    def is_file(self, path: str) -> bool:
        return self._kind(path) == "file"

    def is_directory(self, path: str) -> bool:
        return self._kind(path) == "directory"

    def is_symlink(self, path: str) -> bool:
        return self._kind(path) == "symlink"

    def _kind(self, path: str) -> str | None:
        with self.operation("check", path) as sftp:
            try:
                mode = sftp.lstat(path).st_mode or 0
            except FileNotFoundError:
                return None
        return kind_of(mode)

    def require(self, path: str, expected: str) -> None:
        """``SftpPathTypeError`` unless ``path`` is a ``file``, ``directory`` or ``symlink`` as expected."""
        kind = self._kind(path)
        if kind is None:
            raise SftpNotFound(f"SFTP connection `{self.name}`: `{path}` does not exist (expected a {expected})")
        if kind != expected:
            raise SftpPathTypeError(f"SFTP connection `{self.name}`: expected `{path}` to be a {expected}, "
                                    f"not a {kind}")

    def list(self, path: str = ".") -> list[SftpInfo]:
        """The entries of a directory (without . and ..), sorted by name, in ``get_info``'s form."""
        with self.operation("list", path) as sftp:
            entries = sftp.listdir_attr(path)
        found = []
        for attributes in sorted(entries, key=lambda a: a.filename):
            words = (attributes.longname or "").split()
            owner = (words[2], words[3]) if len(words) > 3 else None
            found.append(info_from_attributes(attributes.filename, posixpath.join(path, attributes.filename),
                                              attributes, owner, None))
        return found

    # --- Reading and downloading -----------------------------------------------------------------

    def read(self, path: str, mode: str = "r+b") -> bytes:
        """The contents of a remote file."""
        buffer = io.BytesIO()
        with self.operation("read", path) as sftp:
            if not stat.S_ISREG(sftp.stat(path).st_mode or 0):
                raise SftpPathTypeError(f"SFTP connection `{self.name}`: expected `{path}` to be a file")
            sftp.getfo(path, buffer, callback=Throttle(self.settings.bandwidth_limit))
        return buffer.getvalue()

    def download(self, remote_path: str, local_path: str, recursive: bool = True, require_file: bool = False) -> None:
        """Copy a remote file, or a directory with everything in it, to ``local_path``."""
        with self.operation("download", remote_path) as sftp:
            attributes = sftp.stat(remote_path)
            if stat.S_ISDIR(attributes.st_mode or 0):
                if require_file or not recursive:
                    raise SftpPathTypeError(f"SFTP connection `{self.name}`: expected `{remote_path}` to be a file, "
                                            "not a directory")
                self._download_tree(sftp, remote_path, local_path)
            else:
                self._download_one(sftp, remote_path, local_path, attributes)

    def download_file(self, remote_path: str, local_path: str) -> None:
        self.download(remote_path, local_path, recursive=False, require_file=True)

    def _download_one(self, sftp: paramiko.SFTPClient, remote: str, local: str,
                      attributes: paramiko.SFTPAttributes) -> None:
        # Into a temporary name first: a transfer that fails leaves no partial file under `local`.
        temp = f"{local}.{secrets.token_hex(4)}.part"
        try:
            sftp.get(remote, temp, callback=Throttle(self.settings.bandwidth_limit), prefetch=True)
            if self.settings.preserve_metadata:
                os.utime(temp, (attributes.st_atime or 0, attributes.st_mtime or 0))
                os.chmod(temp, stat.S_IMODE(attributes.st_mode or 0o600))
            os.replace(temp, local)
        except BaseException:
            _quietly(lambda: os.unlink(temp))
            raise

    def _download_tree(self, sftp: paramiko.SFTPClient, remote: str, local: str) -> None:
        entries = sftp.listdir_attr(remote)  # before anything local exists: an unreadable one leaves nothing
        os.makedirs(local, exist_ok=True)
        for attributes in entries:
            child_remote, child_local = posixpath.join(remote, attributes.filename), os.path.join(
                local, attributes.filename)
            if stat.S_ISDIR(attributes.st_mode or 0):
                self._download_tree(sftp, child_remote, child_local)
            elif stat.S_ISREG(attributes.st_mode or 0):
                self._download_one(sftp, child_remote, child_local, attributes)

    # --- Writing and uploading -------------------------------------------------------------------

    def write(self, data: str | bytes, remote_path: str, mode: str = "w+b", overwrite: bool = False,
              encoding: str = "utf8") -> None:
        """Write ``data`` to a remote file atomically: a temporary name next to it, then a rename."""
        payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
        self._put_atomically(lambda sftp, temp, callback: sftp.putfo(io.BytesIO(payload), temp, len(payload),
                                                                     callback=callback),
                             remote_path, overwrite, len(payload), "write")

    def upload(self, local_path: str, remote_path: str, recursive: bool = True, overwrite: bool = False) -> None:
        """Copy a local file (atomically, as ``write``) or directory tree to ``remote_path``."""
        if os.path.isdir(local_path):
            if not recursive:
                raise SftpPathTypeError(f"SFTP connection `{self.name}`: cannot upload the directory `{local_path}` "
                                        "without recursive=True")
            if self.exists(remote_path):
                if not overwrite:
                    raise SftpExists(f"SFTP connection `{self.name}`: cannot upload, location `{remote_path}` already "
                                     "exists (use overwrite=True to replace it)")
                self.delete(remote_path)
            self._upload_tree(local_path, remote_path)
            return
        size = os.path.getsize(local_path)
        self._put_atomically(lambda sftp, temp, callback: sftp.put(local_path, temp, callback=callback),
                             remote_path, overwrite, size, "upload", local_path)

    def _upload_tree(self, local: str, remote: str) -> None:
        self.create_directory(remote)
        for entry in sorted(os.scandir(local), key=lambda e: e.name):
            target = posixpath.join(remote, entry.name)
            if entry.is_dir(follow_symlinks=False):
                self._upload_tree(entry.path, target)
            elif entry.is_file(follow_symlinks=False):
                self.upload(entry.path, target, overwrite=True)

    def _put_atomically(self, put: Callable[[paramiko.SFTPClient, str, Any], Any], remote_path: str,
                        overwrite: bool, size: int, action: str, local_path: str | None = None) -> None:
        parent, base = posixpath.split(remote_path)
        temp = posixpath.join(parent, f".{base}.{secrets.token_hex(4)}.part")
        with self.operation(action, remote_path) as sftp:
            try:
                kind = kind_of(sftp.lstat(remote_path).st_mode or 0)
            except FileNotFoundError:
                kind = None
            if kind is not None and not overwrite:
                raise SftpExists(f"SFTP connection `{self.name}`: cannot {action}, location `{remote_path}` already "
                                 "exists (use overwrite=True to replace it)")
            if kind == "directory":
                raise SftpPathTypeError(f"SFTP connection `{self.name}`: cannot {action} `{remote_path}`: it is a "
                                        "directory")
            try:
                put(sftp, temp, Throttle(self.settings.bandwidth_limit))
                if local_path and self.settings.preserve_metadata:
                    local = os.stat(local_path)
                    sftp.utime(temp, (local.st_atime, local.st_mtime))
                    sftp.chmod(temp, stat.S_IMODE(local.st_mode))
                # posix-rename@openssh.com replaces atomically; plain SFTP v3 rename refuses an existing target.
                (sftp.posix_rename if overwrite else sftp.rename)(temp, remote_path)
            except BaseException as exc:
                _quietly(lambda: sftp.remove(temp))
                if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError):
                    self._raise_if_disk_full(sftp, parent or ".", remote_path, action, size)
                raise

    def _raise_if_disk_full(self, sftp: paramiko.SFTPClient, directory: str, path: str, action: str,
                            size: int) -> None:
        try:
            kind, message = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", sftp._adjust_cwd(directory))
        except (OSError, paramiko.SSHException):
            return
        if kind != CMD_EXTENDED_REPLY:
            return
        _bsize, frsize, _blocks, _bfree, bavail = (message.get_int64() for _ in range(5))
        if bavail * frsize < max(size, 1):
            raise SftpDiskFull(f"SFTP connection `{self.name}`: cannot {action} `{path}`: the server's disk is full "
                               f"({bavail * frsize} bytes free, {size} needed); nothing was left under that name")

    # --- Creating, moving and deleting -----------------------------------------------------------

    def create_directory(self, path: str) -> None:
        with self.operation("create the directory", path) as sftp:
            sftp.mkdir(path)

    def create_symlink(self, from_path: str, to_path: str) -> None:
        """``to_path`` becomes a symlink pointing at ``from_path`` (``ln -s from to``)."""
        with self.operation("create the symlink", to_path) as sftp:
            sftp.symlink(from_path, to_path)

    def create_hardlink(self, from_path: str, to_path: str) -> None:
        """``to_path`` becomes a hard link to ``from_path`` (OpenSSH's hardlink@openssh.com extension)."""
        with self.operation("create the hard link", to_path) as sftp:
            # paramiko has no method for it; it sends its own posix-rename extension the same way.
            sftp._request(CMD_EXTENDED, "hardlink@openssh.com", sftp._adjust_cwd(from_path),
                          sftp._adjust_cwd(to_path))

    def move(self, from_path: str, to_path: str) -> None:
        with self.operation("move", from_path) as sftp:
            sftp.rename(from_path, to_path)

    rename = move

    def delete(self, path: str) -> None:
        """Delete whatever is at ``path``; a directory with everything in it."""
        kind = self._kind(path)
        if kind is None:
            raise SftpNotFound(f"SFTP connection `{self.name}`: cannot delete `{path}`: no such file or directory")
        if kind == "directory":
            self._delete_tree(path)
        else:
            with self.operation("delete", path) as sftp:
                sftp.remove(path)

    def _delete_tree(self, path: str) -> None:
        with self.operation("delete", path) as sftp:
            for attributes in sftp.listdir_attr(path):
                child = posixpath.join(path, attributes.filename)
                if stat.S_ISDIR(attributes.st_mode or 0):
                    self._delete_tree(child)
                else:
                    sftp.remove(child)
            sftp.rmdir(path)

    def delete_directory(self, path: str) -> None:
        self.require(path, "directory")
        self._delete_tree(path)

    def delete_file(self, path: str) -> None:
        self.require(path, "file")
        with self.operation("delete", path) as sftp:
            sftp.remove(path)

    def delete_symlink(self, path: str) -> None:
        self.require(path, "symlink")
        with self.operation("delete", path) as sftp:
            sftp.remove(path)

    # --- Permissions and owners ------------------------------------------------------------------

    def chmod(self, mode: str | int, path: str) -> None:
        """``mode`` in octal as ``chmod`` takes it (``"600"``), or an int (``0o600``)."""
        value = octal_mode(mode, self.name)
        with self.operation("change the mode of", path) as sftp:
            sftp.chmod(path, value)

    def chown(self, owner: str | int, path: str) -> None:
        """A numeric uid, or a user name the server's ``id -u`` knows (needs the exec channel)."""
        uid = self._numeric_id(owner, "id -u -- {}", "owner")
        with self.operation("change the owner of", path) as sftp:
            sftp.chown(path, uid, sftp.lstat(path).st_gid or 0)

    def chgrp(self, group: str | int, path: str) -> None:
        """A numeric gid, or a group name the server's ``getent group`` knows (needs the exec channel)."""
        gid = self._numeric_id(group, "getent group -- {} | cut -d: -f3", "group")
        with self.operation("change the group of", path) as sftp:
            sftp.chown(path, sftp.lstat(path).st_uid or 0, gid)

    def _numeric_id(self, value: str | int, command: str, what: str) -> int:
        text = str(value).strip()
        if text.isascii() and text.isdigit():
            return int(text)
        if not text or len(text) > 64:
            raise SftpError(f"SFTP connection `{self.name}`: `{text[:64]}` is not a valid {what}")
        # SFTP v3 knows numbers only; the server's own tools turn the name into one.
        transport = self._live_transport()
        try:
            channel = transport.open_session(timeout=self.settings.timeout)
            try:
                channel.settimeout(self.settings.timeout)
                channel.exec_command(command.format(shlex.quote(text)))
                answer = channel.makefile("rb").read().decode(errors="replace").strip()
                status = channel.recv_exit_status()
            finally:
                channel.close()
        except (*_TRANSPORT_FAILURES, OSError) as exc:
            raise SftpError(f"SFTP connection `{self.name}`: cannot ask the server for the {what} `{text}` "
                            f"({exc or type(exc).__name__}); give a number instead") from None
        if status != 0 or not answer.isdigit():
            raise SftpError(f"SFTP connection `{self.name}`: the server knows no {what} `{text}` "
                            "(give a number, or allow commands over SSH)")
        return int(answer)


def _quietly(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception:  # noqa: S110 - cleaning up after a failure that is reported already
        pass
