"""Hypothesis: interval and cron fields, from raw input to the database and the plans the beat reads.

Properties:

* a cron expression parses or is a ``PlanError`` naming ``cron_definition``; a parsed one
  answers ``next_after`` for any moment and zone, with a later instant or None;
* an interval plan within the bounds answers ``next_after`` with a point of its grid after
  the moment, or None (past its repeats, or past the end of the calendar), never raising;
* the job serializer (the management API and the ``zato.scheduler.job.*`` services) either
  names the bad fields or accepts the job, and a job it accepts is stored by PostgreSQL:
  the overflow class (``days=30000``, ``weeks=2**31-1``) cannot get through to a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scheduling import plans
from scheduling.models import Job
from scheduling.serializers import JobSerializer

FAST = settings(max_examples=300, deadline=None, database=None)
THOROUGH = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ZONES = st.sampled_from([UTC, ZoneInfo("Europe/Warsaw"), ZoneInfo("America/St_Johns"), ZoneInfo("Pacific/Kiritimati"),
                         ZoneInfo("Australia/Lord_Howe")])
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)
starts = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(8999, 12, 30), timezones=ZONES)
cron_texts = st.one_of(
    st.text(alphabet="0123456789*,-/ @abcdefghijklmnopqrstuvwxyz", max_size=40),
    st.lists(st.text(alphabet="0123456789*,-/", min_size=1, max_size=8), min_size=5, max_size=5).map(" ".join),
    st.text(max_size=40),
)
numbers = st.one_of(st.integers(-5, 100), st.integers(0, 2**70), st.sampled_from([2**31 - 1, 2**31, 30000, 24855]))


@FAST
@given(cron_texts, moments, st.sampled_from(["UTC", "Europe/Warsaw", "America/St_Johns", "Australia/Lord_Howe"]),
       starts)
@example("0 0 29 2 1", datetime(9999, 12, 1, tzinfo=UTC), "UTC", datetime(2026, 1, 1, tzinfo=UTC))
@example("*/" + "9" * 5000 + " * * * *", datetime(2026, 1, 1, tzinfo=UTC), "UTC", datetime(2026, 1, 1, tzinfo=UTC))
def test_a_cron_expression_parses_or_names_its_field_and_always_answers(text: str, moment: datetime, zone: str,
                                                                          start: datetime) -> None:
    try:
        plan = plans.Plan.cron(start, text, zone)
    except plans.PlanError as exc:
        assert exc.field == "cron_definition" and exc.message
        return
    upcoming = plan.next_after(moment)
    assert upcoming is None or (upcoming > moment and upcoming >= start)


@FAST
@given(starts, st.integers(1, plans.MAX_INTERVAL_SECONDS), st.one_of(st.none(), st.integers(1, plans.MAX_REPEATS)),
       moments)
@example(datetime(8999, 12, 30, tzinfo=UTC), plans.MAX_INTERVAL_SECONDS, None, datetime(9999, 12, 30, tzinfo=UTC))
def test_an_interval_plan_always_answers_with_a_point_of_its_grid(start: datetime, seconds: int, repeats: int | None,
                                                                   moment: datetime) -> None:
    every = timedelta(seconds=seconds)
    plan = plans.Plan.interval(start, every, repeats)
    upcoming = plan.next_after(moment)
    if upcoming is not None:
        assert upcoming > moment and (upcoming - start) % every == timedelta(0)
        if repeats is not None:
            assert (upcoming - start) // every < repeats
    last = plan.last()
    assert (last is None) == (repeats is None)


def job_fields() -> st.SearchStrategy[dict[str, Any]]:
    when = st.one_of(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES).map(
            datetime.isoformat),
        st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00", "now", "", "2026-13-01T00:00:00Z"]),
        st.text(max_size=30),
    )
    return st.fixed_dictionaries(
        {"name": st.text(alphabet="abcdefgh-", min_size=1, max_size=12),
         "service": st.sampled_from(["demo.hello", "demo.echo", "no.such.service"]),
         "job_type": st.sampled_from(["one_time", "interval_based", "cron_style", "weekly"])},
        optional={
            "start_date": when,
            "weeks": numbers, "days": numbers, "hours": numbers, "minutes": numbers, "seconds": numbers,
            "repeats": st.one_of(st.none(), numbers),
            "cron_definition": cron_texts,
            "timezone": st.one_of(st.sampled_from(["UTC", "Europe/Warsaw", "Mars/Olympus"]), st.text(max_size=20)),
            "extra": st.text(max_size=50),
            "is_active": st.booleans(),
        },
    )


@pytest.mark.django_db
@THOROUGH
@given(job_fields())
@example({"name": "days", "service": "demo.hello", "job_type": "interval_based", "days": 30000,
          "start_date": "2030-01-01T00:00:00Z"})
@example({"name": "weeks", "service": "demo.hello", "job_type": "interval_based", "weeks": 2**31 - 1,
          "start_date": "2030-01-01T00:00:00Z"})
@example({"name": "a", "service": "demo.hello", "job_type": "cron_style", "start_date": "2000-01-01T00:00:00+00:00"})
def test_the_job_serializer_names_bad_fields_or_the_job_is_stored(builtins, data: dict[str, Any]) -> None:
    serializer = JobSerializer(data=data)
    if not serializer.is_valid():
        # Besides the fields sent, those a job needs that can be left out: a start date, an interval
        # job's length ("seconds" names it) and a cron job's definition.
        needed = {"start_date", "seconds", "cron_definition", "non_field_errors"}
        assert serializer.errors and set(serializer.errors) <= {*data, *needed}
        return
    job = serializer.save()  # PostgreSQL stores it: no value over a column's range got through
    job.refresh_from_db()
    assert job.interval <= timedelta(seconds=plans.MAX_INTERVAL_SECONDS)
    assert job.next_run() is None or job.next_run() > job.start_date - timedelta(microseconds=1)
    Job.objects.filter(pk=job.pk).delete()
