"""Schedule arithmetic with an injected clock: days, repeats, windows, daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from mailmig_tui.engine.model import Schedule
from mailmig_tui.engine.schedule import due_slot, next_run, slots, window_end

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int, tz: dt.tzinfo = BERLIN) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


def sched(**kw) -> Schedule:
    return Schedule(**{"enabled": True, **kw})


def test_disabled_schedule_never_runs() -> None:
    assert next_run(Schedule(enabled=False), at(2026, 11, 27, 12, 0)) is None
    assert due_slot(Schedule(enabled=False), at(2026, 11, 27, 22, 30), None) is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2026, 11, 27, 12, 0), at(2026, 11, 27, 22, 0)),  # Friday noon → Friday 22:00
        (at(2026, 11, 27, 22, 0), at(2026, 11, 30, 22, 0)),  # exactly at the start → next working day
        (at(2026, 11, 28, 9, 0), at(2026, 11, 30, 22, 0)),  # Saturday → Monday
    ],
)
def test_next_run_across_days(now: dt.datetime, expected: dt.datetime) -> None:
    assert next_run(sched(start="22:00"), now) == expected


def test_repeats_until_the_end_of_a_window_crossing_midnight() -> None:
    s = sched(days=["fri"], start="22:00", repeat_hours=3, end="06:00")
    starts = [x.start for x in slots(s, at(2026, 11, 27, 0, 0), at(2026, 11, 29, 0, 0))]
    assert starts == [at(2026, 11, 27, 22, 0), at(2026, 11, 28, 1, 0), at(2026, 11, 28, 4, 0)]
    assert {x.end for x in slots(s, at(2026, 11, 27, 0, 0), at(2026, 11, 29, 0, 0))} == {at(2026, 11, 28, 6, 0)}
    assert next_run(s, at(2026, 11, 28, 1, 30)) == at(2026, 11, 28, 4, 0)


def test_window_without_end_lasts_until_the_next_slot() -> None:
    s = sched(days=["mon", "tue"], start="08:00", repeat_hours=4)
    (first, *_rest) = slots(s, at(2026, 11, 30, 0, 0), at(2026, 12, 1, 0, 0))
    assert window_end(s, first) == at(2026, 11, 30, 12, 0)


def test_daylight_saving_changes_keep_the_wall_clock_time() -> None:
    s = sched(days=["sat", "sun", "mon"], start="02:30")
    # 2026-03-29: Europe/Berlin springs forward 02:00 → 03:00; 02:30 does not exist that day.
    spring = next_run(s, at(2026, 3, 28, 12, 0))
    assert spring is not None and spring.astimezone(dt.UTC) == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    assert next_run(s, spring) == at(2026, 3, 30, 2, 30)
    # 2026-10-25: falls back 03:00 → 02:00; 22:00 stays 22:00 local, 25 hours after the day before.
    night = sched(days=["sat", "sun"], start="22:00")
    sat = next_run(night, at(2026, 10, 24, 12, 0))
    sun = next_run(night, sat)
    assert (sat, sun) == (at(2026, 10, 24, 22, 0), at(2026, 10, 25, 22, 0))
    assert sun.astimezone(dt.UTC) - sat.astimezone(dt.UTC) == dt.timedelta(hours=25)


def test_due_slot_once_per_slot_and_only_inside_its_window() -> None:
    s = sched(days=["fri"], start="22:00", end="06:00")
    slot = due_slot(s, at(2026, 11, 27, 22, 5), None)
    assert slot is not None and slot.start == at(2026, 11, 27, 22, 0) and slot.end == at(2026, 11, 28, 6, 0)
    assert due_slot(s, at(2026, 11, 27, 23, 0), last_start=at(2026, 11, 27, 22, 0, 1)) is None
    assert due_slot(s, at(2026, 11, 28, 5, 0), last_start=at(2026, 11, 20, 22, 0)) is not None
    assert due_slot(s, at(2026, 11, 28, 6, 0), None) is None  # the window has closed
    assert due_slot(s, at(2026, 11, 27, 21, 59), None) is None
