"""`mlsd scan` from a real journal: the file source's grammar, the exact multiset, cursors.

Journals are real files written by systemd-journal-remote (tests.journalkit); mlsd reads
them through journalctl as on a host. Every failure carries its sequence number in the
username, so a lost entry and a repeated one both show as a difference of multisets.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.followkit import ENV, Env, users
from tests.journalkit import Converted, JournalEnv, convert, corpus_lines, failure, needs_journal

pytestmark = needs_journal

EXACT = "_SYSTEMD_UNIT=postfix@-.service _SYSTEMD_UNIT=dovecot.service"
"""Terms without `*`: journalctl selects the entries (the default makes mlsd select them)."""


def _csv_rows(path: Path) -> Counter[tuple[str, ...]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return Counter(tuple(r) for r in list(csv.reader(fh, delimiter=";"))[1:])


def _checkpoint(env: Env) -> dict[str, object]:
    data: dict[str, object] = json.loads((env.state / "checkpoint.json").read_text())
    return data


@pytest.mark.parametrize("match", ["", EXACT])
def test_scan_gives_the_rows_the_file_source_gives(tmp_path: Path, match: str) -> None:
    """Every corpus form, as Postfix and Dovecot log it to the journal (and MESSAGEs that
    are not UTF-8), scanned: exactly the rows a scan of the same lines in a file gives."""
    env = JournalEnv(tmp_path / "j", match)
    t = env.journal.base
    converted: list[Converted] = []
    for line in corpus_lines():
        c = convert(line, t + len(converted) * 1000)
        if c is not None:
            converted.append(c)
    hostile = [
        b"2026-11-25T05:00:00 mx postfix/smtpd[9]: warning: unknown[192.0.2.9]: SASL PLAIN "
        b"authentication failed: UGFzc3dvcmQ6, sasl_username=caf\xe9\xff\x1b[2J",
        b"2026-11-25T05:00:00 mx dovecot: imap-login: Disconnected (auth failed, 3 attempts "
        b"in 9 secs): user=<r\xc3\xa9my\xfe>, method=PLAIN, rip=198.51.100.4, lip=192.0.2.1",
    ]
    for raw in hostile:
        c = convert(raw, t + len(converted) * 1000)
        assert c is not None and not _utf8(c.fields["MESSAGE"])
        converted.append(c)
    env.journal.write(env.journal.stamp(c.fields, t + k * 1000) for k, c in enumerate(converted))
    res = env.scan()
    assert "gap journal" not in res.stderr

    (tmp_path / "f").mkdir()
    file_env = Env(tmp_path / "f")
    file_env.log.write_bytes(b"".join(c.line for c in converted))
    file_env.scan()
    expected = _csv_rows(file_env.csv)
    got = _csv_rows(env.csv)
    assert sum(expected.values()) >= 200, "the corpus lost its rows"
    assert got == expected, (expected - got, got - expected)
    # The logins CSV too: the same logins, and qmgr's lines joined to smtpd's alike.
    logins = _csv_rows(env.csv.with_name("logins.csv"))
    assert logins == _csv_rows(file_env.csv.with_name("logins.csv"))
    kinds: Counter[str] = Counter()
    for row, n in logins.items():
        kinds[row[10]] += n
    assert kinds == {"login": 19, "submit": 4}
    assert any("caf\\xe9\\xff" in row[3] for row in got), "the non-UTF-8 username is kept"
    assert any("r\u00e9my\\xfe" in row[3] for row in got)
    # Each journal entry is one line read; every entry was read once.
    assert f"lines_read={len(converted)} events_written={sum(expected.values())}" in res.stderr


def _utf8(raw: str | bytes) -> bool:
    try:
        (raw.encode() if isinstance(raw, str) else raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("match", ["", EXACT])
def test_a_scan_resumes_strictly_after_the_cursor(tmp_path: Path, match: str) -> None:
    """scan, write, scan, …: the checkpointed entry is not read again (off by one
    backwards) and the one after it is not skipped (off by one forwards), whether the
    cursor is on a failure or on other traffic, and a scan with nothing new adds nothing."""
    env = JournalEnv(tmp_path, match)
    j = env.journal
    j.seq(range(5), noise=False)  # the cursor ends on a failure
    env.scan()
    assert env.rows() == users(range(5))
    first = _checkpoint(env)["cursor"]
    assert isinstance(first, str) and re.fullmatch(r"[a-z]=[0-9a-f]+(;[a-z]=[0-9a-f]+)+", first)
    j.seq([5], noise=False)  # exactly one entry after the cursor
    env.scan()
    assert env.rows() == users(range(6))
    j.seq(range(6, 10))  # the cursor ends on noise
    res = env.scan()
    assert "lines_read=8 events_written=4" in res.stderr
    assert env.rows() == users(range(10))
    again = env.scan()
    assert "lines_read=0 events_written=0" in again.stderr
    assert env.rows() == users(range(10))
    j.seq([10], noise=False)
    env.scan()
    assert env.rows() == users(range(11))


def test_start_at_end_reads_only_what_comes_after(tmp_path: Path) -> None:
    """`[follow] start_at = end` on a fresh state: the journal so far is left alone, and
    the decision (the cursor of its last entry) is checkpointed: later scans go on from it."""
    env = JournalEnv(tmp_path, start_at="end")
    env.journal.seq(range(5))
    res = env.scan()
    assert "resume=end" in res.stderr
    assert env.rows() == users(())
    env.journal.seq(range(5, 8))
    env.scan()
    assert env.rows() == users(range(5, 8))


def test_a_vacuumed_cursor_is_a_gap_and_nothing_is_read_twice(tmp_path: Path) -> None:
    """The checkpointed entry's file is deleted (what `journalctl --vacuum-*` does) with
    entries after it: journalctl starts at the next entry it has. That entry and the rest
    are read once; the time range that may be missing is said as a gap and counted."""
    env = JournalEnv(tmp_path)
    j = env.journal
    j.seq(range(10), "old.journal")
    env.scan()
    assert env.rows() == users(range(10))
    j.seq(range(10, 15), "old.journal")  # written after the scan, lost with the file
    j.seq(range(15, 20), "new.journal")
    (j.dir / "old.journal").unlink()
    res = env.scan()
    assert env.rows() == users([*range(10), *range(15, 20)])
    gap = re.search(
        r'gap journal unread_from=(\S+) unread_until=(\S+) reason="([^"]*)"', res.stderr
    )
    assert gap is not None, res.stderr
    assert gap[1] < gap[2]
    assert "no longer in the journal" in gap[3]
    assert "gaps=1" in res.stderr
    # The next scan starts from a cursor that exists: no gap again.
    j.seq(range(20, 22), "new.journal")
    res = env.scan()
    assert "gap journal" not in res.stderr
    assert env.rows() == users([*range(10), *range(15, 22)])


def test_the_cursor_entry_itself_is_never_dropped_when_it_is_gone(tmp_path: Path) -> None:
    """The entry journalctl shows first when the checkpointed one is gone is new: it is
    read (`--after-cursor` would have skipped it unsaid)."""
    env = JournalEnv(tmp_path)
    j = env.journal
    j.seq(range(3), "a.journal", noise=False)
    env.scan()
    j.seq([3], "b.journal", noise=False)
    (j.dir / "a.journal").unlink()
    res = env.scan()
    assert env.rows() == users(range(4))
    assert "gaps=1" in res.stderr


def test_a_checkpoint_for_another_source_is_refused(tmp_path: Path) -> None:
    """A state directory that followed a file is not silently reused for the journal."""
    env = Env(tmp_path)
    env.log.write_bytes(b"")
    env.scan()
    jenv = JournalEnv(tmp_path)
    res = jenv.scan(check=False)
    assert res.returncode != 0
    assert f"the checkpoint is for {env.log}, not journal:{jenv.journal.dir}" in res.stderr


def test_status_of_a_journal_source(tmp_path: Path) -> None:
    """`mlsd status` names the journal (not a mail.log it never reads, nor its absence),
    the time of the last entry read, and how far behind the journal's last entry it is."""
    env = JournalEnv(tmp_path)
    env.journal.seq(range(2))
    env.scan()

    def status() -> dict[str, Any]:
        res = subprocess.run(
            env.cmd("status", "--json"),
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
            check=False,
        )
        out: dict[str, Any] = json.loads(res.stdout)
        return out

    st = status()
    assert st["log"] == f"journal:{env.journal.dir}"
    assert not [p for p in st["problems"] if "mail.log" in p], st["problems"]
    last = datetime.fromtimestamp((env.journal.base + 1_000_000 + 1) / 1e6, UTC)
    assert st["read_until"] == last.astimezone().isoformat(" ", "seconds")
    assert st["behind_seconds"] == 0
    env.journal.seq([60])  # a minute after the last one read
    st = status()
    assert st["behind_seconds"] == pytest.approx(59, abs=1)
    text = subprocess.run(
        env.cmd("status"), capture_output=True, text=True, timeout=60, env=ENV, check=False
    ).stdout
    assert f"journal:{env.journal.dir}: read up to the entry of " in text
    assert ", 59 s behind" in text


def test_parse_journal_prints_what_a_scan_records(tmp_path: Path) -> None:
    """`mlsd parse --journal DIR`: the rows a scan of the same journal writes, a summary on
    stderr; a journal that cannot be opened is an error; FILEs and --journal exclude."""
    env = JournalEnv(tmp_path)
    env.journal.seq(range(4))
    hostile = str(failure(4)["MESSAGE"]).encode() + b"\xff"  # not UTF-8: bytes in JSON
    env.journal.write([env.journal.stamp({**failure(4), "MESSAGE": hostile})])
    env.scan()
    res = subprocess.run(
        env.cmd("parse", "--journal", str(env.journal.dir)),
        capture_output=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    printed = Counter(
        tuple(r) for r in list(csv.reader(res.stdout.decode().splitlines(), delimiter=";"))[1:]
    )
    assert printed == _csv_rows(env.csv)
    assert sum(printed.values()) == 5
    assert f"journal:{env.journal.dir}: 9 lines read, 5 events" in res.stderr.decode()
    missing = subprocess.run(
        env.cmd("parse", "--journal", str(tmp_path / "none")),
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert missing.returncode == 1
    assert f"journal:{tmp_path / 'none'}: journalctl ended with status 1" in missing.stderr
    both = subprocess.run(
        env.cmd("parse", "--journal", str(env.journal.dir), "x.log"),
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert both.returncode == 2 and "give FILEs, or --journal [DIR]" in both.stderr
