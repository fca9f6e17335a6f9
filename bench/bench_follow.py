"""Benchmarks of mlsd as a process: `mlsd scan` throughput, live delay, idle CPU.

- `scan`, `scan-enriched`: `mlsd scan -c CONF` over a copy of the generated log, fresh
  state each run; lines/s, peak RSS (`registry.spawn_measured`), rows checked against
  the generator.
  `scan-enriched` runs plain and enriched scans interleaved and reports their ratio.
- `live-1k`, `live-20k`: `mlsd run` follows a log this process appends to at a fixed rate;
  every failure line carries a unique username (`u000123`), a thread polls the CSV every
  millisecond and notes when each row appears: p50/p99 delay, and whether it grew.
- `idle-cpu`: `mlsd run` on a quiet log; the child's CPU time over the idle window.

`scan` and `scan-enriched` take the best of `--repeat` runs; the live and idle benchmarks
run once whatever `--repeat` says (they take 10 s and 60 s each).

The helpers here (config writer, child runner, CSV tail, percentiles) are shared with
bench_enrich.py; the pure ones are tested in test_bench_extra.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from registry import MLSD, REPO, Context, Metrics, benchmark, check, spawn_measured, taskset

# --- shared helpers ---------------------------------------------------------------------

# A plain console log whatever the environment says (no journal, no sd_notify watchdog).
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
}
STARTED = " started config="
"""In mlsd's start-up summary line, once the reader is placed."""
GEOIP_DIRS = (REPO / "tests/data/geoip", REPO.parent / "shared/geoip")
COUNTRY_DBS = ("GeoLite2-Country-Test.mmdb", "GeoIP2-Country-Test.mmdb", "GeoIP2-City-Test.mmdb")
ASN_DBS = ("GeoLite2-ASN-Test.mmdb",)
MB = 1_000_000  # the "60 MB" bar is in decimal megabytes


def geoip_dbs() -> tuple[Path, Path] | None:
    """(country, asn) MaxMind test databases, from the repo's test data or ../shared."""
    for d in GEOIP_DIRS:
        country = next((d / n for n in COUNTRY_DBS if (d / n).is_file()), None)
        asn = next((d / n for n in ASN_DBS if (d / n).is_file()), None)
        if country is not None and asn is not None:
            return country, asn
    return None


def write_config(
    path: Path,
    *,
    log: Path,
    csv: Path,
    state: Path,
    reverse: str = "off",
    geoip: tuple[Path, Path] | None = None,
    start_at: str = "beginning",
    servers: Sequence[str] = (),
    extra: dict[str, dict[str, str]] | None = None,
) -> Path:
    """An mlsd.conf for one benchmark run; without `geoip` the databases are absent (N/A)."""
    country, asn = geoip or (path.parent / "absent-country.mmdb", path.parent / "absent-asn.mmdb")
    sections: dict[str, dict[str, str]] = {
        "paths": {"mail_log": str(log), "csv": str(csv), "state_dir": str(state)},
        "geoip": {"country_db": str(country), "asn_db": str(asn)},
        "dns": {"reverse": reverse},
        "follow": {"start_at": start_at},
        "log": {"format": "console", "level": "INFO"},
    }
    if servers:
        sections["dns"]["servers"] = ", ".join(servers)
    for name, keys in (extra or {}).items():
        sections.setdefault(name, {}).update(keys)
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
        for name, keys in sections.items()
    )
    path.write_text(text)
    return path


@dataclass
class ChildResult:
    """How a finished child went: exit code, wall time, CPU, peak RSS and its stderr tail."""

    code: int
    wall: float
    cpu: float
    maxrss_kib: int
    stderr: str

    def last_error(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else "(no stderr)"


def _vm_hwm_kib(pid: int) -> int:
    """A running process's peak RSS since its exec (`VmHWM`), in KiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> ChildResult:
    """Run `cmd` to its end; wall time from fork to reap, its own CPU time and peak RSS
    (`registry.spawn_measured`)."""
    # stderr to a file, not a pipe: a full pipe would deadlock the wait.
    with tempfile.TemporaryFile() as err:
        got = spawn_measured(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env or ENV)
        err.seek(0)
        tail = err.read()[-20_000:].decode("utf-8", "replace")
    return ChildResult(got.code, got.wall, got.cpu, got.maxrss_kib, tail)


def count_rows(path: Path) -> int:
    """Rows in a CSV after its header; 0 if it does not exist."""
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def csv_users(path: Path) -> Counter[str]:
    """The multiset of the CSV's `user` column (header skipped)."""
    return Counter(parse_rows(path.read_bytes())[1:])


def parse_rows(data: bytes) -> list[str]:
    """The `user` field (4th, `;`-separated) of each complete line in `data`."""
    out = []
    for line in data.split(b"\n")[:-1]:
        fields = line.split(b";", 4)
        out.append(fields[3].decode("utf-8", "replace") if len(fields) > 3 else "")
    return out


def column_counts(path: Path, index: int) -> Counter[str]:
    """How often each value of column `index` occurs in the CSV's rows."""
    c: Counter[str] = Counter()
    with path.open("rb") as f:
        next(f, None)
        for line in f:
            fields = line.rstrip(b"\n").split(b";")
            c[fields[index].decode("utf-8", "replace") if len(fields) > index else ""] += 1
    return c


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 when undefined)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process (all threads), from /proc/PID/stat, in seconds."""
    return sum(proc_times(pid))


def proc_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a live process (all threads), from /proc/PID/stat, in seconds."""
    return parse_stat_times(Path(f"/proc/{pid}/stat").read_text(), os.sysconf("SC_CLK_TCK"))


def parse_stat_times(text: str, ticks: int) -> tuple[float, float]:
    """(utime, stime) in seconds from the text of a /proc/PID/stat file."""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def proc_sched(pid: int) -> tuple[float, int]:
    """(seconds on CPU, voluntary context switches), summed over the process's threads.

    schedstat has nanosecond resolution where /proc/PID/stat counts 10 ms ticks, and the
    voluntary switches count wake-ups: a polling loop shows up there first.
    """
    ns = switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            ns += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
    return ns / 1e9, switches


def _fmt_rate(v: float) -> str:
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


BAR_LINES = 1_000_000
"""The issues' throughput bars are stated for a 1,000,000-line log."""


def _bar(ctx: Context, ok: bool) -> str:
    """met/MISSED, or why the bar does not apply (a shorter log is start-up dominated)."""
    return _met(ok) if ctx.lines >= BAR_LINES else f"n/a under {BAR_LINES:,} lines"


# --- scan -------------------------------------------------------------------------------


@dataclass
class ScanRuns:
    """Every run of one scan configuration."""

    results: list[ChildResult] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    last_csv: Path | None = None

    @property
    def best(self) -> float:
        return min(r.wall for r in self.results)

    def error(self, cmd: Sequence[str]) -> Metrics | None:
        bad = next((r for r in self.results if r.code != 0), None)
        if bad is None:
            return None
        return {"error": f"`mlsd scan` exited {bad.code}: {bad.last_error()}", "command": cmd}


def _scan_once(
    work: Path,
    log: Path,
    n: int,
    label: str,
    runs: ScanRuns,
    *,
    reverse: str,
    geoip: tuple[Path, Path] | None = None,
) -> list[str]:
    """One `mlsd scan` with a fresh state dir and CSV under `work/label-n`."""
    d = work / f"{label}-{n}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    csv = d / "out.csv"
    cfg = write_config(
        d / "mlsd.conf", log=log, csv=csv, state=d / "state", reverse=reverse, geoip=geoip
    )
    cmd = [*taskset(), str(MLSD), "scan", "-c", str(cfg)]
    r = run_child(cmd)
    runs.results.append(r)
    runs.rows.append(count_rows(csv))
    if runs.last_csv is not None and runs.last_csv.parent != d:
        shutil.rmtree(runs.last_csv.parent, ignore_errors=True)
    runs.last_csv = csv
    return cmd


@contextlib.contextmanager
def _log_copy(ctx: Context, prefix: str) -> Iterator[tuple[Path, Path]]:
    """A private copy of the log (mlsd owns the file it follows) on the same disk."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.out, prefix=prefix) as tmp:
        work = Path(tmp)
        log = work / "mail.log"
        shutil.copyfile(ctx.log, log)
        yield work, log


def _scan_metrics(ctx: Context, runs: ScanRuns, want: int) -> Metrics:
    best = runs.best
    rss = max(r.maxrss_kib for r in runs.results)
    return {
        "lines_per_s": ctx.lines / max(best, 1e-9),
        "seconds": best,
        "runs": [round(r.wall, 4) for r in runs.results],
        "events": runs.rows[-1],
        "check": next((check(n, want) for n in runs.rows if n != want), "ok"),
        "cpu_s": min(r.cpu for r in runs.results),
        "peak_rss_mib": rss / 1024,
        "pinned": bool(taskset()),
    }


@benchmark("scan", "`mlsd scan` of a copy of the log, enrichment off, fresh state each run")
def scan(ctx: Context) -> Metrics:
    """The whole catch-up path (follower, parser, CSV, fdatasync, checkpoint) as a process."""
    if not MLSD.exists():
        return {"error": f"{MLSD} not found (is mlsd installed in this venv?)"}
    runs = ScanRuns()
    with _log_copy(ctx, "scan-") as (work, log):
        for n in range(max(1, ctx.repeat)):
            cmd = _scan_once(work, log, n, "off", runs, reverse="off")
        if (err := runs.error(cmd)) is not None:
            return err
        m = _scan_metrics(ctx, runs, ctx.counts["auth_failures"])
    rate, rss = m["lines_per_s"], max(r.maxrss_kib for r in runs.results) * 1024
    m["summary"] = (
        f"bar >= 800 k lines/s: {_bar(ctx, rate >= 800_000)}; "
        f"peak RSS {rss / MB:.0f} MB, bar < 60 MB: {_met(rss < 60 * MB)}"
    )
    m["command"] = " ".join(cmd)
    return m


@benchmark(
    "scan-enriched",
    "`mlsd scan` with both GeoIP test databases and reverse = postfix, vs enrichment off",
)
def scan_enriched(ctx: Context) -> Metrics:
    """Interleaved plain and enriched scans (so load hits both alike), and their ratio."""
    if not MLSD.exists():
        return {"error": f"{MLSD} not found (is mlsd installed in this venv?)"}
    dbs = geoip_dbs()
    if dbs is None:
        return {"error": f"no GeoIP test databases in {', '.join(map(str, GEOIP_DIRS))}"}
    plain, rich = ScanRuns(), ScanRuns()
    with _log_copy(ctx, "scan-enriched-") as (work, log):
        for n in range(max(1, ctx.repeat)):
            _scan_once(work, log, n, "off", plain, reverse="off")
            cmd = _scan_once(work, log, n, "geo", rich, reverse="postfix", geoip=dbs)
        if (err := plain.error(cmd) or rich.error(cmd)) is not None:
            return err
        m = _scan_metrics(ctx, rich, ctx.counts["auth_failures"])
        assert rich.last_csv is not None
        located = sum(n for v, n in column_counts(rich.last_csv, 6).items() if v != "N/A")
        with_asn = sum(n for v, n in column_counts(rich.last_csv, 7).items() if v != "N/A")
    loaded = rich.results[-1].stderr.count("geoip database loaded")
    speed = plain.best / rich.best  # enriched speed as a fraction of enrichment-off speed
    m.update(
        plain_seconds=plain.best,
        plain_runs=[round(r.wall, 4) for r in plain.results],
        speed_ratio=speed,
        time_ratio=rich.best / plain.best,
        geoip_databases_loaded=loaded,
        rows_with_country=located,
        rows_with_asn=with_asn,
        databases=[str(p) for p in dbs],
        command=" ".join(cmd),
    )
    m["summary"] = (
        f"{speed:.2f}x the speed of enrichment off ({_fmt_rate(ctx.lines / plain.best)} "
        f"lines/s in this run), bar >= 0.80x: {_bar(ctx, speed >= 0.8)}; {loaded}/2 databases "
        f"loaded, {located} rows located (test DBs cover few networks)"
    )
    return m


# --- live -------------------------------------------------------------------------------

LIVE_SECONDS = 10.0
"""How long lines are appended in live-1k and live-20k."""
LIVE_DRAIN_S = 20.0
"""How long to wait after the last write for the last rows before giving up."""
TAIL_POLL_S = 0.001


def failure_line(seq: int, stamp: str) -> bytes:
    """A Postfix submission failure whose username is `uNNNNNN` (one distinct IP per seq)."""
    ip = f"198.18.{(seq >> 8) & 255}.{seq & 255}"
    return (
        f"{stamp} mail postfix/submission/smtpd[4242]: warning: unknown[{ip}]: SASL PLAIN "
        f"authentication failed: (reason unavailable), sasl_username=u{seq:06d}\n"
    ).encode()


def noise_line(n: int, stamp: str) -> bytes:
    """Ordinary traffic of a realistic length, which the parser must skip."""
    return (
        f"{stamp} mail postfix/smtpd[4243]: {n:011X}: client=mail-out-f{n % 97}.example.com"
        f"[192.0.2.{n % 250 + 1}], sasl_method=PLAIN, sasl_username=alice@example.org\n"
    ).encode()


def rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def all_seen(written: dict[str, float], seen: dict[str, float]) -> bool:
    """Whether every written user has its row: by name, not by count, since `seen` also
    holds the header's `user` (counting stopped the drain one row early)."""
    return written.keys() <= seen.keys()


class CsvTail(threading.Thread):
    """Polls the CSV every `TAIL_POLL_S` and notes when each user's row first appears."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.seen: dict[str, float] = {}
        self.users: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        fd = -1
        offset = 0
        carry = b""
        while not self.stop.is_set():
            if fd < 0:
                try:
                    fd = os.open(self.path, os.O_RDONLY)
                except FileNotFoundError:
                    time.sleep(TAIL_POLL_S)
                    continue
            data = os.pread(fd, 1 << 20, offset)
            if not data:
                time.sleep(TAIL_POLL_S)
                continue
            now = time.perf_counter()
            offset += len(data)
            buf = carry + data
            cut = buf.rfind(b"\n") + 1
            carry = buf[cut:]
            for user in parse_rows(buf[:cut]):
                self.users[user] += 1
                self.seen.setdefault(user, now)
        if fd >= 0:
            os.close(fd)


def _wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll `pred` every `step` s until it holds (True) or `timeout` s pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


class Daemon:
    """`mlsd run -c CONF` as a child, stderr to a file, reaped with its rusage."""

    def __init__(self, conf: Path, errpath: Path) -> None:
        self.errpath = errpath
        self._err = errpath.open("wb")
        self.proc = subprocess.Popen(
            [str(MLSD), "run", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env=ENV,
        )
        self.code: int | None = None
        self.maxrss_kib = 0
        self.hwm_kib = 0
        self.cpu = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.errpath.read_text("utf-8", "replace")

    def wait_started(self, timeout: float = 20.0) -> bool:
        return _wait_for(lambda: STARTED in self.stderr() or self.poll() is not None, timeout)

    def poll(self) -> int | None:
        if self.code is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.code

    def _reaped(self, status: int, usage: resource.struct_rusage) -> None:
        self.code = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.maxrss_kib = usage.ru_maxrss
        self.cpu = usage.ru_utime + usage.ru_stime
        self._err.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then reap (SIGKILL after `timeout`); the exit code. The peak RSS is
        the daemon's own high-water mark, read while it still runs: its rusage would also
        count the copy of this process it was forked as (`registry.spawn_measured`)."""
        self.hwm_kib = _vm_hwm_kib(self.pid)
        if self.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if not _wait_for(lambda: self.poll() is not None, timeout):
                self.proc.kill()
                _, status, usage = os.wait4(self.pid, 0)
                self._reaped(status, usage)
        assert self.code is not None
        return self.code

    def last_error(self) -> str:
        lines = [ln for ln in self.stderr().splitlines() if ln.strip()]
        return lines[-1] if lines else "(no stderr)"


@dataclass
class LiveResult:
    """Per-failure write and appearance times, and how the writer kept its rate."""

    written: dict[str, float]
    seen: dict[str, float]
    lines: int
    write_seconds: float

    def delays_ms(self) -> list[tuple[float, float]]:
        """(write time relative to the first write in s, delay in ms) for each seen row."""
        t0 = min(self.written.values(), default=0.0)
        return sorted(
            (w - t0, (self.seen[u] - w) * 1000) for u, w in self.written.items() if u in self.seen
        )


def lag_summary(samples: Sequence[tuple[float, float]], window: float = 1.0) -> dict[str, float]:
    """p50/p99 overall, p50 of the first and the last `window` seconds, and the trend."""
    if not samples:
        return {}
    delays = [d for _, d in samples]
    end = samples[-1][0]
    first = [d for t, d in samples if t < window]
    last = [d for t, d in samples if t >= end - window]
    return {
        "p50_ms": percentile(delays, 50),
        "p99_ms": percentile(delays, 99),
        "max_ms": max(delays),
        "first_s_p50_ms": percentile(first, 50),
        "last_s_p50_ms": percentile(last, 50),
        "trend_ms_per_s": slope([t for t, _ in samples], delays),
    }


def lag_grew(summary: dict[str, float]) -> bool:
    """Whether the delay at the end is clearly worse than at the start (not just noise)."""
    first, last = summary["first_s_p50_ms"], summary["last_s_p50_ms"]
    return last > 2 * first + 20


def write_live(
    log: Path, rate: float, fail_every: int, seconds: float, *, seed: int = 1
) -> tuple[dict[str, float], int, float]:
    """Append `rate` lines/s for `seconds`; every `fail_every`-th line is a failure.

    Writes once per millisecond tick whatever is due by then (as a busy syslog daemon
    would, one write per burst), and notes when each failure line reached the file.
    """
    rng = random.Random(seed)
    total = int(rate * seconds)
    written: dict[str, float] = {}
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    n = seq = 0
    t0 = time.perf_counter()
    try:
        while n < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            if due > n:
                stamp = rfc3339_now()
                parts, users = [], []
                for i in range(n, due):
                    if i % fail_every == fail_every - 1 or fail_every == 1:
                        parts.append(failure_line(seq, stamp))
                        users.append(f"u{seq:06d}")
                        seq += 1
                    else:
                        parts.append(noise_line(rng.getrandbits(40), stamp))
                view = memoryview(b"".join(parts))
                while view:
                    view = view[os.write(fd, view) :]
                now = time.perf_counter()
                for u in users:
                    written[u] = now
                n = due
            # Sleep to the next line's due time, at most a tick.
            nxt = t0 + n / rate
            time.sleep(max(0.0, min(TAIL_POLL_S, nxt - time.perf_counter())))
    finally:
        os.close(fd)
    return written, n, time.perf_counter() - t0


def live(ctx: Context, rate: float, fail_every: int) -> Metrics:
    """Follow a log written at `rate` lines/s; delay from write to CSV row per failure."""
    del ctx
    if not MLSD.exists():
        return {"error": f"{MLSD} not found (is mlsd installed in this venv?)"}
    seconds = float(os.environ.get("MLSD_BENCH_LIVE_S", LIVE_SECONDS))
    dbs = geoip_dbs()
    with tempfile.TemporaryDirectory(prefix="mlsd-live-") as tmp:
        work = Path(tmp)
        log, csv = work / "mail.log", work / "out.csv"
        log.touch()
        conf = write_config(
            work / "mlsd.conf", log=log, csv=csv, state=work / "state", reverse="postfix", geoip=dbs
        )
        daemon = Daemon(conf, work / "stderr.log")
        try:
            if not daemon.wait_started() or daemon.poll() is not None:
                return {"error": f"`mlsd run` did not start: {daemon.last_error()}"}
            tail = CsvTail(csv)
            old = sys.getswitchinterval()
            sys.setswitchinterval(0.0005)  # the tail thread must not wait 5 ms for the GIL
            tail.start()
            try:
                user0, sys0 = proc_times(daemon.pid)
                written, lines, wrote_s = write_live(log, rate, fail_every, seconds)
                _wait_for(lambda: all_seen(written, tail.seen), LIVE_DRAIN_S, 0.005)
                user1, sys1 = proc_times(daemon.pid)
            finally:
                tail.stop.set()
                tail.join()
                sys.setswitchinterval(old)
        finally:
            code = daemon.stop()
        res = LiveResult(written, dict(tail.seen), lines, wrote_s)
        final = csv_users(csv) if csv.exists() else Counter()
    want = Counter(written.keys())
    lost, extra = sum((want - final).values()), sum((final - want).values())
    lag = lag_summary(res.delays_ms())
    if not lag:
        return {"error": f"no row appeared (exit {code}): {daemon.last_error()}"}
    grew = lag_grew(lag) or len(tail.seen) < len(written)
    exact = "ok" if not lost and not extra else f"MISMATCH: {lost} lost, {extra} extra rows"
    m: Metrics = {
        **{k: round(v, 3) for k, v in lag.items()},
        "events": sum(final.values()),
        "check": exact if code == 0 else f"{exact}; exit code {code} after SIGTERM",
        "exit_code": code,
        "lines_written": lines,
        "failures_written": len(written),
        "write_rate": lines / wrote_s,
        "lag_grew": grew,
        # Not "cpu_s": the table would show it as a total; this is over the write window.
        "child_cpu_s": (user1 - user0) + (sys1 - sys0),
        "cpu_user_s": user1 - user0,
        "cpu_sys_s": sys1 - sys0,
        "peak_rss_mib": daemon.hwm_kib / 1024,
        "geoip": dbs is not None,
    }

    bar = (
        f"p99 < 100 ms: {_met(lag['p99_ms'] < 100)}"
        if rate <= 1000
        else f"keeps up: {_met(not grew)}"
    )
    m["summary"] = (
        f"{lines / wrote_s:,.0f} lines/s written (1 in {fail_every} a failure) for "
        f"{wrote_s:.1f} s: delay p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, "
        f"max {lag['max_ms']:.0f} ms; first s p50 {lag['first_s_p50_ms']:.1f} ms, last s "
        f"{lag['last_s_p50_ms']:.1f} ms ({'grew' if grew else 'no growth'}); {bar}; "
        f"child CPU {m['child_cpu_s'] / wrote_s:.2f} s per s (user {m['cpu_user_s']:.2f}, "
        f"sys {m['cpu_sys_s']:.2f})"
    )
    return m


@benchmark("live-1k", "`mlsd run`: delay from write to CSV row at 1,000 lines/s, all failures")
def live_1k(ctx: Context) -> Metrics:
    return live(ctx, 1000, 1)


LIVE_20K_FAIL_EVERY = 10
"""At 20k lines/s one line in ten is a failure (2,000 rows/s): a heavy attack in a busy log."""


@benchmark(
    "live-20k",
    f"`mlsd run` at 20,000 lines/s, 1 in {LIVE_20K_FAIL_EVERY} a failure: does it keep up",
)
def live_20k(ctx: Context) -> Metrics:
    return live(ctx, 20_000, LIVE_20K_FAIL_EVERY)


# --- idle -------------------------------------------------------------------------------

IDLE_SECONDS = 60.0
"""The idle window of idle-cpu; `MLSD_BENCH_IDLE_S` shortens it (for a quick check)."""
IDLE_SETTLE_S = 2.0


@benchmark("idle-cpu", "`mlsd run` on a quiet log: the child's CPU time over the idle window")
def idle_cpu(ctx: Context) -> Metrics:
    """CPU used by a caught-up daemon while nothing is written (start-up excluded)."""
    del ctx
    if not MLSD.exists():
        return {"error": f"{MLSD} not found (is mlsd installed in this venv?)"}
    window = float(os.environ.get("MLSD_BENCH_IDLE_S", IDLE_SECONDS))
    stamp = rfc3339_now()
    with tempfile.TemporaryDirectory(prefix="mlsd-idle-") as tmp:
        work = Path(tmp)
        log, csv = work / "mail.log", work / "out.csv"
        log.write_bytes(b"".join(failure_line(i, stamp) + noise_line(i, stamp) for i in range(100)))
        want = Counter(f"u{i:06d}" for i in range(100))
        conf = write_config(
            work / "mlsd.conf",
            log=log,
            csv=csv,
            state=work / "state",
            reverse="postfix",
            geoip=geoip_dbs(),
        )
        daemon = Daemon(conf, work / "stderr.log")
        try:
            if not daemon.wait_started() or daemon.poll() is not None:
                return {"error": f"`mlsd run` did not start: {daemon.last_error()}"}
            _wait_for(lambda: csv.exists() and sum(csv_users(csv).values()) >= 100, 20)
            time.sleep(IDLE_SETTLE_S)
            cpu0, (sched0, sw0) = proc_cpu_s(daemon.pid), proc_sched(daemon.pid)
            time.sleep(window)
            cpu1, (sched1, sw1) = proc_cpu_s(daemon.pid), proc_sched(daemon.pid)
        finally:
            code = daemon.stop()
        final = csv_users(csv) if csv.exists() else Counter()
    cpu, sched, wakeups = cpu1 - cpu0, sched1 - sched0, sw1 - sw0
    exact = "ok" if final == want else f"MISMATCH: rows {dict(final - want) or dict(want - final)}"
    return {
        "cpu_s": cpu,
        "sched_cpu_s": sched,
        "wakeups": wakeups,
        "idle_seconds": window,
        "events": sum(final.values()),
        "check": exact if code == 0 else f"{exact}; exit code {code} after SIGTERM",
        "exit_code": code,
        "peak_rss_mib": daemon.hwm_kib / 1024,
        "summary": (
            f"{cpu:.3f} s CPU (/proc stat, 10 ms ticks; schedstat {sched * 1000:.1f} ms) and "
            f"{wakeups} wake-ups over {window:.0f} s idle; bar < 0.05 s over 60 s: "
            f"{_met(cpu * 60 / window < 0.05)}"
            + ("" if window >= 60 else f" (scaled from {window:.0f} s)")
        ),
    }
