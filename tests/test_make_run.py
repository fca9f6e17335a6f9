"""`make run`'s demo mode: rows appear within seconds, SIGUSR1 makes a report, Ctrl-C stops.

Runs contrib/demo/run.py (what `make run` calls) with --demo, so the result does not
depend on whether this machine has a readable /var/log/mail.log.
"""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.followkit import ENV, wait_for

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
        wait_for(lambda: len(_rows(var / "mlsd.csv")) >= 3, 30)
        rows = _rows(var / "mlsd.csv")
        assert all(r["ip"] and r["user"] for r in rows)

        subprocess.run(["kill", "-USR1", str(mlsd_pid)], check=True)
        reports = var / "state" / "reports"
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
