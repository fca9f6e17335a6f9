"""The alerts journal: each alert once across a replayed batch, a torn or damaged line
skipped and counted, never through a link, mode 0640, and the day's counters."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from mlsd import alertlog
from mlsd.alertlog import AlertCounts, AlertLog
from mlsd.alerts import Alert, Rule
from mlsd.errors import StateError
from tests.alertkit import T0, plain


def opened(state: Path) -> AlertLog:
    state.mkdir(mode=0o750, exist_ok=True)
    log = AlertLog(state)
    log.open()
    return log


def test_a_replayed_batch_is_recorded_once(tmp_path: Path) -> None:
    """The same alerts again (a batch replayed after a crash, in a new process) are not
    new: `record` returns only the ids the file did not hold, and the file has each once."""
    state = tmp_path / "state"
    first = [plain(0), plain(1, rule=Rule.MANY_SOURCES, headline="12 IPs today")]
    assert first == opened(state).record(first)
    again = [*first, plain(2)]
    assert [plain(2)] == opened(state).record(again)  # a restart: ids read from the file
    ids = [json.loads(line)["id"] for line in (state / "alerts.jsonl").read_text().splitlines()]
    assert [a.id for a in [*first, plain(2)]] == ids
    assert [*first, plain(2)] == alertlog.read(state / "alerts.jsonl")


def test_twice_in_one_batch_is_one_alert(tmp_path: Path) -> None:
    log = opened(tmp_path / "state")
    assert [plain(0)] == log.record([plain(0), plain(0)])
    assert [] == log.record([plain(0)])


def test_a_torn_last_line_is_skipped_counted_and_ended_before_the_next(tmp_path: Path) -> None:
    """A crash mid-append leaves half a line: readers skip and count it, and the writer
    ends it at open so the next alert is whole."""
    state = tmp_path / "state"
    opened(state).record([plain(0)])
    path = state / "alerts.jsonl"
    whole = path.read_bytes()
    torn = json.dumps(plain(1).to_json()).encode()[:40]
    path.write_bytes(whole + torn)
    assert ([plain(0)], 1) == alertlog.scan(path)
    log = opened(state)
    assert 1 == log.damaged
    assert [plain(1)] == log.record([plain(1)])
    assert ([plain(0), plain(1)], 1) == alertlog.scan(path)
    assert (
        path.read_bytes()
        == whole
        + torn
        + b"\n"
        + json.dumps(plain(1).to_json(), separators=(",", ":")).encode()
        + b"\n"
    )


@pytest.mark.parametrize(
    "damage",
    [
        b"not json\n",
        b'{"id": "x"}\n',
        b'{"id":"x","rule":"no_such_rule","user":"","time":"2026-11-24T09:00:00+00:00",'
        b'"server":"","ip":"","country":"","asn":"","aso":"","headline":"","evidence":[],'
        b'"thresholds":[]}\n',
        b"[1, 2]\n",
        b"\xff\xfe\n",
        json.dumps(plain(5).to_json() | {"time": "2026-11-24T09:00:00"}).encode() + b"\n",
    ],
    ids=["text", "missing-keys", "unknown-rule", "a-list", "not-utf8", "naive-time"],
)
def test_damaged_lines_are_skipped_and_counted_never_raised(tmp_path: Path, damage: bytes) -> None:
    state = tmp_path / "state"
    opened(state).record([plain(0)])
    path = state / "alerts.jsonl"
    with path.open("ab") as fh:
        fh.write(damage)
    opened(state).record([plain(1)])
    assert ([plain(0), plain(1)], 1) == alertlog.scan(path)


def test_read_since_and_until(tmp_path: Path) -> None:
    state = tmp_path / "state"
    alerts = [plain(n) for n in (0, 10, 20)]
    opened(state).record(alerts)
    path = state / "alerts.jsonl"
    assert alerts[1:] == alertlog.read(path, T0 + timedelta(minutes=10))
    assert ([alerts[1]], 0) == alertlog.scan(
        path, T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)
    )
    assert Counter({"new_country": 2}) == alertlog.count_since(path, T0 + timedelta(minutes=1))
    assert [] == alertlog.read(tmp_path / "nowhere.jsonl")


def test_a_link_in_place_of_the_journal_is_refused(tmp_path: Path) -> None:
    """Neither the writer nor a reader goes through a symbolic link (it could point at a
    file of root's to append to, or at someone's secret to read)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    (state / "alerts.jsonl").symlink_to(target)
    with pytest.raises(OSError) as err:
        AlertLog(state).open()
    assert errno.ELOOP == err.value.errno
    with pytest.raises(OSError):
        alertlog.scan(state / "alerts.jsonl")
    assert b"" == target.read_bytes()


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o770)
    with pytest.raises(StateError, match="writable by"):
        AlertLog(state).open()


def test_mode_is_0640_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        opened(tmp_path / "state").record([plain(0)])
    finally:
        os.umask(old)
    assert 0o640 == stat.S_IMODE(os.stat(tmp_path / "state" / "alerts.jsonl").st_mode)


def test_a_fifo_in_place_of_the_journal_does_not_hang(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    os.mkfifo(state / "alerts.jsonl")
    with pytest.raises(OSError):
        AlertLog(state).open()


def test_the_journal_is_ascii_whatever_the_user(tmp_path: Path) -> None:
    state = tmp_path / "state"
    odd = plain(0, user="\u202ej\u00fcrgen\r\n\x1b[31m")
    opened(state).record([odd])
    data = (state / "alerts.jsonl").read_bytes()
    assert data.isascii() and 1 == data.count(b"\n")
    assert [odd] == alertlog.read(state / "alerts.jsonl")


def test_counts_roll_over_with_the_day_and_start_from_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    opened(state).record([plain(0), plain(1)])
    day = T0.date()
    counts = AlertCounts.from_journal(state / "alerts.jsonl", day, T0)
    assert (2, Counter()) == (counts.today, counts.by_rule)
    counts.note([plain(2, rule=Rule.SEND_BURST)], day)
    assert (3, Counter({"send_burst": 1})) == (counts.today, counts.by_rule)
    assert 0 == counts.roll(day + timedelta(days=1))
    counts.note([plain(3)], date(2026, 11, 25))
    assert (1, Counter({"send_burst": 1, "new_country": 1})) == (counts.today, counts.by_rule)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "alerts.jsonl").symlink_to(tmp_path / "x")
    assert 0 == AlertCounts.from_journal(broken / "alerts.jsonl", day, T0).today


def test_alerts_round_trip_through_the_journal_exactly(tmp_path: Path) -> None:
    alert: Alert = plain(0, evidence=(("a", "b"), ("c", "")), thresholds=())
    opened(tmp_path / "state").record([alert])
    (back,) = alertlog.read(tmp_path / "state" / "alerts.jsonl")
    assert alert == back and alert.id == back.id
