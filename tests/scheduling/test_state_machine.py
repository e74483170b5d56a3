"""A Hypothesis state machine over the scheduler: jobs written, time passing, beats restarting, workers delivering.

Each step is one of: create, edit, deactivate, reactivate or delete a job (through
``scheduling.jobs``, the one write path); let beat time pass (the real ``JobScheduler`` ticks with
a controlled clock, see ``beat_harness``), with workers keeping up or lagging; restart the beat
after some downtime (a new scheduler, nothing carried over but the rows); or let lagging workers
take queued runs. Every run a worker gets goes to ``scheduling.tasks.run_job``, some twice, as a
broker redelivers after a worker died. The service counts its invocations under a key of its own,
so the test knows how often it really ran for each (job, planned time).

What must hold, checked at each step:

* no (job, planned time) is invoked twice, and so a one-time job runs at most once per start date;
* every invocation is at a time that one of the job's plans (as created or edited) has, and the
  service gets the job's extra data;
* while a beat runs, every planned time of an active job is sent, once, on time, and never more than
  ``SCHEDULER_MISFIRE_GRACE`` late. When the beat (re)loads a job's plan (the job is created, edited
  or re-activated, or the beat starts), the times planned at most the grace period before (the
  README's rule, boundary included; lateness counts when a time is sent) are sent at once, late,
  unless a run at that time or later is already recorded; older ones never are. So a time this
  beat sent before the job was re-armed may be sent once more then (a worker may have dropped it
  while the job was inactive; if not, the second message finds the time recorded and runs nothing);
* ``repeats`` counts runs that happened or were recorded missed: every planned time of an active
  job with repeats that is more than the grace period old has a run row (run or missed), or is
  queued for a worker; none is skipped silently;
* after the run of a job's last planned time, the job is inactive, and so is a job whose every
  planned time is accounted for; a one-time job whose time passed more than the grace period
  before a beat started is inactive with its run recorded (missed or not);
* re-activation is refused exactly when the plan has no run left after now (a one-time start
  date passed, repeats used up); so are creating and editing such an active job.

Each example runs inside a savepoint of the test's transaction, rolled back when it ends.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone as django_timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from integration.models import DeployedService
from scheduling import jobs, plans
from scheduling.models import Job, JobRun
from scheduling.tasks import run_job
from tests.scheduling.beat_harness import Beat, Clock, Sent, close_beats, install, release_beat_lock

pytestmark = pytest.mark.django_db

START = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
ZONES = ("UTC", "Europe/Warsaw", "America/New_York")
EXTRAS = ("", "region=emea", '{"batch": 7}', "<invoice id='1'/>")

# Counts every invocation (and keeps the last payload) under a key of this test run's own.
RECORDER = """
    import os

    from django.core.cache import cache
    from integration.services import Service

    class Record(Service):
        def handle(self):
            key = os.environ["SM_INVOCATIONS"]
            cache.set(key + ":payload", self.request.payload, 600)
            cache.incr(key)
"""


@dataclass(frozen=True)
class Spec:
    """A plan to give a job: kind, and offsets in seconds from the moment it is written."""

    kind: str
    offset: int
    seconds: int = 0
    repeats: int | None = None
    cron: str = ""
    zone: str = "UTC"
    extra: str = ""


specs = st.one_of(
    st.builds(Spec, kind=st.just(plans.ONE_TIME), offset=st.integers(1, 60), extra=st.sampled_from(EXTRAS)),
    st.builds(Spec, kind=st.just(plans.INTERVAL_BASED), offset=st.integers(-30, 30), seconds=st.integers(1, 15),
              repeats=st.none() | st.integers(1, 4), extra=st.sampled_from(EXTRAS)),
    st.builds(Spec, kind=st.just(plans.CRON_STYLE), offset=st.just(-86400),
              cron=st.sampled_from(("* * * * *", "*/2 * * * *")), zone=st.sampled_from(ZONES),
              extra=st.sampled_from(EXTRAS)),
)


class SchedulerMachine(RuleBasedStateMachine):
    """The scheduler as users, time, the beat and the workers drive it; see the module docstring."""

    service: DeployedService
    clock: Clock
    outbox: list[Sent]
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.savepoint = transaction.savepoint()
        self.clock.now = START
        self.outbox.clear()
        self._new_beat()
        self.names = itertools.count()
        self.queue: list[Sent] = []  # sent by a beat, not yet delivered to a worker
        self.checked = 0  # how much of the outbox the invariants have seen
        self.invoked: Counter[tuple[int, datetime]] = Counter()
        self.plans_had: dict[int, list[plans.Plan]] = {}  # every plan each job has had
        self.armed: dict[int, datetime] = {}  # when each job was last created, re-planned or re-activated
        self.armings: Counter[int] = Counter()  # how often: a beat sends only between rules, so this orders both

    # --- Users ---------------------------------------------------------------------------------

    @initialize(target=jobs, spec=specs)
    def first_job(self, spec: Spec) -> Any:
        return self.create(spec)

    @rule(target=jobs, spec=specs)
    def create(self, spec: Spec) -> Any:
        job = Job(name=f"job-{next(self.names)}", service=self.service)
        self._apply(job, spec)
        if not self._saved(job):
            return multiple()
        self._armed(job)
        return job.pk

    @rule(job_id=jobs, spec=specs)
    def edit(self, job_id: int, spec: Spec) -> None:
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return
        before = job.plan()
        self._apply(job, spec)
        if not self._saved(job):
            return
        if job.plan() != before:
            self._armed(job)

    @rule(job_id=jobs)
    def deactivate(self, job_id: int) -> None:
        job = Job.objects.filter(pk=job_id).first()
        if job is not None:
            jobs.set_active(job, False)

    @rule(job_id=jobs, new_start=st.none() | st.integers(1, 90))
    def reactivate(self, job_id: int, new_start: int | None) -> None:
        job = Job.objects.filter(pk=job_id).first()
        if job is None or job.is_active:
            return
        if new_start is not None and job.job_type == plans.ONE_TIME:
            job.start_date = self.clock() + timedelta(seconds=new_start)
        # Refused exactly when the plan has no run left after now (a one-time start in the past,
        # repeats used up).
        refused_expected = job.plan().next_after(self.clock()) is None
        try:
            jobs.set_active(job, True)
        except ValidationError as exc:
            assert refused_expected, exc
            return
        assert not refused_expected, "a job was re-activated with no run left in its plan"
        self._armed(job)

    @rule(job_id=consumes(jobs))
    def delete(self, job_id: int) -> None:
        job = Job.objects.filter(pk=job_id).first()
        if job is not None:
            jobs.delete_job(job)

    # --- Time, beats and workers ---------------------------------------------------------------

    @rule(seconds=st.floats(0.5, 40), workers_keep_up=st.booleans(), data=st.data())
    def let_time_pass(self, seconds: float, workers_keep_up: bool, data: st.DataObject) -> None:
        """The beat runs; workers then take everything queued, unless they are lagging behind."""
        self.beat.run_for(seconds)
        self._take_sent()
        self._check_nothing_skipped()
        if workers_keep_up:
            self._deliver(len(self.queue), data)
        self._check_repeats_are_accounted_for()

    @rule(seconds=st.floats(0.01, 3), data=st.data())
    def let_a_moment_pass(self, seconds: float, data: st.DataObject) -> None:
        """A few beat ticks, with workers keeping up: edits then land between runs, not only between minutes."""
        self.let_time_pass(seconds, True, data)

    @rule(downtime=st.integers(0, 120))
    def restart_the_beat(self, downtime: int) -> None:
        self.beat.close()  # a crash: no final sync
        self.clock.advance(downtime)
        grace = timedelta(seconds=settings.SCHEDULER_MISFIRE_GRACE)
        late = set(Job.objects.filter(
            job_type=plans.ONE_TIME, is_active=True, start_date__lt=self.clock() - grace
        ).values_list("pk", flat=True))
        self._new_beat()
        self.beat.run_for(0)  # starting: the first read of the schedule
        self._take_sent()
        for job_id in late:  # missed while down: recorded and made inactive
            job = Job.objects.get(pk=job_id)
            assert not job.is_active, job
            assert job.runs.filter(scheduled_for=job.start_date, manual=False).exists(), job
        self._check_repeats_are_accounted_for()

    @rule(data=st.data())
    def lagging_workers_catch_up(self, data: st.DataObject) -> None:
        """Workers that fell behind take some of the queued runs."""
        self._deliver(data.draw(st.integers(0, len(self.queue)), label="count"), data)

    # --- Invariants ----------------------------------------------------------------------------

    @invariant()
    def no_run_twice(self) -> None:
        twice = [key for key, times in self.invoked.items() if times > 1]
        assert not twice, f"invoked more than once: {twice}"

    @invariant()
    def a_one_time_job_runs_at_most_once_per_start_date(self) -> None:
        for job_id, had in self.plans_had.items():
            if all(plan.job_type == plans.ONE_TIME for plan in had):
                runs = sum(times for (invoked_job, _), times in self.invoked.items() if invoked_job == job_id)
                assert runs <= len({plan.start for plan in had}), f"job {job_id} ran {runs} times for {had}"

    # --- Helpers -------------------------------------------------------------------------------

    def teardown(self) -> None:
        self.beat.close()
        transaction.savepoint_rollback(self.savepoint)

    def _apply(self, job: Job, spec: Spec) -> None:
        job.job_type, job.extra = spec.kind, spec.extra
        job.start_date = self.clock() + timedelta(seconds=spec.offset)
        job.seconds, job.repeats, job.cron_definition, job.timezone = spec.seconds, spec.repeats, spec.cron, spec.zone

    def _saved(self, job: Job) -> bool:
        """Save a new plan; a plan with no run left after now must be refused, and nothing saved."""
        no_run_left = (job.is_active and jobs.plan_changed(job)
                       and job.plan().next_after(self.clock()) is None)
        try:
            with transaction.atomic():
                jobs.save_job(job, now=self.clock())
        except ValidationError:
            assert no_run_left, f"{job} was refused though its plan has runs left"
            return False
        assert not no_run_left, f"{job} was saved active with no run left in its plan"
        return True

    def _new_beat(self) -> None:
        self.beat = Beat(self.clock, max_interval=5)
        # (job, planned time) -> how often the job had been armed when this beat sent it
        self.sent_by_this_beat: dict[tuple[int, datetime], int] = {}

    def _armed(self, job: Job) -> None:
        self.plans_had.setdefault(job.pk, []).append(job.plan())
        self.armed[job.pk] = self.clock()
        self.armings[job.pk] += 1

    def _loaded_at(self, job_id: int) -> datetime:
        """When this beat last read the job's plan: its start, or the job's last arming after it.

        The beat notices a write on its next tick, and in this machine no time passes between a
        rule that writes and the next tick.
        """
        return max(self.armed[job_id], self.beat.started_at)

    def _check_nothing_skipped(self) -> None:
        """Every planned time of an active job that passed while this beat ran, after the job was last
        armed, was sent (on time, as ``_take_sent`` checks): a beat that notices a change late would not
        be. So was every time planned less than the grace period before that, unless a run at that time
        or later was recorded when the beat read the plan (a restarted beat does not send again what ran)."""
        grace = timedelta(seconds=settings.SCHEDULER_MISFIRE_GRACE)
        due_by = self.clock() - timedelta(milliseconds=20)
        for job in Job.objects.filter(is_active=True):
            plan = job.plan()
            loaded = self._loaded_at(job.pk)
            moment = plan.next_after(loaded - grace + timedelta(seconds=1))
            while moment is not None and moment <= due_by:
                ran_since = moment <= loaded and job.runs.filter(
                    manual=False, scheduled_for__gte=moment, scheduled_for__lte=loaded).exists()
                assert ran_since or (job.pk, moment) in self.sent_by_this_beat, f"{job} was not sent for {moment}"
                moment = plan.next_after(moment)

    def _check_repeats_are_accounted_for(self) -> None:
        """Each planned time of an active job with repeats, once more than the grace period old, was run or
        recorded missed (or waits in the queue): repeats never counts a time skipped silently. A job whose
        every planned time is accounted for that way is inactive."""
        limit = self.clock() - timedelta(seconds=settings.SCHEDULER_MISFIRE_GRACE + 1)
        queued = {(sent.job_id, sent.planned) for sent in self.queue}
        for job in Job.objects.filter(is_active=True, job_type=plans.INTERVAL_BASED, repeats__isnull=False):
            plan = job.plan()
            recorded = set(job.runs.filter(manual=False).values_list("scheduled_for", flat=True))
            moment = plan.first()
            while moment is not None and moment <= limit:
                assert moment in recorded or (job.pk, moment) in queued, f"{job}: {moment} was skipped silently"
                moment = plan.next_after(moment)
            over = moment is None and not any(job_id == job.pk for job_id, _ in queued)
            assert not over, f"{job} has every planned time run or missed but is still active"

    def _take_sent(self) -> None:
        """Check what the beat sent since the last look, then queue it for the workers."""
        grace = timedelta(seconds=settings.SCHEDULER_MISFIRE_GRACE)
        for sent in self.outbox[self.checked:]:
            loaded = self._loaded_at(sent.job_id)
            armings = self.armings[sent.job_id]
            before = self.sent_by_this_beat.get((sent.job_id, sent.planned))
            # Once per beat, but for a time within the grace period when the job was re-armed after that send.
            assert before is None or (before < armings and sent.planned <= loaded), f"sent twice by one beat: {sent}"
            self.sent_by_this_beat[(sent.job_id, sent.planned)] = armings
            assert sent.at - sent.planned <= grace, f"sent more than the grace period late: {sent}"
            if sent.planned <= loaded:
                # Planned before the beat read the plan: a late run, allowed within the grace period only.
                assert loaded - sent.planned <= grace, f"sent a time over the grace period old at (re)arming: {sent}"
                continue
            job = Job.objects.filter(pk=sent.job_id).first()
            if job is not None and job.job_type != plans.ONE_TIME:
                assert sent.at - sent.planned < timedelta(seconds=1), f"late: {sent}"
        self.queue.extend(self.outbox[self.checked:])
        self.checked = len(self.outbox)

    def _deliver(self, count: int, data: st.DataObject) -> None:
        """The first ``count`` queued runs reach a worker, in order; some twice, as a broker redelivers."""
        for sent in self.queue[:count]:
            for _ in range(2 if data.draw(st.booleans(), label="redelivered") else 1):
                self._run(sent)
        del self.queue[:count]

    def _run(self, sent: Sent) -> None:
        """Deliver one message to the task, as a worker would, and count the service's invocations."""
        counter = os.environ["SM_INVOCATIONS"]
        before = cache.get(counter)
        cid = uuid.uuid4().hex[:24]
        run_job(sent.job_id, sent.planned.isoformat(), cid)
        calls = cache.get(counter) - before
        if not calls:
            return
        self.invoked[(sent.job_id, sent.planned)] += calls
        assert self.invoked[(sent.job_id, sent.planned)] == 1, f"invoked again for a planned time: {sent}"
        job = Job.objects.get(pk=sent.job_id)
        assert any(plan.next_after(sent.planned - timedelta(microseconds=1)) == sent.planned
                   for plan in self.plans_had[sent.job_id]), f"invoked at a time no plan of the job has: {sent}"
        assert cache.get(counter + ":payload") == (job.extra or None)
        assert JobRun.objects.get(job=job, scheduled_for=sent.planned, manual=False).cid == cid
        if job.plan().next_after(sent.planned) is None:
            assert not job.is_active, f"{job} has no run left after {sent.planned} but is still active"


@pytest.fixture
def machine(deploy, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[SchedulerMachine]]:
    deploy("sm_recorder.py", RECORDER)
    counter = f"sm-invocations-{uuid.uuid4().hex}"
    cache.set(counter, 0, 3600)
    monkeypatch.setenv("SM_INVOCATIONS", counter)
    clock, outbox = install(monkeypatch, START)
    # Writes validate plans ("a one-time start date must be in the future") by the beat's clock too.
    controlled = SimpleNamespace(**{**vars(django_timezone), "now": clock})
    monkeypatch.setattr("scheduling.jobs.timezone", controlled)
    monkeypatch.setattr("scheduling.models.timezone", controlled)
    monkeypatch.setattr(SchedulerMachine, "service", DeployedService.objects.get(name="sm-recorder.record"),
                        raising=False)
    monkeypatch.setattr(SchedulerMachine, "clock", clock, raising=False)
    monkeypatch.setattr(SchedulerMachine, "outbox", outbox, raising=False)
    yield SchedulerMachine
    close_beats()
    release_beat_lock()


def test_the_scheduler_never_runs_a_planned_time_twice(machine: type[SchedulerMachine]) -> None:
    run_state_machine_as_test(machine, settings=hypothesis_settings(
        max_examples=50, stateful_step_count=30, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow],
    ))
