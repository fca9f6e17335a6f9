"""Tests for the helpers of the bench_*.py benchmarks: `.venv/bin/pytest bench`.

What the benchmarks' numbers and checks rely on (configs mlsd accepts, lines the parser
reads as intended, the statistics, the /proc parsing, the silent resolver), never timing.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import bench_enrich as be
import bench_follow as bf
import bench_journal as bj
import pytest
from registry import Context

from mlsd.config import load
from mlsd.enrich.postfix import postfix_reverse
from mlsd.ingest.grammar import parse_line
from mlsd.rows import AuthFailure

REF = datetime(2026, 11, 26, tzinfo=UTC)


def test_write_config_is_one_mlsd_accepts(tmp_path: Path) -> None:
    conf = bf.write_config(
        tmp_path / "mlsd.conf",
        log=tmp_path / "mail.log",
        csv=tmp_path / "out.csv",
        state=tmp_path / "state",
        reverse="lookup",
        servers=("127.0.0.1:5353",),
        start_at="end",
        extra={"follow": {"reconcile_interval": "2.5"}},
    )
    cfg = load(conf)
    assert cfg.paths.mail_log == tmp_path / "mail.log"
    assert cfg.paths.state_dir == tmp_path / "state"
    assert cfg.dns.reverse == "lookup"
    assert cfg.dns.servers == ("127.0.0.1:5353",)
    assert cfg.follow.start_at == "end"
    assert cfg.follow.reconcile_interval == 2.5
    # Without databases the paths point at files that do not exist: N/A, no /var/lib/GeoIP.
    assert not cfg.geoip.country_db.exists()
    assert cfg.geoip.country_db.parent == tmp_path


def test_write_config_with_the_test_databases(tmp_path: Path) -> None:
    dbs = bf.geoip_dbs()
    if dbs is None:
        pytest.skip("no GeoIP test databases here")
    assert all(p.is_file() for p in dbs)
    cfg = load(
        bf.write_config(
            tmp_path / "c.conf", log=tmp_path / "l", csv=tmp_path / "c", state=tmp_path, geoip=dbs
        )
    )
    assert (cfg.geoip.country_db, cfg.geoip.asn_db) == dbs
    assert cfg.dns.reverse == "off"


def test_percentile_and_slope() -> None:
    assert bf.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert bf.percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert bf.percentile([5.0], 99) == 5.0
    assert bf.percentile([], 50) != bf.percentile([], 50)  # NaN
    assert bf.slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert bf.slope([1, 1], [0, 5]) == 0.0
    assert bf.slope([1], [1]) == 0.0


def test_lag_summary_tells_growth_from_noise() -> None:
    steady = [(t / 100, 1.0 + (t % 3)) for t in range(1000)]
    s = bf.lag_summary(steady)
    assert s["p50_ms"] == 2.0
    assert s["first_s_p50_ms"] == s["last_s_p50_ms"] == 2.0
    assert not bf.lag_grew(s)
    growing = [(t / 100, t * 1.0) for t in range(1000)]  # 1 ms more per 10 ms written
    g = bf.lag_summary(growing)
    assert g["first_s_p50_ms"] < 100 < g["last_s_p50_ms"]
    assert g["trend_ms_per_s"] == pytest.approx(100.0)
    assert bf.lag_grew(g)
    assert bf.lag_summary([]) == {}


def test_live_result_delays_are_per_seen_user() -> None:
    res = bf.LiveResult(
        written={"u1": 10.0, "u2": 10.5, "u3": 11.0},
        seen={"u1": 10.002, "u2": 10.51},
        lines=3,
        write_seconds=1.0,
    )
    got = res.delays_ms()
    assert [t for t, _ in got] == [0.0, 0.5]
    assert [round(d, 3) for _, d in got] == [2.0, 10.0]


def test_parse_stat_times_survives_odd_command_names() -> None:
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 30]
    text = "1234 (a) (b c) " + " ".join(fields) + "\n"
    assert bf.parse_stat_times(text, 100) == (2.5, 0.5)


def test_proc_readers_on_this_process() -> None:
    user, system = bf.proc_times(os.getpid())
    assert user >= 0 and system >= 0
    cpu, switches = bf.proc_sched(os.getpid())
    assert cpu > 0 and switches >= 0


def test_live_lines_parse_as_intended() -> None:
    stamp = bf.rfc3339_now()
    # Live lines are stamped now: read against now, as the daemon reads the live log (a
    # stamp more than a day after the reference is an implausible time).
    ev = parse_line(bf.failure_line(123456, stamp), datetime.now(UTC), UTC)
    assert isinstance(ev, AuthFailure)
    assert ev.user == "u123456"
    assert ev.ip == "198.18.226.64"
    # Ordinary traffic: not even a candidate line.
    assert parse_line(bf.noise_line(7, stamp), REF, UTC) is None


def test_parse_rows_takes_complete_lines_only() -> None:
    assert bf.parse_rows(b"h;d;ip;user;x\nmail;d;1.2.3.4;u1;h\nmail;d;1.2.3.4;u2") == [
        "user",
        "u1",
    ]


def test_write_live_writes_what_it_says(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    written, lines, _ = bf.write_live(log, 2000, 4, 0.05)
    assert lines == 100
    data = log.read_bytes().splitlines(keepends=True)
    assert len(data) == 100
    now = datetime.now(UTC)
    users = [e.user for e in (parse_line(x, now, UTC) for x in data) if isinstance(e, AuthFailure)]
    assert users == [f"u{i:06d}" for i in range(25)]
    assert set(written) == set(users)


def test_csv_tail_sees_rows_as_they_are_appended(tmp_path: Path) -> None:
    csv = tmp_path / "out.csv"
    tail = bf.CsvTail(csv)
    tail.start()
    try:
        csv.write_bytes(b"server;date;ip;user\n")
        with csv.open("ab", buffering=0) as f:
            f.write(b"mail;d;1.2.3.4;u000001;h\nmail;d;1.2.3.4;u0000")
            f.write(b"02;h\nmail;d;1.2.3.4;u000001;h\n")
        assert bf._wait_for(lambda: tail.users["u000001"] == 2, 10)
    finally:
        tail.stop.set()
        tail.join()
    assert tail.users == Counter({"user": 1, "u000001": 2, "u000002": 1})
    assert set(tail.seen) == {"user", "u000001", "u000002"}


def test_dead_log_has_the_distinct_ips_and_users(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    want = be.write_dead_log(log, ips=300, per_ip=2, noise=2)
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 600 * 3
    events = [e for e in (parse_line(x, REF, UTC) for x in lines) if isinstance(e, AuthFailure)]
    assert Counter(e.user for e in events) == want
    assert sum(want.values()) == 600
    ips = Counter(e.ip for e in events)
    assert len(ips) == 300 and set(ips.values()) == {2}
    assert be.dead_ip(258) == "198.18.1.2"


def test_run_pipeline_writes_every_row(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    want = be.write_dead_log(log, ips=50, per_ip=3, noise=5)
    run = be.run_pipeline(log, tmp_path / "work", postfix_reverse)
    assert run.rows == 150
    assert run.lines == 150 * 6
    assert bf.csv_users(tmp_path / "work/out.csv") == want


def test_silent_resolver_takes_queries_and_answers_none() -> None:
    with be.SilentResolver() as dns:
        host, port = dns.server.split(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(0.2)
            c.sendto(b"\x12\x34query", (host, int(port)))
            assert bf._wait_for(lambda: dns.queries == 1, 10)
            with pytest.raises(TimeoutError):
                c.recvfrom(512)
    assert dns.sock.fileno() == -1  # closed on exit, the drain thread joined


@pytest.mark.skipif(
    not os.access(bj.JOURNAL_REMOTE, os.X_OK) and not os.environ.get("CI"),
    reason="needs systemd-journal-remote (CI installs it; there this never skips)",
)
def test_journal_benchmarks_run_and_check(tmp_path: Path) -> None:
    """The journal is made once from the log (one entry per line), the scan's rows are the
    generator's failures, and the ratio to the journalctl floor is reported."""
    import run  # noqa: PLC0415 - the runner script registers every benchmark on import

    out = tmp_path / "out"
    rc = run.main(["--lines", "3000", "--out", str(out), "--repeat", "1",
                   "--only", "journal-floor", "--only", "journal-scan"])  # fmt: skip
    res = json.loads((out / "results.json").read_text())["results"]
    assert rc == 0, res
    assert res["journal-floor"]["check"] == "ok"
    assert res["journal-scan"]["check"] == "ok"
    assert res["journal-scan"]["events"] > 0
    assert "journalctl -o json" in res["journal-scan"]["summary"]
    # Made once: a second look reuses it.
    made = sorted(out.glob("*.journal/mail.journal"))
    assert len(made) == 1
    mtime = made[0].stat().st_mtime_ns
    ctx = Context(log=next(out.glob("mail-3000-*.log")), counts={"lines": 3000}, repeat=1, out=out)
    assert bj.journal_of(ctx) == (made[0].parent, 3000)
    assert made[0].stat().st_mtime_ns == mtime


@pytest.mark.skipif(
    not os.access(bj.JOURNAL_REMOTE, os.X_OK) and not os.environ.get("CI"),
    reason="needs systemd-journal-remote (CI installs it; there this never skips)",
)
def test_journal_live_benchmark_runs_and_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """One second at 1,000 entries/s: every entry a row once, the delay measured."""
    monkeypatch.setenv("MLSD_BENCH_LIVE_S", "1")
    ctx = Context(log=Path("/nonexistent"), counts={"lines": 0}, repeat=1, out=Path("/tmp"))
    m = bj.journal_live_1k(ctx)
    assert m["check"] == "ok", m
    assert m["events"] == 1000
    assert m["p99_ms"] > 0 and "p99 < 250 ms" in m["summary"]


def test_store_append_benchmark_runs_and_checks(tmp_path: Path) -> None:
    """Both arms scan the same rows, the store ends with every one of them, a rebuild rate
    and the ratio to the scan without the store are reported."""
    import run  # noqa: PLC0415 - the runner script registers every benchmark on import

    out = tmp_path / "out"
    rc = run.main(["--lines", "3000", "--out", str(out), "--repeat", "2",
                   "--only", "store-append"])  # fmt: skip
    res = json.loads((out / "results.json").read_text())["results"]["store-append"]
    assert rc == 0, res
    assert res["check"] == "ok", res
    assert res["events"] > 0
    assert res["stored"] == res["events"]
    assert len(res["runs"]) == len(res["floor_runs"]) == 2
    assert res["store_rows_per_s"] > 0
    assert "the scan without the store" in res["summary"]
    assert not list(out.glob("store-append-*"))  # its work directories are gone


def test_store_scan_arms_write_the_same_rows(tmp_path: Path) -> None:
    """The plain arm has no store; the store arm's store holds exactly the CSV's rows."""
    import bench_store as bs  # noqa: PLC0415

    log = tmp_path / "mail.log"
    want = be.write_dead_log(log, ips=40, per_ip=2, noise=3)
    plain = bs.run_scan(log, tmp_path / "plain", store=False)
    stored = bs.run_scan(log, tmp_path / "store", store=True)
    assert plain.rows == stored.rows == stored.stored == sum(want.values()) == 80
    assert plain.stored == -1 and not (tmp_path / "plain/events.sqlite3").exists()
    assert bf.csv_users(tmp_path / "store/out.csv") == want
    seconds, rows = bs.rebuild_rate(tmp_path / "store/out.csv", tmp_path / "again.sqlite3")
    assert rows == 80 and seconds > 0


def test_the_live_drain_waits_for_every_written_row_not_a_count() -> None:
    """The tail also sees the header's `user`: one row short must still be short."""
    written = {"u000001": 1.0, "u000002": 1.0}
    assert not bf.all_seen(written, {"user": 0.5, "u000001": 1.1})
    assert bf.all_seen(written, {"user": 0.5, "u000001": 1.1, "u000002": 1.2})
