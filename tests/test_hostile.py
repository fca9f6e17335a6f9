"""Hostile input through every surface: the cases in tests/hostile/cases.jsonl, and generated ones.

Each case is a log line an attacker (a remote client, or a local user through `logger`)
could have written, the field the attack rides on, and the verdict the parser must reach.
Every case goes through the whole path available today: parse → CSV bytes → `mlsd parse`
and `mlsd parse --explain` output → log lines in the journal, JSON and console formats →
the report's subject, text, HTML and attachment. Each surface is checked on its raw bytes:
no ESC, no other C0/C1 control but the surface's own line ends, no bidi, line-separator or
invisible character, no cell a spreadsheet would evaluate, no extra (forged) line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd import logs
from mlsd.config import Config, PathsConfig, ReportConfig, SourceConfig
from mlsd.enrich.postfix import postfix_reverse
from mlsd.ingest.csvlog import CsvJournal, RowFormat
from mlsd.ingest.grammar import Skip, parse_line
from mlsd.ingest.pipeline import SkipLog
from mlsd.report import compose
from mlsd.rows import COLUMNS, AuthFailure
from mlsd.untrusted import raw_line
from tests.followkit import ENV, Env

CASES_FILE = Path(__file__).parent / "hostile" / "cases.jsonl"
CASES: list[dict[str, Any]] = [
    json.loads(line) for line in CASES_FILE.read_text().splitlines() if line.strip()
]
REF = datetime(2026, 11, 25, tzinfo=UTC)
DAY = date(2026, 11, 24)

# What must never appear raw on a surface: C0 but LF (each surface's own line end), DEL,
# C1, and the invisible or reordering characters (soft hyphen, ALM, Mongolian vowel
# separator, zero-width, LRM/RLM, line/paragraph separators, bidi embeddings, overrides and
# isolates, word joiner, BOM, tag characters).
FORBIDDEN = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2069\ufeff\U000e0000-\U000e007f]"
)
# What a spreadsheet trims before it looks for a formula.
BLANKS = " \t\r\n\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b\u200c\u200d\u202f\u205f\u2060\u3000\ufeff"  # noqa: E501


def assert_inert(data: bytes, where: str) -> None:
    """`data` is UTF-8 holding nothing a terminal, a viewer or a log reader would act on."""
    text = data.decode("utf-8")
    m = FORBIDDEN.search(text)
    assert m is None, f"{where}: raw {m[0]!r} at {m.start()}: {text[max(0, m.start() - 40) :]!r}"


def assert_no_live_formula(data: bytes, where: str) -> None:
    """No cell of the CSV `data` starts a formula once a spreadsheet has trimmed its blanks."""
    for row in csv.reader(io.StringIO(data.decode("utf-8")), delimiter=";"):
        for cell in row:
            live = cell.lstrip(BLANKS)[:1] in ("=", "+", "-", "@")
            assert not live or cell.startswith("'"), f"{where}: live formula {cell!r}"


def parsed(case: dict[str, Any]) -> AuthFailure | Skip | None:
    return parse_line(case["line"].encode(), REF, UTC)


def csv_bytes(events: list[AuthFailure]) -> bytes:
    return RowFormat(tz=UTC, date_format="iso", cap=256).encode(events, postfix_reverse)


def recorded() -> list[AuthFailure]:
    out = []
    for case in CASES:
        result = parsed(case)
        if isinstance(result, AuthFailure):
            out.append(result)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_verdict_and_csv_cells(case: dict[str, Any]) -> None:
    """The parser's verdict is the case's; a recorded line is one inert CSV row whose
    cells hold what the case says (escaped, neutralised)."""
    result = parsed(case)
    if case["expect"] != "recorded":
        assert isinstance(result, Skip) and case["expect"] == result.value
        return
    assert isinstance(result, AuthFailure)
    data = csv_bytes([result])
    assert_inert(data, "csv")
    assert_no_live_formula(data, "csv")
    assert 1 == data.count(b"\n")
    (row,) = csv.reader(io.StringIO(data.decode()), delimiter=";")
    cells = dict(zip(COLUMNS, row, strict=True))
    for column, expected in case.get("cells", {}).items():
        assert expected == cells[column]


def mlsd(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mlsd", *args],
        capture_output=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )


@pytest.fixture(scope="module")
def hostile_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "mail.log"
    path.write_bytes(b"".join(c["line"].encode() + b"\n" for c in CASES))
    return path


def test_mlsd_parse_csv_output_is_inert(hostile_log: Path) -> None:
    """`mlsd parse`: the CSV (and `--format jsonl`) on stdout and the summary on stderr,
    on their raw bytes."""
    r = mlsd("parse", str(hostile_log))
    assert 0 == r.returncode, r.stderr
    assert_inert(r.stdout, "parse stdout")
    assert_inert(r.stderr, "parse stderr")
    assert_no_live_formula(r.stdout, "parse stdout")
    assert 1 + len(recorded()) == r.stdout.count(b"\n")
    r = mlsd("parse", "--format", "jsonl", str(hostile_log))
    assert 0 == r.returncode, r.stderr
    assert_inert(r.stdout, "parse jsonl")
    assert len(recorded()) == len(r.stdout.splitlines())


def test_mlsd_parse_explain_is_inert_and_one_line_per_case(hostile_log: Path) -> None:
    """`mlsd parse --explain`: one line per case (none forged), each verdict as the case
    says, nothing raw from the line: not the IP, the service, the user, the line itself."""
    r = mlsd("parse", "--explain", str(hostile_log))
    assert 0 == r.returncode, r.stderr
    assert_inert(r.stdout, "explain")
    lines = r.stdout.decode().splitlines()
    assert len(CASES) == len(lines)
    for n, (case, line) in enumerate(zip(CASES, lines, strict=True), 1):
        verdict = "recorded" if case["expect"] == "recorded" else f"skipped ({case['expect']})"
        assert line.startswith(f"{n}: {verdict}"), line


def log_text(fmt: str, stream: TextIO) -> list[str]:
    stream.seek(0)
    return stream.read().splitlines()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logs.configure("WARNING", "console_plain", sys.stderr)


# The colour codes the console renderer itself writes on a terminal (and nothing else).
_OWN_COLOURS = re.compile("\x1b\\[[0-9;]*m")


@pytest.mark.parametrize("fmt", ["journal", "json", "console_plain", "console"])
def test_log_lines_are_inert_in_every_format(fmt: logs.Format, log_stream: io.StringIO) -> None:
    """Every field of every case, logged through structlog and through stdlib logging (as
    the daemon's modules do), and each skipped line through the pipeline's SkipLog: one
    inert line per record (on a terminal, once the renderer's own colours are removed)."""
    logs.configure("DEBUG", fmt, log_stream)
    log = logs.get("mlsd.hostile")
    std = logging.getLogger("mlsd.hostile")
    records = 0
    skipped = []
    for case in CASES:
        result = parsed(case)
        if isinstance(result, AuthFailure):
            fields = {
                k: getattr(result, k) or "" for k in ("server", "service", "hostname", "ip", "user")
            }
            log.info("row", **fields)
            std.warning(
                "row user=%s host=%s service=%s", result.user, result.hostname, result.service
            )
            records += 2
        elif isinstance(result, Skip):
            skipped.append((result, case["line"].encode()))
    SkipLog(per_second=1000).emit(skipped)
    records += len(skipped)
    out = log_stream.getvalue()
    if fmt == "console":
        out = _OWN_COLOURS.sub("", out)
    assert_inert(out.encode(), fmt)
    assert records == len(log_text(fmt, log_stream))


def report_cfg(tmp_path: Path) -> Config:
    state = tmp_path / "state"
    state.mkdir()
    return Config(
        paths=PathsConfig(
            mail_log=tmp_path / "mail.log", csv=tmp_path / "mlsd.csv", state_dir=state
        ),
        source=SourceConfig(timezone="UTC"),
        report=ReportConfig(timezone="UTC", to=("admin@example.org",)),
    )


def test_report_surfaces_are_inert(tmp_path: Path) -> None:
    """The day's report of every recorded case: subject, text, HTML and the attached CSV."""
    cfg = report_cfg(tmp_path)
    journal = CsvJournal(cfg.paths.csv)
    journal.open()
    journal.append(csv_bytes(recorded()))
    journal.close()
    rep = compose.build(cfg, DAY, hostname="mail\x1b]0;x\x07", now=REF)
    assert_inert(rep.subject.encode(), "subject")
    assert_inert(rep.text.encode(), "text")
    assert_inert(rep.html.encode(), "html")
    assert "<script>" not in rep.html
    assert rep.attachment is not None
    name, data, _ = rep.attachment
    assert name.endswith(".csv")
    assert_inert(data, "attachment")
    assert_no_live_formula(data, "attachment")


def test_report_recleans_an_edited_csv(tmp_path: Path) -> None:
    """A CSV row written by hand (or an older version) with a formula after spaces and raw
    U+2028 is cleaned again in the attachment."""
    cfg = report_cfg(tmp_path)
    journal = CsvJournal(cfg.paths.csv)
    journal.open()
    journal.append(
        b'mail;2026-11-24T10:00:00+00:00;203.0.113.7;  =HYPERLINK("http://x");'
        b"unknown;NONE;FR;AS1;Org\xe2\x80\xa8x;smtp;LOGIN;1\n"
    )
    journal.close()
    rep = compose.build(cfg, DAY, hostname="mail", now=REF)
    assert rep.attachment is not None
    assert_inert(rep.attachment[1], "attachment")
    assert_no_live_formula(rep.attachment[1], "attachment")
    assert_inert(rep.text.encode(), "text")


def test_scan_then_report_and_status_through_the_cli(tmp_path: Path) -> None:
    """The daemon's own path as an operator runs it: `mlsd scan` of the cases (its debug log
    on stderr), the CSV it wrote, `mlsd report --text` and `--html` of the day, and
    `mlsd status`: every byte inert, every cell without a live formula."""
    env = Env(tmp_path)
    env.extra = "[report]\ntimezone = UTC\n"
    env.write_conf({})
    env.log.write_bytes(b"".join(c["line"].encode() + b"\n" for c in CASES))
    outputs = {"scan": env.scan()}
    for name, args in {
        "report text": ("report", "--day", DAY.isoformat(), "--text"),
        "report html": ("report", "--day", DAY.isoformat(), "--html"),
        "status": ("status",),
    }.items():
        outputs[name] = subprocess.run(
            env.cmd(*args), capture_output=True, text=True, timeout=120, env=ENV, check=False
        )
    for name, res in outputs.items():
        assert_inert(res.stdout.encode(), f"{name} stdout")
        assert_inert(res.stderr.encode(), f"{name} stderr")
    assert "not recorded" in outputs["scan"].stderr  # the skipped cases were logged
    assert str(len(recorded())) in outputs["report text"].stdout
    data = env.csv.read_bytes()
    assert_inert(data, "scan csv")
    assert_no_live_formula(data, "scan csv")
    assert 1 + len(recorded()) == data.count(b"\n")


# ---- generated lines

_ANY_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n"),
    max_size=30,
)
_BLANK_THEN_FORMULA = st.builds(
    lambda blanks, start, rest: blanks + start + rest,
    st.text(alphabet=st.sampled_from(" \t\u00a0\u200b\ufeff\u3000\u2028\u00ad"), max_size=4),
    st.sampled_from("=+-@"),
    _ANY_TEXT,
)
_USER = st.one_of(_ANY_TEXT, _BLANK_THEN_FORMULA).filter(lambda u: u != "(unavailable)")
_HOST = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs"), blacklist_characters="\n[ "),
    max_size=20,
)
_SCOPE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n] "),
    min_size=1,
    max_size=12,
)
_IPV6 = st.one_of(
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.tuples(st.ip_addresses(v=6).map(str), _SCOPE).map(lambda t: f"{t[0]}%{t[1]}"),
)


@st.composite
def hostile_lines(draw: st.DrawFn) -> bytes:
    user = draw(_USER)
    if draw(st.booleans()):
        host = draw(_HOST) or "unknown"
        return (
            f"2026-11-24T10:00:00+00:00 mail postfix/smtpd[1]: warning: {host}[{draw(_IPV6)}]: "
            f"SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={user}"
        ).encode()
    ip = draw(st.ip_addresses(v=6).map(str))
    return (
        "2026-11-24T10:00:00+00:00 mail dovecot: imap-login: Disconnected "
        f"(auth failed, 1 attempts in 2 secs): user=<{user}>, method=PLAIN, rip={ip}, "
        "lip=192.0.2.1, TLS"
    ).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_lines())
def test_generated_lines_are_inert_on_csv_and_log_surfaces(line: bytes) -> None:
    """Attacker-controlled usernames, hostnames and IPv6 forms (scope ids included): the CSV
    row is one inert line with no live formula, never an IP with a scope id; the log line
    and the explain form of the raw line are inert and single."""
    result = parse_line(line, REF, UTC)
    assert_inert(raw_line(line).encode(), "explain")
    if not isinstance(result, AuthFailure):
        return
    assert "%" not in result.ip
    data = csv_bytes([result])
    assert_inert(data, "csv")
    assert_no_live_formula(data, "csv")
    assert 1 == data.count(b"\n")
    for fmt in ("journal", "json"):
        stream = io.StringIO()
        logs.configure("INFO", fmt, stream)
        logs.get("mlsd.hostile").info(
            "row", user=result.user or "", hostname=result.hostname, ip=result.ip
        )
        logging.getLogger("mlsd.hostile").warning("row user=%s", result.user)
        out = stream.getvalue()
        assert_inert(out.encode(), fmt)
        assert 2 == len(out.splitlines())
    logs.configure("WARNING", "console_plain", sys.stderr)
