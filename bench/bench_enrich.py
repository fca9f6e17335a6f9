"""Benchmarks of enrichment: the pipeline in-process with and without GeoIP, a dead resolver.

- `pipeline-plain`, `pipeline-enriched`: what `mlsd scan` does inside, without process
  start and lock: `Follower` batches (mlsd.ingest.sources.file.follow) →
  `Pipeline.commit` (mlsd.ingest.pipeline: parse, rows, CSV append, fdatasync, checkpoint),
  with `postfix_reverse` vs an `Enricher` (mlsd.enrich.enricher) over both GeoIP
  test databases (`reverse = postfix`). Measures
  the enricher whatever `mlsd scan` wires up; runs interleaved, reports the ratio.
- `dead-resolver`: `reverse = lookup` against a UDP socket on 127.0.0.1 that takes every
  query and never answers, over a log with 1,000 distinct attacking IPs: in-process (the
  daemon's step: parse, `await enricher.prefetch(events)`, commit, per batch) and `mlsd scan`.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bench_follow import (
    _bar,
    _fmt_rate,
    _met,
    column_counts,
    csv_users,
    geoip_dbs,
    run_child,
    write_config,
)
from registry import MLSD, Context, Metrics, benchmark, check

if TYPE_CHECKING:
    from mlsd.config import ReverseMode

REF = datetime(2026, 11, 26, tzinfo=UTC)
"""Reference time for year inference, as parse-inprocess uses."""

# --- the pipeline in-process ------------------------------------------------------------


@dataclass
class PipelineRun:
    seconds: float
    rows: int
    lines: int
    batches: int
    batch_seconds: list[float]
    """Wall time of each batch from read to commit (with `lookup`: the prefetch too)."""


def run_pipeline(
    log: Path, work: Path, enrich: Callable[[Any], Any], *, lookup: Any = None
) -> PipelineRun:
    """Feed `log` through a fresh Pipeline in `work`, batch by batch, as daemon.step does.

    `lookup`: an Enricher whose `prefetch(events)` must be awaited before each commit
    (`reverse = lookup`); the loop then runs in asyncio like the daemon's.
    """
    from mlsd.ingest.checkpoint import CheckpointStore  # noqa: PLC0415 - a broken mlsd → error row
    from mlsd.ingest.csvlog import CsvJournal  # noqa: PLC0415
    from mlsd.ingest.pipeline import Pipeline  # noqa: PLC0415
    from mlsd.ingest.sources.file.follow import Follower  # noqa: PLC0415

    state = work / "state"
    state.mkdir(parents=True)
    pipeline = Pipeline(
        source=str(log),
        journal=CsvJournal(work / "out.csv"),
        store=CheckpointStore(state),
        enrich=enrich,
        tz=UTC,
        date_format="iso",
        cap=256,
    )
    follower = Follower(log)

    times: list[float] = []

    async def feed() -> None:
        while True:
            t = time.perf_counter()
            if (batch := follower.next_batch()) is None:
                return
            events = pipeline.parse(batch)
            if lookup is not None and events:
                await lookup.prefetch(events)
            pipeline.commit(batch, events)
            times.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    try:
        pipeline.open(None)
        follower.start(None, start_at="beginning", import_rotated=False)
        if lookup is None:
            while (batch := follower.next_batch()) is not None:
                pipeline.commit(batch)
        else:
            asyncio.run(feed())
        seconds = time.perf_counter() - t0
    finally:
        follower.close()
        pipeline.close()
    c = pipeline.counters
    return PipelineRun(seconds, c.events, c.lines, c.batches, times)


def _geo_enricher(
    reverse: ReverseMode = "postfix", servers: tuple[str, ...] = ()
) -> tuple[Any, Any]:
    """(Enricher, Geo) over both test databases; (None, None) when they are absent."""
    from mlsd.config import Config, DnsConfig, GeoipConfig  # noqa: PLC0415
    from mlsd.enrich.enricher import Enricher  # noqa: PLC0415
    from mlsd.enrich.geo import Geo  # noqa: PLC0415

    dbs = geoip_dbs()
    if dbs is None:
        return None, None
    _quiet_mlsd_logs()
    cfg = Config(
        geoip=GeoipConfig(country_db=dbs[0], asn_db=dbs[1]),
        dns=DnsConfig(reverse=reverse, servers=servers),
    )
    geo = Geo(cfg.geoip)
    return Enricher(cfg, geo), geo


def _quiet_mlsd_logs() -> None:
    """mlsd's in-process log lines to stderr, warnings only: unconfigured, structlog prints
    every line to stdout, into the middle of the results table."""
    from mlsd import logs  # noqa: PLC0415

    logs.configure("WARNING", "auto", sys.stderr)


def _pipeline_metrics(ctx: Context, runs: list[PipelineRun]) -> Metrics:
    best = min(r.seconds for r in runs)
    last = runs[-1]
    return {
        "lines_per_s": ctx.lines / max(best, 1e-9),
        "seconds": best,
        "runs": [round(r.seconds, 4) for r in runs],
        "events": last.rows,
        "check": next(
            (check(r.rows, ctx.counts["auth_failures"]) for r in runs if r.rows != last.rows),
            check(last.rows, ctx.counts["auth_failures"]),
        ),
        "batches": last.batches,
    }


@benchmark("pipeline-plain", "Follower batches → Pipeline.commit in-process, postfix_reverse")
def pipeline_plain(ctx: Context) -> Metrics:
    """The scan path without process start: reading, parsing, rows, fdatasync, checkpoint."""
    from mlsd.enrich.postfix import postfix_reverse  # noqa: PLC0415

    runs = []
    ctx.out.mkdir(parents=True, exist_ok=True)
    for n in range(max(1, ctx.repeat)):
        with tempfile.TemporaryDirectory(dir=ctx.out, prefix=f"pipeline-plain-{n}-") as tmp:
            runs.append(run_pipeline(ctx.log, Path(tmp), postfix_reverse))
    m = _pipeline_metrics(ctx, runs)
    m["summary"] = f"{m['batches']} batches; no GeoIP, hostname as Postfix logged it"
    return m


@benchmark(
    "pipeline-enriched",
    "as pipeline-plain with mlsd.enrich.Enricher over both GeoIP test DBs (reverse = postfix)",
)
def pipeline_enriched(ctx: Context) -> Metrics:
    """Interleaved plain and enriched runs, so that load hits both alike; the ratio."""
    from mlsd.enrich.postfix import postfix_reverse  # noqa: PLC0415

    if geoip_dbs() is None:
        return {"error": "no GeoIP test databases found"}
    plain: list[PipelineRun] = []
    rich: list[PipelineRun] = []
    located = 0
    ctx.out.mkdir(parents=True, exist_ok=True)
    for n in range(max(1, ctx.repeat)):
        with tempfile.TemporaryDirectory(dir=ctx.out, prefix=f"pipeline-{n}-") as tmp:
            work = Path(tmp)
            plain.append(run_pipeline(ctx.log, work / "plain", postfix_reverse))
            # A fresh enricher per run: its memo must not carry answers from the last run.
            enricher, geo = _geo_enricher()
            try:
                rich.append(run_pipeline(ctx.log, work / "rich", enricher))
            finally:
                geo.close()
            counts = column_counts(work / "rich/out.csv", 6)
            located = sum(v for k, v in counts.items() if k != "N/A")
    m = _pipeline_metrics(ctx, rich)
    p_best = min(r.seconds for r in plain)
    speed = p_best / m["seconds"]
    per_ip, per_hit = _geo_lookup_cost(ctx)
    m.update(
        plain_seconds=p_best,
        plain_runs=[round(r.seconds, 4) for r in plain],
        speed_ratio=speed,
        time_ratio=m["seconds"] / p_best,
        rows_with_country=located,
        geo_lookup_us=per_ip,
        geo_lookup_found_us=per_hit,
    )
    m["summary"] = (
        f"{speed:.2f}x the speed of pipeline-plain ({_fmt_rate(ctx.lines / p_best)} lines/s "
        f"in this run), bar >= 0.80x: {_bar(ctx, speed >= 0.8)}; {located} rows located; "
        f"uncached Geo.lookup {per_ip:.1f} us/IP of the log, {per_hit:.1f} us when found"
    )
    return m


# Addresses the MaxMind test databases know (country and ASN records to decode): the
# generated log's random attackers are almost all outside the test networks.
GEO_HITS = ("81.2.69.142", "89.160.20.112", "1.128.0.1", "2001:218::1", "216.160.83.56")


def _geo_lookup_cost(ctx: Context) -> tuple[float, float]:
    """Microseconds per `Geo.lookup` (both databases, no memo): over the log's distinct
    attacker IPs (mostly not in the test databases), and over GEO_HITS (found)."""
    from mlsd.ingest.grammar import parse_line  # noqa: PLC0415
    from mlsd.ingest.prefilter import candidate_lines  # noqa: PLC0415
    from mlsd.rows import AuthFailure  # noqa: PLC0415

    ips: dict[str, None] = {}
    carry = b""
    with ctx.log.open("rb") as f:
        while chunk := f.read(1 << 20):
            buf = carry + chunk
            cut = buf.rfind(b"\n") + 1
            carry = buf[cut:]
            for line in candidate_lines(buf[:cut]):
                ev = parse_line(line, REF, UTC)
                if isinstance(ev, AuthFailure):
                    ips[ev.ip] = None
    _, geo = _geo_enricher()
    try:
        return _per_lookup_us(geo, list(ips)), _per_lookup_us(geo, list(GEO_HITS) * 1000)
    finally:
        geo.close()


def _per_lookup_us(geo: Any, ips: list[str]) -> float:
    t0 = time.perf_counter()
    for ip in ips:
        geo.lookup(ip)
    return (time.perf_counter() - t0) / max(len(ips), 1) * 1e6


# --- a resolver that never answers ------------------------------------------------------


class SilentResolver:
    """A UDP socket on 127.0.0.1 that takes every query and answers none; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    @property
    def server(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1

    def __enter__(self) -> SilentResolver:
        self._thread.start()
        return self

    def __exit__(
        self,
        t: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


DEAD_IPS = 1000
"""Distinct attacking IPs in the dead-resolver log."""
DEAD_PER_IP = 3
DEAD_NOISE = 40
"""Ordinary lines after each failure: ~120k lines, ~15 MB, several 4 MiB batches."""


def dead_ip(i: int) -> str:
    """The i-th attacking IP (0 ≤ i < 65536), in 198.18.0.0/15 (benchmarking, RFC 2544)."""
    return f"198.18.{i >> 8}.{i & 255}"


def write_dead_log(
    path: Path, ips: int = DEAD_IPS, per_ip: int = DEAD_PER_IP, noise: int = DEAD_NOISE
) -> Counter[str]:
    """A log whose failures come from `ips` distinct addresses, `per_ip` each, shuffled.

    Returns the expected multiset of usernames (`dNNNNNN`, one per failure line).
    """
    rng = random.Random(1000)
    order = [i for i in range(ips) for _ in range(per_ip)]
    rng.shuffle(order)
    users: Counter[str] = Counter()
    with path.open("w", encoding="ascii") as f:
        for seq, i in enumerate(order):
            sec = seq // 10
            stamp = f"Nov 25 {sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
            ip = dead_ip(i)
            user = f"d{seq:06d}"
            users[user] += 1
            f.write(
                f"{stamp} mail postfix/smtpd[4242]: warning: unknown[{ip}]: SASL LOGIN "
                f"authentication failed: (reason unavailable), sasl_username={user}\n"
            )
            for k in range(noise):
                f.write(
                    f"{stamp} mail postfix/smtpd[4243]: {seq * noise + k:011X}: client=mail-f"
                    f"{k}.example.com[192.0.2.{k % 250 + 1}], sasl_method=PLAIN, "
                    "sasl_username=alice@example.org\n"
                )
    return users


@benchmark(
    "dead-resolver",
    f"reverse = lookup, resolver never answers, {DEAD_IPS} distinct IPs: in-process and scan",
)
def dead_resolver(ctx: Context) -> Metrics:
    """A silent resolver must cost at most the timeout per batch, never a stall."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.out, prefix="dead-resolver-") as tmp:
        work = Path(tmp)
        log = work / "mail.log"
        want = write_dead_log(log)
        with log.open("rb") as f:
            lines = sum(1 for _ in f)

        # In-process: the daemon's step, batch by batch.
        with SilentResolver() as dns:
            enricher, geo = _geo_enricher("lookup", (dns.server,))
            if enricher is None:
                return {"error": "no GeoIP test databases found"}
            try:
                run = run_pipeline(log, work / "inproc", enricher, lookup=enricher)
            finally:
                geo.close()
            inproc_queries = dns.queries
        statuses = column_counts(work / "inproc/out.csv", 5)
        inproc_users = csv_users(work / "inproc/out.csv")

        # The command, if it wires the lookup in (it did when this was written).
        with SilentResolver() as dns:
            d = work / "scan"
            d.mkdir()
            conf = write_config(
                d / "mlsd.conf",
                log=log,
                csv=d / "out.csv",
                state=d / "state",
                reverse="lookup",
                servers=(dns.server,),
                geoip=geoip_dbs(),
            )
            cmd = [str(MLSD), "scan", "-c", str(conf)]
            res = run_child(cmd)
            scan_queries = dns.queries
        scan_ok = res.code == 0
        scan_users = csv_users(d / "out.csv") if (d / "out.csv").exists() else Counter()
        scan_statuses = column_counts(d / "out.csv", 5) if scan_ok else Counter()

    problems = []
    if inproc_users != want:
        problems.append(f"in-process rows {sum(inproc_users.values())} != {sum(want.values())}")
    if scan_ok and scan_users != want:
        problems.append(f"scan rows {sum(scan_users.values())} != {sum(want.values())}")
    if not scan_ok:
        problems.append(f"`mlsd scan` exited {res.code}: {res.last_error()}")
    m: Metrics = {
        "seconds": run.seconds,
        "lines_per_s": lines / run.seconds,
        "events": run.rows,
        "check": "ok" if not problems else "MISMATCH: " + "; ".join(problems),
        "batches": run.batches,
        "batch_seconds": [round(t, 3) for t in run.batch_seconds],
        "distinct_ips": DEAD_IPS,
        "queries_received": inproc_queries,
        "statuses": dict(statuses),
        "scan_seconds": res.wall if scan_ok else None,
        "scan_queries_received": scan_queries,
        "scan_statuses": dict(scan_statuses),
        "peak_rss_mib": res.maxrss_kib / 1024,
        "command": " ".join(cmd),
    }
    fast = run.seconds < 10 and (not scan_ok or res.wall < 10)
    m["summary"] = (
        f"in-process {run.seconds:.2f} s for {run.rows} rows in {run.batches} batches "
        f"(slowest {max(run.batch_seconds, default=0):.2f} s) "
        f"({inproc_queries} queries sent, statuses {dict(statuses)}); `mlsd scan` "
        + (f"{res.wall:.2f} s ({scan_queries} queries)" if scan_ok else "failed")
        + f"; bar: seconds, not hours: {_met(fast)}"
    )
    return m
