"""The parser against every real line of the corpus, each with its expectation beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mlsd.ingest.grammar import Skip, parse_block, parse_line
from mlsd.rows import AuthFailure

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Case:
    source: str
    line_no: int
    line: str
    expected: dict[str, Any]
    ref: datetime
    tz: tzinfo


def _cases() -> list[Case]:
    cases: list[Case] = []
    for exp_file in sorted(CORPUS.glob("*/*.expected.jsonl")):
        log = exp_file.with_name(exp_file.name.replace(".expected.jsonl", ".log"))
        lines = log.read_text(encoding="utf-8").splitlines()
        meta, *records = (json.loads(x) for x in exp_file.read_text().splitlines())
        tz = ZoneInfo(meta["tz"])
        if "reference" in meta:
            ref = datetime.fromisoformat(meta["reference"])
        else:
            # Read each capture as on the day after its last line.
            ref = (
                datetime(meta["year"], 12, 31, tzinfo=UTC)
                if "sample" in log.name
                else (datetime(meta["year"], 11, 25, 5, 0, tzinfo=UTC))
            )
        assert len(records) == len(lines), f"{exp_file}: one expectation per line of {log.name}"
        for rec in records:
            assert rec["line"] == lines[rec["line_no"] - 1], f"{exp_file}:{rec['line_no']} drifted"
            # A line whose stamp carries its year may say when it was read (a stamp more
            # than a day after that is skipped as an implausible time).
            line_ref = datetime.fromisoformat(rec["reference"]) if "reference" in rec else ref
            cases.append(
                Case(
                    f"{log.parent.name}/{log.name}", rec["line_no"], rec["line"], rec, line_ref, tz
                )
            )
    return cases


CASES = _cases()


def test_corpus_is_complete() -> None:
    """Every log in the corpus has its expectations, and they include rows, skips and nones."""
    logs = sorted(CORPUS.glob("*/*.log"))
    assert len(logs) == 15
    kinds = Counter(c.expected["expect"] for c in CASES)
    assert kinds["row"] == 247 and kinds["skip"] == 19 and kinds["none"] > 300, kinds


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.source}:{c.line_no}")
def test_corpus_line(case: Case) -> None:
    """Each line parses exactly as its annotation says (with LF, CRLF or no line end)."""
    exp = case.expected
    for ending in (b"\n", b"\r\n", b""):
        result = parse_line(case.line.encode() + ending, case.ref, case.tz)
        if exp["expect"] == "row":
            assert isinstance(result, AuthFailure), result
            actual = {
                "time": result.time.isoformat(),
                "server": result.server,
                "service": result.service,
                "ip": result.ip,
                "user": result.user,
                "mechanism": result.mechanism,
                "hostname": result.hostname,
                "attempts": result.attempts,
            }
            expected = {k: exp[k] for k in actual}
            assert expected == actual
        elif exp["expect"] == "skip":
            assert result is Skip(exp["skip"])
        else:
            assert result is None


@pytest.mark.parametrize("log", sorted(CORPUS.glob("*/*.log")), ids=lambda p: p.name)
def test_the_block_search_finds_every_line_the_parser_reads(log: Path) -> None:
    """What the daemon runs (parse_block: the needle search over a whole block, then
    the parser) gives exactly the rows and skips of parsing each line on its own: the
    prefilter lets every form of the corpus through."""
    cases = [c for c in CASES if c.source == f"{log.parent.name}/{log.name}"]
    ref, tz = cases[0].ref, cases[0].tz
    skipped: Counter[Skip] = Counter()
    events = parse_block(log.read_bytes(), ref, tz, skipped)
    one_by_one = [parse_line(c.line.encode(), ref, tz) for c in cases]
    assert [r for r in one_by_one if isinstance(r, AuthFailure)] == events
    assert Counter(r for r in one_by_one if isinstance(r, Skip)) == skipped


def test_explain_says_why_each_real_world_form_is_or_is_not_a_row() -> None:
    """`mlsd parse --explain` on the real-world forms: rows with their attempts (rsyslog's
    repetitions multiplied in), skips with their reason (server-side, mechanism)."""
    log = CORPUS / "realworld" / "forms.log"
    res = subprocess.run(
        [sys.executable, "-m", "mlsd", "parse", "--explain", str(log)],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = {int(line.split(":", 1)[0]): line for line in res.stdout.splitlines()}
    expected = {}
    for c in CASES:
        if c.source == "realworld/forms.log" and c.expected["expect"] != "none":
            exp = c.expected
            expected[c.line_no] = (
                f"{c.line_no}: recorded ip={exp['ip']} "
                if exp["expect"] == "row"
                else f"{c.line_no}: skipped ({exp['skip']}): "
            )
            if exp["expect"] == "row":
                assert f" attempts={exp['attempts']}: " in shown[c.line_no]
    assert expected.keys() == shown.keys()
    assert all(shown[n].startswith(prefix) for n, prefix in expected.items()), res.stdout


def _lab_events(variant: str) -> list[AuthFailure]:
    ref = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
    events = []
    for part in ("mail", "dovecot"):
        for line in (CORPUS / "lab" / f"{variant}-{part}.log").read_bytes().splitlines(True):
            r = parse_line(line, ref, UTC)
            if isinstance(r, AuthFailure):
                events.append(r)
    return events


SERVICE_BY_PORT = {25: "smtp", 587: "submission", 465: "submissions"}


@pytest.mark.parametrize(
    "variant", ["postlogd", "syslog-traditional", "syslog-rfc3339", "penalty-on"]
)
def test_every_recorded_attack_is_found(variant: str) -> None:
    """Each failed attempt the lab's client logged (535, a mechanism the server offers)
    is an event with its IP, service, mechanism and user; no successful login is one.

    The attack logs are not complete (multi-attempt sessions were logged elsewhere), so
    this checks inclusion; the per-line expectations above check the exact set. Dovecot
    lower-cases usernames before Postfix logs them (auth_username_format = %Lu).
    """
    attempts = json.loads((CORPUS / "lab" / f"attack-{variant}.json").read_text())
    events = Counter(
        (e.ip, e.service, e.mechanism, (e.user or "").lower()) for e in _lab_events(variant)
    )
    failed = Counter(
        (a["src"], SERVICE_BY_PORT[a["port"]], a["mech"], a["user"].lower())
        for a in attempts
        if a["code"] == 535 and a["mech"] in ("PLAIN", "LOGIN") and a["variant"] != "bad-base64"
    )
    assert failed, "the attack log has failures"
    assert failed - events == Counter()
    for a in attempts:
        if a["code"] == 235:
            assert (a["src"], a["user"]) not in {(e.ip, e.user) for e in _lab_events(variant)}
