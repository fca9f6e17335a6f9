"""The history scan (mlsd.report.dayscan) reads exactly the rows the report reads of a day.

The cold scan has two readers: a bulk one for chunks whose rows are plainly one day's, and
a line-by-line one for everything else. Each is checked against the report's own reading of
its day (mlsd.report.window.window), and against the other, on CSVs written by csvlog and
then damaged on purpose: out of order, quoted and date-like attacker cells, other servers,
missing and extra fields, bad seconds, odd attempts, other zones and formats, invalid UTF-8
and garbage.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlsd.config import Config, PathsConfig, ReportConfig, SourceConfig
from mlsd.report import daycache, dayscan, history
from mlsd.report.daycache import DaySummary
from mlsd.report.schedule import report_window
from mlsd.report.window import window
from mlsd.rows import HEADER, Column, encode_rows

PARIS = ZoneInfo("Europe/Paris")
USERS = ["admin", "info", "b;c", 'q"x', "2026-10-24T10:00:00+02:00", "=cmd", "", "ünï"]


def make_cfg(tmp_path: Path) -> Config:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return Config(
        paths=PathsConfig(
            mail_log=tmp_path / "mail.log", csv=tmp_path / "mlsd.csv", state_dir=state
        ),
        source=SourceConfig(timezone="Europe/Paris"),
        report=ReportConfig(timezone="Europe/Paris"),
    )


def row(rng: random.Random, when: datetime, messy: bool = False, zone: tzinfo = PARIS) -> list[str]:
    """A row as csvlog writes it; a messy one may be another server's or need quoting."""
    server = "mx2" if messy and rng.random() < 0.1 else "mail"
    user = rng.choice(USERS if messy else USERS[:1] + USERS[4:])  # no quoting when clean
    return [
        server, when.astimezone(zone).isoformat(timespec="seconds"),
        f"192.0.2.{rng.randrange(40)}" if rng.random() < 0.9 else f"2001:db8::{rng.randrange(9)}",
        user, "unknown", "NONE", "FR", "AS64500", "Example Net", "smtp", "LOGIN",
        rng.choice(["1"] * 12 + ["2", "3", "10"]),
    ]  # fmt: skip


def messy(when: datetime) -> bool:
    """Hours where the damage is: around midnight, around 06:00 (when the day before
    closes) and at midday; the rest stays clean so that the bulk reader has work too."""
    return when.astimezone(PARIS).hour in (23, 0, 5, 6, 12)


def damaged(rng: random.Random, line: bytes) -> bytes:
    """One way a CSV line can be broken by a crash, an editor or another program."""
    cells = line.split(b";")
    how = rng.randrange(11)
    if how == 0:  # a field missing
        del cells[rng.randrange(1, len(cells))]
    elif how == 1:  # a field too many
        cells.insert(rng.randrange(1, len(cells)), b"extra")
    elif how == 2:  # seconds no date can have
        cells[1] = cells[1][:17] + rng.choice([b"75", b"x5", b"6", b"\xd9\xa3"]) + cells[1][19:]
    elif how == 3:  # attempts that are not a plain count
        cells[-1] = rng.choice([b"x", b" 3", b"-2", b"\xd9\xa3", b"", b"1 ", b"07"])
    elif how == 4:  # the same instant written in UTC
        when = datetime.fromisoformat(cells[1].decode())
        cells[1] = when.astimezone(ZoneInfo("UTC")).isoformat(timespec="seconds").encode()
    elif how == 5:  # MailLogSentinel's date format, in the log's zone
        when = datetime.fromisoformat(cells[1].decode())
        cells[1] = when.strftime("%d/%m/%Y %H:%M").encode()
    elif how == 6:  # invalid UTF-8 in the IP
        cells[2] += b"\xff"
    elif how == 7:  # a quoted date
        cells[1] = b'"' + cells[1] + b'"'
    elif how == 8:  # a time no day has
        cells[1] = cells[1][:11] + b"24" + cells[1][13:]
    elif how == 9:
        return rng.choice([b"garbage", b"", b";;;;;;;;;;;", b"mail;2026-10-24T"])
    else:  # a carriage return, as a Windows editor leaves it
        cells[-1] += b"\r"
    return b";".join(cells)


def write(
    path: Path, rng: random.Random, start: datetime, days: int, n: int, *, damage: float
) -> None:
    """n rows over `days` days from `start`; in messy hours some are late by up to 5.5 h
    (within SLACK), some need quoting and some are damaged."""
    times = sorted(start + timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(n))
    for i in range(n // 10, n):  # none before the first row: history() starts there
        if messy(times[i]) and rng.random() < 0.1:
            times[i] -= timedelta(hours=rng.uniform(0, 5.5))
    lines = []
    for t in times:
        line = encode_rows([row(rng, t, messy(t))]).rstrip(b"\n")
        lines.append(damaged(rng, line) if messy(t) and rng.random() < damage else line)
    path.write_bytes(HEADER + b"".join(x + b"\n" for x in lines))


def attempts(cell: str) -> int:
    """The `attempts` cell as the report counts it: a number, or 1 when it is not one."""
    try:
        return int(cell)
    except ValueError:
        return 1


def reference(cfg: Config, d: date) -> tuple[int, int, frozenset[str]]:
    """Day d as the report reads its own day: rows, failed attempts, IPs."""
    start, end = report_window(d, PARIS)
    rows = [cells for _, cells in window(cfg.paths.csv, start, end, cfg.log_tz())]
    return (
        len(rows),
        sum(attempts(cells[Column.ATTEMPTS]) for cells in rows),
        frozenset(cells[Column.IP] for cells in rows),
    )


def newlines_less_header(path: Path) -> int:
    """The CSV's rows as the report's "CSV size and row count" gives them, counted plainly."""
    return max(path.read_bytes().count(b"\n") - 1, 0) if path.exists() else 0


def scan(cfg: Config, day: date, days: int = 30) -> list[tuple[DaySummary, int | None]]:
    windows = [report_window(day - timedelta(days=k), PARIS) for k in range(days, 0, -1)]
    fd = os.open(cfg.paths.csv, os.O_RDONLY)
    try:
        return dayscan.scan_days(cfg.paths.csv, fd, windows, cfg.log_tz())
    finally:
        os.close(fd)


@pytest.fixture
def bulk_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each chunk was read in bulk (True) or left to the line-by-line reading."""
    calls: list[bool] = []
    read = dayscan._Bulk.read

    def counted(self: dayscan._Bulk, chunk: bytes, nxt: int) -> object:
        got = read(self, chunk, nxt)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(dayscan._Bulk, "read", counted)
    yield calls


# Around both 2026 DST changes in Paris (25 h on 25 October, 23 h on 29 March).
SPANS = [(datetime(2026, 10, 21, 18, tzinfo=PARIS), date(2026, 10, 29)),
         (datetime(2026, 3, 25, 18, tzinfo=PARIS), date(2026, 4, 2))]  # fmt: skip


@pytest.mark.parametrize("chunk", [300, 2048])
@pytest.mark.parametrize("seed", range(6))
def test_scan_reads_what_the_report_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_calls: list[bool], seed: int, chunk: int
) -> None:
    """Both readers together, on a damaged CSV, give each day exactly the rows the report
    reads when that day is its own."""
    rng = random.Random(seed)
    start, day = SPANS[seed % 2]
    cfg = make_cfg(tmp_path)
    write(cfg.paths.csv, rng, start, 7, 6000, damage=0.2)
    monkeypatch.setattr(dayscan, "CHUNK", chunk)
    past = history.history(cfg, day, PARIS)
    seen = 0
    for d, summary in past.items():
        if summary is None:
            assert reference(cfg, d) == (0, 0, frozenset())
            continue
        seen += 1
        assert (summary.rows, summary.failures, summary.ips) == reference(cfg, d), d
    assert seen >= 7
    # Not vacuous: both readers ran on this CSV.
    assert any(bulk_calls)
    assert not all(bulk_calls)


@pytest.mark.parametrize("chunk", [300, 2048])
@pytest.mark.parametrize("seed", range(6))
def test_bulk_and_line_by_line_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_calls: list[bool], seed: int, chunk: int
) -> None:
    """With and without the bulk reader: the same summaries and the same closing offsets
    (which the day cache validates entries against)."""
    rng = random.Random(100 + seed)
    start, day = SPANS[seed % 2]
    cfg = make_cfg(tmp_path)
    write(cfg.paths.csv, rng, start, 7, 6000, damage=0.05 * seed)
    monkeypatch.setattr(dayscan, "CHUNK", chunk)
    both = scan(cfg, day)
    assert any(bulk_calls)
    monkeypatch.setattr(dayscan._Bulk, "read", lambda self, chunk, nxt: None)
    monkeypatch.setattr(dayscan._Bulk, "parts", lambda self, chunk: [(0, chunk)])
    assert both == scan(cfg, day)
    assert sum(1 for _, closed in both if closed is not None) >= 5


def test_plain_csv_is_read_in_bulk(tmp_path: Path, bulk_calls: list[bool]) -> None:
    """An undamaged, in-order CSV of mlsd's own is read in bulk throughout: a chunk that
    holds midnight is cut there, and the row that closes the day before (its first at or
    after 06:00) is found without reading line by line — also in the part after midnight,
    when a quiet night puts it there."""
    rng = random.Random(1)
    cfg = make_cfg(tmp_path)
    start = datetime(2026, 11, 10, tzinfo=PARIS)
    times = [start + timedelta(seconds=k * 20) for k in range(14 * 86400 // 20)]
    quiet = (datetime(2026, 11, 15, 0, 5, tzinfo=PARIS), datetime(2026, 11, 15, 7, tzinfo=PARIS))
    times = [t for t in times if not quiet[0] <= t < quiet[1]]
    cfg.paths.csv.write_bytes(HEADER + encode_rows(row(rng, t) for t in times))
    summaries = scan(cfg, date(2026, 11, 24), days=14)  # as history() does: from the CSV's start
    chunks = -(-(cfg.paths.csv.stat().st_size - len(HEADER)) // dayscan.CHUNK)
    assert all(bulk_calls)
    assert len(bulk_calls) >= chunks + 13  # the 13 midnights inside the CSV
    assert [s.rows for s, _ in summaries] == [4320] * 5 + [4320 - 6 * 180 - 165] + [4320] * 8
    ends, offset = [], len(HEADER)
    for line in cfg.paths.csv.read_bytes()[len(HEADER) :].split(b"\n")[:-1]:
        offset += len(line) + 1
        ends.append(offset)  # just after the row of times[len(ends)]
    for k, (_, closed) in enumerate(summaries[:-1]):
        closing = datetime(2026, 11, 11 + k, 6, tzinfo=PARIS)
        assert closed == ends[next(i for i, t in enumerate(times) if t >= closing)]
    assert summaries[-1][1] is None  # the 23rd: the CSV ends before the 24th, 06:00


@given(st.sets(st.binary(max_size=12).filter(lambda b: b"\n" not in b), max_size=20))
def test_decoded_as_one_text_equals_one_by_one(ips: set[bytes]) -> None:
    """Decoding a day's IPs joined is decoding each, bad UTF-8 included."""
    assert dayscan._decoded(ips) == frozenset(ip.decode("utf-8", "replace") for ip in ips)


@pytest.mark.parametrize("chunk", [2048, 1 << 16])
def test_a_csv_written_in_a_fixed_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_calls: list[bool], chunk: int
) -> None:
    """Winter time all year (a server set to UTC+1): on the 23-hour day of March, the rows
    dated 2026-03-29T23:xx+01:00 belong to the 30th in Paris, though their date says 29."""
    rng = random.Random(3)
    cfg = make_cfg(tmp_path)
    start = datetime(2026, 3, 26, tzinfo=PARIS).astimezone(UTC)  # steps in real time
    times = [start + timedelta(seconds=k * 30) for k in range(6 * 86400 // 30)]
    fixed = timezone(timedelta(hours=1))
    cfg.paths.csv.write_bytes(HEADER + encode_rows(row(rng, t, zone=fixed) for t in times))
    monkeypatch.setattr(dayscan, "CHUNK", chunk)
    day = date(2026, 4, 1)
    past = history.history(cfg, day, PARIS)
    assert past[date(2026, 3, 29)] is not None
    assert past[date(2026, 3, 29)].rows == 23 * 120  # type: ignore[union-attr]
    for d, summary in past.items():
        if summary is not None:
            assert (summary.rows, summary.failures, summary.ips) == reference(cfg, d), d
    assert any(bulk_calls)


@pytest.mark.parametrize("chunk", [2048, 1 << 16])
def test_rows_later_than_slack_are_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_calls: list[bool], chunk: int
) -> None:
    """A day's rows appended after the next day's 06:00 (a rotated log caught up too late)
    count for no day, whichever reader meets them: the day had closed, as for the report's
    own reading. (Later than that, even its binary search could be misled.)"""
    rng = random.Random(4)
    cfg = make_cfg(tmp_path)
    start = datetime(2026, 11, 20, tzinfo=PARIS)
    times = [start + timedelta(seconds=k * 30) for k in range(4 * 86400 // 30)]
    late = [datetime(2026, 11, 21, 23, tzinfo=PARIS) + timedelta(seconds=k) for k in range(3000)]
    at = times.index(datetime(2026, 11, 22, 7, tzinfo=PARIS))
    times[at:at] = late
    cfg.paths.csv.write_bytes(HEADER + encode_rows(row(rng, t) for t in times))
    monkeypatch.setattr(dayscan, "CHUNK", chunk)
    past = history.history(cfg, date(2026, 11, 24), PARIS)
    assert past[date(2026, 11, 21)].rows == 2880  # type: ignore[union-attr]
    for d, summary in past.items():
        if summary is not None:
            assert (summary.rows, summary.failures, summary.ips) == reference(cfg, d), d
    assert bulk_calls.count(True) > 10


@given(st.frozensets(st.text(max_size=8).filter(lambda s: "\n" not in s), max_size=8))
def test_day_cache_keeps_any_set_of_ips(ips: frozenset[str]) -> None:
    """The cache's one-text form of a day's IPs reads back the same set: empty, or holding
    an empty IP, or anything else a damaged CSV can give."""
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "mlsd.csv"
        csv_path.write_bytes(HEADER + b"x" * 300)
        fd = os.open(csv_path, os.O_RDONLY)
        try:
            cache = daycache.DayCache(Path(tmp) / "days", fd, os.fstat(fd), "Europe/Paris")
            day = date(2026, 11, 23)
            start, end = report_window(day, PARIS)
            cache.store(day, start, end, DaySummary(3, 4, ips), 200)
            assert DaySummary(3, 4, ips) == cache.load(day, start, end)
        finally:
            os.close(fd)


def rows_csv(cfg: Config, rng: random.Random, n: int, start: datetime) -> None:
    times = [start + timedelta(seconds=k * 7) for k in range(n)]
    with cfg.paths.csv.open("ab") as fh:
        if fh.tell() == 0:
            fh.write(HEADER)
        fh.write(encode_rows(row(rng, t) for t in times))


def test_csv_rows_reads_only_what_was_appended(tmp_path: Path) -> None:
    """The count is remembered with its offset: the next count reads from there. (Proof:
    a newline slipped into the counted part in place is not seen; a plain count sees it.)"""
    rng = random.Random(5)
    cfg = make_cfg(tmp_path)
    rows_csv(cfg, rng, 3000, datetime(2026, 11, 20, tzinfo=PARIS))
    assert 3000 == history.csv_rows(cfg) == newlines_less_header(cfg.paths.csv)
    entry = json.loads((cfg.paths.state_dir / "days" / "rows.json").read_text())
    assert cfg.paths.csv.stat().st_size == entry["offset"]
    assert 0o600 == stat.S_IMODE((cfg.paths.state_dir / "days" / "rows.json").stat().st_mode)
    with cfg.paths.csv.open("r+b") as fh:  # the first row's attempts "1" becomes a newline
        fh.seek(len(HEADER) + fh.read()[len(HEADER) :].index(b"\n") - 1)
        fh.write(b"\n")
    rows_csv(cfg, rng, 500, datetime(2026, 11, 21, tzinfo=PARIS))
    assert 3500 == history.csv_rows(cfg)
    assert 3501 == newlines_less_header(cfg.paths.csv)


@pytest.mark.parametrize("how", ["garbage", "other-csv", "regrown", "cut"])
def test_csv_rows_recounts_when_the_entry_does_not_match(tmp_path: Path, how: str) -> None:
    """Another CSV, one cut back and regrown, or a damaged entry: counted again in full."""
    rng = random.Random(6)
    cfg = make_cfg(tmp_path)
    rows_csv(cfg, rng, 2000, datetime(2026, 11, 20, tzinfo=PARIS))
    assert 2000 == history.csv_rows(cfg)
    entry = cfg.paths.state_dir / "days" / "rows.json"
    data = cfg.paths.csv.read_bytes()
    if how == "garbage":
        entry.write_text('{"v": 2, "offset": "x"}')
        rows_csv(cfg, rng, 10, datetime(2026, 11, 21, tzinfo=PARIS))
    elif how == "other-csv":  # a new inode: counted from its start
        copy = cfg.paths.csv.with_suffix(".new")
        copy.write_bytes(data[: len(data) // 2])
        copy.replace(cfg.paths.csv)
        rows_csv(cfg, rng, 2000, datetime(2026, 11, 21, tzinfo=PARIS))
    elif how == "regrown":  # same inode, cut back, regrown past the offset with other rows
        with cfg.paths.csv.open("r+b") as fh:
            fh.truncate(len(data) // 2)
            fh.seek(0, os.SEEK_END)
            fh.write(b"mail;2026-11-21T10:00:00+01:00;192.0.2.1;x;;;;;;;;1\n" * 4000)
    else:  # same inode, shorter than the entry's offset
        with cfg.paths.csv.open("r+b") as fh:
            fh.truncate(len(data) // 2)
    assert newlines_less_header(cfg.paths.csv) == history.csv_rows(cfg)


def test_csv_rows_without_a_writable_state_dir(tmp_path: Path) -> None:
    """Nothing remembered (nor created), the same count."""
    rng = random.Random(7)
    cfg = make_cfg(tmp_path)
    rows_csv(cfg, rng, 100, datetime(2026, 11, 20, tzinfo=PARIS))
    shutil.rmtree(cfg.paths.state_dir)
    assert 100 == history.csv_rows(cfg)
    assert not cfg.paths.state_dir.exists()
    (tmp_path / "none").mkdir()
    assert 0 == history.csv_rows(make_cfg(tmp_path / "none"))  # no CSV at all


def test_the_fast_readers_know_the_column_order() -> None:
    """The bulk and line-by-line readers (and window's) rely on where the server, the date,
    the IP and the attempts are (mlsd.report.dayscan): a new column goes elsewhere, or they
    change with it."""
    assert (Column.SERVER, Column.DATE, Column.IP) == (0, 1, 2)
    assert Column.ATTEMPTS == len(Column) - 1
