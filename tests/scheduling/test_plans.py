"""Plans as pure functions of time: interval grids, cron in a time zone, the DST rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduling.plans import Cron, Plan, PlanError

WARSAW = ZoneInfo("Europe/Warsaw")  # 2026: clocks go forward 29 March 02:00, back 25 October 03:00


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def runs(plan: Plan, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    moment = after
    for _ in range(count):
        upcoming = plan.next_after(moment)
        if upcoming is None:
            break
        out.append(upcoming)
        moment = upcoming
    return out


def test_one_time_runs_once_at_its_start() -> None:
    plan = Plan.one_time(utc(2026, 5, 1, 12))
    assert runs(plan, utc(2026, 1, 1), 5) == [utc(2026, 5, 1, 12)]
    assert plan.next_after(utc(2026, 5, 1, 12)) is None


def test_interval_grid_is_anchored_to_the_start_date_and_ends_after_its_repeats() -> None:
    # "After two weeks from now, twice an hour, twelve times only" is one job.
    start = utc(2026, 12, 7, 9, 0)
    plan = Plan.interval(start, timedelta(minutes=30), repeats=12)
    planned = runs(plan, utc(2026, 11, 23), 100)
    assert len(planned) == 12
    assert planned[0] == start and planned[-1] == start + timedelta(minutes=330)
    # Asked from any moment (say, a process that started late), the answer stays on the grid.
    assert plan.next_after(start + timedelta(minutes=47, seconds=13)) == start + timedelta(minutes=60)
    assert plan.next_after(planned[-1]) is None


def test_interval_without_repeats_runs_forever() -> None:
    plan = Plan.interval(utc(2026, 1, 1), timedelta(days=1))
    assert plan.next_after(utc(2030, 6, 1, 5)) == utc(2030, 6, 2)


def test_cron_example_from_the_seed_every_full_hour_3_to_6_on_weekdays() -> None:
    plan = Plan.cron(utc(2026, 1, 1), "00 3-6 * * 1-5")
    planned = runs(plan, utc(2026, 11, 20, 5, 30), 6)  # a Friday morning
    assert planned == [utc(2026, 11, 20, 6), utc(2026, 11, 23, 3), utc(2026, 11, 23, 4), utc(2026, 11, 23, 5),
                       utc(2026, 11, 23, 6), utc(2026, 11, 24, 3)]


def test_cron_is_read_in_the_jobs_time_zone() -> None:
    plan = Plan.cron(utc(2026, 1, 1), "0 9 * * *", "Europe/Warsaw")
    assert plan.next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 7)  # 09:00 CEST
    assert plan.next_after(utc(2026, 12, 1)) == utc(2026, 12, 1, 8)  # 09:00 CET


def test_cron_starts_no_earlier_than_the_start_date() -> None:
    plan = Plan.cron(utc(2026, 6, 10, 12), "0 * * * *")
    assert plan.next_after(utc(2026, 1, 1)) == utc(2026, 6, 10, 12)


def test_spring_forward_a_skipped_time_runs_once_when_the_clocks_jump() -> None:
    plan = Plan.cron(utc(2026, 1, 1), "30 2 * * *", "Europe/Warsaw")
    planned = [moment.astimezone(WARSAW) for moment in runs(plan, utc(2026, 3, 27, 12), 3)]
    assert [moment.strftime("%m-%d %H:%M %Z") for moment in planned] == [
        "03-28 02:30 CET", "03-29 03:00 CEST", "03-30 02:30 CEST",
    ]


def test_spring_forward_several_skipped_times_collapse_into_one_run() -> None:
    plan = Plan.cron(utc(2026, 1, 1), "*/30 2-3 * * *", "Europe/Warsaw")
    planned = runs(plan, utc(2026, 3, 28, 23), 3)
    # 02:00 and 02:30 do not exist; they and the real 03:00 are one run at 03:00 CEST.
    assert planned == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0)]


def test_fall_back_a_repeated_time_runs_once_at_its_first_occurrence() -> None:
    plan = Plan.cron(utc(2026, 1, 1), "30 2 * * *", "Europe/Warsaw")
    planned = runs(plan, utc(2026, 10, 24, 12), 2)
    assert planned == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]  # 02:30 CEST, then 02:30 CET next day


def test_dom_and_dow_both_restricted_match_either_as_classic_cron_does() -> None:
    plan = Plan.cron(utc(2026, 1, 1), "0 0 13 * 5")  # the 13th, or any Friday
    assert runs(plan, utc(2026, 11, 1), 3) == [utc(2026, 11, 6), utc(2026, 11, 13), utc(2026, 11, 20)]


def test_shortcuts_names_and_steps_are_normalised() -> None:
    assert Cron.parse("@hourly").expression == "0 * * * *"
    cron = Cron.parse("*/20 8-18/5 * jan,jul mon-fri")
    assert cron.minutes == (0, 20, 40) and cron.hours == (8, 13, 18)
    assert cron.months == {1, 7} and cron.weekdays == {1, 2, 3, 4, 5}
    assert Cron.parse("0 0 * * 7").weekdays == {0}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "five fields"),
        ("* * * *", "five fields"),
        ("60 * * * *", "60 is outside 0-59 in the minute field"),
        ("* 24 * * *", "outside 0-23 in the hour field"),
        ("x * * * *", "`x` is not a number or a name"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "must be at least 1"),
        ("* * 0 * *", "outside 1-31"),
    ],
)
def test_invalid_cron_expressions_are_refused_with_the_reason(expression: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        Cron.parse(expression)
    assert caught.value.field == "cron_definition"
    assert message in caught.value.message


def test_unknown_time_zone_and_bad_intervals_name_their_field() -> None:
    with pytest.raises(PlanError) as zone_error:
        Plan.cron(utc(2026, 1, 1), "* * * * *", "Mars/Olympus")
    assert zone_error.value.field == "timezone"
    with pytest.raises(PlanError) as interval_error:
        Plan.interval(utc(2026, 1, 1), timedelta(0))
    assert interval_error.value.field == "seconds"
    with pytest.raises(PlanError) as repeats_error:
        Plan.interval(utc(2026, 1, 1), timedelta(seconds=5), repeats=0)
    assert repeats_error.value.field == "repeats"


def test_an_impossible_date_has_no_run_rather_than_looping_forever() -> None:
    assert Plan.cron(utc(2026, 1, 1), "0 0 31 2 *").next_after(utc(2026, 1, 1)) is None
