"""Three `mlsd run` daemons, real subprocesses, shipping to one PostgreSQL through outages.

Each node has its own log, CSV, state and PostgreSQL role (row-level security: its rows
only). While the logs grow, connections are killed, PostgreSQL is restarted and one daemon
is `kill -9`'d and started again: at the end the fleet table equals the union of the three
CSVs, row for row, and no daemon ever logged the password.
"""

from __future__ import annotations

import base64
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fleetkit import (
    PASSWORD,
    Fleet,
    migrated_fleet,  # noqa: F401 - the `fleet` fixture
    recounted,
    totals,
)
from tests.followkit import Env, Writer, kill9, wait_for
from tests.storekit import csv_rows

pytestmark = pytest.mark.timeout(240)


def node_env(fleet: Fleet, root: Path, name: str) -> Env:
    root.mkdir()
    env = Env(root)
    pw = root / "fleet.pass"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    env.extra = (
        f"[fleet]\nurl = {fleet.db.cluster.url(name, fleet.db.name)}\nnode = {name}\n"
        f"password_file = {pw}\n"
    )
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    return env


def expected(envs: dict[str, Env]) -> Counter[tuple[object, ...]]:
    union: Counter[tuple[object, ...]] = Counter()
    for name, env in envs.items():
        if env.csv.exists():
            union += Counter((name, *r) for r in csv_rows(env.csv))
    return union


def kill_connections(fleet: Fleet) -> None:
    fleet.db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mlsd'"
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_three_daemons_fill_the_fleet_table_exactly_once(
    fleet: Fleet, tmp_path: Path, seed: int
) -> None:
    """The union of three CSVs, through connection kills, a PostgreSQL restart and a
    `kill -9` of a daemon, at seeded random points while the logs grow."""
    rnd = random.Random(seed)
    names = ["mx1", "mx2", "imap1"]
    for name in names:
        fleet.add_node(name)
    envs = {name: node_env(fleet, tmp_path / name, name) for name in names}
    writers = {name: Writer(env.log) for name, env in envs.items()}
    procs = {name: env.start() for name, env in envs.items()}
    # Every kind of trouble once, in a seeded order, with a seeded pause before each.
    trouble = ["kill", "restart", "kill9", "kill", "none", "kill9"]
    rnd.shuffle(trouble)
    seq = 0
    try:
        for what in trouble:
            for w in writers.values():
                w.seq(range(seq, seq + 40))
                seq += 40
            time.sleep(rnd.uniform(0.0, 0.5))
            if what == "kill":
                kill_connections(fleet)
            elif what == "restart":
                fleet.db.cluster.restart()
            elif what == "kill9":
                victim = rnd.choice(names)
                kill9(procs[victim])
                procs[victim] = envs[victim].start()
        want_rows = 6 * 40
        deadline = time.monotonic() + 60
        while True:
            want = expected(envs)
            got = fleet.events()
            complete = all(len(csv_rows(e.csv)) == want_rows for e in envs.values())
            if (want == got and complete) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert want == got
        assert recounted(fleet.db) == totals(fleet.db)  # the day totals, exactly once too
        assert dict.fromkeys(names, want_rows) == {
            n: sum(1 for k in got.elements() if k[0] == n) for n in names
        }
        status = subprocess.run(
            envs["mx1"].cmd("status"), capture_output=True, text=True, timeout=60, check=False
        )
        target = f"mx1@127.0.0.1:{fleet.db.cluster.port}/{fleet.db.name} as mx1"
        assert f"  fleet         {target}: up to date\n" in status.stdout
        assert PASSWORD not in status.stdout + status.stderr
        for name, env in envs.items():
            assert 0 == env.stop(procs[name], signal.SIGTERM)
    finally:
        for w in writers.values():
            w.close()
        for env in envs.values():
            env.cleanup()
    for env in envs.values():
        err = env.all_stderr()
        assert PASSWORD not in err
        assert "fleet shipping" in err


def test_status_says_when_the_fleet_cannot_be_reached(tmp_path: Path) -> None:
    """`mlsd status` with PostgreSQL down: the fleet line says so, within its timeout."""
    env = Env(tmp_path)
    env.extra = "[fleet]\nurl = postgresql://mx1@127.0.0.1:1/mlsd\nnode = mx1\n"
    env.write_conf({})
    w = Writer(env.log)
    w.seq(range(3))
    w.close()
    env.scan()
    started = time.monotonic()
    out = subprocess.run(
        env.cmd("status"), capture_output=True, text=True, timeout=60, check=False
    ).stdout
    assert "  fleet         mx1@127.0.0.1:1/mlsd as mx1: cannot reach it (" in out
    assert time.monotonic() - started < 30


def test_a_fixed_password_file_is_used_after_sighup(fleet: Fleet, tmp_path: Path) -> None:
    """A wrong password: following goes on, the fleet waits; the file fixed and SIGHUP sent,
    the next connection uses the new password and the rows go in. Neither password is ever
    logged, plain or in base64."""
    fleet.add_node("mx7")
    env = node_env(fleet, tmp_path / "mx7", "mx7")
    wrong = "Wr0ng-fleet-pw-77"
    (tmp_path / "mx7" / "fleet.pass").write_text(wrong + "\n")
    w = Writer(env.log)
    proc = env.start()
    try:
        w.seq(range(30))
        wait_for(
            lambda: "sink=fleet" in env.stderr(proc) and "store unavailable" in env.stderr(proc)
        )
        wait_for(lambda: len(csv_rows(env.csv)) == 30)  # following did not wait
        assert 0 == sum(fleet.events().values())
        (tmp_path / "mx7" / "fleet.pass").write_text(PASSWORD + "\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in env.stderr(proc))
        w.seq(range(30, 40))
        wait_for(lambda: expected({"mx7": env}) == fleet.events(), timeout=90)
        assert 40 == sum(fleet.events().values())
        assert 0 == env.stop(proc)
    finally:
        w.close()
        env.cleanup()
    err = env.all_stderr()
    for secret in (PASSWORD, wrong):
        assert secret not in err
        assert base64.b64encode(secret.encode()).decode() not in err


def test_the_fleet_goes_on_after_mlsd_reset(fleet: Fleet, tmp_path: Path) -> None:
    """Rows the fleet could not take (a wrong password) wait in the CSV; `mlsd reset` moves
    that CSV aside. Restarted with the right password, the daemon ships the archived CSV's
    committed rest, then the new CSV: the fleet holds both, once each (before: it stopped
    with a conflict until the owner deleted the node's position)."""
    fleet.add_node("mx8")
    env = node_env(fleet, tmp_path / "mx8", "mx8")
    secret = tmp_path / "mx8" / "fleet.pass"
    w = Writer(env.log)
    try:
        proc = env.start()
        w.seq(range(20))
        wait_for(lambda: expected({"mx8": env}) == fleet.events() and fleet.events())
        secret.write_text("Wr0ng-fleet-pw-88\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in env.stderr(proc))
        kill_connections(fleet)  # the next connection uses the wrong password
        w.seq(range(20, 35))
        wait_for(lambda: len(csv_rows(env.csv)) == 35)
        assert 0 == env.stop(proc)
        assert sum(fleet.events().values()) < 35
        res = subprocess.run(
            env.cmd("reset", "--yes"), capture_output=True, text=True, timeout=60, check=False
        )
        assert res.returncode == 0, res.stderr
        (archive,) = env.state.glob("archive-*")
        archived = Counter(("mx8", *r) for r in csv_rows(archive / "mlsd.csv"))
        assert sum(archived.values()) == 35
        secret.write_text(PASSWORD + "\n")
        proc = env.start()
        w.seq(range(35, 40))
        wait_for(lambda: archived + expected({"mx8": env}) == fleet.events(), timeout=90)
        assert "shipping on after mlsd reset" in env.stderr(proc)
        assert 0 == env.stop(proc)
    finally:
        w.close()
        env.cleanup()
