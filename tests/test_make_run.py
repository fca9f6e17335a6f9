"""`make run`'s demo mode: rows appear within seconds, SIGUSR1 makes a report, Ctrl-C stops;
switching between the demo and a real log works both ways and keeps the user's config.

Runs contrib/demo/run.py (what `make run` calls) with --demo or --log, so the result does
not depend on whether this machine has a readable /var/log/mail.log.
"""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.followkit import ENV, Writer, users, wait_for

REPO = Path(__file__).resolve().parent.parent


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def test_demo_feeds_rows_reports_on_usr1_and_stops_cleanly(tmp_path: Path) -> None:
    var = tmp_path / "var"
    err = tmp_path / "run.err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "contrib/demo/run.py"), "--demo", "--var", str(var)],
            stdout=subprocess.DEVNULL,
            stderr=fh,
            env=ENV,
        )
    try:
        wait_for(lambda: re.search(r"mlsd pid (\d+)", err.read_text()), 30)
        match = re.search(r"mlsd pid (\d+)", err.read_text())
        assert match
        mlsd_pid = int(match.group(1))
        # Real corpus lines at a live pace: rows within seconds, with real attacker IPs.
        wait_for(lambda: len(_rows(var / "demo" / "mlsd.csv")) >= 3, 30)
        rows = _rows(var / "demo" / "mlsd.csv")
        assert all(r["ip"] and r["user"] for r in rows)

        subprocess.run(["kill", "-USR1", str(mlsd_pid)], check=True)
        reports = var / "demo" / "state" / "reports"
        wait_for(lambda: list(reports.glob("report-*-so-far.txt")), 30)
        text = next(reports.glob("report-*-so-far.txt")).read_text()
        assert "failed attempts" in text

        # Ctrl-C in a terminal reaches both processes (one process group).
        subprocess.run(["kill", "-INT", str(mlsd_pid)], check=True)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = err.read_text()
    assert "following a demo log" in out
    assert "stopped lines_read=" in out


def _run(var: Path, err: Path, *args: str, until: Callable[[], object]) -> str:
    """contrib/demo/run.py ARGS until `until()` holds, then Ctrl-C: its stderr (exit 0)."""
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "contrib/demo/run.py"), "--var", str(var), *args],
            stdout=subprocess.DEVNULL,
            stderr=fh,
            env=ENV,
        )
    try:
        wait_for(lambda: re.search(r"mlsd pid (\d+)", err.read_text()) or proc.poll(), 30)
        match = re.search(r"mlsd pid (\d+)", err.read_text())
        assert match, err.read_text()
        try:
            wait_for(until, 30)
        except AssertionError:
            raise AssertionError(err.read_text()[-3000:]) from None
        subprocess.run(["kill", "-INT", match.group(1)], check=True)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, err.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err.read_text()


def _users(path: Path) -> Counter[str]:
    return Counter(r["user"] for r in _rows(path))


def test_demo_then_real_then_demo_then_real(tmp_path: Path) -> None:
    """Demo, a real log, the demo again, the real log again: each run goes on from its own
    checkpoint into its own CSV (no "the checkpoint is for var/demo/mail.log"), and the
    user's edit to var/mlsd.conf survives every switch."""
    var = tmp_path / "var"
    real_log = tmp_path / "log" / "mail.log"
    real_log.parent.mkdir()
    demo_csv, real_csv = var / "demo" / "mlsd.csv", var / "mlsd.csv"

    _run(var, tmp_path / "1.err", "--demo", until=lambda: len(_rows(demo_csv)) >= 2)
    demo_rows = len(_rows(demo_csv))

    w = Writer(real_log)
    w.seq(range(5))
    first = users(range(5))
    log_arg = ("--log", str(real_log))
    out = _run(var, tmp_path / "2.err", *log_arg, until=lambda: _users(real_csv) == first)
    assert "following a demo log" not in out
    assert "the checkpoint is for" not in out

    conf = var / "mlsd.conf"
    edited = conf.read_text().replace("reconcile_interval = 2", "reconcile_interval = 3")
    edited += "# my own note\n"
    conf.write_text(edited)

    out = _run(var, tmp_path / "3.err", "--demo", until=lambda: len(_rows(demo_csv)) > demo_rows)
    assert "the checkpoint is for" not in out
    assert _users(real_csv) == users(range(5))
    assert conf.read_text() == edited

    w.seq(range(5, 9))
    # No LOG this time: var/mlsd.conf says which log, and it is readable.
    _run(var, tmp_path / "4.err", until=lambda: _users(real_csv) == users(range(9)))
    assert _users(real_csv) == users(range(9))  # nothing twice, nothing lost
    assert conf.read_text() == edited
    assert not any(r["user"].startswith("seq") for r in _rows(demo_csv))


def test_log_other_than_the_configs_is_refused_not_rewritten(tmp_path: Path) -> None:
    """LOG=another path while var/mlsd.conf follows one: one sentence, exit status != 0,
    the file untouched (it may hold the user's edits)."""
    var = tmp_path / "var"
    var.mkdir()
    first, other = tmp_path / "a.log", tmp_path / "b.log"
    first.touch()
    other.touch()
    conf = var / "mlsd.conf"
    conf.write_text(f"[paths]\nmail_log = {first}\nstate_dir = {var / 'state'}\n# mine\n")
    before = conf.read_text()
    res = subprocess.run(
        [sys.executable, str(REPO / "contrib/demo/run.py"), "--var", str(var), "--log", str(other)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert res.returncode != 0
    assert f"{conf} follows {first}, not LOG={other}" in res.stderr
    assert conf.read_text() == before
