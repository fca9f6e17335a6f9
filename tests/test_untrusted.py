"""The attacker-text policy (mlsd.untrusted) and the five surfaces that use it."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsd import logs, untrusted
from mlsd.app.systemd import ascii_status
from mlsd.ingest.csvlog import clean_field, printable
from mlsd.report import display
from tests.test_geo import IPINFO_RECORDS, write_mmdb

# Characters issue 17 names (finding 4), and the ones the log escape used to miss.
NAMED = "\u2028\u2029\u200b\u00ad\ufeff\u061c\u200e\u200f\u202e\u2066\x1b\x85\x9b\x7f\x00\xa0"


@pytest.fixture
def journal() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("INFO", "journal", stream)
    yield stream
    logs.configure("WARNING", "console_plain", sys.stderr)


@pytest.mark.parametrize("ch", list(NAMED), ids=[f"U+{ord(c):04X}" for c in NAMED])
def test_one_class_on_every_surface(ch: str, journal: io.StringIO) -> None:
    """Each character is escaped the same way in a CSV cell, a raw line, the terminal form,
    the report's text and HTML, and a log field; STATUS= turns it into `?`."""
    value = f"a{ch}b"
    shown = untrusted.escape_char(ch)
    expected = f"a{shown}b"
    assert expected == clean_field(value, 256)
    assert expected == printable(value.encode())
    assert expected == untrusted.terminal(value)
    assert expected == display.plain(value)
    assert expected == untrusted.html(value)
    assert "a?b" == ascii_status(value)
    logs.get("t").info("e", user=value)
    assert f"<6>e user={expected} logger=t" == journal.getvalue().rstrip("\n")


def test_escapes_are_the_pinned_forms() -> None:
    """`\\xNN` below U+0100, `\\uNNNN` in the BMP, `\\UNNNNNNNN` above (never ambiguous)."""
    assert ["\\x1b", "\\u2028", "\\U000e0041"] == [
        untrusted.escape_char(c) for c in ("\x1b", "\u2028", "\U000e0041")
    ]


@pytest.mark.parametrize(
    "value",
    [
        '  =HYPERLINK("http://evil.example/","x")',
        "\t=1+1",
        "\u00a0+1",
        "\u200b-1",
        "\ufeff@SUM(A1)",
        " \u3000 =1",
        "\u2028=1",
    ],
)
def test_formula_after_blanks_is_neutralised(value: str) -> None:
    """A formula after spaces, tabs, NBSP, zero-width characters or a BOM gets a leading `'`
    (finding 4): a spreadsheet that trims those would otherwise evaluate it."""
    assert untrusted.starts_formula(value)
    assert clean_field(value, 256).startswith("'")


@pytest.mark.parametrize("value", ["  alice", "\u00a0bob", "a=b", "'=x", " ", ""])
def test_no_formula_no_quote(value: str) -> None:
    """Text whose first non-blank character starts no formula keeps its first character."""
    assert not clean_field(value, 256).startswith("'") or value.startswith("'")


def test_log_field_cannot_forge_a_line_but_a_traceback_keeps_its_lines() -> None:
    """A newline in a field's value is escaped in every format (an SMTP reply, finding 6);
    a traceback keeps its newlines for the renderer to fold or print."""
    assert "451 a\\x0a<0>forged" == untrusted.log_value("error", "451 a\n<0>forged")
    assert "Traceback\n  x\\x1b" == untrusted.log_value("exception", "Traceback\n  x\x1b")


def test_status_line_is_one_ascii_line() -> None:
    """STATUS= holds printable ASCII only, capped."""
    assert "451 ?]0;x?" == untrusted.status_line("451 \x1b]0;x\x07")
    assert untrusted.STATUS_MAX == len(untrusted.status_line("y" * 1000))


def test_lookup_output_is_inert_with_a_hostile_database(tmp_path: Path) -> None:
    """`mlsd lookup`: an organisation name and a database type holding a terminal title
    change and a bidi override (a database file, registrant-chosen text) are shown escaped."""
    records = {"198.51.100.0/24": {**IPINFO_RECORDS["198.51.100.0/24"]}}
    records["198.51.100.0/24"]["as_name"] = "Evil\x1b]0;PWNED\x07 Net\u202e"
    db = write_mmdb(tmp_path / "lite.mmdb", "ipinfo lite.mmdb\x1b[2J", records)
    conf = tmp_path / "mlsd.conf"
    conf.write_text(f"[geoip]\ncountry_db = {db}\nasn_db = {db}\n[dns]\nreverse = off\n")
    done = subprocess.run(
        [sys.executable, "-m", "mlsd", "lookup", "-c", str(conf), "198.51.100.9"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    out = done.stdout.decode()
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "  organisation  Evil\\x1b]0;PWNED\\x07 Net\\u202e" in out
