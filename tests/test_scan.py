"""`mlsd scan` as the operator runs it: exit codes, the summary line, and a shared state
with `mlsd run` (the same code path, so either can take over from the other)."""

from __future__ import annotations

from pathlib import Path

from tests.followkit import Env, Writer, users


def test_scan_then_run_then_scan(tmp_path: Path) -> None:
    """scan, run, scan over one log: every line once, whichever command read it."""
    env = Env(tmp_path)
    w = Writer(env.log)
    w.seq(range(10))
    res = env.scan()
    assert "stopped lines_read=20 events_written=10 skipped=0 gaps=0 rotations=0" in res.stderr
    proc = env.start()
    w.seq(range(10, 20))
    env.wait_rows(users(range(20)))
    assert env.stop(proc) == 0
    w.seq(range(20, 25))
    env.scan()
    assert users(range(25)) == env.rows()
    env.cleanup()


def test_scan_bad_config_exits_2(tmp_path: Path) -> None:
    """A bad [follow] value is a usage error naming the key, before any state is touched."""
    env = Env(tmp_path, start_at="middle")
    res = env.scan(check=False)
    assert res.returncode == 2
    assert "[follow] start_at = 'middle'" in res.stderr
    assert not env.state.exists()
