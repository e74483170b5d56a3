"""The file watcher (``manage.py watch_files``): files in watched directories invoke their channel's service.

How a file travels:

1. *Noticed*: watchfiles (inotify on Linux; polling with ``use_polling`` for network file
   systems, and whenever inotify cannot start) reports it, or a scan of the directory finds it:
   at start (files dropped while the platform was down), when a channel is added or changed,
   and every ``FILE_RESCAN_INTERVAL`` seconds (a safety net for lost events).
2. *Stable*: its size and modification time must stay the same for the channel's
   ``stable_seconds``; a file still being written is not handed over.
3. *Claimed*: one ``FileClaim`` row per version of a file (path, size, modification time);
   inserting it is the claim, so with several watchers on one directory one wins. A claim
   left ``processing`` by a watcher that died is taken over after ``FILE_CLAIM_TIMEOUT`` s.
4. *Invoked*: ``integration.invoke.invoke`` with channel type ``file``, in a pool of
   ``FILE_WORKERS`` threads.
5. *Put away*: after success left, moved or deleted; after a failure left or moved to the
   error directory. The claim row records the outcome, the CID and the error.

Bad input never stops the loop: a file that vanishes, cannot be read, has a name that is not
UTF-8, or whose service fails is logged with its CID and put where the channel says failures go.
A directory that does not exist is reported once and watched as soon as it appears.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import queue
import shutil
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from integration import snapshot as snapshots
from integration.channels.files import KIND, CompiledFileChannel, FileTable
from integration.cid import new_cid
from integration.errors import SwitchboardError
from integration.invoke import invoke
from integration.models import AfterAction, FileClaim
from integration.services import ChannelInfo

logger = logging.getLogger("integration.files")

Version = tuple[int, int]  # size, mtime_ns


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def claim_key(path: str, version: Version) -> str:
    return hashlib.sha256(f"{path}\x00{version[0]}\x00{version[1]}".encode("utf-8", "surrogateescape")).hexdigest()


def path_key(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def printable(path: str) -> str:
    """A path as text the database and the logs can hold (undecodable bytes as \\x escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class FileWatcher:
    """Watches every active file channel's directory and hands stable files over, each once."""

    def __init__(self, *, workers: int | None = None, rescan_interval: float | None = None,
                 poll_delay_ms: int | None = None, claim_timeout: float | None = None) -> None:
        self.workers = workers or _setting("FILE_WORKERS", 4)
        self.rescan_interval = rescan_interval or _setting("FILE_RESCAN_INTERVAL", 30.0)
        self.poll_delay_ms = poll_delay_ms or _setting("FILE_POLL_DELAY_MS", 300)
        self.claim_timeout = claim_timeout or _setting("FILE_CLAIM_TIMEOUT", 600.0)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.stop_event = threading.Event()
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()  # path, "added" or "modified"
        self.pending: dict[tuple[int, str], tuple[Version, float]] = {}  # -> version, stable since
        self.in_flight: set[tuple[int, str]] = set()
        self.seen: dict[tuple[int, str], Version] = {}  # versions this process already decided on
        self.threads: dict[tuple[str, bool, bool], tuple[threading.Thread, threading.Event]] = {}
        self.missing: set[str] = set()
        self.table = FileTable([])
        self.version = -1
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="file-channel")

    # --- the main loop -----------------------------------------------------------------------

    def run(self) -> None:
        last_config = last_scan = 0.0
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now - last_config >= _setting("CONFIG_POLL_INTERVAL", 0.25):
                    last_config = now
                    if self._reload():
                        last_scan = 0.0
                if now - last_scan >= self.rescan_interval:
                    last_scan = now
                    self._ensure_threads()
                    self.scan()
                self._drain(timeout=0.1)
                self._check_pending()
        finally:
            self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for _, stop in self.threads.values():
            stop.set()
        self.executor.shutdown(wait=True)  # files being processed finish and are put away

    def _reload(self) -> bool:
        """Pick up a new configuration version; True when the file channels changed."""
        try:
            snap = snapshots.refresh()
        except Exception as exc:
            logger.warning("Cannot read the configuration: %s", exc)
            close_old_connections()
            return False
        if snap.version == self.version:
            return False
        self.version = snap.version
        table = snap.channels[KIND]
        changed = self._channel_state(table) != self._channel_state(self.table)
        self.table = table
        if changed:
            self.seen.clear()
            self.pending = {key: value for key, value in self.pending.items() if key[0] in table.by_id}
        return changed

    @staticmethod
    def _channel_state(table: FileTable) -> list[Any]:
        return sorted((c.id, c.is_active, c.directory, c.patterns, c.recursive, c.events, c.use_polling,
                       c.done_directory, c.error_directory) for c in table.by_id.values())

    # --- noticing files ----------------------------------------------------------------------

    def _ensure_threads(self) -> None:
        wanted = {channel.watch_key for channel in self.table.active()}
        for key in list(self.threads):
            thread, stop = self.threads[key]
            if key not in wanted or not thread.is_alive():
                stop.set()
                del self.threads[key]
        for key in wanted:
            directory = key[0]
            if key in self.threads:
                continue
            if not os.path.isdir(directory):
                if directory not in self.missing:
                    logger.error("File channel directory %s does not exist (or is no directory); "
                                 "it is watched once it appears", printable(directory))
                    self.missing.add(directory)
                continue
            self.missing.discard(directory)
            stop = threading.Event()
            thread = threading.Thread(target=self._watch, args=(key, stop), daemon=True,
                                      name=f"file-watch:{directory}")
            self.threads[key] = (thread, stop)
            thread.start()

    def _watch(self, key: tuple[str, bool, bool], stop: threading.Event) -> None:
        import watchfiles

        directory, recursive, polling = key
        for attempt_polling in ((True,) if polling else (False, True)):
            try:
                for changes in watchfiles.watch(
                    directory, stop_event=stop, recursive=recursive, force_polling=attempt_polling,
                    poll_delay_ms=self.poll_delay_ms, debounce=50, step=20, rust_timeout=1000,
                    yield_on_timeout=True, raise_interrupt=False, ignore_permission_denied=True,
                    watch_filter=None,
                ):
                    for change, path in changes:
                        if change != watchfiles.Change.deleted:
                            self.events.put((path, "added" if change == watchfiles.Change.added else "modified"))
                return
            except Exception as exc:
                if stop.is_set():
                    return
                how = "polling" if attempt_polling else "inotify"
                logger.warning("Watching %s with %s failed: %s", printable(directory), how, exc)
        # Both failed (the directory went away, say): the next rescan starts a new thread if it can.

    def scan(self) -> None:
        """Walk every active channel's directory: what is there and matches is pending."""
        for channel in self.table.active():
            if not os.path.isdir(channel.directory):
                continue
            try:
                if channel.recursive:
                    for parent, _, names in os.walk(channel.directory):
                        for name in names:
                            self._notice(os.path.join(parent, name), "scan", (channel,))
                else:
                    with os.scandir(channel.directory) as entries:
                        for entry in entries:
                            # Not only regular files: a FIFO or a link leading nowhere that matches is bad
                            # input to report and put away, not to skip without a trace. (Links are not
                            # followed here: a loop would raise and stop the scan; _check_pending drops
                            # links to directories.)
                            if not entry.is_dir(follow_symlinks=False):
                                self._notice(entry.path, "scan", (channel,))
            except OSError as exc:
                logger.error("Cannot list file channel `%s`'s directory %s: %s", channel.name,
                             printable(channel.directory), exc)

    def _drain(self, timeout: float) -> None:
        try:
            path, how = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._notice(path, how, None)
            try:
                path, how = self.events.get_nowait()
            except queue.Empty:
                return

    def _notice(self, path: str, how: str, channels: Any) -> None:
        for channel in channels if channels is not None else self.table.matching(path):
            if channels is not None and not channel.matches(path):
                continue
            key = (channel.id, path)
            if key not in self.pending:
                self.pending[key] = ((-1, -1), time.monotonic())

    def _check_pending(self) -> None:
        now = time.monotonic()
        for key, (version, since) in list(self.pending.items()):
            if key in self.in_flight:
                continue
            channel = self.table.by_id.get(key[0])
            if channel is None or not channel.is_active:
                del self.pending[key]
                continue
            try:
                # A link counts as the file it leads to (handle() stats the same way; lstat here and stat
                # there made a link to a file look changed each time, handed back for ever).
                st = os.stat(key[1])
            except OSError:
                try:
                    st = os.lstat(key[1])  # a link leading nowhere (or to itself): handed over to fail
                except OSError:
                    del self.pending[key]
                    self._vanished(channel, key, version)
                    continue
            if stat.S_ISDIR(st.st_mode):  # directories are not files; anything else that matches is
                del self.pending[key]      # handed over, and handle() fails what it cannot read
                continue
            current = (st.st_size, st.st_mtime_ns)
            if current != version:
                self.pending[key] = (current, now)
                continue
            if now - since < channel.stable_seconds:
                continue
            del self.pending[key]
            if self.seen.get(key) == current:
                continue
            self.seen[key] = current
            self.in_flight.add(key)
            # A rename reaches watchfiles as "added", like a creation. What tells them apart is the
            # inode: a rename changes its ctime, not its mtime, so a file whose ctime is later than its
            # last write arrived complete (moved in, or copied with its time stamps). A file renamed
            # within the same clock tick as its last write (a few ms) counts as created.
            moved_in = st.st_ctime_ns > st.st_mtime_ns
            self.executor.submit(self._handle_safely, channel, key[1], current, moved_in)

    def _vanished(self, channel: CompiledFileChannel, key: tuple[int, str], version: Version) -> None:
        """A matching file went away before it was handed over: a log line with a CID is its trace.

        Not when it was handed over already (by this watcher: it is in ``seen``; or by another: it
        has a claim), since then it is gone because it was put away.
        """
        if self.seen.pop(key, None) is not None:
            return
        try:
            if FileClaim.objects.filter(channel_id=channel.id, path_key=path_key(key[1])).exists():
                return
        except Exception:
            close_old_connections()  # the database is down: better a line too many than none
        when = "never stable" if version == (-1, -1) else f"within the {channel.stable_seconds:g} s stability wait"
        logger.info("[%s] File channel `%s`: %s vanished before it was handed over (%s); nothing to do", new_cid(),
                    channel.name, printable(key[1]), when)

    # --- handing a file over -----------------------------------------------------------------

    def _handle_safely(self, channel: CompiledFileChannel, path: str, version: Version, moved_in: bool) -> None:
        try:
            close_old_connections()
            self.handle(channel, path, version, moved_in)
        except Exception:
            logger.exception("File channel `%s`: handling %s failed", channel.name, printable(path))
            self.seen.pop((channel.id, path), None)  # try again on the next scan
        finally:
            self.in_flight.discard((channel.id, path))

    def handle(self, channel: CompiledFileChannel, path: str, version: Version, moved_in: bool) -> str | None:
        """Claim one version of a file, invoke the service, put the file away; the outcome or None."""
        event = self._classify(channel, path, version, moved_in)
        if event not in channel.events:
            return None
        cid = new_cid()
        claim = self._claim(channel, path, version, event, cid)
        if claim is None:
            return None  # another watcher has it
        error = ""
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            error = "The file name is not valid UTF-8"
        if not error:
            st = None
            try:
                st = os.stat(path)
            except OSError as exc:
                if not os.path.lexists(path):
                    logger.error("[%s] File channel `%s`: %s vanished before it could be processed", cid,
                                 channel.name, printable(path))
                    self._finish(claim, FileClaim.Status.FAILED, "The file vanished before it could be processed")
                    return "vanished"
                # Still there but cannot be opened (a link leading nowhere or to itself): unreadable, and
                # put where failures go like any, rather than dropped as if it had vanished.
                error = f"Cannot read the file: {exc.strerror or exc}"
            if st is not None and not stat.S_ISREG(st.st_mode):
                # A FIFO, socket or device that matches: never opened (a FIFO would block a worker for good).
                error = "Not a regular file (a FIFO, socket or device); not read"
            elif st is not None and (st.st_size, st.st_mtime_ns) != version:
                claim.delete()  # still changing: give it back, it is noticed again when stable
                self.seen.pop((channel.id, path), None)
                self.events.put((path, "modified"))
                return None
            if not error:
                error = self._invoke(channel, path, version, event, cid)
        if error:
            logger.error("[%s] File channel `%s`: %s: %s", cid, channel.name, printable(path), error)
        action = channel.after_failure if error else channel.after_success
        target = channel.error_directory if error else channel.done_directory
        try:
            self._put_away(channel, path, action, target, cid)
        except OSError as exc:
            logger.error("[%s] File channel `%s`: cannot %s %s: %s", cid, channel.name, action, printable(path), exc)
            # Both in the claim row: it tells where the file is (still in place), not only what was wrong.
            error = f"{error}; and cannot {action} it: {exc}" if error else f"Cannot {action} the file: {exc}"
        self._finish(claim, FileClaim.Status.FAILED if error else FileClaim.Status.DONE, error)
        return "failed" if error else "done"

    def _classify(self, channel: CompiledFileChannel, path: str, version: Version, moved_in: bool) -> str:
        """``modified`` if another version of the path was claimed before; else moved in or created."""
        earlier = FileClaim.objects.filter(channel_id=channel.id, path_key=path_key(path)).exclude(
            key=claim_key(path, version)).exists()
        if earlier:
            return "modified"
        return "moved" if moved_in else "created"

    def _claim(self, channel: CompiledFileChannel, path: str, version: Version, event: str,
               cid: str) -> FileClaim | None:
        fields = dict(channel_id=channel.id, key=claim_key(path, version), path_key=path_key(path),
                      path=printable(path), size=version[0], mtime_ns=version[1], event=event, owner=self.owner,
                      cid=cid)
        try:
            with transaction.atomic():
                return FileClaim.objects.create(**fields)
        except IntegrityError:
            pass
        cutoff = timezone.now() - timedelta(seconds=self.claim_timeout)
        taken = FileClaim.objects.filter(
            channel_id=channel.id, key=fields["key"], status=FileClaim.Status.PROCESSING, claimed_at__lt=cutoff,
        ).update(owner=self.owner, cid=cid, claimed_at=timezone.now())
        if taken:
            logger.warning("[%s] File channel `%s`: %s taken over from a watcher that did not finish it", cid,
                           channel.name, printable(path))
            return FileClaim.objects.get(channel_id=channel.id, key=fields["key"])
        return None

    @staticmethod
    def _finish(claim: FileClaim, status: str, error: str) -> None:
        FileClaim.objects.filter(pk=claim.pk).update(status=status, error=error[:2000], finished_at=timezone.now())

    def _invoke(self, channel: CompiledFileChannel, path: str, version: Version, event: str, cid: str) -> str:
        """Run the service; "" on success, else what went wrong."""
        payload: dict[str, Any] = {"path": path, "channel": channel.name}
        if channel.pass_event:
            payload["event"] = event
        if channel.pass_contents:
            if version[0] > channel.max_contents_size:
                payload["data_omitted"] = True
            else:
                try:
                    with open(path, "rb") as handle:
                        raw = handle.read(channel.max_contents_size + 1)
                except OSError as exc:
                    return f"Cannot read the file: {exc.strerror or exc}"
                try:
                    payload["data"] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    payload["data_base64"] = base64.b64encode(raw).decode("ascii")
        try:
            invoke(channel.service_name, payload, channel=ChannelInfo(type=KIND, name=channel.name), cid=cid)
        except SwitchboardError as exc:
            return f"{channel.service_name} -> {exc.status_code} {exc.details}"
        return ""

    @staticmethod
    def _put_away(channel: CompiledFileChannel, path: str, action: str, target: str, cid: str) -> None:
        if action == AfterAction.DELETE:
            os.unlink(path)
        elif action == AfterAction.MOVE:
            relative = os.path.relpath(os.path.dirname(path), channel.directory)
            destination = os.path.normpath(os.path.join(target, relative))
            os.makedirs(destination, exist_ok=True)
            final = os.path.join(destination, os.path.basename(path))
            if os.path.lexists(final):  # never overwrite an earlier file of the same name
                final = f"{final}.{cid}"
            shutil.move(path, final)
