"""`mlsd run` following a real, growing journal: exactly once through kills and restarts.

A systemd-journal-remote fed through a pipe writes the journal file as journald would, and
journalctl (mlsd's child) follows it. mlsd is killed with SIGKILL at arbitrary points
while entries keep coming, its journalctl is killed under it, and the journal is made
unreadable: each time the CSV must hold every failure exactly once, or mlsd must say
why it cannot.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.followkit import kill9, users, wait_for
from tests.journalkit import JournalEnv, needs_journal
from tests.test_access import GID, SETPRIV, UID, as_root
from tests.test_service import NotifySocket

pytestmark = needs_journal


def test_run_follows_a_live_journal(tmp_path: Path) -> None:
    """Entries written while mlsd runs become rows, once; SIGTERM commits and says so."""
    env = JournalEnv(tmp_path)
    feed = env.journal.live()
    feed.seq(range(5))
    proc = env.start()
    env.wait_rows(users(range(5)))
    for i in range(5, 50, 5):
        feed.seq(range(i, i + 5))
        time.sleep(0.05)
    env.wait_rows(users(range(50)))
    assert env.stop(proc) == 0
    feed.close()
    err = env.stderr(proc)
    assert "resume=beginning" in err
    assert "stopped lines_read=100 events_written=50 skipped=0 gaps=0 restarts=0" in err
    env.cleanup()


def test_kill9_at_arbitrary_points_with_entries_written_while_down(tmp_path: Path) -> None:
    """SIGKILL while entries arrive, more entries while mlsd is down, a restart: after
    several rounds every failure is in the CSV exactly once, and no gap is said."""
    env = JournalEnv(tmp_path)
    feed = env.journal.live()
    rnd = random.Random(18)
    n = 0
    for _ in range(4):
        proc = env.start()
        for _ in range(rnd.randint(3, 8)):
            feed.seq(range(n, n + 10))
            n += 10
            time.sleep(rnd.uniform(0.0, 0.08))
        time.sleep(rnd.uniform(0.0, 0.3))
        kill9(proc)
        feed.seq(range(n, n + 7))  # while down
        n += 7
    proc = env.start()
    env.wait_rows(users(range(n)))
    time.sleep(0.5)  # nothing more arrives late
    assert env.rows() == users(range(n))
    assert env.stop(proc) == 0
    feed.close()
    assert "gap journal" not in env.all_stderr()
    env.cleanup()


def test_entries_of_earlier_boots_are_read_on_a_first_start_and_after_a_reboot(
    tmp_path: Path,
) -> None:
    """journalctl 252 `--follow` shows only the latest boot unless `--merge`: a first start
    from the beginning read only the last boot's entries (silently), and a restart whose
    cursor was in the boot before a reboot lost that boot's rest (said as a vacuum gap).
    Here: boot A's entries, a first start, A's later entries while mlsd is down, then
    boot B's; every failure once, no gap."""
    env = JournalEnv(tmp_path)
    j = env.journal

    def boot(boot_id: str, seqs: range) -> None:
        j.write([{**e, "_BOOT_ID": boot_id} for e in j.seq_entries(seqs)])

    boot("a" * 32, range(0, 5))
    boot("b" * 32, range(5, 8))  # a second boot already in the journal at the first start
    proc = env.start()
    env.wait_rows(users(range(8)))
    assert env.stop(proc) == 0
    boot("b" * 32, range(8, 12))  # the rest of boot b, while mlsd is down
    boot("c" * 32, range(12, 15))  # then a reboot
    proc = env.start()
    env.wait_rows(users(range(15)))
    time.sleep(0.3)  # nothing more arrives late
    assert env.rows() == users(range(15))
    assert env.stop(proc) == 0
    assert "gap journal" not in env.all_stderr()
    env.cleanup()


def _journalctl_pids(err: str) -> list[int]:
    return [int(p) for p in re.findall(r"journalctl started pid=(\d+)", err)]


def test_journalctl_killed_under_mlsd_is_started_again(tmp_path: Path) -> None:
    """journalctl dies (SIGKILL): mlsd says so, starts it again from the last committed
    entry, and nothing is lost or read twice."""
    env = JournalEnv(tmp_path)
    feed = env.journal.live()
    feed.seq(range(10))
    proc = env.start()
    env.wait_rows(users(range(10)))
    wait_for(lambda: _journalctl_pids(env.stderr(proc)))
    first = _journalctl_pids(env.stderr(proc))[0]
    os.kill(first, signal.SIGKILL)
    feed.seq(range(10, 20))  # while journalctl is down (or being started again)
    wait_for(lambda: len(_journalctl_pids(env.stderr(proc))) >= 2, 20)
    feed.seq(range(20, 30))
    env.wait_rows(users(range(30)))
    time.sleep(0.5)
    assert env.rows() == users(range(30))
    err = env.stderr(proc)
    assert 'journalctl exited how="killed by SIGKILL" restart_in_s=0.5' in err, err
    assert "gap journal" not in err
    assert env.stop(proc) == 0
    assert "gaps=0 restarts=1" in env.stderr(proc)
    feed.close()
    env.cleanup()


# ---- a journal mlsd cannot read


class NobodyEnv(JournalEnv):
    """mlsd as nobody (group nogroup only), as the shipped unit runs it without its groups."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        for d in (self.state, self.csv.parent):
            d.mkdir(mode=0o750)
            os.chown(d, UID, GID)

    def cmd(self, *args: str) -> list[str]:
        """`mlsd ARGS -c CONF` as nobody."""
        drop = [SETPRIV, f"--reuid={UID}", f"--regid={GID}", "--clear-groups"]
        return [*drop, *super().cmd(*args)]


@pytest.fixture
def nobody() -> Iterator[NobodyEnv]:
    root = Path(tempfile.mkdtemp(prefix="mlsd-journal-"))
    root.chmod(0o755)
    env = NobodyEnv(root)
    yield env
    env.cleanup()
    shutil.rmtree(root)


def _lock(env: JournalEnv) -> None:
    """The journal as journald leaves it for those outside its groups: root's, 0700/0640."""
    env.journal.seq(range(3))
    env.journal.dir.chmod(0o700)


def _unlock(env: JournalEnv) -> None:
    env.journal.dir.chmod(0o755)
    for f in env.journal.files():
        f.chmod(0o644)


@as_root
def test_scan_of_a_journal_it_cannot_read_fails_with_the_fix(nobody: NobodyEnv) -> None:
    """Not a scan that exits 0 having read nothing: an error naming cause and fix."""
    _lock(nobody)
    res = nobody.scan(check=False)
    assert res.returncode != 0, res.stderr
    assert (
        f"journalctl cannot read the journal files in {nobody.journal.dir} "
        "(Failed to open" in res.stderr
    ), res.stderr
    assert "make the directory and its files readable by the user mlsd runs as" in res.stderr
    assert nobody.rows() == users(())
    _unlock(nobody)
    nobody.scan()
    assert nobody.rows() == users(range(3))


@as_root
def test_run_says_it_cannot_read_the_journal_and_reads_it_once_fixed(nobody: NobodyEnv) -> None:
    """READY=1 with STATUS= saying why and an error in the log, never "following"; once
    the permissions are fixed, journalctl (started again with backoff) reads it all."""
    _lock(nobody)
    ns = NotifySocket(nobody.root / "notify.sock")
    ns.path.chmod(0o666)
    try:
        proc = nobody.start(env={"NOTIFY_SOCKET": str(ns.path)})
        wait_for(lambda: ns.with_key("READY"), 30)
        wait_for(
            lambda: 'cannot read the journal problem="journalctl cannot read' in nobody.stderr(proc)
        )
        err = nobody.stderr(proc)
        assert "[error" in err
        wait_for(lambda: any("cannot read the journal" in s for s in ns.statuses()), 30)
        assert not any(s.startswith("following") for s in ns.statuses()), ns.statuses()
        assert nobody.rows() == users(())
        _unlock(nobody)
        nobody.wait_rows(users(range(3)), timeout=45)
        wait_for(lambda: any(s.startswith("following the journal") for s in ns.statuses()), 30)
        assert "journal readable again" in nobody.stderr(proc)
        assert nobody.stop(proc) == 0
    finally:
        ns.close()


def test_a_reload_keeps_the_source_and_says_so(tmp_path: Path) -> None:
    """SIGHUP with another [source] journal_match: the running reader keeps its own (a
    restart applies it), the log says so, and reading goes on."""
    env = JournalEnv(tmp_path)
    feed = env.journal.live()
    feed.seq(range(3))
    proc = env.start()
    env.wait_rows(users(range(3)))
    env.match = "SYSLOG_IDENTIFIER=dovecot"  # would select none of these entries
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "[source] journal_match changed" in env.stderr(proc))
    assert "needs a restart (systemctl restart mlsd)" in env.stderr(proc)
    feed.seq(range(3, 6))
    env.wait_rows(users(range(6)))
    assert env.stop(proc) == 0
    feed.close()
    env.cleanup()
