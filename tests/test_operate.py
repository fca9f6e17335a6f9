"""Operating mlsd: `status`, `reset`, `purge`, `migrate-config`, `parse --explain`, and the
debug log of lines not recorded — against a real `mlsd run` where the command is about a
running daemon."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pty
import re
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

import pytest

from mlsd import config
from mlsd.alertlog import AlertLog
from mlsd.app import lockholder, status
from mlsd.ingest.grammar import Skip
from mlsd.ingest.pipeline import SkipLog
from mlsd.report import schedule
from mlsd.report.smtp import Outbox
from mlsd.watched import DayCounts, Ledger
from tests.followkit import ENV, Env, Writer, logged, now_line, wait_for

CORPUS = Path(__file__).parent / "corpus"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    e.extra = "[report]\ntimezone = UTC\n"
    e.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    yield e
    e.cleanup()


def mlsd(env: Env, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.cmd(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        input=stdin,
        check=False,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`mlsd ARGS` as a subprocess, for commands that need no test installation."""
    return subprocess.run(
        [sys.executable, "-m", "mlsd", *args],
        capture_output=True, text=True, timeout=60, env=ENV, check=False,
    )  # fmt: skip


def status_json(env: Env) -> tuple[int, dict[str, object]]:
    res = mlsd(env, "status", "--json")
    return res.returncode, json.loads(res.stdout)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def csv_users(path: Path) -> Counter[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return Counter(r["user"] for r in csv.DictReader(fh, delimiter=";"))


def _sent_yesterday(env: Env) -> str:
    """report.json of an installation that has sent reports (yesterday's was the last):
    a fresh install writes none before its first day is over (mlsd.sender)."""
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    env.state.mkdir(mode=0o750, exist_ok=True)
    (env.state / "report.json").write_text(json.dumps({"last_queued": yesterday}))
    return yesterday


# ---- status


def test_status_while_following_then_after_stop(env: Env) -> None:
    w = Writer(env.log)
    w.write(b"".join(now_line(f"u{i}") for i in range(5)))
    proc = env.start()
    env.wait_rows(Counter(f"u{i}" for i in range(5)))
    wait_for(lambda: status_json(env)[1]["behind_bytes"] == 0)

    code, st = status_json(env)
    assert code == 0, st["problems"]
    assert st["healthy"] is True
    assert st["running"] is True and st["pid"] == proc.pid
    assert st["generation"] == str(env.log)
    assert st["offset"] == env.log.stat().st_size
    assert st["events_today"] == 5
    assert st["last_event"] is not None
    # A fresh install queues no report of a day it never watched (yesterday's).
    assert st["report_last_queued"] is None
    text = mlsd(env, "status").stdout
    assert text.startswith("mlsd: healthy")
    assert f"running, pid {proc.pid}" in text
    assert "events today  5" in text
    assert "last report   none yet" in text
    # Nor is yesterday's report overdue later today: mlsd never watched that day.
    later = datetime.now(UTC) + timedelta(minutes=20)
    due = schedule.due_day(later, time_of_day(0, 15), UTC)
    overdue = [p for p in status.gather(config.load(env.conf), later).problems if "due" in p]
    assert (due >= datetime.now(UTC).date()) == bool(overdue), overdue

    # A line still being written (no newline yet) is not "behind": the daemon cannot read it.
    w.write(b"Nov 25 05:00:00 mx postfix/smtpd[1]: connect from")
    time.sleep(0.5)
    assert status_json(env)[1]["behind_bytes"] == 0

    assert env.stop(proc) == 0
    code, st = status_json(env)
    assert code == 1
    assert st["running"] is False and st["pid"] is None
    assert st["problems"] == ["mlsd is not running (no process holds the state lock)"]
    assert "daemon        not running" in mlsd(env, "status").stdout


def test_status_sees_a_stuck_daemon(env: Env) -> None:
    w = Writer(env.log)
    w.write(now_line("first"))
    proc = env.start()
    env.wait_rows(Counter(["first"]))
    # The row is in the CSV before its checkpoint is written: stopped in between, the
    # daemon would be behind by both lines (seen once in CI: 275 bytes, not 138).
    wait_for(lambda: _committed(env))
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        w.write(now_line("second"))
        cfg = config.load(env.conf)
        # Right now: behind, but the checkpoint moved moments ago — a daemon at work.
        fresh = status.gather(cfg, datetime.now(UTC))
        assert fresh.running and fresh.behind_bytes == len(now_line("second"))
        assert fresh.healthy, fresh.problems
        # Two minutes on with the same state: stuck.
        later = status.gather(cfg, datetime.now(UTC) + timedelta(minutes=2))
        assert not later.healthy
        assert any("has not moved for" in p for p in later.problems), later.problems
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    env.wait_rows(Counter(["first", "second"]))


def test_status_report_overdue_outbox_and_gaps(env: Env) -> None:
    yesterday = _sent_yesterday(env)
    Writer(env.log).write(now_line("x"))
    proc = env.start()
    env.wait_rows(Counter(["x"]))
    # The due report is built in a child process: wait until it is recorded.
    wait_for((env.state / "report.json").exists)
    cfg = config.load(env.conf)
    now = datetime.now(UTC)
    assert status.gather(cfg, now).healthy

    # Two days on and still running, with no newer report queued: overdue.
    later = status.gather(cfg, now + timedelta(days=2))
    assert any("has not been queued" in p for p in later.problems), later.problems

    # A report that could not be delivered for good, and one waiting for hours.
    outbox = Outbox(env.state / "outbox")
    gone = outbox.put(
        b"Subject: r\r\n\r\nx\r\n", "m@h", ["a@b"], now.timestamp(), "report:2001-01-01"
    )
    outbox.fail(gone, "550 no such user")
    outbox.put(
        b"Subject: r\r\n\r\nx\r\n", "m@h", ["a@b"], now.timestamp() - 7200, "report:2001-01-02"
    )
    ledger = Ledger(env.state)
    ledger.record(now.date(), DayCounts())
    ledger.record(now.date(), DayCounts(gaps=2))
    ledger.save()

    st = status.gather(cfg, now)
    # The last report (yesterday's, written to disk) is not the one waiting, from 2001.
    assert st.report_last_queued == yesterday
    assert st.report_last_state.startswith("written to ")
    assert st.outbox_waiting == 1 and st.outbox_failed == 1
    assert any("could not be delivered" in p for p in st.problems), st.problems
    assert any("waited in the outbox for 2 h" in p for p in st.problems), st.problems
    assert st.gaps_today == 2 and st.gaps_7_days == 2
    assert any("2 gap(s)" in w for w in st.warnings)
    assert mlsd(env, "status").returncode == 1
    assert env.stop(proc) == 0


def test_status_of_a_never_started_setup_and_a_broken_config(env: Env, tmp_path: Path) -> None:
    res = mlsd(env, "status")
    assert res.returncode == 1
    assert "mlsd has never run with this configuration" in res.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("[report]\ntime = 25:00\n")
    res = cli("status", "-c", str(bad))
    assert res.returncode == 2
    assert "[report] time" in res.stderr and str(bad) in res.stderr


def test_lock_holder_ignores_a_stale_pid_in_the_lock_file(tmp_path: Path) -> None:
    # After kill -9 the lock file still names the dead pid; only a held flock counts.
    (tmp_path / "mlsd.lock").write_text("999999\n")
    assert lockholder.lock_holder(tmp_path) is None


# ---- reset and purge


def _files(env: Env) -> list[Path]:
    return [env.csv, env.state / "checkpoint.json"]


def _committed(env: Env) -> bool:
    """Whether the checkpoint covers the whole CSV and the whole log."""
    try:
        cp = json.loads((env.state / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(
        cp.get("csv_length") == env.csv.stat().st_size
        and cp.get("offset") == env.log.stat().st_size
    )


def test_reset_refused_while_running_then_archives_after_stop(env: Env) -> None:
    _sent_yesterday(env)
    w = Writer(env.log)
    stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S").encode()
    login = stamp + b" mx dovecot: imap-login: Login: user=<ok>, method=PLAIN, rip=192.0.2.8\n"
    w.write(b"".join(now_line(f"a{i}") for i in range(3)) + login)
    proc = env.start()
    env.wait_rows(Counter(f"a{i}" for i in range(3)))
    wait_for((env.state / "report.json").exists)  # the due report, built in a child
    # Rows are visible before the checkpoint that commits them is written: wait for it,
    # so that what is compared below is what reset could have moved, not the commit.
    wait_for(lambda: _committed(env))
    before = {p: digest(p) for p in _files(env)}

    res = mlsd(env, "reset", "--yes")
    assert res.returncode == 1
    assert f"pid {proc.pid}" in res.stderr and "systemctl stop mlsd" in res.stderr
    assert {p: digest(p) for p in _files(env)} == before  # nothing moved
    assert not list(env.state.glob("archive-*"))

    assert env.stop(proc) == 0
    csv_before = env.csv.read_bytes()
    res = mlsd(env, "reset", "--yes")
    assert res.returncode == 0, res.stderr
    (archive,) = env.state.glob("archive-*")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700
    assert (archive / "mlsd.csv").read_bytes() == csv_before
    assert (archive / "checkpoint.json").exists()
    assert (archive / "logins.csv").read_bytes().endswith(b";ok;;N/A;N/A;N/A;imap;PLAIN;login;0\n")
    assert not env.csv.exists() and not (env.state / "checkpoint.json").exists()
    assert not env.csv.with_name("logins.csv").exists()
    assert f"moved {env.csv} -> {archive / 'mlsd.csv'}" in res.stdout
    # What a fleet needs to go on from the node's position (mlsd.store.handover): each CSV
    # moved, as the checkpoint committed it, and where it is now (renamed: same inode).
    recorded = json.loads((env.state / "handover.json").read_text())
    for journal, name in (("events", "mlsd.csv"), ("logins", "logins.csv")):
        st = (archive / name).stat()
        assert recorded[journal] == [
            {"dev": st.st_dev, "ino": st.st_ino, "length": st.st_size, "path": str(archive / name)}
        ]
    assert stat.S_IMODE((env.state / "handover.json").stat().st_mode) == 0o600
    # Report state stays: reset is not purge.
    assert (env.state / "report.json").exists()

    # Monitoring starts over: [follow] start_at = beginning reads the live log again,
    # exactly once, into a new CSV.
    w.write(now_line("b0"))
    proc = env.start()
    env.wait_rows(Counter(["a0", "a1", "a2", "b0"]))
    assert env.stop(proc) == 0
    assert env.csv.with_name("logins.csv").read_text().count(";ok;") == 1


def test_reset_needs_yes_without_a_terminal_and_asks_on_one(env: Env) -> None:
    Writer(env.log).write(now_line("a"))
    env.scan()
    res = mlsd(env, "reset", stdin="y\n")  # a pipe, not a terminal: no answer is read
    assert res.returncode == 2 and "--yes" in res.stderr
    assert env.csv.exists()

    for answer, code in ((b"n\n", 1), (b"y\n", 0)):
        leader, follower = pty.openpty()
        try:
            proc = subprocess.Popen(
                env.cmd("reset"),
                stdin=follower,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=ENV,
            )
            os.write(leader, answer)
            _, err = proc.communicate(timeout=60)
        finally:
            os.close(leader)
            os.close(follower)
        assert proc.returncode == code, err
        assert b"Proceed? [y/N]" in err
        assert env.csv.exists() is (code == 1)


def test_purge_archives_report_state_and_outbox_into_dir(env: Env, tmp_path: Path) -> None:
    _sent_yesterday(env)
    Writer(env.log).write(now_line("a"))
    proc = env.start()
    env.wait_rows(Counter(["a"]))
    wait_for((env.state / "report.json").exists)  # the due report, built in a child
    assert env.stop(proc) == 0
    outbox = Outbox(env.state / "outbox")
    outbox.fail(outbox.put(b"x", "m@h", ["a@b"], time.time()), "550 no")
    AlertLog(env.state).open()  # the sentinel's journal goes with the report state
    assert (env.state / "report.json").exists() and (env.state / "coverage.json").exists()

    dest = tmp_path / "elsewhere"
    res = mlsd(env, "purge", "--yes", "--archive", str(dest))
    assert res.returncode == 0, res.stderr
    (archive,) = dest.glob("archive-*")
    names = {p.name for p in archive.iterdir()}
    assert names >= {
        "mlsd.csv",
        "checkpoint.json",
        "report.json",
        "coverage.json",
        "outbox",
        "alerts.jsonl",
    }
    assert len(list((archive / "outbox" / "failed").glob("*.json"))) == 1
    left = {p.name for p in env.state.iterdir()}
    # handover.json stays: it tells a fleet where the node's rows went (the fleet keeps the
    # node's position across a purge too), and it names only files, no attack data.
    assert left <= {"mlsd.lock", "handover.json"}, left
    # Nothing left to do: said so, exit 0.
    again = mlsd(env, "purge", "--yes")
    assert again.returncode == 0 and "nothing to purge" in again.stderr


# ---- migrate-config


def test_migrate_config_output_is_accepted_by_check_config(tmp_path: Path) -> None:
    out = tmp_path / "mlsd.conf"
    res = cli("migrate-config", str(DATA / "maillogsentinel.conf"), "-o", str(out))
    assert res.returncode == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if "not carried over" in line]
    for setting in ("country_db_path", "asn_db_path", "state_dir", "working_dir", "timer"):
        assert any(setting in n for n in notes), (setting, notes)
    check = cli("check-config", "-c", str(out))
    assert check.returncode == 0, check.stderr
    assert "to = security-team@example.org" in check.stdout
    assert "mail_log = /var/log/mail.log" in check.stdout


# ---- parse --explain and the debug log of lines not recorded


def _corpus_cases() -> Iterator[tuple[Path, dict[int, dict[str, object]]]]:
    for exp in sorted(CORPUS.glob("*/*.expected.jsonl")):
        rows = [json.loads(line) for line in exp.read_text().splitlines()]
        yield (
            exp.with_name(exp.name.replace(".expected.jsonl", ".log")),
            {r["line_no"]: r for r in rows if "line_no" in r},
        )


@pytest.mark.parametrize(
    ("log", "expected"), list(_corpus_cases()), ids=lambda v: v.name if isinstance(v, Path) else ""
)
def test_explain_gives_each_corpus_line_its_verdict(
    log: Path, expected: dict[int, dict[str, object]]
) -> None:
    res = cli("parse", "--explain", str(log))
    assert res.returncode == 0, res.stderr
    said = {}
    for line in res.stdout.splitlines():
        m = re.match(r"(\d+): (recorded|skipped \(([^)]*)\))", line)
        assert m, line
        said[int(m[1])] = m[3] or "recorded"
    for no, case in expected.items():
        if case["expect"] == "row":
            assert said.get(no) == "recorded", (no, case["line"])
        elif case["expect"] == "skip":
            assert said.get(no) == case["skip"], (no, case["line"])
        else:
            assert said.get(no) in (None, Skip.SUCCESS.value), (no, said.get(no), case["line"])
    # Every successful login in the file is named as one.
    successes = [n for n, c in expected.items() if b"sasl_username=" in str(c["line"]).encode()
                 and "authentication failed" not in str(c["line"])]  # fmt: skip
    assert all(said.get(n) == Skip.SUCCESS.value for n in successes)


def test_explain_escapes_attacker_bytes(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_bytes(
        b"Nov 25 04:38:00 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN "
        b"authentication failed: x, sasl_username=\x1b[31mevil\xe2\x80\xaeuser\n"
        b"Nov 25 04:38:01 mx postfix/smtpd[1]: warning: unknown[999.1.1.1]: SASL LOGIN "
        b"authentication failed: x\n"
    )
    res = cli("parse", "--explain", str(log))
    assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
    first, second = res.stdout.splitlines()
    assert first.startswith('1: recorded ip=192.0.2.1 user="\\\\x1b[31mevil\\\\u202euser"')
    assert "\\x1b[31mevil\\u202euser" in first
    assert second.startswith("2: skipped (invalid IP): ")


def test_skiplog_rate_limit_counts_what_it_does_not_show() -> None:
    clock = [100.0]
    skip = SkipLog(per_second=10, clock=lambda: clock[0])
    lines = [(Skip.UNKNOWN_FORMAT, b"garbage auth failed %d\n" % i) for i in range(25)]
    with logged() as said:
        skip.emit(lines)
        clock[0] = 101.2
        skip.emit(lines[:3])
        skip.flush()
    shown = [s.text for s in said if "reason=" in s.text]
    summaries = [s.text for s in said if "more lines not shown" in s.text]
    assert len(shown) == 13  # 10 in the first second, 3 in the next
    assert summaries == ["not recorded: 15 more lines not shown (at most 10 a second)"]


def test_daemon_at_debug_logs_lines_not_recorded_and_why(env: Env) -> None:
    # Env's config runs at DEBUG.
    w = Writer(env.log)
    proc = env.start()
    w.write(
        b"Nov 25 04:38:00 mx postfix/smtpd[1]: warning: unknown[1.1.1.1]: SASL LOGIN "
        b"authentication failed: Connection lost to authentication server\n"
        b"Nov 25 04:38:12 mx postfix/smtpd[2]: 4F1: client=unknown[127.0.0.11], "
        b"sasl_method=LOGIN, sasl_username=carol\x1b[2J\n" + now_line("counted")
    )
    env.wait_rows(Counter(["counted"]))
    wait_for(lambda: "successful login" in env.stderr(proc))
    err = env.stderr(proc)
    assert 'not recorded reason="server-side error" line=' in err
    assert 'reason="successful login"' in err
    assert "\x1b[2J" not in err and "carol\\\\x1b[2J" in err
    assert env.stop(proc) == 0


def test_status_survives_an_odd_outbox_tag(env: Env) -> None:
    # The sender skips a tag it cannot read; status used to raise on it.
    env.state.mkdir()
    Outbox(env.state / "outbox").put(b"x", "m@h", ["a@b"], time.time(), "report:garbage")
    st = status.gather(config.load(env.conf), datetime.now(UTC))
    assert st.report_last_queued is None and st.outbox_waiting == 1
