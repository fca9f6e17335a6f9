"""A log line's timestamp → an aware datetime: the stamp forms, the year, the zone, the limits.

Three forms: classic syslog `Mmm dd HH:MM:SS` (no year, no zone), RFC 3339 / ISO 8601
(zone optional) and daemontools' TAI64N `@4000…`. A classic stamp's year is inferred
against a reference time the caller passes in (the file's mtime for a rotated file, "now"
for the live one), and a stamp without an offset is in the log's zone. Pure: no I/O, no
clock, and nothing raises, whatever the bytes (see mlsd.ingest.grammar).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from mlsd.memo import Memo

__all__ = [
    "EARLIEST",
    "LATEST",
    "Clock",
    "classic_stamp",
    "clock_for",
    "parse_stamp",
    "plausible_until",
    "when",
]

_MONTHS = {
    name.encode(): i
    for i, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

# TAI64 labels count from 2**62; daemontools adds the 10 s TAI-UTC offset of 1970.
_TAI64_EPOCH = 2**62 + 10
_ONE_DAY = timedelta(days=1)
_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def plausible_until(ref: datetime) -> datetime:
    """The latest stamp recorded against `ref`: a day after it (clock skew, time zones), or
    datetime's last instant for a reference in its last day (a file's mtime can be).

    A later stamp is Skip.IMPLAUSIBLE_TIME: a wrong clock, remote syslog or a local writer.
    """
    try:
        return ref + _ONE_DAY
    except OverflowError:
        return _LAST_INSTANT


class Clock:
    """What one parse resolves stamps against: the reference time, the zone of classic
    stamps, and the minutes already resolved (lines come minutes apart at most: year
    inference and the zone are worked out once per minute, then seconds are added)."""

    __slots__ = ("minutes", "ref", "tz")

    def __init__(self, ref: datetime, tz: tzinfo) -> None:
        self.ref = ref
        self.tz = tz
        self.minutes: Memo[bytes, datetime | None] = Memo(self._minute, limit=4096)

    def _minute(self, raw: bytes) -> datetime | None:
        # `Mmm dd HH:MM` → that minute's start, _STRADDLES, or None (no such time).
        # Adding seconds to an aware datetime is wall-clock arithmetic on the same tzinfo
        # (fold 0), so base + s is exactly datetime(…, s, tzinfo=tz): DST stays tz's job.
        month, day, h, mi = _minute_fields(raw)
        first = _classic(month, day, (h, mi, 0), self.ref, self.tz)
        if first is None or _year_of_day(month, day, self.ref, self.tz) is not None:
            return first  # no such time, or the whole day has one year: the usual case
        last = _classic(month, day, (h, mi, 59), self.ref, self.tz)
        return first if last is not None and first.year == last.year else _STRADDLES


def _minute_fields(raw: bytes) -> tuple[int, int, int, int]:
    # `Mmm dd HH:MM` (as the header matched it) → month (0 if unknown), day, hour, minute.
    mon, day, hm = raw.split()
    h, mi = hm.split(b":")
    return _MONTHS.get(mon, 0), int(day), int(h), int(mi)


@functools.lru_cache(maxsize=16)
def clock_for(ref: datetime, tz: tzinfo) -> Clock:
    """The Clock for (ref, tz), shared: the daemon's live file, each rotated file's mtime,
    a CLI run."""
    return Clock(ref, tz)


def when(groups: tuple[bytes | Any, ...], clock: Clock) -> datetime | None:
    """The instant a line's header stamps, or None for no such time.

    `groups` starts with the header's stamp groups, in this order: the classic stamp's
    minute (`Mmm dd HH:MM`) and its seconds, the ISO stamp, the TAI64N label; one form
    took part, the others are None.
    """
    minute = groups[0]
    if minute is not None:
        base = clock.minutes[minute]
        s = int(groups[1])
        if base is None or s > 59:
            return None
        if base is _STRADDLES:  # the year limit falls inside this minute: decide per second
            month, day, h, mi = _minute_fields(minute)
            return _classic(month, day, (h, mi, s), clock.ref, clock.tz)
        return base + _SECONDS[s]
    if groups[2] is not None:
        return parse_stamp(groups[2].decode(), clock.tz)
    return _tai64(groups[3])


# The instants every zone can show: a UTC offset is less than a day, so an instant at
# least a day from datetime's limits converts to any zone (comparing aware datetimes
# subtracts offsets as timedeltas, which cannot overflow). Every stage after parsing
# converts the time to some zone (the CSV's, UTC for STATUS=, the report's): a stamp
# outside these is Skip.OUT_OF_RANGE.
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


_SECONDS = tuple(timedelta(seconds=s) for s in range(60))
# What Clock.minutes holds for the one minute in which the inferred year changes.
_STRADDLES = datetime(1, 1, 1, tzinfo=UTC)


def classic_stamp(month: int, day: int, hms: str, ref: datetime, tz: tzinfo) -> datetime | None:
    """Resolve a year-less `Mmm dd HH:MM:SS` stamp against `ref`.

    The year is the one that puts the stamp nearest to `ref` without being more than a day
    after it: a log is written before it is read, and a day of slack absorbs clock skew
    and zone differences. So a December line read in January is last year's, and a line
    in an old rotated file, read with that file's mtime as `ref`, lands in the right year.
    """
    h, mi, s = (int(x) for x in hms.split(":"))
    return _classic(month, day, (h, mi, s), ref, tz)


def _classic(
    month: int, day: int, hms: tuple[int, int, int], ref: datetime, tz: tzinfo
) -> datetime | None:
    if not 1 <= month <= 12:
        return None
    year = _year_of_day(month, day, ref, tz)
    if year is None:  # the day straddles the limit (or does not exist): decide by the time
        return _pick_year(month, day, hms, ref, tz)
    try:
        return datetime(year, month, day, *hms, tzinfo=tz)
    except ValueError:  # hour 24, second 61, …
        return None


@functools.lru_cache(maxsize=4096)
def _year_of_day(month: int, day: int, ref: datetime, tz: tzinfo) -> int | None:
    # Memoised per day: every line of a day shares its year unless the day straddles
    # ref + 1 day, in which case the time of day decides (None: ask _pick_year).
    first = _pick_year(month, day, (0, 0, 0), ref, tz)
    last = _pick_year(month, day, (23, 59, 59), ref, tz)
    if first is None or last is None or first.year != last.year:
        return None
    return first.year


def _pick_year(
    month: int, day: int, hms: tuple[int, int, int], ref: datetime, tz: tzinfo
) -> datetime | None:
    h, mi, s = hms
    limit = plausible_until(ref)
    for year in (ref.year + 1, ref.year, ref.year - 1):
        try:
            cand = datetime(year, month, day, h, mi, s, tzinfo=tz)
        except ValueError:  # Feb 29 in a common year, hour 24, …
            continue
        if cand <= limit:
            return cand
    return None


def parse_stamp(text: str, tz: tzinfo) -> datetime | None:
    """Parse an RFC 3339 / ISO 8601 stamp; one without an offset is in `tz`."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when


def _tai64(label: bytes) -> datetime | None:
    # daemontools/multilog `@4000000…` TAI64N stamps: 8 bytes of seconds, 4 of nanoseconds.
    secs = int(label[:16], 16) - _TAI64_EPOCH
    nanos = int(label[16:], 16)
    if nanos >= 1_000_000_000:  # not a TAI64N label: the fraction is less than a second
        return None
    try:
        return datetime.fromtimestamp(secs, UTC) + timedelta(microseconds=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        return None
