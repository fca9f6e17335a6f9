"""Tests for the benchmark generator and runner: `.venv/bin/pytest bench`.

They check what the benchmarks rely on (determinism, the counts, the stamp styles, the
runner's error handling), never how fast anything is: timings belong in results.json.
"""

from __future__ import annotations

import json
import random
import re
import stat
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import gen_log
import pytest
import run

MARKERS = (b"authentication failed", b"auth failed")
CLASSIC = re.compile(rb"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mail \S+: ")
RFC3339 = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 mail \S+: ")


def _gen(tmp_path: Path, lines: int = 20_000, seed: int = 7, stamps: str = "mixed") -> Path:
    path = tmp_path / f"{seed}-{stamps}.log"
    gen_log.generate(path, lines, seed, stamps)
    return path


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _gen(tmp_path / "a")
    b = _gen(tmp_path / "b")
    c = _gen(tmp_path, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_counts_match_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    counts = gen_log.generate(path, 20_000, 3, "classic")
    lines = path.read_bytes().splitlines()
    assert len(lines) == counts["lines"] == 20_000
    failures = [ln for ln in lines if any(m in ln for m in MARKERS)]
    assert len(failures) == counts["failure_lines"]
    assert sum(counts[k] for k in gen_log.FAILURE_KINDS) == counts["failure_lines"]
    assert counts["auth_failures"] == counts["failure_lines"] - counts["server_error"]
    # "About 3 %": loose bounds, the point is that the mix is not wildly off.
    assert 0.02 < counts["failure_lines"] / counts["lines"] < 0.04
    assert all(counts[k] > 0 for k in gen_log.FAILURE_KINDS)


def test_failure_shapes_are_the_real_ones(tmp_path: Path) -> None:
    text = _gen(tmp_path).read_bytes()
    for shape in (
        rb"postfix/smtpd\[\d+\]: warning: unknown\[[^\]]+\]: SASL LOGIN authentication "
        rb"failed: UGFzc3dvcmQ6\n",
        rb"postfix/submission/smtpd\[\d+\]: warning: [\w.]+\[[^\]]+\]: SASL PLAIN "
        rb"authentication failed: \(reason unavailable\), sasl_username=\S+\n",
        rb"postfix/smtps/smtpd\[\d+\]: warning: unknown\[[^\]]+\]:\d+: SASL LOGIN "
        rb"authentication failed: authentication failure, sasl_username=\S+\n",
        rb"SASL LOGIN authentication failed: Connection lost to authentication server, "
        rb"sasl_username=\(unavailable\)\n",
        rb"dovecot: imap-login: Disconnected \(auth failed, \d attempts in \d+ secs\): "
        rb"user=<[^>]+>, method=\w+, rip=[0-9a-f.:]+, lip=192\.0\.2\.1, TLS, session=<\S+>\n",
        rb"dovecot: pop3-login: Disconnected \(auth failed",
        rb"unknown\[2001:db8:",
        rb"disconnect from \S+ ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n",
    ):
        assert re.search(shape, text), shape


@pytest.mark.parametrize(
    ("stamps", "first", "second"),
    [("classic", CLASSIC, CLASSIC), ("rfc3339", RFC3339, RFC3339), ("mixed", CLASSIC, RFC3339)],
)
def test_stamp_styles(
    tmp_path: Path, stamps: str, first: re.Pattern[bytes], second: re.Pattern[bytes]
) -> None:
    lines = _gen(tmp_path, lines=2_000, stamps=stamps).read_bytes().splitlines()
    assert all(first.match(ln) for ln in lines[:1_000])
    assert all(second.match(ln) for ln in lines[1_000:])


def test_time_is_monotonic_and_starts_on_the_24th(tmp_path: Path) -> None:
    lines = _gen(tmp_path, lines=5_000, stamps="rfc3339").read_bytes().splitlines()
    times = [datetime.fromisoformat(ln.split(b" ", 1)[0].decode()) for ln in lines]
    assert times == sorted(times)
    assert datetime(2026, 11, 24, tzinfo=UTC) <= times[0] < datetime(2026, 11, 24, 0, 1, tzinfo=UTC)
    # A few lines per second: 5000 lines span minutes, not hours or milliseconds.
    assert 60 < (times[-1] - times[0]).total_seconds() < 3600


def test_pools_are_the_promised_sizes() -> None:
    world = gen_log._World(random.Random(1))
    assert len(set(world.attackers)) == 2000
    assert any(":" in ip for ip in world.attackers)
    assert len(set(world.users)) == 200


def test_the_parser_agrees_with_the_generator(tmp_path: Path) -> None:
    from mlsd.ingest import grammar as parse  # noqa: PLC0415 - the package, not the generator, under test

    path = tmp_path / "x.log"
    counts = gen_log.generate(path, 20_000, 11, "mixed")
    ref = datetime(2026, 11, 26, tzinfo=UTC)
    seen: Counter[str] = Counter()
    with path.open("rb") as f:
        for line in f:
            r = parse.parse_line(line, ref, UTC)
            if r is not None:
                seen[type(r).__name__ if not isinstance(r, parse.Skip) else r.name] += 1
    assert seen == Counter(AuthFailure=counts["auth_failures"], SERVER_ERROR=counts["server_error"])


def test_runner_writes_results_and_checks_the_floors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = run.main(["--lines", "3000", "--out", str(out), "--repeat", "1",
                   "--only", "floor-python", "--only", "floor-grep"])  # fmt: skip
    assert rc == 0
    report = json.loads((out / "results.json").read_text())
    res = report["results"]
    assert set(res) == {"floor-python", "floor-grep"}
    assert res["floor-python"]["check"] == "ok"
    assert res["floor-grep"]["check"] == "ok"
    assert report["machine"]["nproc"] >= 1
    table = capsys.readouterr().out
    assert "| floor-python |" in table and "1.00x" in table
    # The second run reuses the cached log instead of regenerating it.
    log = Path(report["log"]["path"])
    mtime = log.stat().st_mtime_ns
    assert run.main(["--lines", "3000", "--out", str(out), "--repeat", "1",
                     "--only", "floor-python"]) == 0  # fmt: skip
    assert log.stat().st_mtime_ns == mtime


def test_a_failing_cli_is_an_error_row_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "mlsd"
    fake.write_text("#!/bin/sh\necho \"mlsd: invalid choice: 'parse'\" >&2\nexit 2\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(run, "MLSD", fake)
    rc = run.main(["--lines", "500", "--out", str(tmp_path / "out"), "--repeat", "1",
                   "--only", "parse-cli", "--only", "floor-python"])  # fmt: skip
    assert rc == 1
    table = capsys.readouterr().out
    assert "| parse-cli | — |" in table
    assert "exited 2: mlsd: invalid choice: 'parse'" in table
    assert "| floor-python |" in table


def test_unknown_benchmark_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--out", str(tmp_path), "--only", "nope"])
    assert exc.value.code == 2
