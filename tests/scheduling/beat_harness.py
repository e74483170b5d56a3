"""An in-process beat: the real ``JobScheduler`` on the test's database, timed by a controlled clock.

Real here: ``JobScheduler`` and ``JobEntry`` (due times from the plans, ``scheduled_for`` on each
send, reloads on change, where a reloaded job resumes, missed one-time jobs), django-celery-beat's
``DatabaseScheduler`` (it reads the PeriodicTask rows and notices changes) and Celery's
``Scheduler.tick`` (the heap that decides which entry is looked at when). Replaced, and why:

* ``scheduling.beat.clock``: the beat's idea of now, so a test can walk through a DST day or a
  stretch of downtime in milliseconds;
* ``_when``: Celery times its heap by the wall clock; here it reads the same controlled clock;
* ``run_job.apply_async``: the message is captured as a ``Sent`` (job, planned time, when sent)
  instead of being published, so the test decides when, and how often, a worker gets it;
* ``django_celery_beat.schedulers.close_old_connections``: a no-op, because inside a test's
  transaction Django would close the connection (its autocommit differs from the settings').

The scheduler is built ``lazy`` (no default entries: ``celery.backend_cleanup`` is Celery's,
not Switchboard's, and would be published for real). The single-beat lock is really taken;
``release_beat_lock`` gives it back so that beat processes started by later tests can start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from config.celery import app as celery_app
from scheduling import beat
from scheduling.beat import JobScheduler
from scheduling.jobs import TASK_NAME

MAX_TICKS = 20_000  # per run_for call; a beat that loops without end fails instead of hanging


class Clock:
    """An aware UTC instant that moves only when the test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Sent:
    """A run the beat sent: the job, its planned instant, and the beat's clock at the send."""

    job_id: int
    planned: datetime
    at: datetime


class ClockedScheduler(JobScheduler):
    """``JobScheduler`` whose heap is timed by ``scheduling.beat.clock`` instead of the wall clock."""

    def _when(self, entry: Any, next_time_to_run: float, mktime: Any = None) -> float:
        return beat.clock().timestamp() + (self.adjust(next_time_to_run) or 0)


@dataclass
class Beat:
    """One beat process's life: build it, ``run_for`` some seconds, ``close`` it (a stop or a crash)."""

    clock: Clock
    max_interval: float = 1.0
    started_at: datetime = field(init=False)
    scheduler: ClockedScheduler = field(init=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        self.scheduler = ClockedScheduler(app=celery_app, lazy=True, max_interval=self.max_interval)
        self.scheduler.producer = None  # never connect to a broker: sends are captured
        _open.append(self)

    def run_for(self, seconds: float) -> None:
        """Tick as a running beat does for ``seconds`` of beat time, then until nothing more is due.

        Each tick takes at least 10 ms of beat time, so a beat waiting out Celery's 10 ms of
        drift does not spin; everything due by the end is sent before this returns.
        """
        end = self.clock() + timedelta(seconds=seconds)
        idle_at_end = 0
        for _ in range(MAX_TICKS):
            delay = self.scheduler.tick()
            remaining = (end - self.clock()).total_seconds()
            if remaining > 0:
                self.clock.advance(min(max(delay, 0.01), remaining))
            elif delay > 0 or idle_at_end == 20:
                return
            else:
                idle_at_end += 1
        raise AssertionError(f"the beat ticked {MAX_TICKS} times in {seconds} s of beat time")

    def close(self) -> None:
        """Forget this beat without a final sync, as a killed process would (and so no late writes)."""
        self.scheduler._dirty.clear()
        self.scheduler._finalize.cancel()
        if self in _open:
            _open.remove(self)


_open: list[Beat] = []


def close_beats() -> None:
    """Close every beat still open (a test that failed half-way), before its database goes away."""
    while _open:
        _open[-1].close()


def release_beat_lock() -> None:
    """Give back the single-beat lock this process took, so a later beat (process, or test) can start.

    ``scheduling.beat.release_lock`` unlocks before closing the connection: closing alone freed the lock
    only once PostgreSQL had noticed, and on a loaded machine the next test's beat could be refused first.
    """
    beat.release_lock()


def install(monkeypatch: pytest.MonkeyPatch, start: datetime) -> tuple[Clock, list[Sent]]:
    """Install a controlled beat clock starting at ``start`` and capture sends; returns both.

    Call ``release_beat_lock`` when done (a fixture's teardown) so later beats can start.
    """
    clock = Clock(start)
    sent: list[Sent] = []

    def capture(args: Any = None, kwargs: Any = None, **options: Any) -> None:
        sent.append(Sent(kwargs["job_id"], datetime.fromisoformat(kwargs["scheduled_for"]), clock()))

    monkeypatch.setattr(beat, "clock", clock)
    monkeypatch.setattr("django_celery_beat.schedulers.close_old_connections", lambda: None)
    monkeypatch.setattr(celery_app.tasks[TASK_NAME], "apply_async", capture)
    return clock, sent


def planned_of(sent: list[Sent], job_id: int) -> list[datetime]:
    """The planned instants sent for one job, in the order sent."""
    return [item.planned for item in sent if item.job_id == job_id]


