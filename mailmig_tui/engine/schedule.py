"""When a task runs: days of the week, a start time, optional repeats every N hours until an end time.

Times are wall-clock times in the server's local time zone (an IANA zone, so daylight-saving changes
keep 22:00 at 22:00). A slot's *window* ends at the schedule's end time (the next day's when the end
is not after the start, e.g. 22:00 → 06:00), or, without an end, when the next slot begins. A run
still going at the end of its window is stopped cleanly and resumes at the next slot.
Every function takes ``now`` so tests inject the clock.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailmig_tui.engine.model import DAYS, Schedule

LOOKAHEAD_DAYS = 8


def local_zone() -> dt.tzinfo:
    """The machine's IANA time zone (``$TZ``, /etc/timezone, /etc/localtime), else UTC."""
    names = [os.environ.get("TZ", "").lstrip(":")]
    try:
        names.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            names.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in names:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return dt.UTC


def _hm(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def _at(day: dt.date, t: dt.time, tz: dt.tzinfo) -> dt.datetime:
    """Wall-clock ``t`` on ``day`` in ``tz``; a time skipped by a DST change moves past the gap."""
    naive = dt.datetime.combine(day, t)
    aware = naive.replace(tzinfo=tz)
    roundtrip = aware.astimezone(dt.UTC).astimezone(tz)
    if roundtrip.replace(tzinfo=None) != naive:  # in a spring-forward gap
        return roundtrip
    return aware


@dataclass(frozen=True)
class Slot:
    start: dt.datetime
    end: dt.datetime | None  # the window's end; None: until the next slot


def _slots_of_day(schedule: Schedule, day: dt.date, tz: dt.tzinfo) -> list[Slot]:
    if DAYS[day.weekday()] not in schedule.days:
        return []
    start = _at(day, _hm(schedule.start), tz)
    end = None
    if schedule.end:
        end_t = _hm(schedule.end)
        end_day = day if end_t > _hm(schedule.start) else day + dt.timedelta(days=1)
        end = _at(end_day, end_t, tz)
    starts = [start]
    if schedule.repeat_hours:
        step = dt.timedelta(hours=schedule.repeat_hours)
        limit = end or _at(day + dt.timedelta(days=1), dt.time(0, 0), tz)
        nxt = start + step
        while nxt < limit and len(starts) < 24:
            starts.append(nxt)
            nxt = nxt + step
    return [Slot(s, end) for s in starts]


def slots(schedule: Schedule, since: dt.datetime, until: dt.datetime) -> list[Slot]:
    """Every slot starting in [since, until), in order."""
    tz = since.tzinfo or local_zone()
    out: list[Slot] = []
    day = (since.astimezone(tz) - dt.timedelta(days=1)).date()
    while day <= until.astimezone(tz).date():
        out += [s for s in _slots_of_day(schedule, day, tz) if since <= s.start < until]
        day += dt.timedelta(days=1)
    return out


def next_run(schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
    """The next start strictly after ``now``, or None when the schedule is off."""
    if not schedule.enabled or not schedule.days:
        return None
    upcoming = slots(schedule, now + dt.timedelta(microseconds=1), now + dt.timedelta(days=LOOKAHEAD_DAYS))
    return upcoming[0].start if upcoming else None


def due_slot(schedule: Schedule, now: dt.datetime, last_start: dt.datetime | None) -> Slot | None:
    """The slot to run now: the latest slot that has begun, whose window is still open, and that no
    run has started since. None when nothing is due."""
    if not schedule.enabled or not schedule.days:
        return None
    recent = slots(schedule, now - dt.timedelta(days=2), now + dt.timedelta(microseconds=1))
    if not recent:
        return None
    slot = recent[-1]
    if last_start is not None and last_start >= slot.start:
        return None
    if window_end(schedule, slot) <= now:
        return None
    return slot


def window_end(schedule: Schedule, slot: Slot) -> dt.datetime:
    """When a run started at ``slot`` must stop: the end time, else the next slot's start."""
    if slot.end is not None:
        return slot.end
    following = next_run(schedule, slot.start)
    return following if following is not None else slot.start + dt.timedelta(days=LOOKAHEAD_DAYS)
