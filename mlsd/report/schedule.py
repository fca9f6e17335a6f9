"""When the daily report is due and which instants a report day covers. Pure: no clock.

A report covers one calendar day [00:00, 24:00) in the report's zone — 23 or 25 hours on
DST days — and the report of day D is sent at `[report] time` on day D+1. Every function
takes the current time as an argument, so the rules are tested with tables crossing DST
changes in both directions, month and year ends, and 30-minute shifts.

Wall-clock rules, the ones cron users expect:
- a time that does not exist that day (skipped by a DST jump) fires when the jump ends,
  at the first wall-clock minute that does exist;
- a time that exists twice (the repeated hour when clocks go back) fires at its first
  occurrence only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
# The longest wall-clock gap a DST change (or a zone change) has made: bounds the search.
_MAX_GAP = timedelta(hours=3)


def _exists(local: datetime) -> bool:
    """Whether an aware wall-clock time (fold=0) exists, i.e. survives a round trip."""
    back = local.astimezone(UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def wall_time(day: date, at: time, tz: tzinfo) -> datetime:
    """The instant `day` shows `at` on the wall clock in `tz` (first occurrence; end of a gap)."""
    local = datetime.combine(day, at, tzinfo=tz)
    if _exists(local):
        return local.astimezone(UTC)
    probe = local.replace(second=0, microsecond=0)
    limit = local + _MAX_GAP
    while probe <= limit:  # pragma: no branch - a gap always ends within _MAX_GAP
        probe += _MINUTE
        if _exists(probe):
            return probe.astimezone(UTC)
    return local.astimezone(UTC)  # pragma: no cover


def report_window(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The instants [start, end) of calendar day `day` in `tz`, as UTC datetimes."""
    return wall_time(day, time(0, 0), tz), wall_time(day + _DAY, time(0, 0), tz)


def next_report_at(after: datetime, at: time, tz: tzinfo) -> datetime:
    """The first send instant strictly after `after` (aware), as a UTC datetime."""
    local_day = after.astimezone(tz).date()
    for offset in range(-1, 3):
        candidate = wall_time(local_day + offset * _DAY, at, tz)
        if candidate > after:
            return candidate
    raise AssertionError("unreachable: a day always has a send time")  # pragma: no cover


def due_day(now: datetime, at: time, tz: tzinfo) -> date:
    """The most recent report day whose send time is at or before `now`.

    The report of day D is due at `at` on D+1: before today's send time, the last due
    report is the day before yesterday's.
    """
    today = now.astimezone(tz).date()
    if now >= wall_time(today, at, tz):
        return today - _DAY
    return today - 2 * _DAY


def missed_days(
    last_sent: date | None,
    now: datetime,
    at: time,
    tz: tzinfo,
    limit: int = 7,
    *,
    first_day: date | None = None,
) -> list[date]:
    """Report days due but not sent since `last_sent`, oldest first, at most `limit`.

    `first_day` is the first day mlsd watched (at least in part): no day before it is
    ever returned, so a fresh install does not mail the report of a day it never saw; its
    first report is that of its first day, due the next day. With no report ever sent and
    `first_day` unknown, only the latest due day is returned: a fresh install does not
    mail a backlog of empty days.
    """
    due = due_day(now, at, tz)
    floor = first_day if first_day is not None else date.min
    if last_sent is None:
        return [due] if due >= floor else []
    days: list[date] = []
    day = due
    while day > last_sent and day >= floor and len(days) < limit:
        days.append(day)
        day -= _DAY
    return sorted(days)
