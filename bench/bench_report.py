"""Benchmark: building the daily report over a CSV of 1,000,000 rows spanning 30 days.

The CSV is generated once (seeded, cached in the out dir): ~33,000 rows a day from a pool
of attackers whose weights follow a power law, as real attack traffic does (a few IPs make
most of the noise), with IPv6 and Dovecot-style rows mixed in. The report of the last day is
built cold (no per-day summary cache: the 30 days of history are scanned once) and warm
(the cache from the cold run in place: only the day itself is read, and the CSV's row
count from where the cold run stopped).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from registry import Context, Metrics, benchmark, best_of

ROWS = 1_000_000
DAYS = 30
SEED = 7
ZONE = "Europe/Paris"
FIRST_DAY = date(2026, 10, 26)  # the last day, 2026-11-24, is after the October DST change


def _pool(rng: random.Random) -> tuple[list[tuple[str, str, str, str, str]], list[float]]:
    """Attackers: (ip, hostname, country, asn, aso), and power-law weights."""
    countries = ["CN", "RU", "US", "BR", "VN", "IN", "DE", "NL", "FR", "KR", "N/A"]
    attackers = []
    for k in range(40_000):
        asn = rng.randrange(1000, 400_000)
        if k % 10 == 0:
            ip = f"2001:db8:{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}::{k:x}"
        else:
            ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{k % 250 + 1}"
        host = "unknown" if k % 3 else f"host-{k}.example.net"
        attackers.append((ip, host, rng.choice(countries), f"AS{asn}", f"Network {asn % 997}"))
    weights = [1.0 / (k + 1) ** 0.9 for k in range(len(attackers))]
    return attackers, weights


def write_csv(path: Path) -> None:
    """The seeded 1M-row CSV, in mlsd's own format (csvlog's header and encoder)."""
    from mlsd.rows import HEADER, encode_rows  # noqa: PLC0415 - after registry's sys.path

    rng = random.Random(SEED)
    attackers, weights = _pool(rng)
    users = [f"user{k}" for k in range(3000)] + ["admin", "info", "test", "postmaster"]
    user_weights = [1.0 / (k + 1) ** 0.5 for k in range(len(users))]
    services = ["smtp", "submission", "submissions", "imap", "pop3"]
    tz = ZoneInfo(ZONE)
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=tz)
    step = DAYS * 86400 / ROWS
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(HEADER)
        for first in range(0, ROWS, 50_000):
            n = min(50_000, ROWS - first)
            who = rng.choices(attackers, weights, k=n)
            tried = rng.choices(users, user_weights, k=n)
            rows = []
            for k in range(n):
                ip, host, cc, asn, aso = who[k]
                when = start + timedelta(seconds=int((first + k) * step))
                service = services[(first + k) % 5]
                dovecot = service in ("imap", "pop3")
                rows.append(
                    [
                        "mail",
                        when.astimezone(tz).isoformat(timespec="seconds"),
                        ip,
                        tried[k],
                        "" if dovecot else host,
                        "N/A" if dovecot else ("NONE" if host == "unknown" else "OK"),
                        cc,
                        asn,
                        aso,
                        service,
                        "" if dovecot else "LOGIN",
                        "3" if dovecot and k % 7 == 0 else "1",
                    ]
                )
            out.write(encode_rows(rows))
    tmp.replace(path)


@benchmark("report-1m", "compose.build for the last day of a 1M-row, 30-day CSV: cold and warm")
def report_1m(ctx: Context) -> Metrics:
    """Cold: no per-day summary cache. Warm: the cache the cold run left."""
    from mlsd.config import Config, PathsConfig, ReportConfig, SourceConfig  # noqa: PLC0415
    from mlsd.report import compose  # noqa: PLC0415 - a broken mlsd must give an error row only

    ctx.out.mkdir(parents=True, exist_ok=True)
    csv_path = ctx.out / f"report-{ROWS}-s{SEED}-v1.csv"
    if not csv_path.exists():
        write_csv(csv_path)
    day = FIRST_DAY + timedelta(days=DAYS - 1)
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-report-") as state:
        cfg = Config(
            paths=PathsConfig(csv=csv_path, state_dir=Path(state), mail_log=ctx.log),
            source=SourceConfig(timezone=ZONE),
            report=ReportConfig(timezone=ZONE),
        )
        days_dir = Path(state) / "days"

        cold_times = []
        for _ in range(max(1, ctx.repeat)):
            shutil.rmtree(days_dir, ignore_errors=True)
            t0 = time.perf_counter()
            built = compose.build(cfg, day, hostname="bench")
            cold_times.append(time.perf_counter() - t0)
        warm, warm_runs, built = best_of(
            ctx.repeat, lambda: compose.build(cfg, day, hostname="bench")
        )
        cached = len(list(days_dir.glob("????-??-??.json")))
    best_cold = min(cold_times)
    return {
        "seconds": warm,
        "cold_seconds": best_cold,
        "runs": [round(t, 4) for t in warm_runs],
        "cold_runs": [round(t, 4) for t in cold_times],
        "events": built.events,
        "summary": (
            f"warm {warm:.3f} s, cold {best_cold:.3f} s (no day cache; {cached} days cached "
            f"after); {built.events:,} rows that day, CSV {ROWS:,} rows over {DAYS} days; "
            f"attachment {len(built.attachment[1]) if built.attachment else 0:,} bytes"
        ),
    }
