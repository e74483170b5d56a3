"""Scheduler jobs and their runs.

A ``Job`` is a channel like any other: it names a service and says when to invoke it,
with ``extra`` as the request payload. Each job owns one django-celery-beat
``PeriodicTask``, written with it in one transaction by ``scheduling.jobs.save_job``
(admin, API, built-in services and tests all call that function). Every run is a
``JobRun`` row, unique per (job, scheduled time), which is what makes a redelivered
task for a run already recorded do nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from scheduling import plans

# Fields whose change is a new plan, which must be able to run (see Job.validate_new_plan).
PLAN_FIELDS = ("job_type", "start_date", "weeks", "days", "hours", "minutes", "seconds", "repeats",
               "cron_definition", "timezone", "is_active")


class Job(models.Model):
    class JobType(models.TextChoices):
        ONE_TIME = plans.ONE_TIME, "one-time"
        INTERVAL_BASED = plans.INTERVAL_BASED, "interval-based"
        CRON_STYLE = plans.CRON_STYLE, "cron-style"

    name = models.CharField(max_length=200, unique=True, help_text="A unique name for administrators and the API.")
    is_active = models.BooleanField(
        default=True, help_text="Inactive jobs keep their definition but do not run until made active again."
    )
    service = models.ForeignKey(
        "integration.DeployedService",
        on_delete=models.PROTECT,
        related_name="jobs",
        help_text="The service each run invokes; it receives the extra data as its request payload.",
    )
    job_type = models.CharField(
        max_length=20,
        choices=JobType.choices,
        help_text="One-time: runs once at the start date. Interval-based: every N weeks/days/hours/minutes/seconds "
        "from the start date. Cron-style: by a five-field cron expression.",
    )
    start_date = models.DateTimeField(
        help_text="When the job starts: the one run of a one-time job, the first run of an interval-based one, "
        "and for cron-style jobs the moment before which nothing runs."
    )
    extra = models.TextField(
        blank=True,
        max_length=1_000_000,
        help_text="Data handed to the service as its request payload on every run, as text in any format "
        "(JSON, XML, CSV...).",
    )
    weeks = models.PositiveIntegerField(default=0, help_text="Interval-based jobs: weeks between runs.")
    days = models.PositiveIntegerField(default=0, help_text="Interval-based jobs: days between runs.")
    hours = models.PositiveIntegerField(default=0, help_text="Interval-based jobs: hours between runs.")
    minutes = models.PositiveIntegerField(default=0, help_text="Interval-based jobs: minutes between runs.")
    seconds = models.PositiveIntegerField(default=0, help_text="Interval-based jobs: seconds between runs.")
    repeats = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Interval-based jobs: how many runs in all; empty = no limit. When they are used up the job "
        "becomes inactive.",
    )
    cron_definition = models.CharField(
        max_length=200,
        blank=True,
        help_text="Cron-style jobs: minute hour day-of-month month day-of-week, e.g. `00 3-6 * * 1-5` = every "
        "full hour from 3 to 6 am, Monday to Friday. @hourly, @daily, @weekly, @monthly and @yearly work too.",
    )
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="Cron-style jobs: the IANA time zone the expression is read in, e.g. Europe/Warsaw.",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="switchboard_job",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["job_type", "is_active"])]

    def __str__(self) -> str:
        return self.name

    @property
    def interval(self) -> timedelta:
        """The interval (whole seconds); ``plans.PlanError`` naming a field if no timedelta can hold it."""
        total = plans.interval_seconds(self.weeks or 0, self.days or 0, self.hours or 0, self.minutes or 0,
                                       self.seconds or 0)
        try:
            return timedelta(seconds=total)
        except OverflowError:  # a row no validation let through: say so rather than crash the reader
            plans.check_interval(**self._interval_values())
            raise

    def plan(self) -> plans.Plan:
        """The job's schedule; raises ``plans.PlanError`` naming the field at fault."""
        if self.job_type == plans.ONE_TIME:
            return plans.Plan.one_time(self.start_date)
        if self.job_type == plans.INTERVAL_BASED:
            if self.interval <= timedelta(0):
                raise plans.PlanError(
                    "seconds", "At least one of weeks, days, hours, minutes or seconds must be more than zero"
                )
            return plans.Plan.interval(self.start_date, self.interval, self.repeats)
        if self.job_type == plans.CRON_STYLE:
            return plans.Plan.cron(self.start_date, self.cron_definition, self.timezone or "UTC")
        raise plans.PlanError("job_type", f"Unrecognized job type [{self.job_type}]")

    def next_run(self, after: datetime | None = None) -> datetime | None:
        """When the job runs next (None if inactive or its plan is used up)."""
        if not self.is_active:
            return None
        try:
            return self.plan().next_after(after or timezone.now())
        except (plans.PlanError, ValueError):
            return None

    def _interval_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _unit in plans.INTERVAL_UNITS}

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.job_type not in self.JobType.values:
            errors["job_type"] = f"Unrecognized job type [{self.job_type}]"
        if self.start_date is None:
            errors["start_date"] = "A start date is required"
        elif isinstance(self.start_date, datetime):
            try:
                plans.check_start(self.start_date)
            except plans.PlanError as exc:
                errors[exc.field] = exc.message
        # Numbers that no column or timedelta can hold. clean() runs even when a field's own
        # validation failed (the value is then not a number at all, and that field's message says so).
        numbers = self._interval_values()
        numbers_ok = all(isinstance(value, int) for value in numbers.values()) and isinstance(self.repeats, int | None)
        if numbers_ok:
            try:
                plans.check_interval(**numbers)
            except plans.PlanError as exc:
                errors[exc.field] = exc.message
            if self.repeats is not None and self.repeats > plans.MAX_REPEATS:
                errors["repeats"] = f"At most {plans.MAX_REPEATS} repeats (leave empty to repeat forever)"
        if self.timezone:
            try:
                plans.zone(self.timezone)
            except plans.PlanError as exc:
                errors["timezone"] = exc.message
        if not errors and numbers_ok:
            if self.job_type == plans.CRON_STYLE:
                try:
                    self.cron_definition = plans.Cron.parse(self.cron_definition).expression
                except plans.PlanError as exc:
                    errors[exc.field] = exc.message
            try:
                self.plan()
            except plans.PlanError as exc:
                errors.setdefault(exc.field, exc.message)
        if errors:
            raise ValidationError(errors)

    def validate_new_plan(self, now: datetime | None = None) -> None:
        """Checks that only make sense when a plan is set, not when a job is merely renamed."""
        now = now or timezone.now()
        if not self.is_active or self.start_date is None:
            return
        if self.job_type == plans.ONE_TIME and self.start_date <= now:
            raise ValidationError({"start_date": "The start date of a one-time job must be in the future"})
        try:
            upcoming = self.plan().next_after(now)
        except plans.PlanError:
            return  # clean() reports it, naming the field
        if upcoming is None:
            field = "repeats" if self.job_type == plans.INTERVAL_BASED else "cron_definition"
            raise ValidationError({field: "This plan has no run left after now: give a later start date"
                                          + (" or more repeats" if field == "repeats" else "")})


class JobRun(models.Model):
    """One run of a job: planned, started by a worker, finished (or missed)."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        OK = "ok", "ok"
        ERROR = "error", "error"
        MISSED = "missed", "missed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="runs")
    scheduled_for = models.DateTimeField(help_text="The planned time of this run (the request time for manual runs).")
    manual = models.BooleanField(default=False, help_text="Started with 'Execute now' rather than by the schedule.")
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    cid = models.CharField(max_length=64, blank=True, help_text="Correlation id of the invocation, as in the logs.")
    error = models.TextField(blank=True, help_text="Why the run failed, was missed or was interrupted.")
    worker = models.CharField(max_length=200, blank=True, help_text="The Celery worker that ran it.")

    class Meta:
        ordering = ["-scheduled_for"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "scheduled_for"], condition=models.Q(manual=False), name="job_run_once_per_time"
            )
        ]
        indexes = [models.Index(fields=["job", "-scheduled_for"])]

    def __str__(self) -> str:
        return f"{self.job_id} at {self.scheduled_for:%Y-%m-%d %H:%M:%S}"

    @property
    def lateness_ms(self) -> float | None:
        if self.started is None or self.manual:
            return None
        return (self.started - self.scheduled_for).total_seconds() * 1000

