"""Issue 17 finding 1: a stamp far after the time it was read is skipped, counted, shown.

The CSV is in time order and the report's window reader relies on it: one row stamped in
2099 among today's rows used to end the window early and hide every row after it.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mlsd.ingest.grammar import Skip, parse_block, parse_line
from tests.followkit import ENV, Env, Writer, now_line

FUTURE = (
    b"2099-01-01T00:00:00+00:00 mx postfix/smtpd[4242]: warning: unknown[198.51.100.9]: "
    b"SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=future\n"
)


def _mlsd(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.cmd(*args), capture_output=True, text=True, timeout=120, env=ENV, check=False
    )


def test_future_rows_no_longer_hide_the_rest_of_the_day(env: Env) -> None:
    """20 lines stamped 2099 among 2,000 of today: the 1,980 real ones all count today."""
    w = Writer(env.log)
    body = []
    for i in range(2000):
        body.append(FUTURE if i % 100 == 50 else now_line(f"u{i}"))
    w.write(b"".join(body))
    w.close()
    res = env.scan()
    # Before: the 2099 rows were recorded and status said "50 events today".
    st = json.loads(_mlsd(env, "status", "--json").stdout)
    assert st["events_today"] == 1980
    assert sum(env.rows().values()) == 1980
    assert "future" not in env.rows()
    assert "implausible_time:20" in res.stderr, res.stderr[-2000:]
    today = datetime.now(UTC).date().isoformat()
    report = _mlsd(env, "report", "--day", today)
    assert report.returncode == 0, report.stderr
    # The line wraps where the CSV's path ends, which depends on the temporary directory.
    assert " 1,980 rows." in " ".join(report.stdout.split()), report.stdout[:2000]


def test_parse_explain_names_the_reason(env: Env) -> None:
    """`parse --explain` says why such a line is not recorded (the file's mtime is `ref`)."""
    env.log.write_bytes(FUTURE + now_line("real"))
    res = _mlsd(env, "parse", "--explain", str(env.log))
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0].startswith("1: skipped (implausible time): 2099-01-01T00:00:00+00:00 mx")
    assert out[1].startswith("2: recorded ip=192.0.2.7")


def test_the_limit_is_one_day_after_ref() -> None:
    """Up to a day ahead of `ref` is a clock skew and recorded; beyond it, skipped."""
    ref = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def line(stamp: str) -> bytes:
        return FUTURE.replace(b"2099-01-01T00:00:00+00:00", stamp.encode())

    inside = line("2026-11-26T12:00:00+00:00")
    beyond = line("2026-11-26T12:00:01+00:00")
    assert not isinstance(parse_line(inside, ref, UTC), Skip)
    assert parse_line(beyond, ref, UTC) is Skip.IMPLAUSIBLE_TIME
    skipped: Counter[Skip] = Counter()
    events = parse_block(inside + beyond, ref, UTC, skipped)
    assert [e.time.isoformat() for e in events] == ["2026-11-26T12:00:00+00:00"]
    assert skipped == Counter({Skip.IMPLAUSIBLE_TIME: 1})


def test_parse_block_decides_as_parse_line_in_every_zone() -> None:
    """parse_block settles stamps dated days before the limit by their date alone: around
    that margin, in zones and offsets up to a day off UTC, it keeps what parse_line keeps."""
    ref = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    lines = [
        FUTURE.replace(b"2099-01-01T00:00:00+00:00", f"2026-11-{day}T{hms}{off}".encode())
        for day in range(21, 28)
        for hms in ("00:00:00", "11:59:59", "12:00:01", "23:59:59")
        for off in ("Z", "+23:59", "-23:59", "+14:00", "-12:00")
    ]
    lines += [
        FUTURE.replace(b"2099-01-01T00:00:00+00:00", f"Nov {day} {hms}".encode())
        for day in range(21, 28)
        for hms in ("00:00:00", "11:59:59", "12:00:01", "23:59:59")
    ]
    for tz in (UTC, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")):
        kept = [line for line in lines if not isinstance(parse_line(line, ref, tz), Skip)]
        events = parse_block(b"".join(lines), ref, tz, Counter())
        assert 0 < len(events) == len(kept) < len(lines)
        assert events == [parse_line(line, ref, tz) for line in kept]
