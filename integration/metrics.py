"""Recorded invocation metrics: per-minute, per-service counts, errors and latency histograms.

Every invocation (``integration.invoke``) calls ``recorder.record()``, which must stay
cheap on the REST hot path: one lock, two dictionary look-ups, one ``bisect``. The
recorder keeps two things in memory:

* cumulative totals per service since the process started, which ``/metrics`` exposes in
  Prometheus form;
* pending per-minute tallies, keyed by (minute, service), which ``flush()`` adds to the
  ``InvocationStat`` rows in the database.

Each process flushes from its background poller every ``METRICS_FLUSH_INTERVAL`` seconds
and once more at exit, so web workers, Celery workers (scheduled and async invocations)
and the admin all land in the same rows. Several processes add to one row: the merge is
an ``UPDATE ... SET count = count + n`` (the row lock serialises writers), with an insert
when the row does not exist yet and a second update if another process inserted it first.

Latencies go into fixed log-scale buckets (four per decade, 0.1 ms to 10 s, plus an
overflow bucket), so percentiles over any set of rows are estimated from summed bucket
counts: find the bucket that holds the wanted rank and interpolate inside it (on the log
scale, like the buckets themselves), never above the largest latency seen.
"""

from __future__ import annotations

import atexit
import logging
import math
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

# Upper bounds in milliseconds: 0.1 * 10 ** (i / 4), rounded to three significant digits.
# Bucket i counts latencies in (BOUNDS_MS[i - 1], BOUNDS_MS[i]]; the last one counts the rest.
# InvocationStat stores one column per bucket (b00 ... b21): changing these needs a migration.
BOUNDS_MS: tuple[float, ...] = (
    0.1, 0.178, 0.316, 0.562,
    1.0, 1.78, 3.16, 5.62,
    10.0, 17.8, 31.6, 56.2,
    100.0, 178.0, 316.0, 562.0,
    1000.0, 1780.0, 3160.0, 5620.0,
    10000.0,
)
BUCKETS = len(BOUNDS_MS) + 1
BUCKET_FIELDS: tuple[str, ...] = tuple(f"b{i:02d}" for i in range(BUCKETS))
MAX_SERVICE_NAME = 200  # InvocationStat.service's length
MAX_PENDING = 50_000  # (minute, service) keys kept in memory while the database cannot take them
PRUNE_EVERY = 3600.0  # seconds between deletions of rows older than METRICS_RETENTION_DAYS


def bucket_of(ms: float) -> int:
    """The histogram bucket a latency falls in."""
    return bisect_left(BOUNDS_MS, ms)


def bucket_label(index: int) -> str:
    """``<= 1.78 ms`` or ``> 10000 ms``: what a bucket counts, for people."""
    if index < len(BOUNDS_MS):
        return f"<= {BOUNDS_MS[index]:g} ms"
    return f"> {BOUNDS_MS[-1]:g} ms"


class Tally:
    """Count, errors, total and largest time, and the histogram of a set of invocations."""

    __slots__ = ("buckets", "count", "errors", "max_ms", "total_ms")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total_ms = 0.0
        self.max_ms = 0.0
        self.buckets = [0] * BUCKETS

    def add(self, ms: float, bucket: int, failed: bool) -> None:
        self.count += 1
        if failed:
            self.errors += 1
        self.total_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms
        self.buckets[bucket] += 1

    def merge(self, other: Tally) -> None:
        self.count += other.count
        self.errors += other.errors
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)
        for index, value in enumerate(other.buckets):
            self.buckets[index] += value

    def percentile(self, q: float) -> float | None:
        return percentile(self.buckets, q, self.max_ms)


def percentile(buckets: Sequence[int], q: float, max_ms: float | None = None) -> float | None:
    """Estimate the ``q`` quantile (0 < q <= 1) in ms from bucket counts; None when there are none.

    The rank ``q * n`` is located in its bucket, and the value interpolated between the
    bucket's bounds on a log scale (linearly in the first bucket, which starts at 0). The
    largest latency seen caps the estimate and closes the overflow bucket.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count <= 0:
            continue
        if seen + count >= rank:
            fraction = min(max((rank - seen) / count, 0.0), 1.0)
            return _interpolate(index, fraction, max_ms)
        seen += count
    return _interpolate(len(buckets) - 1, 1.0, max_ms)  # rounding: q = 1 lands past the last count


def _interpolate(index: int, fraction: float, max_ms: float | None) -> float:
    lower = BOUNDS_MS[index - 1] if index > 0 else 0.0
    upper = BOUNDS_MS[index] if index < len(BOUNDS_MS) else max(max_ms or 0.0, lower * 2)
    if max_ms is not None and lower < max_ms < upper:
        upper = max_ms
    # Linear in the first bucket (it starts at 0), geometric in the others (log-scale bounds).
    value = upper * fraction if lower <= 0 else lower * math.exp(math.log(upper / lower) * fraction)
    return min(value, max_ms) if max_ms else value


def minute_of(timestamp: float) -> int:
    """Minutes since 1970-01-01 UTC: the slot a moment belongs to."""
    return int(timestamp // 60)


def slot_start(slot: int) -> datetime:
    return datetime.fromtimestamp(slot * 60, UTC)


class Recorder:
    """One per process (``recorder``): records invocations in memory and flushes them to the database.

    Recording touches only the pending per-minute tallies. The totals since start (for
    ``/metrics``) are the tallies already written (or given up on), plus the ones being
    written, plus the pending ones: a counter that never goes down, computed when asked.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], Tally] = {}
        self._writing: dict[tuple[int, str], Tally] = {}  # taken by the flush under way
        self._done: dict[str, Tally] = {}  # per service: written, or never to be written
        self.dropped = 0  # invocations kept out of the database because MAX_PENDING keys were waiting
        self._last_flush = 0.0
        self._last_prune = 0.0
        self._flush_lock = threading.Lock()

    # --- The hot path ------------------------------------------------------------------------------

    def record(self, service: str, ms: float, failed: bool) -> None:
        """Count one invocation of ``service`` that took ``ms`` and failed or not."""
        bucket = bisect_left(BOUNDS_MS, ms)
        key = (int(self.clock() // 60), service)
        with self._lock:
            tally = self._pending.get(key)
            if tally is None:
                if len(self._pending) >= MAX_PENDING:
                    self._drop(service, ms, bucket, failed)
                    return
                tally = self._pending[key] = Tally()
            # Tally.add, inlined: this runs on every invocation.
            tally.count += 1
            if failed:
                tally.errors += 1
            tally.total_ms += ms
            if ms > tally.max_ms:
                tally.max_ms = ms
            tally.buckets[bucket] += 1

    def _drop(self, service: str, ms: float, bucket: int, failed: bool) -> None:
        """No room for another key (the database has been away for long): count it for /metrics only."""
        self.dropped += 1
        done = self._done.get(service)
        if done is None:
            done = self._done[service] = Tally()
        done.add(ms, bucket, failed)

    # --- Reading -----------------------------------------------------------------------------------

    def totals(self) -> dict[str, Tally]:
        """Per-service totals since this process started (for ``/metrics``); fresh objects."""
        with self._lock:
            totals: dict[str, Tally] = {}
            for name, tally in self._done.items():
                totals[name] = Tally()
                totals[name].merge(tally)
            for tallies in (self._writing, self._pending):
                for (_, name), tally in tallies.items():
                    total = totals.get(name)
                    if total is None:
                        total = totals[name] = Tally()
                    total.merge(tally)
            return totals

    def pending(self) -> int:
        """How many (minute, service) tallies wait for the next flush."""
        return len(self._pending)

    def clear(self) -> None:
        """Forget everything recorded (tests)."""
        with self._flush_lock, self._lock:
            self._pending.clear()
            self._writing = {}
            self._done.clear()
            self.dropped = 0

    # --- Flushing ----------------------------------------------------------------------------------

    def take(self) -> dict[tuple[int, str], Tally]:
        """Hand over the pending tallies for writing and start afresh (recording goes on meanwhile)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._writing = pending
        return pending

    def written(self, tallies: dict[tuple[int, str], Tally]) -> None:
        """The tallies from ``take`` are in the database: they move to the totals."""
        with self._lock:
            self._writing = {}
            self._fold(tallies.items())

    def give_back(self, tallies: dict[tuple[int, str], Tally]) -> None:
        """Put tallies that could not be written back, to try again at the next flush."""
        oldest = minute_of(self.clock()) - retention_minutes()
        with self._lock:
            self._writing = {}
            lost = []
            for key, tally in tallies.items():
                mine = self._pending.get(key)
                if key[0] < oldest:
                    lost.append((key, tally))  # it would be pruned by the time it could be written
                elif mine is not None:
                    mine.merge(tally)
                elif len(self._pending) < MAX_PENDING:
                    self._pending[key] = tally
                else:
                    self.dropped += tally.count
                    lost.append((key, tally))
            self._fold(lost)

    def _fold(self, items: Iterable[tuple[tuple[int, str], Tally]]) -> None:
        for (_, name), tally in items:
            done = self._done.get(name)
            if done is None:
                done = self._done[name] = Tally()
            done.merge(tally)

    def flush(self) -> int:
        """Add the pending tallies to the database; returns how many rows it wrote to.

        If the database fails, the tallies stay pending for the next try and the error is raised.
        """
        with self._flush_lock:
            self._last_flush = self.clock()
            pending = self.take()
            if not pending:
                return 0
            try:
                write(pending)
            except BaseException:
                self.give_back(pending)
                raise
            self.written(pending)
            return len(pending)

    def maybe_flush(self) -> None:
        """Flush when ``METRICS_FLUSH_INTERVAL`` has passed, and prune old rows once an hour (the poller calls this)."""
        from django.conf import settings

        now = self.clock()
        if now - self._last_flush >= settings.METRICS_FLUSH_INTERVAL:
            self.flush()
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            deleted = prune(now)
            if deleted:
                logger.info("Deleted %d invocation statistics rows older than %d days", deleted,
                            settings.METRICS_RETENTION_DAYS)


def retention_minutes() -> int:
    from django.conf import settings

    return int(settings.METRICS_RETENTION_DAYS) * 24 * 60


def write(pending: dict[tuple[int, str], Tally]) -> None:
    """Add tallies to their rows in one transaction, in key order (so concurrent flushes never deadlock)."""
    from django.db import transaction

    with transaction.atomic():
        for slot, service in sorted(pending):
            # PostgreSQL refuses NUL in text; one such name must not block every flush after it.
            merge_row(slot, service.replace("\x00", "")[:MAX_SERVICE_NAME], pending[(slot, service)])


def merge_row(slot: int, service: str, tally: Tally) -> None:
    """Add one tally to the (minute, service) row, creating it if needed; call inside a transaction.

    The ``UPDATE`` adds in SQL and holds the row lock until commit, so processes flushing the
    same row at once are serialised and none of their counts is lost. When the row does not
    exist, the insert runs in a savepoint: if another process inserted it first, the unique
    constraint rejects ours and the update runs again against theirs.
    """
    from django.db import IntegrityError, transaction
    from django.db.models import F, FloatField, Value
    from django.db.models.functions import Greatest

    from integration.models import InvocationStat

    changes = {
        "count": F("count") + tally.count,
        "errors": F("errors") + tally.errors,
        "total_ms": F("total_ms") + tally.total_ms,
        "max_ms": Greatest(F("max_ms"), Value(tally.max_ms, output_field=FloatField())),
    }
    changes.update({field: F(field) + n for field, n in zip(BUCKET_FIELDS, tally.buckets, strict=True) if n})
    rows = InvocationStat.objects.filter(slot=slot, service=service)
    if rows.update(**changes):
        return
    values = dict(zip(BUCKET_FIELDS, tally.buckets, strict=True))
    try:
        with transaction.atomic():
            InvocationStat.objects.create(
                slot=slot, minute=slot_start(slot), service=service, count=tally.count, errors=tally.errors,
                total_ms=tally.total_ms, max_ms=tally.max_ms, **values,
            )
    except IntegrityError:
        rows.update(**changes)


def prune(now: float | None = None) -> int:
    """Delete rows older than ``METRICS_RETENTION_DAYS``; returns how many went."""
    from integration.models import InvocationStat

    oldest = minute_of(time.time() if now is None else now) - retention_minutes()
    deleted, _ = InvocationStat.objects.filter(slot__lt=oldest).delete()
    return deleted


def summed(rows: Iterable[Mapping[str, Any]]) -> Tally:
    """One Tally from aggregated rows (dicts with count, errors, total_ms, max_ms and the bucket fields)."""
    tally = Tally()
    for row in rows:
        tally.merge(tally_of(row))
    return tally


def tally_of(row: Mapping[str, Any]) -> Tally:
    """A Tally from one row of ``InvocationStat`` values or aggregates (missing values count as 0)."""
    tally = Tally()
    tally.count = int(row.get("count") or 0)
    tally.errors = int(row.get("errors") or 0)
    tally.total_ms = float(row.get("total_ms") or 0.0)
    tally.max_ms = float(row.get("max_ms") or 0.0)
    tally.buckets = [int(row.get(field) or 0) for field in BUCKET_FIELDS]
    return tally


recorder = Recorder()

# --- Flushing at exit ------------------------------------------------------------------------------

_exit_hooks_pid: int | None = None


def flush_at_exit(**_: object) -> None:
    """Write what this process still holds (atexit, Celery's worker_process_shutdown); never raise."""
    try:
        recorder.flush()
    except Exception as exc:
        logger.warning("Invocation statistics could not be written at exit: %s", exc)


def install_exit_flush() -> None:
    """Flush at process exit. Celery's pool processes end with os._exit, so they need its signal too."""
    global _exit_hooks_pid
    if _exit_hooks_pid == os.getpid():
        return
    _exit_hooks_pid = os.getpid()
    atexit.register(flush_at_exit)
    if multiprocessing.parent_process() is not None:
        # granian's web workers are multiprocessing children: they end with os._exit right
        # after multiprocessing's own finalizers, so atexit never runs there.
        multiprocessing.util.Finalize(None, flush_at_exit, exitpriority=10)
    from celery.signals import worker_process_shutdown

    worker_process_shutdown.connect(flush_at_exit, weak=False, dispatch_uid="switchboard-metrics-flush")
