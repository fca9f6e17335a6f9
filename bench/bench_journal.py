"""The journal source at scale (issue 18): `mlsd scan` of a journal holding the bench log.

The bench log's lines become journal entries as Postfix and Dovecot log them there
(identifier, pid, host, MESSAGE; one entry per line, 50 µs apart, ending two days ago),
written once by systemd-journal-remote into a real journal (cached beside the log). The
floor is what any journal reader pays: `journalctl -o json` of the same journal to
/dev/null. The goal is a scan within 1.5x of it.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Final

from bench_follow import (
    LIVE_DRAIN_S,
    LIVE_SECONDS,
    CsvTail,
    Daemon,
    LiveResult,
    _wait_for,
    all_seen,
    count_rows,
    csv_users,
    lag_summary,
    run_child,
    write_config,
)
from registry import MLSD, Context, Metrics, benchmark, best_of, check, throughput

JOURNAL_REMOTE: Final = "/lib/systemd/systemd-journal-remote"
SPACING_US: Final = 50
BOOT_ID: Final = b"0123456789abcdef0123456789abcdef"
GOAL: Final = 1.5
"""A journal scan within this factor of the journalctl floor."""
_HEADER: Final = re.compile(
    rb"(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ]\S+|@[0-9a-f]{24})"
    rb" (?:([^\s:\[]+) )?([^\s\[:]+)(?:\[(\d+)\])?: (.*)"
)


def _field(name: bytes, value: bytes) -> bytes:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text.isprintable():  # also: not UTF-8
        return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return name + b"=" + value + b"\n"


def export_of(log: Path, out: IO[bytes], base_us: int) -> int:
    """Write the log's lines as journal entries (export format) to `out`; how many."""
    n = 0
    buf: list[bytes] = []
    with log.open("rb") as fh:
        for line in fh:
            m = _HEADER.fullmatch(line.rstrip(b"\n"))
            if m is None:
                continue
            host, prog, pid, msg = m.groups()
            unit = b"dovecot.service" if prog.startswith(b"dovecot") else b"postfix@-.service"
            realtime = base_us + n * SPACING_US
            buf.append(
                b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n"
                % (realtime, 1_000_000 + n * SPACING_US, BOOT_ID)
                + _field(b"_HOSTNAME", host or b"mail")
                + b"_SYSTEMD_UNIT=" + unit + b"\n"
                + _field(b"SYSLOG_IDENTIFIER", prog)
                + (b"SYSLOG_PID=" + pid + b"\n" if pid else b"")
                + _field(b"MESSAGE", msg)
                + b"\n"
            )  # fmt: skip
            n += 1
            if len(buf) >= 10_000:
                out.write(b"".join(buf))
                buf.clear()
    out.write(b"".join(buf))
    return n


def journal_of(ctx: Context) -> tuple[Path, int]:
    """The journal directory for the bench log (made once) and how many entries it holds."""
    d = ctx.out / f"{ctx.log.stem}.journal"
    done = d / "entries"
    if done.exists():
        return d, int(done.read_text())
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    base = time.time_ns() // 1000 - 2 * 86_400_000_000 - ctx.lines * SPACING_US
    proc = subprocess.Popen(
        [JOURNAL_REMOTE, f"--output={d / 'mail.journal'}", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    with proc.stdin:
        n = export_of(ctx.log, proc.stdin, base)
    if proc.wait() != 0:
        raise RuntimeError(f"systemd-journal-remote exited {proc.returncode}")
    done.write_text(f"{n}\n")
    return d, n


def _floor(d: Path, repeat: int) -> tuple[float, list[float]]:
    cmd = ["journalctl", f"--directory={d}", "--output=json", "--no-pager"]

    def once() -> int:
        return subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        ).returncode

    best, runs, code = best_of(repeat, once)
    if code != 0:
        raise RuntimeError(f"journalctl exited {code}")
    return best, runs


def _missing() -> Metrics | None:
    if not os.access(JOURNAL_REMOTE, os.X_OK) or shutil.which("journalctl") is None:
        return {"error": "needs systemd-journal-remote and journalctl (Debian: apt-get install "
                "systemd-journal-remote)"}  # fmt: skip
    return None


@benchmark("journal-floor", "`journalctl -o json` of the bench log's journal to /dev/null")
def journal_floor(ctx: Context) -> Metrics:
    """What any journal reader pays: journalctl decoding and writing every entry."""
    missing = _missing()
    if missing is not None:
        return missing
    d, n = journal_of(ctx)
    best, runs = _floor(d, ctx.repeat)
    return {**throughput(ctx, best, runs), "check": check(n, ctx.lines)}


@benchmark("journal-scan", "`mlsd scan` with [source] type = journal, fresh state each run")
def journal_scan(ctx: Context) -> Metrics:
    """The whole journal into the CSV, exactly once: journalctl, the grammar, fsyncs."""
    missing = _missing()
    if missing is not None:
        return missing
    d, n = journal_of(ctx)
    floor, _ = _floor(d, ctx.repeat)
    walls: list[float] = []
    rows = -1
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-journal-") as tmp:
        for i in range(max(ctx.repeat, 1)):
            run_dir = Path(tmp) / f"run{i}"
            run_dir.mkdir()
            conf = write_config(
                run_dir / "mlsd.conf",
                log=run_dir / "absent.log",
                csv=run_dir / "out.csv",
                state=run_dir / "state",
                reverse="postfix",
                extra={
                    "source": {"type": "journal", "journal_directory": str(d)},
                    "log": {"level": "WARNING"},
                },
            )
            res = run_child([str(MLSD), "scan", "-c", str(conf)])
            if res.code != 0:
                return {"error": f"`mlsd scan` exited {res.code}: {res.last_error()}"}
            walls.append(res.wall)
            rows = count_rows(run_dir / "out.csv")
    best = min(walls)
    ratio = best / max(floor, 1e-9)
    return {
        **throughput(ctx, best, walls),
        "events": rows,
        "check": check(rows, ctx.counts["auth_failures"]) if n == ctx.lines else "ok",
        "floor_s": floor,
        "vs_floor": ratio,
        "summary": f"{ratio:.2f}x journalctl -o json ({floor:.2f} s); goal <= {GOAL}x"
        + ("" if ratio <= GOAL else " — NOT MET"),
    }


# --- live -------------------------------------------------------------------------------

LIVE_P99_MS: Final = 250.0
"""Issue 18's bar: from a journal write to its CSV row, p99 under this at 1,000 entries/s."""


def failure_entry(seq: int) -> bytes:
    """A Postfix submission failure (username `uNNNNNN`) as a journal entry, stamped now."""
    ip = f"198.18.{(seq >> 8) & 255}.{seq & 255}"
    now = time.time_ns() // 1000
    return (
        b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_HOSTNAME=mail\n"
        b"_SYSTEMD_UNIT=postfix@-.service\nSYSLOG_IDENTIFIER=postfix/submission/smtpd\n"
        b"SYSLOG_PID=4242\nMESSAGE=warning: unknown[%s]: SASL PLAIN authentication failed: "
        b"(reason unavailable), sasl_username=u%06d\n\n"
        % (now, time.monotonic_ns() // 1000, BOOT_ID, ip.encode(), seq)
    )


def write_journal_live(
    feed: IO[bytes], rate: float, seconds: float
) -> tuple[dict[str, float], int, float]:
    """Feed `rate` failures/s for `seconds` to a running systemd-journal-remote, once per
    millisecond tick whatever is due (as journald writes a burst); when each was written."""
    total = int(rate * seconds)
    written: dict[str, float] = {}
    n = 0
    t0 = time.perf_counter()
    while n < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        if due > n:
            feed.write(b"".join(failure_entry(i) for i in range(n, due)))
            feed.flush()
            now = time.perf_counter()
            for i in range(n, due):
                written[f"u{i:06d}"] = now
            n = due
        time.sleep(max(0.0, min(0.001, t0 + n / rate - time.perf_counter())))
    return written, n, time.perf_counter() - t0


@benchmark("journal-live-1k", "`mlsd run` on a journal: delay from entry to CSV row at 1,000/s")
def journal_live_1k(ctx: Context) -> Metrics:
    """systemd-journal-remote writes the journal as journald would; journalctl (mlsd's
    child) follows it; the delay is from the write into journal-remote to the CSV row."""
    del ctx
    missing = _missing()
    if missing is not None:
        return missing
    seconds = float(os.environ.get("MLSD_BENCH_LIVE_S", LIVE_SECONDS))
    with tempfile.TemporaryDirectory(prefix="mlsd-journal-live-") as tmp:
        work = Path(tmp)
        jdir, csv = work / "journal", work / "out.csv"
        jdir.mkdir()
        remote = subprocess.Popen(
            [JOURNAL_REMOTE, f"--output={jdir / 'mail.journal'}", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert remote.stdin is not None
        conf = write_config(
            work / "mlsd.conf",
            log=work / "absent.log",
            csv=csv,
            state=work / "state",
            reverse="postfix",
            extra={"source": {"type": "journal", "journal_directory": str(jdir)}},
        )
        daemon = Daemon(conf, work / "stderr.log")
        try:
            if not daemon.wait_started() or daemon.poll() is not None:
                return {"error": f"`mlsd run` did not start: {daemon.last_error()}"}
            tail = CsvTail(csv)
            tail.start()
            try:
                written, n, wrote_s = write_journal_live(remote.stdin, 1000, seconds)
                _wait_for(lambda: all_seen(written, tail.seen), LIVE_DRAIN_S, 0.005)
            finally:
                tail.stop.set()
                tail.join()
        finally:
            code = daemon.stop()
            remote.stdin.close()
            remote.wait(timeout=60)
        res = LiveResult(written, dict(tail.seen), n, wrote_s)
        final = csv_users(csv) if csv.exists() else Counter()
    want = Counter(written.keys())
    lost, extra = sum((want - final).values()), sum((final - want).values())
    lag = lag_summary(res.delays_ms())
    if not lag:
        return {"error": f"no row appeared (exit {code}): {daemon.last_error()}"}
    exact = "ok" if not lost and not extra else f"MISMATCH: {lost} lost, {extra} extra rows"
    met = lag["p99_ms"] < LIVE_P99_MS
    return {
        **{k: round(v, 3) for k, v in lag.items()},
        "events": sum(final.values()),
        "check": exact if code == 0 else f"{exact}; exit code {code} after SIGTERM",
        "write_rate": n / wrote_s,
        "summary": f"{n / wrote_s:,.0f} entries/s for {wrote_s:.1f} s: delay p50 "
        f"{lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, max {lag['max_ms']:.0f} ms; "
        f"p99 < {LIVE_P99_MS:.0f} ms: {'met' if met else 'NOT MET'}",
    }
