"""When a job runs: one-time, interval and cron plans as pure functions of time.

Everything the scheduler promises about *when* lives here, with no database and no
Celery, so it can be tested against a controlled clock:

* an interval plan is a grid anchored to the start date, ``start + k * interval``, never
  to the moment a process started; with ``repeats`` the grid has that many points;
* a cron plan is a five-field expression read in the job's IANA time zone;
* daylight saving time: a local time that does not exist (the hour skipped on
  spring-forward day) runs once, at the instant the clocks jump (02:30 -> 03:00 on the
  new time); a local time that occurs twice (fall-back day) runs once, at its first
  occurrence.

``Plan.next_after(t)`` is the only question the scheduler asks: the first planned
instant strictly after ``t`` (aware UTC datetimes in and out), or ``None`` when the plan
has no more runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ONE_TIME = "one_time"
INTERVAL_BASED = "interval_based"
CRON_STYLE = "cron_style"

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: i for i, name in enumerate(_MONTH_NAMES, start=1)}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_UTC_ZONE = ZoneInfo("UTC")
SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (  # name, lowest, highest, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),  # 0 and 7 are both Sunday
)
# ASCII digits only, and at most four of them: no cron value or step is longer, and int() of a
# 5,000-digit step would raise ValueError (Python's digit limit) instead of a PlanError.
_PART = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/([0-9]{1,4}))?$")
# How far ahead a cron expression is searched; "0 0 29 2 1" (Feb 29 or a Monday) always hits
# within a week, and Feb 29 alone within 8 years.
_SEARCH_DAYS = 366 * 9

# Bounds on what a job may ask for. Without them a job could be saved that crashes whoever
# reads it (``timedelta(weeks=2**31)`` overflows, ``start + interval * k`` runs past the year
# 9999, PostgreSQL refuses a 32-bit column's overflow): each is checked where input arrives
# (``scheduling.models.Job.clean``: admin, API and the zato.scheduler.job.* services), and the
# arithmetic below also stops quietly at the end of the calendar instead of raising.

#: The longest interval, in seconds (about 68 years): django-celery-beat keeps an interval
#: schedule's length in a 32-bit column (``IntervalSchedule.every``).
MAX_INTERVAL_SECONDS = 2**31 - 1
#: Most repeats a job may have (a 32-bit column on PostgreSQL; the same everywhere).
MAX_REPEATS = 2**31 - 1
#: Start dates from the Unix epoch to the end of 8999: room above for the plans' arithmetic.
EARLIEST_START = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_START = datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)
#: Interval fields, largest first, with their length in seconds.
INTERVAL_UNITS = (("weeks", 7 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))


class PlanError(ValueError):
    """A plan that cannot be used; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def interval_seconds(weeks: int = 0, days: int = 0, hours: int = 0, minutes: int = 0, seconds: int = 0) -> int:
    """The interval in whole seconds, in integer arithmetic (no overflow, however large)."""
    return weeks * 7 * 86400 + days * 86400 + hours * 3600 + minutes * 60 + seconds


def check_interval(**values: int) -> None:
    """PlanError naming the field when weeks/days/hours/minutes/seconds give an interval over the limit.

    A field that alone exceeds the limit is named with its own maximum; otherwise the field
    that carries the sum over it (counting from weeks down) is named.
    """
    total = 0
    for name, unit in INTERVAL_UNITS:
        value = values.get(name) or 0
        if value > MAX_INTERVAL_SECONDS // unit:
            raise PlanError(name, f"At most {MAX_INTERVAL_SECONDS // unit} {name}: an interval can be at most "
                                  f"{MAX_INTERVAL_SECONDS} seconds (about 68 years)")
        total += value * unit
        if total > MAX_INTERVAL_SECONDS:
            raise PlanError(name, f"The interval (weeks, days, hours, minutes and seconds together) can be at most "
                                  f"{MAX_INTERVAL_SECONDS} seconds (about 68 years)")


def check_start(start: datetime) -> None:
    """PlanError naming ``start_date`` when it is outside EARLIEST_START to LATEST_START."""
    if not EARLIEST_START <= start <= LATEST_START:
        raise PlanError("start_date", f"The start date must be from {EARLIEST_START:%Y-%m-%d} to "
                                      f"{LATEST_START:%Y-%m-%d} (UTC)")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or PlanError naming the ``timezone`` field."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PlanError("timezone", f"Unknown time zone `{name}`; use an IANA name such as Europe/Warsaw") from None


@dataclass(frozen=True)
class Cron:
    """A parsed five-field cron expression (minute hour day-of-month month day-of-week)."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month was *
    any_weekday: bool  # day of week was *

    @classmethod
    def parse(cls, text: str) -> Cron:
        expression = " ".join((text or "").split())
        expression = SHORTCUTS.get(expression.lower(), expression)
        fields = expression.split(" ")
        if len(fields) != 5 or not expression:
            raise PlanError(
                "cron_definition",
                f"A cron definition has five fields (minute hour day-of-month month day-of-week), got `{text}`",
            )
        values = [_parse_field(part, spec) for part, spec in zip(fields, _FIELDS, strict=True)]
        weekdays = frozenset(0 if day == 7 else day for day in values[4])
        return cls(
            expression=expression,
            minutes=tuple(sorted(values[0])),
            hours=tuple(sorted(values[1])),
            days=frozenset(values[2]),
            months=frozenset(values[3]),
            weekdays=weekdays,
            any_day=fields[2] == "*",
            any_weekday=fields[4] == "*",
        )

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        # Classic cron: when both day fields are restricted, either may match.
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week


def _parse_field(part: str, spec: tuple[str, int, int, dict[str, int]]) -> set[int]:
    name, low, high, _names = spec
    values: set[int] = set()
    for item in part.lower().split(","):
        match = _PART.match(item)
        if not match:
            raise PlanError("cron_definition", f"Cannot read `{item}` in the {name} field")
        span, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise PlanError("cron_definition", f"The step in `{item}` ({name}) must be at least 1")
        if span == "*":
            first, last = low, high if name != "day of week" else 6
        elif "-" in span:
            first, last = (_value(bound, spec) for bound in span.split("-"))
            if first > last:
                raise PlanError("cron_definition", f"The range `{span}` in the {name} field runs backwards")
        else:
            first = _value(span, spec)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def _value(text: str, spec: tuple[str, int, int, dict[str, int]]) -> int:
    name, low, high, names = spec
    if text in names:
        return names[text]
    if not text.isdigit():
        raise PlanError("cron_definition", f"`{text}` is not a number or a name in the {name} field")
    if len(text) > 4:  # out of range, and int() of thousands of digits raises ValueError
        raise PlanError("cron_definition", f"`{text[:8]}...` is outside {low}-{high} in the {name} field")
    value = int(text)
    if not low <= value <= high:
        raise PlanError("cron_definition", f"{value} is outside {low}-{high} in the {name} field")
    return value


def to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time, by this module's DST rule.

    Repeated times take their first occurrence (fold=0). A skipped time is moved to the
    instant the clocks jump, so every time in the gap collapses into that one instant.
    """
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # In a gap: the transition lies between the two readings of the wall time.
    earlier = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    later = instant
    while later - earlier > timedelta(seconds=1):
        middle = earlier + (later - earlier) / 2
        if middle.astimezone(tz).replace(tzinfo=None) > wall:
            later = middle
        else:
            earlier = middle
    return later.replace(microsecond=0)  # transitions fall on whole seconds, and `later` is within 1 s past it


@dataclass(frozen=True)
class Plan:
    """A job's schedule. Build with ``one_time``, ``interval`` or ``cron``."""

    job_type: str
    start: datetime
    every: timedelta | None = None
    repeats: int | None = None
    cron_expr: Cron | None = None
    tz: ZoneInfo = _UTC_ZONE

    @classmethod
    def one_time(cls, start: datetime) -> Plan:
        return cls(ONE_TIME, _aware(start))

    @classmethod
    def interval(cls, start: datetime, every: timedelta, repeats: int | None = None) -> Plan:
        if every <= timedelta(0):
            raise PlanError("seconds", "The interval must be longer than zero")
        if repeats is not None and repeats < 1:
            raise PlanError("repeats", "Repeats must be at least 1 (leave empty to repeat forever)")
        return cls(INTERVAL_BASED, _aware(start), every=every, repeats=repeats)

    @classmethod
    def cron(cls, start: datetime, expression: str, timezone: str = "UTC") -> Plan:
        return cls(CRON_STYLE, _aware(start), cron_expr=Cron.parse(expression), tz=zone(timezone))

    def next_after(self, moment: datetime) -> datetime | None:
        """The first planned instant strictly after ``moment``, or None if there is none."""
        moment = _aware(moment)
        if self.job_type == ONE_TIME:
            return self.start if self.start > moment else None
        if self.job_type == INTERVAL_BASED:
            return self._next_interval(moment)
        return self._next_cron(moment)

    def first(self) -> datetime | None:
        """The plan's first instant (the start date for one-time and interval plans)."""
        if self.start == datetime.min.replace(tzinfo=UTC):
            return self.start if self.job_type != CRON_STYLE else self.next_after(self.start)
        return self.next_after(self.start - timedelta(microseconds=1))

    def last(self) -> datetime | None:
        """The final instant of a plan that ends (one-time, or interval with repeats), else None.

        An interval plan whose last repeat would fall after the end of the calendar (year
        9999) ends with the last instant there is.
        """
        if self.job_type == ONE_TIME:
            return self.start
        if self.job_type == INTERVAL_BASED and self.repeats is not None and self.every is not None:
            return _later(self.start, self.every, self.repeats - 1) or _later(
                self.start, self.every, (datetime.max.replace(tzinfo=UTC) - self.start) // self.every)
        return None

    def _next_interval(self, moment: datetime) -> datetime | None:
        every = self.every or timedelta(seconds=1)  # set by Plan.interval, the only way to build one
        index = 0 if moment < self.start else (moment - self.start) // every + 1
        if self.repeats is not None and index >= self.repeats:
            return None
        return _later(self.start, every, index)  # None past the year 9999: no run left

    def _next_cron(self, moment: datetime) -> datetime | None:
        cron = self.cron_expr
        if cron is None:
            return None
        try:
            return self._search_cron(cron, moment)
        except (OverflowError, ValueError):  # ran past the year 9999: no run left
            return None

    def _search_cron(self, cron: Cron, moment: datetime) -> datetime | None:
        floor = max(moment, self.start - timedelta(microseconds=1))
        # Start a day early: a wall time on the previous local date can still map after
        # `floor` around a DST change, and candidates are checked in UTC anyway.
        day = floor.astimezone(self.tz).date() - timedelta(days=1)
        for _ in range(_SEARCH_DAYS):
            if cron.matches_day(day):
                for hour in cron.hours:
                    # Local times map to instants in order (DST rules included), so an hour whose
                    # last candidate is not after `floor` has none that is: skip its minutes
                    # (`* * * * *` late in the day: 0.1 ms instead of 6 ms).
                    if to_utc(datetime(day.year, day.month, day.day, hour, cron.minutes[-1]), self.tz) <= floor:
                        continue
                    for minute in cron.minutes:
                        instant = to_utc(datetime(day.year, day.month, day.day, hour, minute), self.tz)
                        if instant > floor:
                            return instant
            day += timedelta(days=1)
        return None


def _later(start: datetime, every: timedelta, count: int) -> datetime | None:
    """``start + every * count``, or None when that is past the end of the calendar."""
    try:
        return start + every * count
    except OverflowError:
        return None


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("Plans work with aware datetimes")
    return moment.astimezone(UTC)
