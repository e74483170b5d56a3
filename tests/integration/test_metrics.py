"""Recorded invocation metrics: in-memory tallies, merging flushes into per-minute rows, percentiles, pruning."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from django.db import OperationalError, connection

from integration import metrics
from integration.errors import SwitchboardError
from integration.invoke import invoke
from integration.metrics import BOUNDS_MS, BUCKET_FIELDS, Recorder, bucket_of, percentile
from integration.models import InvocationStat

# 2026-01-05 10:00:00 UTC and a moment inside that minute: rows are keyed by the minute.
T0 = 1_767_607_200.0
SLOT = int(T0 // 60)

FAILING = """
    from integration.services import Service, BadRequest

    class Boom(Service):
        def handle(self):
            raise RuntimeError("backend down")

    class Status503(Service):
        def handle(self):
            self.response.status_code = 503
            self.response.payload = {"why": "maintenance"}

    class Refuse(Service):
        def handle(self):
            raise BadRequest("no such customer")

    class Fine(Service):
        def handle(self):
            self.response.payload = {"ok": True}
"""


class Clock:
    """A settable clock, so a test decides which minute its records belong to."""

    def __init__(self, now: float = T0 + 12.5) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_process_recorder() -> Any:
    """The process-wide recorder holds records of earlier tests; start each one empty."""
    metrics.recorder.clear()
    yield
    metrics.recorder.clear()


def needs_postgresql() -> None:
    """Concurrent writers need a server database (the suite runs on PostgreSQL; SQLite's test database is in memory)."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions are tested on PostgreSQL")


def row(service: str, slot: int = SLOT) -> InvocationStat:
    return InvocationStat.objects.get(slot=slot, service=service)


def buckets(stat: InvocationStat) -> list[int]:
    return [getattr(stat, field) for field in BUCKET_FIELDS]


# --- Recording in memory ---------------------------------------------------------------------------


def test_it_puts_each_latency_in_its_log_scale_bucket() -> None:
    assert bucket_of(0.05) == 0
    assert bucket_of(0.1) == 0  # bounds are inclusive upper limits
    assert bucket_of(0.11) == 1
    assert bucket_of(4.0) == BOUNDS_MS.index(5.62)
    assert bucket_of(10_000.0) == len(BOUNDS_MS) - 1
    assert bucket_of(10_000.1) == len(BOUNDS_MS)  # the overflow bucket
    assert len(BUCKET_FIELDS) == len(BOUNDS_MS) + 1


def test_it_tallies_invocations_per_minute_and_service() -> None:
    clock = Clock()
    recorder = Recorder(clock)
    recorder.record("crm.get", 4.0, False)
    recorder.record("crm.get", 12.0, True)
    clock.now += 60  # the next minute
    recorder.record("crm.get", 0.5, False)
    recorder.record("crm.put", 1.0, False)

    pending = recorder.take()
    assert sorted(pending) == [(SLOT, "crm.get"), (SLOT + 1, "crm.get"), (SLOT + 1, "crm.put")]
    first = pending[(SLOT, "crm.get")]
    assert (first.count, first.errors, first.total_ms, first.max_ms) == (2, 1, 16.0, 12.0)
    assert first.buckets[bucket_of(4.0)] == 1 and first.buckets[bucket_of(12.0)] == 1
    assert recorder.pending() == 0  # taken
    # The totals since start (for /metrics) are not consumed by a flush.
    assert recorder.totals()["crm.get"].count == 3


def test_it_stops_adding_keys_when_too_many_wait_for_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_PENDING", 2)
    recorder = Recorder(Clock())
    for name in ("a", "b", "c", "a"):
        recorder.record(name, 1.0, False)
    assert recorder.pending() == 2
    assert recorder.dropped == 1  # "c" had no room; the second "a" joined its existing tally
    assert recorder.totals()["c"].count == 1  # /metrics still counts it


# --- Which invocations fail ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_counts_exceptions_and_5xx_as_errors_and_4xx_as_not(builtins: None, deploy: Any) -> None:
    deploy("failing.py", FAILING)
    for name in ("failing.boom", "failing.refuse"):
        with pytest.raises(SwitchboardError):
            invoke(name, {})
    assert invoke("failing.status503", {}).status_code == 503
    invoke("failing.fine", {})
    invoke("failing.fine", {})

    totals = metrics.recorder.totals()
    assert (totals["failing.boom"].count, totals["failing.boom"].errors) == (1, 1)
    assert (totals["failing.status503"].count, totals["failing.status503"].errors) == (1, 1)
    assert (totals["failing.refuse"].count, totals["failing.refuse"].errors) == (1, 0)  # the caller's fault
    assert (totals["failing.fine"].count, totals["failing.fine"].errors) == (2, 0)

    metrics.recorder.flush()
    stored = {stat.service: (stat.count, stat.errors) for stat in InvocationStat.objects.all()}
    assert stored["failing.boom"] == (1, 1)
    assert stored["failing.status503"] == (1, 1)
    assert stored["failing.refuse"] == (1, 0)
    assert stored["failing.fine"] == (2, 0)


@pytest.mark.django_db
def test_rest_channel_calls_are_recorded(client: Any, make_channel: Any) -> None:
    make_channel("/api/hello", "demo.hello")
    for _ in range(3):
        assert client.get("/api/hello").status_code == 200
    metrics.recorder.flush()
    stat = InvocationStat.objects.get(service="demo.hello")
    assert stat.count == 3
    assert stat.errors == 0
    assert sum(buckets(stat)) == 3
    assert stat.max_ms > 0


# --- Flushing into rows ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_two_processes_flushing_the_same_minute_merge_into_one_row() -> None:
    # Two recorders stand for two processes (a web worker and a Celery worker, say).
    web, worker = Recorder(Clock(T0 + 5)), Recorder(Clock(T0 + 50))
    web.record("crm.get", 2.0, False)
    web.record("crm.get", 30.0, True)
    worker.record("crm.get", 700.0, False)
    worker.record("crm.put", 1.0, False)

    assert web.flush() == 1
    assert worker.flush() == 2
    stat = row("crm.get")
    assert (stat.count, stat.errors) == (3, 1)
    assert stat.total_ms == pytest.approx(732.0)
    assert stat.max_ms == 700.0  # the larger of the two processes' maxima
    assert stat.minute.isoformat() == "2026-01-05T10:00:00+00:00"
    expected = [0] * len(BUCKET_FIELDS)
    for ms in (2.0, 30.0, 700.0):
        expected[bucket_of(ms)] += 1
    assert buckets(stat) == expected
    assert InvocationStat.objects.filter(slot=SLOT).count() == 2

    # A later flush of the same minute adds to the row; a smaller max leaves it.
    web.record("crm.get", 3.0, False)
    web.flush()
    stat = row("crm.get")
    assert (stat.count, stat.max_ms) == (4, 700.0)
    assert web.flush() == 0  # nothing pending: no writes


@pytest.mark.django_db(transaction=True)
def test_processes_inserting_the_same_new_row_at_once_lose_no_counts() -> None:
    """Real concurrent transactions: the loser of the insert race adds to the winner's row."""
    needs_postgresql()
    recorders = [Recorder(Clock()) for _ in range(6)]
    for recorder in recorders:
        for _ in range(10):
            recorder.record("race.svc", 1.5, False)
    start = threading.Barrier(len(recorders))
    errors: list[BaseException] = []

    def flush(recorder: Recorder) -> None:
        try:
            start.wait()
            recorder.flush()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=flush, args=(recorder,)) for recorder in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    stat = row("race.svc")
    assert stat.count == 60
    assert sum(buckets(stat)) == 60


@pytest.mark.django_db(transaction=True)
def test_a_flush_the_database_refuses_keeps_its_counts_for_the_next_one() -> None:
    """A real failure: another transaction holds the row lock longer than this connection waits."""
    needs_postgresql()
    first = Recorder(Clock())
    first.record("crm.get", 1.0, False)
    first.flush()  # the row exists
    recorder = Recorder(Clock())
    for _ in range(3):
        recorder.record("crm.get", 2.0, True)
    holding, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                list(InvocationStat.objects.select_for_update().filter(service="crm.get"))
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert holding.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        with pytest.raises(OperationalError):
            recorder.flush()
        assert recorder.pending() == 1  # given back
        assert recorder.totals()["crm.get"].count == 3  # /metrics never went down
    finally:
        release.set()
        holder.join(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert recorder.flush() == 1
    stat = row("crm.get")
    assert (stat.count, stat.errors) == (4, 3)  # nothing lost, nothing counted twice
    assert recorder.totals()["crm.get"].count == 3


@pytest.mark.django_db
def test_totals_for_metrics_only_grow_across_flushes() -> None:
    recorder = Recorder(Clock())
    recorder.record("crm.get", 1.0, False)
    recorder.record("crm.put", 1.0, True)
    assert {name: t.count for name, t in recorder.totals().items()} == {"crm.get": 1, "crm.put": 1}
    recorder.flush()
    recorder.record("crm.get", 1.0, False)
    totals = recorder.totals()
    assert (totals["crm.get"].count, totals["crm.put"].count, totals["crm.put"].errors) == (2, 1, 1)
    assert sum(totals["crm.get"].buckets) == 2


@pytest.mark.django_db
def test_a_service_name_postgresql_cannot_store_does_not_block_the_others() -> None:
    recorder = Recorder(Clock())
    recorder.record("odd\x00name", 1.0, False)
    recorder.record("crm.get", 1.0, False)
    assert recorder.flush() == 2
    assert sorted(InvocationStat.objects.values_list("service", flat=True)) == ["crm.get", "oddname"]


def test_tallies_that_could_not_be_written_wait_for_the_next_flush() -> None:
    recorder = Recorder(Clock())
    recorder.record("crm.get", 1.0, False)
    taken = recorder.take()
    recorder.record("crm.get", 2.0, True)  # recorded while the failed write was under way
    recorder.give_back(taken)
    (tally,) = recorder.take().values()
    assert (tally.count, tally.errors, tally.max_ms) == (2, 1, 2.0)


@pytest.mark.django_db
def test_the_poller_flushes_only_when_the_interval_has_passed(settings: Any) -> None:
    settings.METRICS_FLUSH_INTERVAL = 5
    clock = Clock()
    recorder = Recorder(clock)
    recorder.record("crm.get", 1.0, False)
    recorder.maybe_flush()
    assert row("crm.get").count == 1
    recorder.record("crm.get", 1.0, False)
    clock.now += 2
    recorder.maybe_flush()
    assert row("crm.get").count == 1  # too early
    clock.now += 3
    recorder.maybe_flush()
    assert row("crm.get").count == 2


# --- Percentiles ---------------------------------------------------------------------------------------


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


def histogram(values: list[float]) -> list[int]:
    counts = [0] * len(BUCKET_FIELDS)
    for value in values:
        counts[bucket_of(value)] += 1
    return counts


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_percentiles_from_the_histogram_are_close_to_the_true_ones(q: float) -> None:
    rng = random.Random(4)
    # A realistic shape: most calls near 5 ms, a long tail up to a few seconds.
    values = [rng.lognormvariate(1.6, 1.0) for _ in range(20_000)]
    estimate = percentile(histogram(values), q, max(values))
    true = exact(values, q)
    assert estimate is not None
    assert bucket_of(estimate) == bucket_of(true)  # never outside the right bucket
    assert estimate == pytest.approx(true, rel=0.1)  # and, interpolated, within 10 %


def test_percentiles_of_known_latencies() -> None:
    # 100 calls: 1..100 ms. p50 is 50 ms, p95 95 ms, p99 99 ms.
    values = [float(ms) for ms in range(1, 101)]
    counts = histogram(values)
    for q, true in ((0.5, 50.0), (0.95, 95.0), (0.99, 99.0)):
        estimate = percentile(counts, q, 100.0)
        assert estimate == pytest.approx(true, rel=0.12), q
    # The largest time seen caps every estimate, also in the overflow bucket.
    assert percentile(histogram([20_000.0, 30_000.0]), 0.99, 30_000.0) <= 30_000.0
    # All at 5 ms: the estimate stays in (3.16, 5] and, near the top, close to 5.
    assert 4.9 < percentile(histogram([5.0] * 50), 0.99, 5.0) <= 5.0
    assert percentile([0] * len(BUCKET_FIELDS), 0.5) is None


# --- Pruning ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rows_older_than_the_retention_are_pruned_once_an_hour(settings: Any) -> None:
    settings.METRICS_RETENTION_DAYS = 7
    clock = Clock()
    week = 7 * 24 * 60
    for slot in (SLOT - week - 1, SLOT - week, SLOT):
        InvocationStat.objects.create(slot=slot, minute=metrics.slot_start(slot), service="crm.get", count=1)
    recorder = Recorder(clock)
    recorder.maybe_flush()
    assert sorted(InvocationStat.objects.values_list("slot", flat=True)) == [SLOT - week, SLOT]

    # An hour has not passed: a row that aged meanwhile stays until the next hourly prune.
    clock.now += 60 * 30
    recorder.maybe_flush()
    assert InvocationStat.objects.filter(slot=SLOT - week).exists()
    clock.now += 60 * 30
    recorder.maybe_flush()
    assert sorted(InvocationStat.objects.values_list("slot", flat=True)) == [SLOT]


# --- /metrics -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_exposes_a_latency_histogram_per_service(client: Any, builtins: None, settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-token-for-the-tests"  # /metrics names every service: it needs a token
    invoke("demo.hello", {})
    invoke("demo.hello", {})
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-for-the-tests").content.decode()
    assert 'switchboard_invocations_total{service="demo.hello"} 2' in text
    assert 'switchboard_invocation_duration_seconds_bucket{service="demo.hello",le="+Inf"} 2' in text
    assert 'switchboard_invocation_duration_seconds_count{service="demo.hello"} 2' in text
    assert "# TYPE switchboard_invocation_duration_seconds histogram" in text
