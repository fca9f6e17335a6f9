"""Issue 21, continued: the progress line (`scan` of a backlog and `parse` of big files
show bytes read, rate and time left on a terminal, a real pty, and nothing elsewhere), and
status's "cannot tell" for a lock it cannot look at."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tqdm import tqdm

from mlsd import config
from mlsd.app import status
from tests.followkit import ENV, Env, Writer, now_line, wait_for
from tests.journalkit import JournalEnv
from tests.test_access import GID, SETPRIV, UID

# Every update drawn (tqdm reads its defaults from TQDM_* variables): a fast run in a test
# still shows its percentages.
PTY_ENV = {**ENV, "TQDM_MININTERVAL": "0"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """An installation logging at INFO (the started/scan lines), cut in UTC."""
    e = Env(tmp_path)
    e.extra = "[report]\ntimezone = UTC\n"
    e.write_conf({})
    e.conf.write_text(e.conf.read_text().replace("level = DEBUG", "level = INFO"))
    yield e
    e.cleanup()


def backlog(path: Path, tag: str, n: int) -> bytes:
    """`n` lines, one in 20 a failed login of user `tag<i>`; distinct from other tags."""
    out = []
    for i in range(n):
        stamp = f"Nov 25 05:{i // 3600 % 60:02d}:{i % 60:02d} mx"
        if i % 20 == 0:
            out.append(
                f"{stamp} postfix/smtpd[1]: warning: unknown[192.0.2.{i % 250 + 1}]: SASL "
                f"LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={tag}{i}\n"
            )
        else:
            out.append(f"{stamp} postfix/smtpd[1]: connect from unknown[192.0.2.7] {tag} {i}\n")
    data = "".join(out).encode()
    path.write_bytes(data)
    return data


def on_pty(argv: list[str], stdout: Path, *, rows_on_pty: bool = False) -> tuple[int, str]:
    """Run `argv` with stderr (and with `rows_on_pty` stdout too) on a 100-column pty;
    the exit status and everything the terminal got, escapes included."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(stdout, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=follower if rows_on_pty else out, stderr=follower, env=PTY_ENV
        )
    os.close(follower)
    got = b""
    while True:
        try:
            more = os.read(leader, 1 << 16)
        except OSError:  # EIO: the child closed its end
            break
        if not more:
            break
        got += more
    os.close(leader)
    return proc.wait(timeout=120), got.decode(errors="replace")


def screen_lines(term: str) -> list[str]:
    """What was drawn, one piece per carriage return or newline, colours removed."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", term)
    return [p for p in re.split(r"[\r\n]", plain) if p.strip()]


def test_parse_draws_progress_of_each_file_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, with rows going to a file: a line per file, total the size on disk
    (compressed for a .gz), cleared before the summary; the rows are the same as without."""
    plain = tmp_path / "mail.log"
    data = backlog(plain, "p", 40_000)
    packed = tmp_path / "mail.log.1.gz"
    packed.write_bytes(gzip.compress(data))
    argv = [sys.executable, "-m", "mlsd", "parse", str(plain), str(packed)]
    code, term = on_pty(argv, tmp_path / "rows.csv")
    assert 0 == code, term
    drawn = screen_lines(term)
    for f in (plain, packed):
        size = tqdm.format_sizeof(f.stat().st_size, divisor=1024)
        shown = {
            int(m.group(1))
            for d in drawn
            if (m := re.match(rf"{re.escape(f.name)}:\s+(\d+)%\|.*/{re.escape(size)} ", d))
        }
        assert len(shown) > 1, (f, drawn)  # the total is right and the line moved
        assert f"mlsd: {f}: 40000 lines read, 2000 events" in drawn
    piped = subprocess.run(argv, capture_output=True, env=PTY_ENV, timeout=60, check=True)
    assert piped.stdout == (tmp_path / "rows.csv").read_bytes()
    assert b"%|" not in piped.stderr and b"\r" not in piped.stderr


def test_parse_draws_nothing_when_the_rows_go_to_the_same_terminal(tmp_path: Path) -> None:
    """Rows on the terminal too: no progress line to scroll away between them."""
    plain = tmp_path / "mail.log"
    backlog(plain, "p", 2_000)
    code, term = on_pty(
        [sys.executable, "-m", "mlsd", "parse", str(plain)], tmp_path / "x", rows_on_pty=True
    )
    assert 0 == code, term
    assert "%|" not in term and "B/s" not in term
    assert f"mlsd: {plain}: 2000 lines read, 100 events" in term


def test_scan_of_a_backlog_draws_progress_with_the_log_above_it(env: Env) -> None:
    """A backlog of a rotated .gz, a rotated file and the live log: the total is their
    sizes on disk, the line moves, and each log line is written above it, never into it."""
    old = env.logdir / "mail.log.2.gz"
    old.write_bytes(gzip.compress(backlog(env.root / "tmp.log", "a", 30_000)))
    backlog(env.logdir / "mail.log.1", "b", 30_000)
    backlog(env.log, "c", 30_000)
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    os.utime(env.logdir / "mail.log.1", (now - 3600, now - 3600))
    total = sum(f.stat().st_size for f in (old, env.logdir / "mail.log.1", env.log))

    code, term = on_pty(env.cmd("scan"), env.root / "out.txt")
    assert 0 == code, term
    drawn = screen_lines(term)
    bars = [d for d in drawn if d.startswith("scan:")]
    shown_total = tqdm.format_sizeof(total, divisor=1024)
    assert any(f"/{shown_total} " in b for b in bars), bars
    percents = {int(m.group(1)) for b in bars if (m := re.match(r"scan:\s+(\d+)%\|", b))}
    assert len(percents) > 1, bars  # it moved
    logged = [d for d in drawn if "[info" in d or "[warning" in d]
    assert any("scan done" in d for d in logged), drawn
    assert all(not d.startswith("scan:") and "%|" not in d for d in logged), logged
    assert 4500 == env.csv.read_bytes().count(b"\n") - 1  # every row, the header aside


def test_scan_without_a_terminal_draws_nothing(env: Env) -> None:
    """stderr to a pipe (a cron job, a unit): the log lines, no progress."""
    backlog(env.log, "c", 5_000)
    res = env.scan()
    assert "scan done" in res.stderr
    assert "%|" not in res.stderr and "\r" not in res.stderr and "B/s" not in res.stderr


# ---- status: a lock that cannot be looked at is "cannot tell", not "not running"


def test_status_with_a_lock_it_cannot_stat_says_cannot_tell(tmp_path: Path) -> None:
    """The state directory is readable but its lock cannot be looked at (here a symlink
    loop, ELOOP): whether a daemon holds it is unknown, so status says "cannot tell" with
    the reason and never "not running"."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "mlsd.lock").symlink_to(state / "mlsd.lock")
    cfg = config.loads(
        f"[paths]\nstate_dir = {state}\ncsv = {tmp_path / 'x.csv'}\n", tmp_path / "c.conf"
    )
    st = status.gather(cfg, datetime.now(UTC))
    assert st.running is None
    assert st.running_unknown.startswith(f"too many levels of symbolic links on {state}")
    assert not any("not running" in p for p in st.problems), st.problems
    assert any(p.startswith("cannot tell whether mlsd runs: ") for p in st.problems)


def test_status_as_another_user_says_which_figures_it_cannot_read() -> None:
    """As nobody, a root daemon's state directory may be searchable while its files are
    not: the daemon is shown running, and the position, the day's events and the gaps
    are "not known" with the file it could not read, never "not started", 0 or "none"."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run status as another user")
    root = Path(tempfile.mkdtemp(prefix="mlsd-frictions-"))  # pytest's tmp is root's only
    root.chmod(0o755)
    e = Env(root)
    e.extra = "[report]\ntimezone = UTC\n"
    e.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    Writer(e.log).write(now_line("u0"))
    proc = e.start()
    try:
        e.wait_rows(Counter(["u0"]))
        wait_for((e.state / "coverage.json").exists, 20)
        for path in (e.state, e.csv.parent):
            path.chmod(0o755)
        e.conf.chmod(0o644)
        for path in (e.state / "checkpoint.json", e.state / "coverage.json", e.csv):
            path.chmod(0o600)
        as_nobody = [SETPRIV, f"--reuid={UID}", f"--regid={GID}", "--clear-groups"]
        res = subprocess.run(
            [*as_nobody, *e.cmd("status")],
            capture_output=True,
            text=True,
            cwd="/",
            env=ENV,
            check=False,
        )
        assert 1 == res.returncode, res.stderr
        assert f"daemon        running, pid {proc.pid}" in res.stdout
        assert f"log           {e.log}: not known (cannot read the checkpoint)" in res.stdout
        assert "last event    not known (cannot read the CSV)" in res.stdout
        assert "events today  not known (cannot read the CSV)" in res.stdout
        assert "gaps          not known (cannot read coverage.json)" in res.stdout
        as_json = subprocess.run(
            [*as_nobody, *e.cmd("status", "--json")],
            capture_output=True,
            cwd="/",
            env=ENV,
            check=False,
        )
        st = json.loads(as_json.stdout)
        assert (None, ["checkpoint", "csv", "coverage.json"]) == (
            st["events_today"],
            st["cannot_read"],
        )
    finally:
        assert e.stop(proc) == 0
        e.cleanup()
        shutil.rmtree(root)


# ---- store rebuild: progress on a terminal


def test_store_rebuild_draws_progress_on_a_terminal(env: Env) -> None:
    """`mlsd store rebuild` of a backlog the CSV holds: a moving line whose total is the
    CSV's committed bytes, then the summary on stdout; without a terminal, no line."""
    backlog(env.log, "c", 60_000)
    env.scan()  # the CSV and its checkpoint; `scan` does not write the store
    committed = env.csv.stat().st_size
    rows = env.csv.read_bytes().count(b"\n") - 1  # the header aside
    assert rows > 1000
    code, term = on_pty(env.cmd("store", "rebuild"), env.root / "out.txt")
    assert 0 == code, term
    bars = [d for d in screen_lines(term) if d.startswith("store rebuild:")]
    shown_total = tqdm.format_sizeof(committed, divisor=1024)
    assert any(f"/{shown_total} " in b for b in bars), bars
    assert f"store rebuilt: {rows} rows" in (env.root / "out.txt").read_text()
    piped = subprocess.run(
        env.cmd("store", "rebuild"), capture_output=True, text=True, env=ENV, check=False
    )
    assert piped.returncode == 0, piped.stderr
    assert "%|" not in piped.stderr and "\r" not in piped.stderr


def test_scan_of_the_journal_draws_entries_and_rate_on_a_terminal(tmp_path: Path) -> None:
    """The journal has no size to measure: the line counts entries read and their rate,
    and each log line is written above it."""
    env = JournalEnv(tmp_path)
    env.journal.seq(range(20_000))
    code, term = on_pty(env.cmd("scan"), env.root / "out.txt")
    assert 0 == code, term
    drawn = screen_lines(term)
    bars = [d for d in drawn if d.startswith("scan journal:")]
    assert bars and any("entries/s" in b for b in bars), drawn
    logged = [d for d in drawn if "[info" in d]
    assert any("scan done" in d for d in logged), drawn
    assert all("entries/s" not in d for d in logged), logged
    assert 20_000 == env.csv.read_bytes().count(b"\n") - 1
