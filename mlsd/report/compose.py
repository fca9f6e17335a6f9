"""The daily report: one day's rows → aggregates → subject, plain text, HTML, attachment, message.

What it reads. Only the day's rows: located by `csvwindow.find_offset`'s binary search and
read by `csvwindow.window` (in blocks split on `;`, each distinct minute of the date
column parsed once, no `Row` object per row). Plus a summary of each of the 30 days before
it (rows, failed attempts, the set of IPs) for "new attackers", "yesterday" and the 7-day
median, from `mlsd.history` (cached per closed day).

Counts: "failures" are failed attempts, the sum of the `attempts` column (Dovecot folds
several into one row); "events" are rows. Every top list, histogram and comparison counts
failures.

Everything that came from a log line (usernames, hostnames, server, organisation, country,
even the IP column: the CSV is a file anyone with access could edit) is attacker-controlled.
It is shown with control characters and other non-printable characters (ANSI/terminal
escapes, bidi overrides) turned into visible `\\xNN` text, capped in length, HTML-escaped in
the HTML part, and optionally masked (`[report] mask_usernames`).
"""

from __future__ import annotations

import csv
import gc
import gzip
import html
import io
import ipaddress
import os
import re
import socket
import statistics
import textwrap
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from heapq import nsmallest
from pathlib import Path
from typing import Any, Final, TypeVar

from mlsd import __version__
from mlsd.config import Config
from mlsd.report.history import DaySummary, attempts_of, csv_rows, history
from mlsd.report.mailname import mail_hostname
from mlsd.report.schedule import report_window
from mlsd.report.window import BLOCK, window
from mlsd.rows import DELIMITER, HEADER, ReverseStatus, encode_rows
from mlsd.safefs import nofollow_opener
from mlsd.untrusted import csv_cell, is_safe, terminal
from mlsd.untrusted import html as untrusted_html
from mlsd.watched import DayCounts, FirstStart

WIDTH: Final = 78
"""Longest line of the plain-text part, in terminal columns."""
INDENT: Final = 2
SHOWN_CAP: Final = 64
"""Longest attacker-chosen value shown (characters); text columns may cut it further."""
MIN_COLUMN: Final = 8
"""A text column holding attacker text is never shrunk below this to make a table fit."""
MEDIAN_DAYS: Final = 7
MANY_IPS: Final = 3
"""A username tried from at least this many IPs in a day is listed as a distributed attack."""
_NO_USER: Final = "(none)"
_BAR_COLOUR: Final = "#3b82f6"
"""A mid-tone blue, readable on a white and on a black background alike."""
_LINE: Final = "rgba(128,128,128,.45)"
K = TypeVar("K", str, tuple[str, str], tuple[str, str, str, str])
COMPARISON: Final = "Against yesterday and the previous 7 days"
_RDNS: Final[dict[str, str]] = {
    ReverseStatus.OK: "a name (Postfix resolved the client)",
    ReverseStatus.NONE: "no name (Postfix logged unknown)",
    ReverseStatus.NOT_AVAILABLE: "not in the log line (Dovecot)",
    ReverseStatus.OFF: "not looked up ([dns] reverse = off)",
}


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


# ---- making attacker text harmless


def plain(value: str) -> str:
    """`value` with every character of mlsd.untrusted's class (controls, ESC, bidi
    overrides, line separators, zero-width characters) turned into visible
    `\\xNN`/`\\uNNNN` text."""
    return terminal(value)


def width(value: str) -> int:
    """Terminal columns `value` takes: East Asian wide characters count 2, combining 0."""
    if value.isascii():
        return len(value)
    return sum(_char_width(ch) for ch in value)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def cut(value: str, cols: int) -> str:
    """`value` cut to at most `cols` columns, ending with `…` when cut."""
    if width(value) <= cols:
        return value
    out, used = [], 0
    for ch in value:
        w = _char_width(ch)
        if used + w > cols - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def shown(value: str) -> str:
    """An attacker-chosen value as the report shows it: printable and capped."""
    return cut(plain(value), SHOWN_CAP)


def mask(user: str) -> str:
    """`alice@example.org` → `a***@example.org`: enough to tell accounts apart, not to read."""
    local, at, domain = user.partition("@")
    return (local[:1] + "***" if local else "") + at + domain


def network(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) an IP belongs to; the text itself if it is not an IP.

    By hand rather than with `ipaddress.ip_network`, which costs ~20 µs an address (a busy
    day has tens of thousands): a.b.c.d → a.b.c.0/24, and for IPv6 the first three hextets,
    written as RFC 5952 does (the five zero hextets after them are always the run `::` takes).
    """
    if ":" not in ip:
        head, _, last = ip.rpartition(".")
        if head.count(".") == 2 and (head + last).replace(".", "").isdigit():
            return f"{head}.0/24"
        return ip
    try:
        packed = ipaddress.IPv6Address(ip).packed
    except ValueError:
        return ip
    hextets = [packed[k] << 8 | packed[k + 1] for k in (0, 2, 4)]
    while hextets and hextets[-1] == 0:
        hextets.pop()
    return ":".join(f"{h:x}" for h in hextets) + "::/48"


class _Tally:
    """The window's rows counted once, into the few counters every section derives from."""

    def __init__(self, start: int, hours: int) -> None:
        self.start = start
        self.failures = 0
        self.events = 0
        self.auth: Counter[tuple[str, str, str, str]] = Counter()
        """(user, ip, hostname, country) → failures."""
        self.geo: Counter[tuple[str, str, str, str]] = Counter()
        """(ip, country, asn, aso) → failures: per-IP, country, ASN and owner figures."""
        self.users: Counter[str] = Counter()
        self.user_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.ip_users: defaultdict[str, set[str]] = defaultdict(set)
        self.ip_first: dict[str, int] = {}
        self.ip_last: dict[str, int] = {}
        self.rdns: Counter[str] = Counter()
        self.services: Counter[str] = Counter()
        self.histogram = [0] * hours

    def add_all(self, rows: Iterable[tuple[int, list[str]]]) -> None:
        """Count rows: (time in epoch seconds, fields in COLUMNS order).

        One loop with everything in locals: it runs once per row of the day.
        """
        auth, geo, users, rdns, services = self.auth, self.geo, self.users, self.rdns, self.services
        user_ips, ip_users = self.user_ips, self.ip_users
        first, last, histogram = self.ip_first, self.ip_last, self.histogram
        start, hours = self.start, len(self.histogram)
        failures = events = 0
        for t, f in rows:
            n = 1 if f[11] == "1" else attempts_of(f[11])
            ip, user = f[2], f[3]
            failures += n
            events += 1
            auth[(user, ip, f[4], f[6])] += n
            geo[(ip, f[6], f[7], f[8])] += n
            users[user] += n
            user_ips[user].add(ip)
            ip_users[ip].add(user)
            if t < first.get(ip, t + 1):
                first[ip] = t
            if t > last.get(ip, t - 1):
                last[ip] = t
            rdns[f[5]] += n
            services[f[9]] += n
            hour = (t - start) // 3600
            if 0 <= hour < hours:
                histogram[hour] += n
        self.failures += failures
        self.events += events

    def derive(self) -> None:
        """Per-IP, per-country, per-ASN and per-owner figures from `geo`."""
        self.ips: Counter[str] = Counter()
        self.countries: Counter[str] = Counter()
        self.asns: Counter[str] = Counter()
        self.orgs: Counter[str] = Counter()
        self.country_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.asn_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.org_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.asn_org: dict[str, str] = {}
        # An IP's country and ASN: those of most of its failures (a database update
        # during the day can change them; ties go to the first seen).
        best: dict[str, tuple[int, str, str]] = {}
        for (ip, cc, asn, aso), n in self.geo.items():
            self.ips[ip] += n
            self.countries[cc] += n
            self.country_ips[cc].add(ip)
            self.asns[asn] += n
            self.asn_ips[asn].add(ip)
            self.asn_org.setdefault(asn, aso)
            self.orgs[aso] += n
            self.org_ips[aso].add(ip)
            if n > best.get(ip, (0, "", ""))[0]:
                best[ip] = (n, cc, asn)
        self.ip_cc = {ip: cc for ip, (_, cc, _) in best.items()}
        self.ip_asn = {ip: asn for ip, (_, _, asn) in best.items()}
        # The top list is by (user, IP): Postfix writes hostname "unknown" where it found
        # no name and Dovecot none at all, so the same attack came in as two entries. The
        # pair shows a real name when any of its rows had one, else "unknown", else blank;
        # the most failures decide between names, and between countries.
        self.pairs: Counter[tuple[str, str]] = Counter()
        pair_best: dict[tuple[str, str], tuple[int, int, str]] = {}
        pair_cc: dict[tuple[str, str], tuple[int, str]] = {}
        for (user, ip, host, cc), n in self.auth.items():
            pair = (user, ip)
            self.pairs[pair] += n
            rank = 0 if not host else 1 if host == "unknown" else 2
            if (rank, n) > pair_best.get(pair, (-1, 0, ""))[:2]:
                pair_best[pair] = (rank, n, host)
            if n > pair_cc.get(pair, (0, ""))[0]:
                pair_cc[pair] = (n, cc)
        self.pair_host = {pair: host for pair, (_, _, host) in pair_best.items()}
        self.pair_cc = {pair: cc for pair, (_, cc) in pair_cc.items()}


def _ranked(counter: Counter[K], n: int) -> tuple[list[tuple[K, int]], str]:
    """The n largest (ties broken by key, so a report is reproducible) and the
    "… and N more" line for the rest (empty when nothing is left out)."""
    top = nsmallest(n, counter.items(), key=lambda kv: (-kv[1], kv[0]))
    rest = len(counter) - len(top)
    if rest <= 0:
        return top, ""
    rest_failures = sum(counter.values()) - sum(v for _, v in top)
    return top, f"… and {rest:,} more ({rest_failures:,} failures)"


# ---- the document model both renderers share: same content in text and HTML


@dataclass(frozen=True, slots=True)
class _Col:
    title: str
    kind: str = "text"
    """num (right-aligned count), text (mlsd's own), untrusted (may be shrunk to fit),
    ip (untrusted, never shrunk), bar (a count drawn as a bar)."""
    drop: int = 0
    """When even shrinking cannot fit a text table into WIDTH, columns are left out of the
    text part, lowest `drop` first (0: never); the HTML part keeps every column."""


@dataclass(frozen=True, slots=True)
class _Table:
    cols: tuple[_Col, ...]
    rows: Sequence[tuple[str, ...]]
    more: str = ""


@dataclass(frozen=True, slots=True)
class _Section:
    title: str
    notes: list[str] = field(default_factory=list)
    table: _Table | None = None


def _n(value: int) -> str:
    return f"{value:,}"


def _of(value: int, noun: str) -> str:
    """`1 IP`, `2 IPs`: counts in sentences."""
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def _pct(value: int, ref: float) -> str:
    if ref == 0:
        return "same" if value == 0 else "up from 0"
    change = round((value - ref) / ref * 100)
    return "same" if change == 0 else f"{change:+d}%"


def _num(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:,.1f}"


@dataclass(frozen=True, slots=True)
class _Context:
    """What the sections need besides the tally."""

    day: date
    start: datetime
    end: datetime
    partial: bool
    tz: tzinfo
    top: int
    masked: bool
    past: dict[date, DaySummary | None]
    csv_path: Path
    csv_size: int
    csv_rows: int
    attachment: str

    def user(self, user: str) -> str:
        if not user:
            return _NO_USER
        return shown(mask(user) if self.masked else user)

    def hhmm(self, epoch: int) -> str:
        return datetime.fromtimestamp(epoch, self.tz).strftime("%H:%M")


def _median(ctx: _Context) -> tuple[float | None, list[date]]:
    week = [ctx.day - timedelta(days=k) for k in range(MEDIAN_DAYS, 0, -1)]
    known = [d for d in week if ctx.past.get(d) is not None]
    counts = [s.failures for d in known if (s := ctx.past[d]) is not None]
    return (statistics.median(counts) if counts else None), known


def _comparison(t: _Tally, ctx: _Context) -> _Section:
    # Part of a day against whole days would make every morning look calm: no percentages.
    def change(value: float) -> str:
        return "" if ctx.partial else _pct(t.failures, value)

    so_far = " so far" if ctx.partial else ""
    rows: list[tuple[str, ...]] = [(_n(t.failures), f"{ctx.day.isoformat()}{so_far}", "")]
    yesterday = ctx.past.get(ctx.day - timedelta(days=1))
    if yesterday is None:
        rows.append(("?", "yesterday: not known (before the CSV began)", ""))
    else:
        rows.append((_n(yesterday.failures), "yesterday", change(yesterday.failures)))
    median, known = _median(ctx)
    if median is None:
        rows.append(("?", "7-day median: no history yet", ""))
    else:
        label = f"median of the previous {_of(len(known), 'day')}"
        rows.append((_num(median), label, change(median)))
    cols = (_Col("fails", "num"), _Col("day"), _Col("change"))
    return _Section(COMPARISON, [], _Table(cols, rows))


def _sections(t: _Tally, ctx: _Context) -> list[_Section]:
    out: list[_Section] = []
    if t.events == 0:
        out.append(
            _Section(
                "Total attempts",
                ["No failed authentications were recorded in this window: nothing to report."],
            )
        )
        out.append(_comparison(t, ctx))
        out.append(_csv_section(ctx))
        return out
    n = ctx.top
    rows: list[tuple[str, ...]]
    cols: tuple[_Col, ...]
    out.append(
        _Section(
            "Total attempts",
            [
                f"{_of(t.failures, 'failed attempt')} in {_of(t.events, 'event')}, from "
                f"{_of(len(t.ips), 'IP')}, against {_of(len(t.users), 'username')}."
            ],
        )
    )
    out.append(_comparison(t, ctx))

    top, more = _ranked(t.services, n)
    rows = [(_n(c), shown(k or "?")) for k, c in top]
    out.append(
        _Section("By service", [], _Table((_Col("fails", "num"), _Col("service")), rows, more))
    )

    auth, more = _ranked(t.pairs, n)
    rows = [
        (_n(c), ctx.user(u), shown(ip), shown(t.pair_host[u, ip]), shown(t.pair_cc[u, ip]))
        for (u, ip), c in auth
    ]
    cols = (
        _Col("fails", "num"),
        _Col("user", "untrusted"),
        _Col("IP", "ip"),
        _Col("hostname", "untrusted"),
        _Col("cc", "untrusted"),
    )
    out.append(_Section("Top failed authentications", [], _Table(cols, rows, more)))

    past_ips = _Past(ctx)
    ips, more = _ranked(t.ips, n)
    rows = [
        (
            _n(c),
            _n(len(t.ip_users[ip])),
            shown(ip),
            shown(t.ip_cc[ip]),
            shown(t.ip_asn[ip]),
            ctx.hhmm(t.ip_first[ip]),
            ctx.hhmm(t.ip_last[ip]),
            ("new" if ip not in past_ips else "seen") if past_ips else "",
        )
        for ip, c in ips
    ]
    cols = (
        _Col("fails", "num"),
        _Col("users", "num"),
        _Col("IP", "ip"),
        _Col("cc", "untrusted"),
        _Col("ASN", "untrusted", drop=3),
        _Col("first", drop=2),
        _Col("last", drop=2),
        _Col("30d", drop=1),
    )
    notes = [
        "users: distinct usernames tried; first/last: seen at (local time); "
        "30d: new, or seen in the previous 30 days."
    ]
    out.append(_Section("Top attacking IPs", notes, _Table(cols, rows, more)))

    nets: Counter[str] = Counter()
    net_ips: defaultdict[str, set[str]] = defaultdict(set)
    for ip, c in t.ips.items():
        net = network(ip)
        nets[net] += c
        net_ips[net].add(ip)
    top_nets, more = _ranked(nets, n)
    rows = [(_n(c), _n(len(net_ips[k])), shown(k)) for k, c in top_nets]
    cols = (_Col("fails", "num"), _Col("IPs", "num"), _Col("network (/24, /48)", "ip"))
    out.append(_Section("Top networks", [], _Table(cols, rows, more)))

    users, more = _ranked(t.users, n)
    rows = [(_n(c), _n(len(t.user_ips[u])), ctx.user(u)) for u, c in users]
    cols = (_Col("fails", "num"), _Col("IPs", "num"), _Col("user", "untrusted"))
    out.append(_Section("Top usernames", [], _Table(cols, rows, more)))

    spread: Counter[str] = Counter({u: len(s) for u, s in t.user_ips.items() if len(s) >= MANY_IPS})
    wide, more = _ranked(spread, n)
    rows = [
        (_n(k), _n(t.users[u]), _n(len({t.ip_cc[ip] for ip in t.user_ips[u]})), ctx.user(u))
        for u, k in wide
    ]
    cols = (
        _Col("IPs", "num"),
        _Col("fails", "num"),
        _Col("countries", "num"),
        _Col("user", "untrusted"),
    )
    notes = [f"Usernames tried from {MANY_IPS} or more IPs: a distributed attack on one account."]
    if not rows:
        notes.append("None today.")
    out.append(
        _Section(
            "Usernames attacked from many IPs", notes, _Table(cols, rows, more) if rows else None
        )
    )

    out.append(_new_attackers(t, ctx, past_ips))

    for title, counter, sets, col in (
        ("Top countries", t.countries, t.country_ips, "country"),
        ("Top ASN", t.asns, t.asn_ips, "ASN"),
        ("Top ASO (network owners)", t.orgs, t.org_ips, "organisation"),
    ):
        top, more = _ranked(counter, n)
        if col == "ASN":
            rows = [(_n(c), _n(len(sets[k])), shown(k), shown(t.asn_org[k])) for k, c in top]
            cols = (
                _Col("fails", "num"),
                _Col("IPs", "num"),
                _Col("ASN", "untrusted"),
                _Col("organisation", "untrusted"),
            )
        else:
            rows = [(_n(c), _n(len(sets[k])), shown(k)) for k, c in top]
            cols = (_Col("fails", "num"), _Col("IPs", "num"), _Col(col, "untrusted"))
        out.append(_Section(title, [], _Table(cols, rows, more)))

    top, more = _ranked(t.rdns, n)
    rows = [(_n(c), shown(k), _RDNS.get(k, "")) for k, c in top]
    cols = (_Col("fails", "num"), _Col("status", "untrusted"), _Col("meaning"))
    out.append(_Section("Reverse DNS", [], _Table(cols, rows, more)))

    out.append(_histogram(t, ctx))
    out.append(_csv_section(ctx))
    return out


class _Past:
    """The IPs of the previous days, newest first; `None`-like (falsy) when none is known."""

    def __init__(self, ctx: _Context) -> None:
        # Kept as the per-day sets: a union of 30 sets would cost more than the lookups.
        known = sorted(((d, s) for d, s in ctx.past.items() if s is not None), reverse=True)
        self.days = len(known)
        self._sets = [s.ips for _, s in known]

    def __bool__(self) -> bool:
        return bool(self.days)

    def __contains__(self, ip: str) -> bool:
        return any(ip in ips for ips in self._sets)


def _new_attackers(t: _Tally, ctx: _Context, past: _Past) -> _Section:
    title = "New attackers"
    if not past:
        return _Section(title, ["Not known: the CSV holds none of the previous 30 days."])
    days = past.days
    new = [ip for ip in t.ips if ip not in past]
    new_failures = sum(t.ips[ip] for ip in new)
    seen = len(t.ips) - len(new)
    notes = [
        f"{_of(len(new), 'IP')} ({_of(new_failures, 'failure')}) not seen in the previous "
        f"{_of(days, 'day')}; {_of(seen, 'IP')} ({_of(t.failures - new_failures, 'failure')}) "
        "seen before."
    ]
    if not new:
        return _Section(title, notes)
    top, more = _ranked(Counter({ip: t.ips[ip] for ip in new}), ctx.top)
    rows = [(_n(c), shown(ip), shown(t.ip_cc[ip]), shown(t.ip_asn[ip])) for ip, c in top]
    cols = (
        _Col("fails", "num"),
        _Col("new IP", "ip"),
        _Col("cc", "untrusted"),
        _Col("ASN", "untrusted", drop=1),
    )
    return _Section(title, notes, _Table(cols, rows, more))


def _histogram(t: _Tally, ctx: _Context) -> _Section:
    local_start = ctx.start.astimezone(ctx.tz)
    local_end = ctx.end.astimezone(ctx.tz)
    shifts = (
        local_start.utcoffset() != (ctx.start + timedelta(days=1)).astimezone(ctx.tz).utcoffset()
    )
    rows: list[tuple[str, ...]] = []
    for hour, count in enumerate(t.histogram):
        at = (ctx.start + timedelta(hours=hour)).astimezone(ctx.tz)
        label = f"{at:%H:%M} {at:%Z}" if shifts else f"{at:%H:%M}"
        rows.append((_n(count), label, str(count)))
    span = (ctx.end - ctx.start).total_seconds() / 3600
    notes = [
        f"Failures per hour from {local_start:%H:%M} to {local_end:%H:%M} "
        f"({_num(round(span, 1))} h), local time."
    ]
    if shifts:
        notes.append("The clocks changed this day: each hour shows its zone abbreviation.")
    cols = (_Col("fails", "num"), _Col("hour"), _Col("", "bar"))
    return _Section("Hour by hour", notes, _Table(cols, rows))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def _csv_section(ctx: _Context) -> _Section:
    return _Section(
        "The CSV",
        [
            f"{plain(str(ctx.csv_path))}: {_size(ctx.csv_size)}, {_n(ctx.csv_rows)} rows.",
            ctx.attachment,
        ],
    )


# ---- rendering: plain text


def _fit(table: _Table) -> tuple[list[int], list[int], int]:
    """Which columns the text part shows, their widths, and the bar width (0: no bar)."""
    keep = list(range(len(table.cols)))
    natural = [
        max([width(c.title)] + [width(r[i]) for r in table.rows]) for i, c in enumerate(table.cols)
    ]
    avail = WIDTH - INDENT
    has_bar = any(c.kind == "bar" for c in table.cols)
    while True:
        widths = [0 if table.cols[i].kind == "bar" else natural[i] for i in keep]
        need = sum(widths) + 2 * (len(keep) - 1) + (10 if has_bar else 0)
        for j in sorted(range(len(keep)), key=lambda j: -widths[j]):
            if need <= avail:
                break
            if table.cols[keep[j]].kind == "untrusted" and widths[j] > MIN_COLUMN:
                take = min(need - avail, widths[j] - MIN_COLUMN)
                widths[j] -= take
                need -= take
        droppable = [i for i in keep if table.cols[i].drop]
        if need <= avail or not droppable:
            bar = avail - (need - 10) if has_bar else 0
            return keep, widths, min(bar, 40)
        keep.remove(min(droppable, key=lambda i: table.cols[i].drop))


def _text_table(table: _Table) -> list[str]:
    keep, widths, bar = _fit(table)
    peak = max(
        (int(r[i]) for r in table.rows for i in keep if table.cols[i].kind == "bar"), default=0
    )

    def line(cells: Sequence[str], header: bool) -> str:
        out = []
        for j, i in enumerate(keep):
            col, w = table.cols[i], widths[j]
            if col.kind == "bar":
                value = int(cells[i]) if not header else 0
                out.append("#" * (round(value / peak * bar) if peak else 0))
                continue
            text = cut(cells[i], w)
            pad = " " * (w - width(text))
            out.append(pad + text if col.kind == "num" else text + pad)
        return (" " * INDENT + "  ".join(out)).rstrip()

    lines = [line([c.title for c in table.cols], header=True)]
    lines += [line(r, header=False) for r in table.rows]
    if table.more:
        lines.append(" " * INDENT + table.more)
    dropped = [table.cols[i].title for i in range(len(table.cols)) if i not in keep]
    if dropped:
        lines += _wrap(f"(Left out for width, shown in the HTML part: {', '.join(dropped)}.)")
    return lines


def _wrap(text: str, indent: int = INDENT) -> list[str]:
    pad = " " * indent
    return textwrap.wrap(text, WIDTH - indent, initial_indent=pad, subsequent_indent=pad) or [""]


def render_text(title: str, header: list[tuple[str, str]], sections: list[_Section]) -> str:
    """The plain-text part: at most WIDTH columns, counts on the left."""
    lines = [title, "=" * min(width(title), WIDTH), ""]
    label_w = max(width(k) for k, _ in header) + 2
    for key, value in header:
        chunks = textwrap.wrap(value, WIDTH - label_w, break_on_hyphens=False) or [""]
        lines.append(key.ljust(label_w) + chunks[0])
        lines += [" " * label_w + c for c in chunks[1:]]
    for s in sections:
        lines += ["", s.title, "-" * width(s.title)]
        for note in s.notes:
            lines += _wrap(note)
        if s.table is not None:
            if s.notes:
                lines.append("")
            lines += _text_table(s.table)
    return "\n".join(lines) + "\n"


# ---- rendering: HTML

_CELL = "padding:2px 10px 2px 0;vertical-align:top;"
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"


def _html_table(table: _Table) -> str:
    e = html.escape
    peak = max(
        (int(r[i]) for r in table.rows for i, c in enumerate(table.cols) if c.kind == "bar"),
        default=0,
    )
    head = "".join(
        f'<th style="{_CELL}text-align:{"right" if c.kind == "num" else "left"};'
        f'border-bottom:1px solid {_LINE}">{e(c.title)}</th>'
        for c in table.cols
    )
    body = []
    for n, r in enumerate(table.rows):
        cells = []
        for i, c in enumerate(table.cols):
            if c.kind == "bar":
                pct = round(int(r[i]) / peak * 100) if peak else 0
                cells.append(
                    f'<td style="{_CELL}width:45%"><div style="background:{_BAR_COLOUR};'
                    f'height:.7em;width:{pct}%"></div></td>'
                )
            elif c.kind == "num":
                cells.append(
                    f'<td style="{_CELL}text-align:right;font-variant-numeric:tabular-nums">'
                    f"{e(r[i])}</td>"
                )
            elif c.kind in ("untrusted", "ip"):
                cells.append(f'<td style="{_CELL}{_MONO}">{untrusted_html(r[i])}</td>')
            else:
                cells.append(f'<td style="{_CELL}">{e(r[i])}</td>')
        stripe = "background:rgba(128,128,128,.09)" if n % 2 else ""
        body.append(f'<tr style="{stripe}">{"".join(cells)}</tr>')
    more = f'<p style="margin:.3em 0">{e(table.more)}</p>' if table.more else ""
    return (
        f'<table role="table" style="border-collapse:collapse;font-size:14px">'
        f"<tr>{head}</tr>{''.join(body)}</table>{more}"
    )


def render_html(title: str, header: list[tuple[str, str]], sections: list[_Section]) -> str:
    """The HTML part: inline CSS, tables, no scripts, no remote anything, either colour scheme.

    No text or background colour is set, so the mail client's own (light or dark) applies;
    the only colours are a mid-tone bar and translucent grey rules, legible on both, and every
    bar stands beside its number.
    """
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="color-scheme" content="light dark">',
        '<meta name="supported-color-schemes" content="light dark">',
        f"<title>{e(title)}</title>",
        "<style>:root{color-scheme:light dark}</style>",
        "</head>",
        '<body style="margin:0;padding:16px;font-family:system-ui,-apple-system,'
        'Segoe UI,Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.4">',
        f'<h1 style="font-size:20px;margin:0 0 12px">{e(title)}</h1>',
        '<table style="border-collapse:collapse;font-size:14px">',
    ]
    for key, value in header:
        parts.append(
            f'<tr><th style="{_CELL}text-align:left;white-space:nowrap">{e(key)}</th>'
            f'<td style="{_CELL}">{e(value)}</td></tr>'
        )
    parts.append("</table>")
    for s in sections:
        parts.append(
            f'<h2 style="font-size:16px;margin:20px 0 6px;padding-bottom:2px;'
            f'border-bottom:1px solid {_LINE}">{e(s.title)}</h2>'
        )
        parts += [f'<p style="margin:.3em 0">{e(note)}</p>' for note in s.notes if note]
        if s.table is not None:
            parts.append(_html_table(s.table))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---- the attachment


# A cell that starts a formula (after spaces too), or a character csvlog would have
# escaped: such a line did not come from csvlog as it is today (an edited file, an older
# version) and is cleaned again. Three searches, because a pattern that starts with a literal
# is searched for much faster than one alternation (`(?:^|;)`) over a day of rows; the
# class is mlsd.untrusted's, tested in C by `is_safe`.
_FORMULA: Final = "=+-@\t\r"
_FORMULA_AFTER_SEP: Final = re.compile(';"? *[=+\\-@\t\r]')
_FORMULA_AT_START: Final = re.compile('\n"? *[=+\\-@\t\r]')


def _risky(text: str) -> bool:
    """Whether some line of `text` holds a cell csvlog would have cleaned."""
    return bool(
        text.lstrip('" ')[:1] in tuple(_FORMULA)
        or _FORMULA_AFTER_SEP.search(text)
        or _FORMULA_AT_START.search(text)
        or not is_safe(text.replace("\n", " "))
    )


def _day_csv(lines: list[str], cap: int, masked: bool) -> bytes:
    """The window's rows as a CSV file: the lines as they are in the file, except those
    that need cleaning (or masking), which are parsed, cleaned with csvlog's rules, and
    written again."""
    text = "\n".join(lines)
    if not masked and not _risky(text):
        return HEADER + (text + "\n").encode()  # the common case: the lines as they are
    out = []
    for line in lines:
        if masked or _risky(line):
            cells = next(csv.reader([line], delimiter=DELIMITER))
            if masked and len(cells) > 3 and cells[3]:
                cells[3] = mask(cells[3])
            out.append(encode_rows([[csv_cell(c, cap) for c in cells]]).decode().rstrip("\n"))
        else:
            out.append(line)
    return HEADER + ("\n".join(out) + "\n").encode()


def _attachment(
    cfg: Config, day: date, partial: bool, rows: list[str]
) -> tuple[tuple[str, bytes, str] | None, str]:
    """The attachment and the sentence that describes it in the report."""
    rc = cfg.report
    if rc.attach == "none":
        return None, "Nothing attached ([report] attach = none)."
    if rc.attach == "full":
        buf = io.BytesIO()
        with (
            open(cfg.paths.csv, "rb", opener=nofollow_opener) as src,
            gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz,
        ):
            while block := src.read(BLOCK):
                gz.write(block)
        data = buf.getvalue()
        return (
            ("mlsd-full.csv.gz", data, "application/gzip"),
            f"Attached: the whole CSV, gzipped ({_size(len(data))}; [report] attach = full).",
        )
    if not rows:
        return None, "Nothing attached: the window has no rows."
    data = _day_csv(rows, cfg.csv.max_field_length, rc.mask_usernames)
    name = f"mlsd-{day.isoformat()}{'-so-far' if partial else ''}.csv"
    what = f"{_n(len(rows))} rows of the window"
    if len(data) > rc.gzip_above * 1024:
        # Level 4: half the time of 6 (25 ms for a 3.4 MB day), and 8 % larger.
        packed = gzip.compress(data, compresslevel=4, mtime=0)
        return (
            (name + ".gz", packed, "application/gzip"),
            f"Attached: {name}.gz, {what} ({_size(len(data))}, {_size(len(packed))} gzipped).",
        )
    return (name, data, "text/csv"), f"Attached: {name}, {what} ({_size(len(data))})."


# ---- building


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
) -> Report:
    """The report of calendar day `day` in `[report] timezone`, up to `until` if given.

    Reads the day's rows from `[paths] csv` and the per-day history (see the module
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
    hours = max(1, -(-int((end - start).total_seconds()) // 3600))
    tally = _Tally(int(start.timestamp()), hours)
    lines: list[str] = []
    tally.add_all(window(path, start, end, log_tz, lines if cfg.report.attach == "day" else None))
    tally.derive()
    try:
        csv_size = os.path.getsize(path)
    except OSError:
        csv_size = 0
    attachment, attach_note = _attachment(cfg, day, partial, lines) if csv_size else (None, "")
    ctx = _Context(
        day=day,
        start=start,
        end=end,
        partial=partial,
        tz=tz,
        top=cfg.report.top,
        masked=cfg.report.mask_usernames,
        past=history(cfg, day, tz),
        csv_path=path,
        csv_size=csv_size,
        csv_rows=csv_rows(cfg),
        attachment=attach_note or "Nothing attached: the CSV does not exist yet.",
    )
    median, _ = _median(ctx)
    if median is None:
        change = "no history yet"
    elif partial:
        change = f"7-day median {_num(median)} a whole day"
    else:
        change = f"{_pct(tally.failures, median)} vs 7-day median {_num(median)}"
    when = f"{day.isoformat()} so far" if partial else day.isoformat()
    subject = (
        f"{cfg.report.subject_prefix} {host} {when}: {tally.failures:,} failed logins, {change}"
    ).strip()
    unknown = (
        "not known (report built outside the daemon)"
        if coverage is None
        else "not known (no daemon counters for this day)"
    )
    cov = coverage or Coverage()
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    span = _num(round((end - start).total_seconds() / 3600, 1))
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
        ("Events recorded", f"{tally.events:,} rows, {tally.failures:,} failed attempts"),
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
    sections = _sections(tally, ctx)
    return Report(
        day=day,
        start=start,
        end=end,
        partial=partial,
        subject=subject,
        text=render_text(title, header, sections),
        html=render_html(title, header, sections),
        events=tally.events,
        failures=tally.failures,
        attachment=attachment,
    )


def build_portable(cfg: Config, day: date, **kwargs: Any) -> Report:
    """`build`, for the daemon's report process: the window's ends in UTC, because the
    system zone read from /etc/localtime cannot be pickled back to the daemon."""
    r = build(cfg, day, **kwargs)
    return replace(r, start=r.start.astimezone(UTC), end=r.end.astimezone(UTC))


def to_message(
    report: Report, cfg: Config, *, now: datetime, hostname: str
) -> tuple[bytes, str, list[str]]:
    """The RFC 5322 message (multipart/mixed > multipart/alternative + attachment), the
    envelope sender and the recipients."""
    # The short name makes an address no remote MTA accepts: Postfix's myhostname or the
    # FQDN (mlsd.mailname), the short name only when there is nothing better.
    mail_host = mail_hostname(hostname)
    sender = cfg.report.sender or f"mlsd@{mail_host}"
    recipients = list(cfg.report.to)
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = report.subject
    msg["From"] = sender
    if recipients:
        msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC))
    msg["Message-ID"] = make_msgid("mlsd-report", domain=mail_host)
    # RFC 3834: an automatic message; vacation responders must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(report.text, subtype="plain", charset="utf-8")
    msg.add_alternative(report.html, subtype="html", charset="utf-8")
    # Always mixed, even without an attachment, so that readers see one stable structure.
    msg.make_mixed()
    if report.attachment is not None:
        name, data, mime = report.attachment
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    # Headers are written unfolded up to RFC 5322's hard limit: Python's folder would move a
    # subject that is a little over 78 characters whole onto a continuation line, which
    # reads back with a leading space. Bodies were encoded to 76-column lines above.
    return msg.as_bytes(policy=SMTP.clone(max_line_length=998)), sender, recipients
