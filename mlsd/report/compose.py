"""The daily report, assembled: one day's rows → tally → sections → subject, plain text,
HTML and attachment. The one place the CLI and the daemon build a report from.

What it reads. Only the day's rows: located by `window.find_offset`'s binary search and
read by `window.window` (in blocks split on `;`, each distinct minute of the date column
parsed once, no object per row). Plus a summary of each of the 30 days before it (rows,
failed attempts, the set of IPs) for "new attackers", "yesterday" and the 7-day median,
from `report.history` (cached per closed day).

The parts, one job each: `tally` counts the rows, `sections` turns the counts into the
report's sections, `text` and `html` render them, `attachment` makes the attached CSV,
`display` makes attacker text harmless, and `message` wraps a built report in a mail.
"""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Final

from mlsd import __version__
from mlsd.config import Config
from mlsd.dayfigures import DayFigures, DaySource, PastDay
from mlsd.report.alertsection import possible_compromises
from mlsd.report.attachment import attach
from mlsd.report.display import SHOWN_CAP, cut, plain, shown
from mlsd.report.document import Section, decimal, pct
from mlsd.report.history import csv_rows, days_before, history
from mlsd.report.html import render_html
from mlsd.report.schedule import report_window
from mlsd.report.sections import Context, sections_of, week_median
from mlsd.report.tally import Tally
from mlsd.report.text import render_text
from mlsd.report.window import window
from mlsd.watched import DayCounts, FirstStart

DBIP_ATTRIBUTION: Final = "IP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0."
"""The report's last lines when a DB-IP Lite database answers (its licence requires it)."""


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the daemon knows about the day and the CSV does not; None = not known."""

    lines_read: int | None = None
    server_errors: int | None = None
    gaps: int | None = None
    first_start: FirstStart | None = None
    """mlsd's first start, when it was on this day: it watched the day only from then."""

    @classmethod
    def of(cls, counts: DayCounts | None, first_start: FirstStart | None = None) -> Coverage | None:
        """From the daemon's counters of the day (None: it did not run that day) and its
        first start, if that was on this day."""
        if counts is None:
            return None if first_start is None else cls(first_start=first_start)
        return cls(
            lines_read=counts.lines,
            server_errors=counts.server_errors,
            gaps=counts.gaps,
            first_start=first_start,
        )


_BEFORE_START: Final = {
    "end": "lines logged before it were not read ([follow] start_at = end)",
    "beginning": "the live log was read from its beginning, older rotated logs were not",
    "beginning (importing rotated files)": "the rotated logs and the live log were read "
    "from their beginnings",
    "none (no log file yet)": "there was no log file yet",
}
"""What a first start read of what was logged before it, by its `resume=`."""


def started_note(start: FirstStart, tz: tzinfo) -> str:
    """The header's "partial: mlsd started at HH:MM" (in the report's zone), and what was
    read of the time before."""
    note = f"partial: mlsd started at {start.at.astimezone(tz):%H:%M}"
    before = _BEFORE_START.get(start.how)
    return f"{note}; {before}" if before else note


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """A built report: what the mail says, and what is attached."""

    day: date
    start: datetime
    end: datetime
    """End of the window: midnight after `day`, or `until` for the day so far."""
    partial: bool
    subject: str
    text: str
    html: str
    events: int
    """Rows in the window."""
    failures: int
    """Failed attempts in the window (the `attempts` column summed)."""
    attachment: tuple[str, bytes, str] | None
    """(filename, bytes, MIME type), or None."""


def _coverage_value(value: int | None, unknown: str, unit: str = "") -> str:
    return unknown if value is None else f"{value:,}{unit}"


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a report is built.

    A build makes ~10^5 tuples, lists and sets (row fields, counter keys) that all live
    until it ends, and every collection the allocations trigger walks them again: 35 ms
    of a 0.3 s build over 1M rows. Reference counting still frees everything, and
    collection resumes after, even on an error. The switch is process-wide: of two
    overlapping builds, the one that paused it turns it back on; if something else had
    turned it off, it stays off.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_cyclic_gc_paused()
def build(
    cfg: Config,
    day: date,
    *,
    until: datetime | None = None,
    coverage: Coverage | None = None,
    geoip_dates: Sequence[str] = (),
    hostname: str | None = None,
    now: datetime | None = None,
    source: DaySource | None = None,
) -> Report:
    """The report of calendar day `day` in `[report] timezone`, up to `until` if given.

    The figures come from `source` (the event store, when it holds every committed row),
    else from the day's rows of `[paths] csv` and the per-day history (see the module
    docstring); never raises for a missing CSV (that is a day with no events).
    """
    tz = cfg.report_tz()
    log_tz = cfg.log_tz()
    now = now if now is not None else datetime.now(UTC)
    host = shown(hostname if hostname is not None else socket.gethostname())
    start, end = report_window(day, tz)
    partial = until is not None and until < end
    if until is not None:
        end = max(start, min(end, until))
    path = cfg.paths.csv
    lines: list[str] | None = [] if cfg.report.attach == "day" else None
    if source is not None:
        figures, past = figures_from(source, day, start, end, tz=tz, top=cfg.report.top)
        if lines is not None:  # the attachment is the CSV's own lines of the window
            for _ in window(path, start, end, log_tz, lines):
                pass
        origin = ""
    else:
        figures, past = _from_csv(cfg, day, start, end, tz=tz, lines=lines)
        origin = "Figures counted from the CSV: the event store was not caught up with it."
    try:
        csv_size = os.path.getsize(path)
    except OSError:
        csv_size = 0
    attachment, attach_note = attach(cfg, day, partial, lines or []) if csv_size else (None, "")
    ctx = Context(
        day=day,
        start=start,
        end=end,
        partial=partial,
        tz=tz,
        top=cfg.report.top,
        masked=cfg.report.mask_usernames,
        past=past,
        csv_path=path,
        csv_size=csv_size,
        csv_rows=csv_rows(cfg),
        attachment=attach_note or "Nothing attached: the CSV does not exist yet.",
        source=origin,
    )
    median, _ = week_median(ctx)
    if median is None:
        change = "no history yet"
    elif partial:
        change = f"7-day median {decimal(median)} a whole day"
    else:
        change = f"{pct(figures.failures, median)} vs 7-day median {decimal(median)}"
    when = f"{day.isoformat()} so far" if partial else day.isoformat()
    subject = (
        f"{cfg.report.subject_prefix} {host} {when}: {figures.failures:,} failed logins, {change}"
    ).strip()
    unknown = (
        "not known (report built outside the daemon)"
        if coverage is None
        else "not known (no daemon counters for this day)"
    )
    cov = coverage or Coverage()
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    span = decimal(round((end - start).total_seconds() / 3600, 1))
    header = [
        (
            "Window",
            f"{local_start:%Y-%m-%d %H:%M %Z} to {local_end:%Y-%m-%d %H:%M %Z} "
            f"({span} h{', the day so far' if partial else ''}; zone {plain(str(tz))})",
        ),
        ("Generated", f"{now.astimezone(tz):%Y-%m-%d %H:%M %Z} on {host} by mlsd {__version__}"),
    ]
    if cov.first_start is not None and start <= cov.first_start.at < end:
        header.append(("Coverage", started_note(cov.first_start, tz)))
    header += [
        ("Lines read", _coverage_value(cov.lines_read, unknown)),
        ("Events recorded", f"{figures.events:,} rows, {figures.failures:,} failed attempts"),
        (
            "Server-side errors",
            _coverage_value(cov.server_errors, unknown)
            + ("" if cov.server_errors is None else " (auth backend unreachable; not attacks)"),
        ),
        (
            "Gaps in coverage",
            _coverage_value(cov.gaps, unknown)
            + ("" if not cov.gaps else " (rotated logs mlsd could not read: events missed)"),
        ),
    ]
    header += [("GeoIP databases", cut(plain(g), 4 * SHOWN_CAP)) for g in geoip_dates] or [
        ("GeoIP databases", "not known")
    ]
    title = f"mlsd report: {host}, {when}"
    # The sentinel's alerts first: a possible compromise matters more than any count.
    sections = [possible_compromises(cfg, start, end, tz), *sections_of(figures, ctx)]
    if any("DBIP" in g.upper() for g in geoip_dates):  # CC BY 4.0 asks for the credit
        sections.append(Section(title="Data sources", notes=[DBIP_ATTRIBUTION]))
    return Report(
        day=day,
        start=start,
        end=end,
        partial=partial,
        subject=subject,
        text=render_text(title, header, sections),
        html=render_html(title, header, sections),
        events=figures.events,
        failures=figures.failures,
        attachment=attachment,
    )


def figures_from(
    source: DaySource, day: date, start: datetime, end: datetime, *, tz: tzinfo, top: int
) -> tuple[DayFigures, dict[date, PastDay | None]]:
    """The figures of [start, end) (the window of `day`) and of the days before it, from
    `source` (the event store's SQL)."""
    days = days_before(day)
    past = source.past([(d, *report_window(d, tz)) for d in days], tz)
    known = sum(1 for v in past.values() if v is not None)
    since = report_window(days[0], tz)[0]
    return source.day(start, end, since, top, known), past


def _from_csv(
    cfg: Config, day: date, start: datetime, end: datetime, *, tz: tzinfo, lines: list[str] | None
) -> tuple[DayFigures, dict[date, PastDay | None]]:
    """The day's figures and the days before it, counted from the CSV's rows (the
    fallback while the store is behind); the window's lines go to `lines` when given."""
    hours = max(1, -(-int((end - start).total_seconds()) // 3600))
    tally = Tally(int(start.timestamp()), hours)
    tally.add_all(window(cfg.paths.csv, start, end, cfg.log_tz(), lines))
    tally.derive()
    summaries = history(cfg, day, tz)
    past = {d: None if s is None else PastDay(s.rows, s.failures) for d, s in summaries.items()}
    return tally.figures(cfg.report.top, summaries), past


def build_portable(cfg: Config, day: date, **kwargs: Any) -> Report:
    """`build`, for the daemon's report process: the window's ends in UTC, because the
    system zone read from /etc/localtime cannot be pickled back to the daemon."""
    r = build(cfg, day, **kwargs)
    return replace(r, start=r.start.astimezone(UTC), end=r.end.astimezone(UTC))
