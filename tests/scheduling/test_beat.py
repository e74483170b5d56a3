"""The beat's decisions with a controlled clock: DST days, restarts, stalls, re-activation, reloads, repeats.

Also what a restarted worker does about the runs it was killed in the middle of.

The real ``JobScheduler`` runs in this process on the test's database, ticked by Celery's own
``Scheduler.tick``; only its clock and its broker are replaced (see ``beat_harness``). Each test
reads what the beat sent: (job, planned time, beat time at the send). Restarting the beat is
building a new scheduler, as a new process would, with nothing carried over but the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from integration.models import DeployedService
from scheduling import jobs
from scheduling.beat import _LOCK_KEY
from scheduling.models import Job, JobRun
from scheduling.tasks import _mark_interrupted_runs, run_job
from tests.scheduling.beat_harness import Beat, Clock, Sent, close_beats, install, planned_of, release_beat_lock

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.fixture
def clock_and_outbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Clock, list[Sent]]]:
    yield install(monkeypatch, T0)
    close_beats()
    release_beat_lock()


@pytest.fixture
def clock(clock_and_outbox: tuple[Clock, list[Sent]]) -> Clock:
    return clock_and_outbox[0]


@pytest.fixture
def outbox(clock_and_outbox: tuple[Clock, list[Sent]]) -> list[Sent]:
    return clock_and_outbox[1]


@pytest.fixture
def service(deploy) -> DeployedService:
    deploy("beat_target.py", """
        from integration.services import Service

        class Target(Service):
            def handle(self):
                pass
    """)
    return DeployedService.objects.get(name="beat-target.target")


def interval_job(service: DeployedService, name: str, start: datetime, seconds: int, **fields) -> Job:
    return jobs.save_job(Job(name=name, service=service, job_type=Job.JobType.INTERVAL_BASED, start_date=start,
                             seconds=seconds, **fields))


def cron_job(service: DeployedService, name: str, expression: str, zone: str) -> Job:
    return jobs.save_job(Job(name=name, service=service, job_type=Job.JobType.CRON_STYLE, start_date=utc(2026, 1, 1),
                             cron_definition=expression, timezone=zone))


def one_time_job(service: DeployedService, name: str, at: datetime, now: datetime) -> Job:
    return jobs.save_job(Job(name=name, service=service, job_type=Job.JobType.ONE_TIME, start_date=at), now=now)


def test_a_reload_for_another_job_does_not_send_past_runs_again(clock, outbox, service) -> None:
    # A reload (any job written, or django-celery-beat's 5-minute full sync) used to put every job
    # back where it stood at the previous load, re-sending its runs of the last grace period.
    job = interval_job(service, "every-10s", T0 + timedelta(seconds=5), 10)
    beat = Beat(clock)
    beat.run_for(30)
    assert planned_of(outbox, job.pk) == [T0 + timedelta(seconds=s) for s in (5, 15, 25)]
    interval_job(service, "unrelated", T0 + timedelta(hours=5), 10)
    beat.run_for(12)
    assert planned_of(outbox, job.pk) == [T0 + timedelta(seconds=s) for s in (5, 15, 25, 35)]
    beat.close()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # 02:30 does not exist in Warsaw on 29 March 2026: it runs once, when the clocks jump (01:00 UTC).
        ("30 2 * * *", [utc(2026, 3, 29, 1, 0)]),
        # 02:00-02:45 and 03:00 all fall on the jump: one run there, none lost around it, none doubled.
        ("*/15 * * * *", [utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 0, 15), utc(2026, 3, 29, 0, 30),
                          utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 15),
                          utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 1, 45)]),
    ],
)
def test_spring_forward_day_runs_a_skipped_time_once_at_the_jump(clock, outbox, service, expression,
                                                                  expected) -> None:
    clock.now = utc(2026, 3, 28, 23, 50)  # 00:50 in Warsaw (CET, UTC+1)
    job = cron_job(service, "warsaw", expression, "Europe/Warsaw")
    beat = Beat(clock, max_interval=60)
    beat.run_for(2 * 3600 + 5 * 60)  # to 01:55 UTC = 03:55 CEST
    assert planned_of(outbox, job.pk) == expected
    assert all(timedelta(0) <= item.at - item.planned < timedelta(seconds=1) for item in outbox)  # on time
    beat.close()


def test_fall_back_day_runs_a_repeated_time_once_even_across_a_restart(clock, outbox, service) -> None:
    # 25 October 2026, Warsaw: 03:00 CEST becomes 02:00 CET, so 02:00-02:59 happens twice
    # (00:00-00:59 UTC, then 01:00-01:59 UTC). Each time runs at its first occurrence only.
    clock.now = utc(2026, 10, 24, 23, 50)
    daily = cron_job(service, "warsaw-0230", "30 2 * * *", "Europe/Warsaw")
    quarter = cron_job(service, "warsaw-quarter", "*/15 * * * *", "Europe/Warsaw")
    beat = Beat(clock, max_interval=60)
    beat.run_for(80 * 60)  # to 01:10 UTC: the second 02:10 local
    beat.close()
    beat = Beat(clock, max_interval=60)  # a restart inside the repeated hour starts over from the rows
    beat.run_for(66 * 60)  # to 02:16 UTC = 03:16 CET
    assert planned_of(outbox, daily.pk) == [utc(2026, 10, 25, 0, 30)]
    assert planned_of(outbox, quarter.pk) == [
        utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 0, 45),
        # quiet during the second 02:xx (01:00-01:59 UTC), then 03:00 and 03:15 CET
        utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2, 15),
    ]
    beat.close()


def deliver(outbox: list[Sent], job: Job) -> None:
    """A worker takes every run sent for ``job`` so far: each is recorded (and run) once."""
    for item in outbox:
        if item.job_id == job.pk:
            run_job(job.pk, item.planned.isoformat(), f"{item.planned:%H%M%S}".ljust(24, "0"))


def runs_of(job: Job) -> list[tuple[datetime, str]]:
    return sorted(job.runs.filter(manual=False).values_list("scheduled_for", "status"))


def test_a_restart_runs_late_only_what_is_less_than_the_grace_period_old_and_repeats_nothing(
    clock, outbox, service
) -> None:
    grace = settings.SCHEDULER_MISFIRE_GRACE
    every = interval_job(service, "every-10s", T0 + timedelta(seconds=5), 10)
    first = Beat(clock)
    first.run_for(30)
    first.close()  # killed: no final sync
    deliver(outbox, every)  # T0+5, 15 and 25 ran
    down = clock()
    clock.advance(120)  # the platform is down for two minutes
    late = one_time_job(service, "late", clock() - timedelta(seconds=grace / 2), now=down)
    missed = one_time_job(service, "missed", clock() - timedelta(seconds=grace + 30), now=down)
    second = Beat(clock)
    second.run_for(30)
    second.close()

    restart = second.started_at
    before = [item.planned for item in outbox if item.at < restart and item.job_id == every.pk]
    after = [item for item in outbox if item.at >= restart and item.job_id == every.pk]
    assert before == [T0 + timedelta(seconds=s) for s in (5, 15, 25)]
    # T0+125..145 were planned less than 30 s before the restart: they run at once, late; the
    # grid then goes on on time. T0+35..115 are over 30 s late: missed, not made up.
    assert [item.planned for item in after] == [T0 + timedelta(seconds=s) for s in (125, 135, 145, 155, 165, 175)]
    assert all(item.at - restart < timedelta(seconds=1) for item in after[:3])
    assert all(item.at - item.planned < timedelta(seconds=1) for item in after[3:])
    # The one-time job planned within the grace period runs (late, once); the older one is missed.
    assert planned_of(outbox, late.pk) == [late.start_date]
    assert planned_of(outbox, missed.pk) == []
    missed.refresh_from_db()
    assert not missed.is_active
    assert list(missed.runs.values_list("status", "scheduled_for")) == [(JobRun.Status.MISSED, missed.start_date)]


def test_a_quick_restart_does_not_send_again_what_already_ran(clock, outbox, service) -> None:
    every = interval_job(service, "every-10s", T0 + timedelta(seconds=5), 10)
    first = Beat(clock)
    first.run_for(30)
    first.close()
    deliver(outbox, every)
    clock.advance(10)  # back at T0+40: T0+15 and T0+25 are within the grace period, but they ran
    second = Beat(clock)
    second.run_for(10)
    second.close()
    assert planned_of(outbox, every.pk) == [T0 + timedelta(seconds=s) for s in (5, 15, 25, 35, 45)]


@pytest.mark.parametrize("stall", [23, 95])
def test_a_stalled_beat_runs_late_within_the_grace_period_and_skips_beyond_it(clock, outbox, service,
                                                                             stall) -> None:
    grace = timedelta(seconds=settings.SCHEDULER_MISFIRE_GRACE)
    job = interval_job(service, "every-10s", T0 + timedelta(seconds=5), 10)
    grid = [T0 + timedelta(seconds=5 + 10 * k) for k in range(20)]
    beat = Beat(clock)
    beat.run_for(10)  # sends T0+5
    clock.advance(stall)  # no tick at all: a beat stuck, say, in a slow database call
    resumed = clock()
    beat.run_for(20)
    planned = planned_of(outbox, job.pk)
    # Caught up: what is at most the grace period late when the beat resumes; 23 s: T0+15 and T0+25;
    # 95 s (resumed at T0+105): T0+75 (exactly 30 s late, so it runs), 85, 95 and 105; T0+15..65 are missed.
    caught_up = [time for time in grid[1:] if resumed - grace <= time <= resumed]
    assert len(caught_up) == (2 if stall == 23 else 4)
    assert [time for time in planned if time <= resumed] == [grid[0], *caught_up]
    assert [time for time in planned if time > resumed] == [time for time in grid if resumed < time <= clock()]
    beat.close()


def test_a_time_exactly_the_grace_period_old_runs_and_one_a_microsecond_older_is_missed(clock, outbox,
                                                                                        service) -> None:
    # The README's rule, "a planned time at most SCHEDULER_MISFIRE_GRACE late runs late", boundary included,
    # whichever way the beat gets to the time. A beat (re)reading a recurring job's plan used to miss a time
    # exactly that old, while it ran a one-time job's. Lateness counts when the time is sent, and this beat
    # sends one entry per tick, 10 ms of its clock apart: so each step has one time due exactly 30 s ago.
    grace = timedelta(seconds=settings.SCHEDULER_MISFIRE_GRACE)
    tick = timedelta(microseconds=1)
    every = timedelta(seconds=40)
    clock.advance(100)  # a beat starts after 100 s of downtime
    restart = clock()
    edge = interval_job(service, "edge", restart - grace, 40, repeats=2)
    over = interval_job(service, "over", restart - grace - tick, 40, repeats=2)
    once_over = one_time_job(service, "once-over", restart - grace - tick, now=restart - timedelta(seconds=100))
    beat = Beat(clock)
    beat.run_for(15)
    assert planned_of(outbox, edge.pk) == [restart - grace, restart - grace + every]
    assert planned_of(outbox, over.pk) == [restart - grace - tick + every]
    assert runs_of(over) == [(restart - grace - tick, JobRun.Status.MISSED)]
    assert planned_of(outbox, once_over.pk) == []
    once_over.refresh_from_db()
    assert not once_over.is_active
    beat.close()

    clock.advance(100)  # the same for a one-time job
    restart = clock()
    once_edge = one_time_job(service, "once-edge", restart - grace, now=restart - timedelta(seconds=100))
    beat = Beat(clock)
    beat.run_for(1)
    assert planned_of(outbox, once_edge.pk) == [restart - grace]

    # Made active again exactly 30 s after a planned time: that time runs, late.
    minutely = interval_job(service, "minutely", clock() + timedelta(seconds=5), 60)
    jobs.set_active(minutely, False)
    beat.run_for(5 + 30)  # to exactly 30 s after its first planned time
    jobs.set_active(minutely, True)
    beat.run_for(1)
    assert planned_of(outbox, minutely.pk) == [minutely.start_date]
    beat.close()


def test_a_job_created_with_a_start_date_of_now_runs_every_one_of_its_repeats(clock, outbox, service) -> None:
    # The regression: by the time it is saved, "now" is a fraction of a second past, and the
    # first run was skipped yet counted: repeats=3 ran twice.
    beat = Beat(clock)
    beat.run_for(1)
    job = interval_job(service, "three-times", clock() - timedelta(seconds=0.3), 10, repeats=3)
    beat.run_for(40)
    deliver(outbox, job)
    start = job.start_date
    assert planned_of(outbox, job.pk) == [start, start + timedelta(seconds=10), start + timedelta(seconds=20)]
    assert [status for _, status in runs_of(job)] == [JobRun.Status.OK] * 3
    job.refresh_from_db()
    assert not job.is_active  # its last repeat ran
    beat.close()


def test_an_edit_to_a_start_a_moment_ago_runs_that_time_late(clock, outbox, service) -> None:
    job = interval_job(service, "edited", T0 + timedelta(hours=1), 60)
    beat = Beat(clock)
    beat.run_for(10)
    job.start_date = clock() - timedelta(seconds=12)  # "start 12 s ago, every minute"
    jobs.save_job(job)
    beat.run_for(1)
    assert planned_of(outbox, job.pk) == [job.start_date]  # 12 s late, but run
    beat.close()


def test_times_a_job_with_repeats_misses_are_recorded_and_count(clock, outbox, service) -> None:
    job = interval_job(service, "five-times", T0 + timedelta(seconds=5), 10, repeats=5)
    first = Beat(clock)
    first.run_for(12)  # T0+5
    first.close()
    deliver(outbox, job)
    clock.advance(60)  # down until T0+72: T0+15, 25 and 35 are over 30 s late, T0+45 is not
    second = Beat(clock)
    second.run_for(30)
    second.close()
    deliver(outbox, job)
    grid = [T0 + timedelta(seconds=s) for s in (5, 15, 25, 35, 45)]
    assert planned_of(outbox, job.pk) == [grid[0], grid[4]]
    ok, missed = JobRun.Status.OK, JobRun.Status.MISSED
    assert runs_of(job) == list(zip(grid, [ok, missed, missed, missed, ok], strict=True))
    assert job.runs.filter(status=missed).first().error.startswith("Not run: the scheduler was not running")
    job.refresh_from_db()
    assert not job.is_active  # five times accounted for: three missed, two run


def test_a_job_whose_remaining_repeats_were_all_missed_becomes_inactive(clock, outbox, service) -> None:
    job = interval_job(service, "three-times", T0 + timedelta(seconds=5), 10, repeats=3)
    first = Beat(clock)
    first.run_for(6)  # T0+5
    first.close()
    deliver(outbox, job)
    clock.advance(100)
    Beat(clock).run_for(1)
    assert [status for _, status in runs_of(job)] == [JobRun.Status.OK, JobRun.Status.MISSED, JobRun.Status.MISSED]
    job.refresh_from_db()
    assert not job.is_active


def test_re_activating_runs_a_time_less_than_the_grace_period_old_and_not_older_ones(clock, outbox,
                                                                                     service) -> None:
    job = interval_job(service, "every-minute", T0 + timedelta(seconds=1), 60, repeats=10)
    grid = [T0 + timedelta(seconds=1 + 60 * k) for k in range(10)]
    beat = Beat(clock)
    beat.run_for(62)  # T0+1 and T0+61
    deliver(outbox, job)
    jobs.set_active(job, False)
    beat.run_for(200)  # to T0+262: nothing, though three runs were planned
    assert planned_of(outbox, job.pk) == grid[:2]
    jobs.set_active(job, True)  # 21 s after a planned time: less than the grace period
    beat.run_for(1)
    assert planned_of(outbox, job.pk) == [*grid[:2], grid[4]]  # T0+241, late; T0+121 and 181 not made up
    beat.run_for(40)
    assert planned_of(outbox, job.pk) == [*grid[:2], grid[4], grid[5]]
    # The two times missed while the job was inactive are recorded: repeats counts them.
    assert [(time, status) for time, status in runs_of(job) if status == JobRun.Status.MISSED] == [
        (grid[2], JobRun.Status.MISSED), (grid[3], JobRun.Status.MISSED)]
    beat.close()


def test_an_edit_re_reads_the_plan_and_a_deletion_stops_the_job(clock, outbox, service) -> None:
    job = interval_job(service, "edited", T0 + timedelta(seconds=2), 10)
    beat = Beat(clock)
    beat.run_for(15)  # T0+2, T0+12
    job.seconds, job.start_date = 3, T0 + timedelta(seconds=100)
    jobs.save_job(job)
    beat.run_for(80)  # nothing until the new start
    beat.run_for(12)  # T0+100, T0+103, T0+106
    job_id = job.pk
    jobs.delete_job(job)
    beat.run_for(10)
    assert planned_of(outbox, job_id) == [T0 + timedelta(seconds=s) for s in (2, 12, 100, 103, 106)]
    beat.close()


def test_a_restarted_worker_marks_its_cut_off_runs_and_retires_a_job_that_has_no_run_left(service) -> None:
    # What a worker killed mid-run leaves: rows still "running" under its name (the e2e test kills one).
    now = timezone.now()
    once = one_time_job(service, "once", now + timedelta(seconds=1), now=now)
    hourly = interval_job(service, "hourly", now + timedelta(seconds=1), 3600)
    cut_off = [JobRun.objects.create(job=job, scheduled_for=job.start_date, started=now, worker="w1@host")
               for job in (once, hourly)]
    elsewhere = JobRun.objects.create(job=hourly, scheduled_for=hourly.start_date + timedelta(hours=1), started=now,
                                      worker="w2@host")
    _mark_interrupted_runs(sender=SimpleNamespace(hostname="w1@host"))
    for run in cut_off:
        run.refresh_from_db()
        assert run.status == JobRun.Status.ERROR and run.error.startswith("Interrupted") and run.finished
    elsewhere.refresh_from_db()
    assert elsewhere.status == JobRun.Status.RUNNING  # another worker's run is that worker's business
    once.refresh_from_db()
    hourly.refresh_from_db()
    assert not once.is_active  # its one run is over, cut off or not: nothing is left to run
    assert hourly.is_active


def test_a_job_written_while_the_beat_starts_is_noticed_on_its_next_tick(clock, outbox, service) -> None:
    # django-celery-beat's first change check only notes the marker: a job written between the
    # beat's first read and that check used to wait for the 5-minute full sync.
    beat = Beat(clock)
    beat.scheduler.tick()  # the first read of the (empty) schedule
    job = interval_job(service, "first", T0 + timedelta(seconds=2), 10)
    beat.run_for(3)
    assert planned_of(outbox, job.pk) == [T0 + timedelta(seconds=2)]
    beat.close()


def beat_lock_is_held() -> bool:
    """Whether some session holds the single-beat lock on this test's database (PostgreSQL's view, now)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", [_LOCK_KEY])
        return cursor.fetchone()[0] == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the advisory lock is PostgreSQL's")
def test_a_beat_that_stops_gives_its_lock_back_at_once(clock) -> None:
    # Closing the holding connection alone freed the lock only once PostgreSQL noticed; on a loaded
    # machine a beat started at once after (a restart, or the next test's) could be refused meanwhile.
    beat = Beat(clock)
    assert beat_lock_is_held()
    beat.scheduler.close()  # what Celery calls when the beat shuts down
    assert not beat_lock_is_held()
    Beat(clock).close()  # another beat of this process takes it again
    assert beat_lock_is_held()
    release_beat_lock()
    assert not beat_lock_is_held()
