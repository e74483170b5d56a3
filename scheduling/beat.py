"""The beat scheduler: django-celery-beat's DatabaseScheduler, timed by the jobs' own plans.

django-celery-beat keeps the rows and notices changes (``PeriodicTasks.last_update``,
checked every tick; ``CELERY_BEAT_MAX_LOOP_INTERVAL`` bounds a tick at 1 s), but its
interval schedules drift with dispatch time and its crontabs have their own DST rules.
So for Switchboard jobs the *when* comes from ``scheduling.plans``:

* each due run is sent with its planned instant (``scheduled_for``), which the worker
  records as a unique (job, time) — a run is never executed twice, even when the beat
  restarts or the broker redelivers;
* a planned time runs if the beat gets to it at most ``SCHEDULER_MISFIRE_GRACE`` seconds
  late, and is missed otherwise; never caught up later. That one rule covers a job created
  or edited with a start date of "now" (a fraction of a second past by the time it is
  saved: its first run is late, not lost), a job made active again, a beat that starts
  (after a restart or downtime) and a beat that stalls. A one-time job whose time passed
  more than that long ago is recorded as missed and made inactive;
* ``repeats`` counts runs that happened or were recorded as missed, never silently skipped
  ones: a skipped time of a job with repeats gets a ``missed`` run, and a job left with no
  run becomes inactive. Skipped times of jobs without repeats are only logged (one row per
  skipped second of an every-second job would fill the table and count nothing);
* only one beat runs: it holds a PostgreSQL advisory lock (a file lock on SQLite) for
  its lifetime, and a second one refuses to start with a message saying why.
"""

from __future__ import annotations

import fcntl
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import schedules
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from scheduling import plans
from scheduling.jobs import TASK_NAME, set_active
from scheduling.models import Job, JobRun

logger = logging.getLogger(__name__)
NEVER = 365 * 24 * 3600.0
_LOCK_KEY = 0x5357_4254  # "SWBT": the advisory lock id the beat holds
_NO_CHANGE_SEEN = datetime(2000, 1, 1, tzinfo=UTC)  # older than any change marker
# At most this many skipped times are recorded as missed at once, so that a pathological plan
# (every second since years ago, with repeats in the millions) cannot stall the beat; more are logged.
MAX_MISSED_RECORDED = 10_000


def clock() -> datetime:
    """The beat's idea of now (aware UTC); tests replace it to drive plans through DST days."""
    return datetime.now(UTC)


def misfire_grace() -> timedelta:
    return timedelta(seconds=settings.SCHEDULER_MISFIRE_GRACE)


def missed_up_to(now: datetime) -> datetime:
    """The latest planned instant that is missed at ``now``: one more than the grace period late.

    The one boundary of the rule "a planned time at most ``SCHEDULER_MISFIRE_GRACE`` late runs
    late", used everywhere the beat applies it (a stalled beat, a job (re)loaded, a beat starting),
    so that a time exactly the grace period old runs whichever way the beat gets to it. Datetimes
    count microseconds: "more than the grace period before now" is "at or before this instant".
    """
    return now - misfire_grace() - timedelta(microseconds=1)


class JobEntry(ModelEntry):
    """A beat entry; for Switchboard jobs, due times come from the job's plan."""

    job: Job | None = None
    anchor: datetime | None = None  # the last planned instant dealt with (sent or skipped)
    due_at: datetime | None = None  # the planned instant this entry is due for

    def is_due(self) -> schedules.schedstate:
        if self.job is None:
            return super().is_due()
        now = clock()
        plan = self.job.plan()
        if self.anchor is None:
            self.anchor = now
        upcoming = plan.next_after(self.anchor)
        cutoff = missed_up_to(now)
        if upcoming is not None and upcoming <= cutoff:
            # Fell behind (a stalled beat): what is more than the grace period late is missed;
            # the rest runs, late, as it would after a restart.
            logger.warning("Job %s: runs planned up to %s missed; not catching up", self.job.name, cutoff)
            skipped_after, self.anchor = self.anchor, cutoff
            record_missed(self.job, plan, after=skipped_after, upto=self.anchor, reason="the scheduler was behind")
            upcoming = plan.next_after(self.anchor)
        if upcoming is None:
            return schedules.schedstate(False, NEVER)
        if upcoming > now:
            return schedules.schedstate(False, (upcoming - now).total_seconds())
        self.due_at = upcoming
        following = plan.next_after(upcoming)
        return schedules.schedstate(True, (following - now).total_seconds() if following else NEVER)

    def __next__(self) -> JobEntry:
        entry = super().__next__()
        entry.job, entry.anchor = self.job, self.due_at or self.anchor
        return entry


class JobScheduler(DatabaseScheduler):
    """``CELERY_BEAT_SCHEDULER``: one per deployment, enforced by a lock."""

    Entry = JobEntry
    _lock_holder: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._take_lock()
        super().__init__(*args, **kwargs)

    def schedule_changed(self) -> bool:
        """django-celery-beat's first check only notes the change marker it sees, so a job written
        between the first read and that check (a beat starting up) would wait for the 5-minute full
        sync; with no marker noted yet, any marker counts as a change (one extra reload at start)."""
        if self._last_timestamp is None:
            self._last_timestamp = _NO_CHANGE_SEEN
        return super().schedule_changed()

    def enabled_models_qs(self) -> Any:
        # Every enabled task: django-celery-beat's time-window filter would hide one-time
        # jobs more than 5 minutes ahead until its next full sync.
        return self.Model.objects.enabled()

    def all_as_schedule(self) -> dict[str, Any]:
        entries = super().all_as_schedule()
        ours = {entry.model.pk: entry for entry in entries.values() if entry.task == TASK_NAME}
        if not ours:
            return entries
        found = list(Job.objects.select_related("service", "periodic_task").filter(periodic_task_id__in=list(ours)))
        kept = {job.pk: self._kept_anchor(job) for job in found}
        recent = self._recent_runs([job for job in found if kept[job.pk] is None])
        for job in found:
            entry = ours.pop(job.periodic_task_id)
            entry.job = job
            entry.anchor = kept[job.pk] or self._anchor_for(job, recent.get(job.pk))
        for orphan in ours.values():  # a task whose job is gone: never send it
            entries.pop(orphan.name, None)
        return entries

    def _kept_anchor(self, job: Job) -> datetime | None:
        """Where the loaded entry stood, if it ran the same plan: a reload for another change keeps it."""
        previous = (self._schedule or {}).get(job.periodic_task.name)
        if (isinstance(previous, JobEntry) and previous.job is not None and previous.anchor is not None
                and previous.job.plan() == job.plan()):
            return previous.anchor
        return None

    @staticmethod
    def _recent_runs(loaded: list[Job]) -> dict[int, datetime]:
        """The latest run within the grace period of each recurring job (re)loaded afresh, in one query."""
        ids = [job.pk for job in loaded if job.job_type != Job.JobType.ONE_TIME]
        if not ids:
            return {}
        now = clock()
        rows = (JobRun.objects.filter(job_id__in=ids, manual=False, scheduled_for__gt=missed_up_to(now),
                                      scheduled_for__lte=now)
                .values("job_id").annotate(last=Max("scheduled_for")).values_list("job_id", "last"))
        return dict(rows)

    def _anchor_for(self, job: Job, recent_run: datetime | None = None) -> datetime:
        """Where a job's plan is read from when (re)loaded: the grace period ago, so late times still run.

        The beat loads a plan when it starts and when a job is created, edited (a new plan) or
        made active again. Times planned at most the grace period ago run, late; older ones
        are missed, and recorded as such for a job with repeats (``record_missed``). A recurring
        job starts after its latest recorded run in that window, so a restarted beat does not
        send what already ran (a run sent twice would still run once: the worker records each
        planned time once). (A reload for an unrelated change keeps the entry's place instead:
        ``_kept_anchor``.)
        """
        now = clock()
        cutoff = missed_up_to(now)
        if job.job_type == Job.JobType.ONE_TIME:
            if job.start_date <= now:
                if job.start_date <= cutoff:
                    _mark_missed(job)
                else:
                    return job.start_date - timedelta(microseconds=1)
            return now
        record_missed(job, job.plan(), after=None, upto=cutoff,
                      reason="the scheduler was not running, or the job was inactive or not yet planned so")
        return max(cutoff, recent_run) if recent_run is not None else cutoff

    def reserve(self, entry: Any) -> Any:
        """The entry that moved on replaces the one sent, as in Celery's own scheduler.

        django-celery-beat leaves the entry it loaded in ``_schedule``, so a reload (any job
        written, or its 5-minute full sync) or a heap rebuilt from it put jobs back where they
        stood at the last load: runs already sent were sent again within the grace period.
        """
        new_entry = super().reserve(entry)
        for schedule in (self._schedule, self.old_schedulers):
            if schedule is not None and schedule.get(entry.name) is entry:
                schedule[entry.name] = new_entry
        return new_entry

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        if not isinstance(entry, JobEntry) or entry.job is None or entry.due_at is None:
            return super().apply_async(entry, producer, advance, **kwargs)
        original = entry.kwargs
        entry.kwargs = {**original, "scheduled_for": entry.due_at.isoformat()}
        try:
            return super().apply_async(entry, producer, advance, **kwargs)
        finally:
            entry.kwargs = original

    # --- Cheap with 1,000 jobs (bench/scheduler.py measures these) ---------------------------------

    def sync(self) -> None:
        """Write the sent entries' last run time and run count back, in one transaction.

        django-celery-beat saves each entry with a SELECT, a uniqueness check and a full
        UPDATE, committed one by one: with 1,000 jobs, 8,000 queries and 4.5-11 s during which
        nothing is sent, every 3 minutes and before each reload after an edit (Django's
        ``bulk_update`` still takes 0.3-0.5 s; this takes 50-90 ms). Only these two columns are
        written, as django-celery-beat writes only them, so edits made meanwhile are kept.
        """
        names, self._dirty = self._dirty, set()
        loaded = self._schedule or {}
        models = [loaded[name].model for name in names if name in loaded]
        if not models:
            return
        ops = connection.ops
        table = ops.quote_name(self.Model._meta.db_table)
        rows = [(ops.adapt_datetimefield_value(model.last_run_at), model.total_run_count, model.pk)
                for model in models]
        sql = f"UPDATE {table} SET last_run_at = %s, total_run_count = %s WHERE id = %s"  # noqa: S608 - values are parameters
        try:  # an unusable connection was closed by the last tick's change check (django-celery-beat's)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(sql, rows)
        except (DatabaseError, InterfaceError):
            logger.exception("Could not write back the run counts of %s tasks; will retry", len(models))
            self._dirty |= names

    def schedules_equal(self, old_schedules: Any, new_schedules: Any) -> bool:
        """Celery compares every entry field by field on every tick (1.5 ms with 1,000 entries,
        per task sent); entries that are the very same objects are equal without that."""
        if (not self._heap_invalidated and old_schedules is not None and new_schedules is not None
                and old_schedules.keys() == new_schedules.keys()
                and all(old_schedules[name] is entry for name, entry in new_schedules.items())):
            return True
        return super().schedules_equal(old_schedules, new_schedules)

    # --- One beat only ----------------------------------------------------------------------------

    def _take_lock(self) -> None:
        if JobScheduler._lock_holder is not None:
            return
        database = settings.DATABASES["default"]
        if "postgresql" in database["ENGINE"]:
            holder = connections.create_connection("default")  # its own connection, kept for life
            holder.ensure_connection()
            with holder.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY])
                locked = cursor.fetchone()[0]
            where = f"PostgreSQL advisory lock {_LOCK_KEY} on {database.get('NAME')}"
        else:
            path = settings.VAR_DIR / "beat.lock"
            holder = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
            try:
                fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                locked = False
            where = f"lock file {path}"
        if not locked:
            message = (f"Another Celery beat is already running for this deployment ({where} is held). "
                       "Only one beat may run; stop the other one first.")
            logger.error(message)
            sys.stderr.write(message + "\n")
            raise SystemExit(2)
        JobScheduler._lock_holder = holder

    def close(self) -> None:
        """A beat that stops (Celery calls this on shutdown) writes its run counts, then gives its lock back."""
        try:
            super().close()
        finally:
            release_lock()


def release_lock() -> None:
    """Give back the single-beat lock this process holds, if any; the lock is free when this returns.

    Unlocking explicitly matters: closing the holding connection alone frees the advisory lock
    only once PostgreSQL's backend has noticed the disconnection, which on a loaded machine can
    come after a beat started at once (a restart, the next test) has already been refused.
    """
    holder, JobScheduler._lock_holder = JobScheduler._lock_holder, None
    if holder is None:
        return
    try:
        if isinstance(holder, BaseDatabaseWrapper):
            with holder.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
        else:
            fcntl.flock(holder.fileno(), fcntl.LOCK_UN)
    except (DatabaseError, InterfaceError, OSError) as exc:  # a lost connection has freed it already
        logger.warning("Could not release the single-beat lock explicitly (%s); closing its connection", exc)
    finally:
        holder.close()


def record_missed(job: Job, plan: plans.Plan, *, after: datetime | None, upto: datetime, reason: str) -> None:
    """Record as missed the planned times in (``after``, ``upto``] that have no run, for a job with repeats.

    ``repeats`` counts the times of the grid, so a time the beat skips would use one up
    unseen; a ``missed`` run makes it visible (in the admin and the API) instead. A time
    already recorded (run, or missed before) keeps its row. A job left with no run after
    ``upto`` becomes inactive, as after its last run. Jobs without repeats lose nothing
    countable by a skip, and get only the log line of whoever skipped.
    """
    if plan.job_type != plans.INTERVAL_BASED or plan.repeats is None:
        return
    times: list[datetime] = []
    moment = plan.next_after(after) if after is not None else plan.first()
    while moment is not None and moment <= upto and len(times) < MAX_MISSED_RECORDED:
        times.append(moment)
        moment = plan.next_after(moment)
    if moment is not None and moment <= upto:
        logger.warning("Job %s: more than %s planned times missed up to %s; only the first ones are recorded",
                       job.name, MAX_MISSED_RECORDED, upto)
    if times:
        seen = set(JobRun.objects.filter(job_id=job.pk, manual=False, scheduled_for__in=times)
                   .values_list("scheduled_for", flat=True))
        missing = [time for time in times if time not in seen]
        if missing:
            finished = timezone.now()
            error = f"Not run: {reason} at the planned time, and it is not made up later"
            # A worker recording the same time at once wins or loses on the unique (job, time): one row either way.
            JobRun.objects.bulk_create(
                [JobRun(job_id=job.pk, scheduled_for=time, status=JobRun.Status.MISSED, finished=finished,
                        error=error) for time in missing],
                ignore_conflicts=True,
            )
            logger.warning("Job %s: %s planned time(s) up to %s recorded as missed (%s)", job.name, len(missing),
                           missing[-1], reason)
    if plan.next_after(upto) is None:
        with transaction.atomic():
            current = Job.objects.select_for_update().filter(pk=job.pk, is_active=True).first()
            if current is not None and current.plan() == plan:
                set_active(current, False)
                logger.info("Job %s has no run left after its missed ones and is now inactive", job.name)


def _mark_missed(job: Job) -> None:
    """A one-time job whose time passed while no beat ran: recorded as missed, made inactive."""
    with transaction.atomic():
        current = Job.objects.select_for_update().filter(pk=job.pk, is_active=True).first()
        if current is None:
            return
        already = JobRun.objects.filter(job=current, scheduled_for=current.start_date, manual=False).exists()
        if not already:
            JobRun.objects.create(job=current, scheduled_for=current.start_date, status=JobRun.Status.MISSED,
                                  finished=timezone.now(), error="The platform was not running at the planned time")
        set_active(current, False)
    logger.warning("One-time job %s planned for %s was missed and is now inactive", job.name, job.start_date)
