"""The report's charts (failures per hour, the last 30 days with the report day marked) as a
mail client gets them: bars of table cells with their counts, no script, no SVG, nothing
remote; and the top list's grouping of one user and IP across Postfix and Dovecot lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mlsd.config import Config
from mlsd.enrich.postfix import postfix_reverse
from mlsd.ingest.csvlog import CsvJournal, RowFormat
from mlsd.ingest.grammar import parse_line
from mlsd.report import chart_html
from mlsd.report.charts import DAYS_TITLE, HOURS_TITLE
from mlsd.report.document import Bar, Chart
from mlsd.rows import AuthFailure
from tests.test_hostile import CASES, assert_inert
from tests.test_report import (
    DAY,
    EVIL_HOST,
    EVIL_USER,
    PARIS,
    TODAY,
    E,
    Page,
    build,
    history_events,
    make_cfg,
    table,
    write_csv,
)

# ---- reading the charts back out of the HTML part


@dataclass
class Column:
    """One bar as the HTML draws it."""

    value: str
    title: str
    text: str = ""
    """The count written above the bar."""
    height: int = 0
    """Pixels; 0: no bar drawn."""
    colour: str = ""
    label: str = ""
    label_style: str = ""


@dataclass
class Drawn:
    name: str
    columns: list[Column] = field(default_factory=list)

    def values(self) -> list[tuple[str, int, bool]]:
        """(label under the bar, count, marked) per bar."""
        return [(c.label, int(c.value), "font-weight:bold" in c.label_style) for c in self.columns]


class Charts(HTMLParser):
    """The `data-chart` tables of an HTML part: per bar its count (attribute and visible
    text), its height and colour in pixels as drawn, and the label under it."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[Drawn] = []
        self._depth = 0
        self._chart_depth = 0
        self._row = -1
        self._labels = 0
        self._in: str = ""

    @classmethod
    def of(cls, html: str) -> dict[str, Drawn]:
        p = cls()
        p.feed(html)
        p.close()
        return {c.name: c for c in p.charts}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._depth += 1
            if "data-chart" in a:
                self.charts.append(Drawn(a["data-chart"]))
                self._chart_depth, self._row, self._labels = self._depth, -1, 0
            return
        if not self._chart_depth:
            return
        chart = self.charts[-1]
        if tag == "tr" and self._depth == self._chart_depth:
            self._row += 1
        elif tag == "td" and self._depth == self._chart_depth and self._row == 0:
            chart.columns.append(Column(value=a["data-value"], title=a["title"]))
            self._in = "count"
        elif tag == "td" and self._depth == self._chart_depth and self._row == 1:
            column = chart.columns[self._labels]
            column.label_style = a.get("style", "")
            self._labels += 1
            self._in = "label"
        elif tag == "td" and self._depth == self._chart_depth + 1:
            column = chart.columns[-1]
            column.height = int(a["height"])
            assert f"height:{column.height}px" in a["style"]
            column.colour = a["bgcolor"]
            assert f"background-color:{column.colour}" in a["style"]
            self._in = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            if self._depth == self._chart_depth:
                self._chart_depth = 0
            self._depth -= 1
        elif tag == "td" and self._depth == self._chart_depth:
            self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in == "count":
            self.charts[-1].columns[-1].text += data.strip()
        elif self._in == "label":
            self.charts[-1].columns[self._labels - 1].label += data.strip()


# ---- one known day (tests.test_report's: 10 failures, history from D-20)

HOURLY = {"00": 2, "07": 2, "09": 2, "13": 3, "23": 1}
DAILY = (
    [("04", 1, False)]  # D-20, 2026-11-04: the CSV begins
    + [(f"{d:02d}", 0, False) for d in range(5, 17)]
    + [(f"{17 + k:02d}", n, False) for k, n in enumerate([4, 6, 8, 2, 10, 5, 5])]
    + [("24", 10, True)]  # the report day, marked
)


@pytest.fixture
def day_cfg(tmp_path: Path) -> Config:
    cfg = make_cfg(tmp_path)
    write_csv(cfg.paths.csv, history_events() + TODAY)
    return cfg


def test_hour_chart_draws_each_hours_failures(day_cfg: Config) -> None:
    """24 bars, one per local hour, each with its count written above it and a height in
    proportion to the peak hour's (13:00, 3 failures, the full height)."""
    r = build(day_cfg)
    hours = Charts.of(r.html)["hour"]
    assert [f"{h:02d}" for h in range(24)] == [c.label for c in hours.columns]
    assert [(c.value, f"{c.label}:00") for c in hours.columns] == [
        row[:2] for row in table(r.text, HOURS_TITLE)
    ]  # the text part keeps the same counts as its histogram
    assert HOURLY == {c.label: int(c.value) for c in hours.columns if c.value != "0"}
    assert [c.value for c in hours.columns] == [c.text for c in hours.columns]
    heights = {c.label: c.height for c in hours.columns if c.height}
    assert {"00": 53, "07": 53, "09": 53, "13": chart_html.HEIGHT, "23": 27} == heights
    assert {chart_html.BAR_COLOUR} == {c.colour for c in hours.columns if c.height}
    assert "13:00: 3 failures" == hours.columns[13].title
    assert "04:00: 0 failures" == hours.columns[4].title
    assert not any(c.label_style.count("bold") for c in hours.columns)


def test_day_chart_marks_the_report_day(day_cfg: Config) -> None:
    """The days since the CSV began (20 of the previous 29) and the report day, last and
    marked: orange, its label bold, its title and the text part saying so."""
    r = build(day_cfg)
    days = Charts.of(r.html)["day"]
    assert DAILY == days.values()
    marked = days.columns[-1]
    assert chart_html.MARK_COLOUR == marked.colour
    assert "2026-11-24 (report day): 10 failures" == marked.title
    assert {chart_html.BAR_COLOUR} == {c.colour for c in days.columns[:-1] if c.height}
    assert chart_html.HEIGHT == marked.height == days.columns[-4].height  # 10 on 11-21 too
    assert "2026-11-04: 1 failure" == days.columns[0].title
    assert "In orange, its label in bold and underlined: the report day." in Page.of(r.html).text
    rows = table(r.text, DAYS_TITLE)
    assert ("1", "2026-11-04", "####") == rows[0]
    assert ("0", "2026-11-05") == rows[1]
    assert ("10", "2026-11-24 (report day)", "#" * 40) == rows[-1]
    assert len(DAILY) == len(rows)
    assert "Not known before 2026-11-04: the CSV begins then (20 earlier days known)." in r.text


def test_the_day_so_far_marks_the_day_as_so_far(day_cfg: Config) -> None:
    """A report of the day so far: the hours up to `until`, the day's bar as far as it is."""
    r = build(day_cfg, until=datetime(2026, 11, 24, 9, 15, tzinfo=PARIS))
    drawn = Charts.of(r.html)
    assert 10 == len(drawn["hour"].columns)
    assert ("24", 5, True) == drawn["day"].values()[-1]
    assert "2026-11-24 (report day, so far): 5 failures" == drawn["day"].columns[-1].title


def test_a_quiet_day_still_shows_the_days_before(tmp_path: Path) -> None:
    """No failure on the report day: no hour chart, but the month is drawn, the day as 0
    with no bar (and no CSV at all: the day alone, the rest said not known)."""
    cfg = make_cfg(tmp_path)
    r = build(cfg)
    assert {"day"} == set(Charts.of(r.html))
    assert [("24", 0, True)] == Charts.of(r.html)["day"].values()
    assert "The days before are not known: the CSV holds none of them." in r.text
    write_csv(cfg.paths.csv, [E(f"2026-11-{d} 10:00:00", "192.0.2.1") for d in (21, 22, 22)])
    drawn = Charts.of(build(cfg).html)
    assert [("21", 1, False), ("22", 2, False), ("23", 0, False), ("24", 0, True)] == drawn[
        "day"
    ].values()
    assert 0 == drawn["day"].columns[-1].height


def test_a_25_hour_day_has_25_bars(tmp_path: Path) -> None:
    """The night the clocks go back: 02:00 twice, told apart by the zone in the title."""
    cfg = make_cfg(tmp_path)
    day = date(2026, 10, 25)
    start = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)
    write_csv(
        cfg.paths.csv,
        [E((start + timedelta(hours=k)).isoformat(), f"192.0.2.{k}") for k in range(25)],
    )
    hours = Charts.of(build(cfg, day).html)["hour"]
    assert 25 * [1] == [int(c.value) for c in hours.columns]
    assert ["02", "02"] == [c.label for c in hours.columns if c.label == "02"]
    assert ["02:00 CEST: 1 failure", "02:00 CET: 1 failure"] == [
        c.title for c in hours.columns if c.label == "02"
    ]


class Tags(HTMLParser):
    """Every tag and attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.style_text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style_text.append(data)


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table"}
ALLOWED_TAGS |= {"tr", "th", "td", "div", "span"}


def hostile_users() -> list[str]:
    """The usernames tests/hostile/ records (escapes, bidi, markup, formulas), and more."""
    ref = datetime(2026, 11, 25, tzinfo=UTC)
    users = [EVIL_USER, '"><svg onload=alert(1)>', "<script src=https://evil.example/x>"]
    for case in CASES:
        ev = parse_line(case["line"].encode(), ref, UTC)
        if case["surface"] == "user" and isinstance(ev, AuthFailure) and ev.user:
            users.append(ev.user)
    return users


def test_charts_need_no_script_svg_image_or_style_and_hostile_names_stay_text(
    tmp_path: Path,
) -> None:
    """With hostile usernames and hostnames in the day: the page holds only table markup
    (no script, SVG, image, link, form), no attribute fetches anything (no http/https or
    data: URL, no url()), the one <style> is the colour-scheme hint the charts do not need,
    every hostile name is escaped text, and the charts still count every failure."""
    cfg = make_cfg(tmp_path, top=100)
    users = hostile_users()
    assert len(users) > 10
    write_csv(
        cfg.paths.csv,
        [
            E(f"2026-11-24 {k % 24:02d}:00:00", f"192.0.2.{k}", u, host=EVIL_HOST)
            for k, u in enumerate(users)
        ],
    )
    r = build(cfg)
    page = Tags()
    page.feed(r.html)
    page.close()
    assert set(page.tags) <= ALLOWED_TAGS
    assert 1 == page.tags.count("style")
    assert ":root{color-scheme:light dark}" == "".join(page.style_text)
    for name, value in page.attrs:
        assert not name.startswith("on"), name
        assert name not in ("src", "href", "srcset", "background", "action", "xmlns"), name
        assert not re.search(r"https?:|data:|url\(|//", value, re.I), (name, value)
    for bad in ("<script", "<svg", "<img", "<link", "<iframe", "<object"):
        assert bad not in r.html.lower()
    assert_inert(r.html.encode(), "html")
    assert "&lt;script src=https://evil.example/x&gt;" in r.html
    assert "&quot;&gt;&lt;svg onload=alert(1)&gt;" in r.html
    drawn = Charts.of(r.html)
    assert len(users) == sum(int(c.value) for c in drawn["hour"].columns)
    assert ("24", len(users), True) == drawn["day"].values()[-1]


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0"), (999, "999"), (1000, "1.0k"), (1234, "1.2k"), (9949, "9.9k"), (9950, "10k"),
     (45_678, "46k"), (999_499, "999k"), (999_500, "1.0M"), (3_140_000, "3.1M"),
     (12_345_678, "12M")],
)  # fmt: skip
def test_compact_counts_fit_above_a_bar(n: int, shown: str) -> None:
    """The count above a bar in at most 4 characters; the exact one is in the title."""
    assert shown == chart_html.compact(n)
    assert len(shown) <= 4


def test_a_bar_not_known_is_a_question_mark_never_zero() -> None:
    """A count not known is drawn as `?` with no bar, and said so in its title."""
    html = chart_html.chart_html(
        Chart("day", (Bar("01", "2026-11-01", None), Bar("02", "2026-11-02", 12_345)))
    )
    col = Charts.of(html)["day"].columns
    assert ("", "?", 0, "2026-11-01: not known") == (
        col[0].value,
        col[0].text,
        col[0].height,
        col[0].title,
    )
    assert ("12345", "12k", chart_html.HEIGHT, "2026-11-02: 12,345 failures") == (
        col[1].value,
        col[1].text,
        col[1].height,
        col[1].title,
    )


# ---- the top list: one user and IP, whatever service logged it

POSTFIX = (
    "Nov 24 10:00:00 mail postfix/submission/smtpd[687]: warning: unknown[203.0.113.5]: "
    "SASL LOGIN authentication failed: (reason unavailable), sasl_username=alice@example.org"
)
DOVECOT = (
    "Nov 24 10:01:00 mail dovecot: imap-login: Disconnected (auth failed, 1 attempts): "
    "user=<alice@example.org>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, TLS"
)


def test_postfix_unknown_and_dovecot_blank_are_one_entry(tmp_path: Path) -> None:
    """The same user and IP from a Postfix line (hostname `unknown`: it looked and found no
    name) and a Dovecot line (no hostname given): one top-list row of 2, shown `unknown`,
    in the text and in the HTML part."""
    cfg = make_cfg(tmp_path)
    ref = datetime(2026, 11, 25, tzinfo=UTC)
    events = [parse_line(line.encode(), ref, PARIS) for line in (POSTFIX, DOVECOT)]
    assert all(isinstance(ev, AuthFailure) for ev in events)
    failures = [ev for ev in events if isinstance(ev, AuthFailure)]
    assert ["unknown", ""] == [ev.hostname for ev in failures]
    assert ["submission", "imap"] == [ev.service for ev in failures]
    journal = CsvJournal(cfg.paths.csv)
    journal.open()
    journal.append(
        RowFormat(tz=PARIS, date_format="iso", cap=256).encode(failures, postfix_reverse)
    )
    journal.close()
    r = build(cfg, DAY)
    rows = table(r.text, "Top failed authentications")
    assert [("2", "alice@example.org", "203.0.113.5", "unknown", "N/A")] == rows
    assert "2 alice@example.org 203.0.113.5 unknown N/A" in Page.of(r.html).row_texts
    assert 2 == r.failures
