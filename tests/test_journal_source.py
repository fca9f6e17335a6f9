"""The journal source's pieces that need no journal: cursors, fields, the command line, the
matches, the grammar entry point and the checkpoint's cursor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlsd.errors import StateError
from mlsd.ingest.checkpoint import Checkpoint
from mlsd.ingest.entry import parse_message
from mlsd.ingest.grammar import Skip, parse_line
from mlsd.ingest.sources.journal import (
    access_problem,
    argv,
    cursor_time,
    entry_of,
    entry_time,
    field_bytes,
    last_cursor,
    local_machine_id,
    realtime,
    same_entry,
)
from mlsd.journalmatch import DEFAULT_MATCH, Matcher, parse_terms
from mlsd.rows import AuthFailure

C = "s=d0f2;i=8;b=0123;m=138a;t=60a241e142102;x=96f1"


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (C, True),
        ("s=d0f2;i=8;b=0123;m=138a;t=60A241E142102;x=96f1", True),  # hex case
        ("s=d0f2;i=9;b=0123;m=138a;t=60a241e142102;x=96f1", False),  # the next seqnum
        ("s=ffff;i=1;b=0123;m=138a;t=60a241e142102;x=96f1", True),  # another file, same entry
        ("s=ffff;i=1;b=0123;m=138b;t=60a241e142103;x=1111", False),  # vacuumed: the next one
        ("s=ffff;i=8;b=9999;m=1;t=60a241e142102;x=96f1", True),  # seqnum of another id
        ("s=d0f2;i=8;b=0123;m=138a;t=60a241e142103;x=96f1", False),  # realtime differs
        ("", False),
        ("s=ffff;i=8;b=9999;m=1", False),  # nothing in common
    ],
)
def test_same_entry_compares_cursors_as_journalctl_does(other: str, same: bool) -> None:
    """Seqnums count within one seqnum id, monotonic times within one boot; the realtime
    and the hash must agree (sd_journal_test_cursor), never a comparison of strings."""
    assert same_entry(C, other) is same
    assert same_entry(other, C) is same


def test_cursor_time_and_realtime() -> None:
    """`t=` is the realtime in hex microseconds; a realtime no datetime holds is None."""
    assert cursor_time(C) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=0x60A241E142102
    )
    assert cursor_time("s=1;i=2") is None
    assert realtime(1_700_000_000_123_456) == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert realtime(2**63) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("caf\u00e9", "caf\u00e9".encode()),
        ([99, 97, 102, 233, 255], b"caf\xe9\xff"),  # not UTF-8: an array of byte values
        (["first", "second"], b"first"),  # a field logged twice
        ([[104, 255], "x"], b"h\xff"),
        (None, None),  # longer than journalctl shows
        ([], None),
        ([300, 1], None),  # not bytes: not a value journalctl writes
        (42, None),
        ("\udcff", b"\xed\xb3\xbf"),  # a lone surrogate from a JSON escape: kept, no error
    ],
)
def test_field_bytes(value: object, expected: bytes | None) -> None:
    """Every form journalctl writes a field in, and forms it never writes, without raising."""
    assert field_bytes(value) == expected


def test_argv_follow_from_a_cursor_with_exact_matches(tmp_path: Path) -> None:
    """Terms without `*` become journalctl matches OR'd with `+`; JSON limited to the fields
    needed; `--cursor` (inclusive), `--follow --no-tail` (not the last 10 only)."""
    m = Matcher(("_SYSTEMD_UNIT=postfix.service", "SYSLOG_IDENTIFIER=dovecot"))
    assert argv(m, tmp_path, follow=True, cursor=C) == [
        "journalctl",
        "--output=json",
        "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_HOSTNAME,_SYSTEMD_UNIT",
        "--no-pager",
        f"--directory={tmp_path}",
        "--merge",
        f"--cursor={C}",
        "--follow",
        "--no-tail",
        "_SYSTEMD_UNIT=postfix.service",
        "+",
        "SYSLOG_IDENTIFIER=dovecot",
    ]


def test_argv_with_patterns_reads_every_entry() -> None:
    """A `*` is beyond journalctl's matches: no match is passed, mlsd selects."""
    m = Matcher(DEFAULT_MATCH)
    assert not m.exact
    args = argv(m, None, follow=False)
    assert args == [
        "journalctl",
        "--output=json",
        "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_HOSTNAME,_SYSTEMD_UNIT",
        "--no-pager",
    ]
    assert argv(m, None, follow=False, cursor=C, last=True)[-1] == "--lines=1"


MID = "0123456789abcdef0123456789abcdef"


def test_argv_of_the_system_journal_merges_only_this_machines_entries() -> None:
    """`--merge` (no implied current boot when following), and this machine's id in every
    OR'd group, so that other machines' journals (`/var/log/journal/remote`) stay out."""
    exact = Matcher(("_SYSTEMD_UNIT=postfix.service", "SYSLOG_IDENTIFIER=dovecot"))
    args = argv(exact, None, follow=True, machine_id=MID)
    assert args[4:] == [
        "--merge",
        "--follow",
        "--no-tail",
        f"_MACHINE_ID={MID}",
        "_SYSTEMD_UNIT=postfix.service",
        "+",
        f"_MACHINE_ID={MID}",
        "SYSLOG_IDENTIFIER=dovecot",
    ]
    patterns = argv(Matcher(DEFAULT_MATCH), None, follow=True, machine_id=MID)
    assert patterns[4:] == ["--merge", "--follow", "--no-tail", f"_MACHINE_ID={MID}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(MID + "\n", MID), ("", None), ("not-an-id\n", None), (MID.upper(), None)],
)
def test_local_machine_id(tmp_path: Path, text: str, expected: str | None) -> None:
    path = tmp_path / "machine-id"
    path.write_text(text)
    assert local_machine_id(path) == expected
    assert local_machine_id(tmp_path / "absent") is None


@pytest.mark.parametrize(
    ("entry", "selected"),
    [
        ({"_SYSTEMD_UNIT": "postfix.service"}, True),
        ({"_SYSTEMD_UNIT": "postfix@-.service"}, True),
        ({"_SYSTEMD_UNIT": "postfix@out.service"}, True),
        ({"_SYSTEMD_UNIT": "dovecot.service"}, True),
        ({"_SYSTEMD_UNIT": "cron.service", "SYSLOG_IDENTIFIER": "postfix/smtpd"}, True),
        ({"_SYSTEMD_UNIT": "cron.service", "SYSLOG_IDENTIFIER": "postfix-out/smtpd"}, True),
        ({"_SYSTEMD_UNIT": "cron.service", "SYSLOG_IDENTIFIER": "dovecot"}, True),
        ({"_SYSTEMD_UNIT": "cron.service", "SYSLOG_IDENTIFIER": "dovecotx"}, False),
        ({"_SYSTEMD_UNIT": "sshd.service", "SYSLOG_IDENTIFIER": "sshd"}, False),
        ({"_SYSTEMD_UNIT": "postfix.service.d"}, False),
        ({"SYSLOG_IDENTIFIER": [1, 2]}, False),
        ({}, False),
    ],
)
def test_default_match(entry: dict[str, object], selected: bool) -> None:
    """The default: Postfix's and Dovecot's units, and their identifiers from elsewhere."""
    assert Matcher(DEFAULT_MATCH)(entry) is selected


@pytest.mark.parametrize("raw", ["", "postfix", "unit=postfix", "A=", "=x", "1A=x", "A=b c=d"])
def test_parse_terms_refuses(raw: str) -> None:
    """Only FIELD=VALUE terms; a lower-case or empty field name is a typo."""
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_terms(raw)


def test_parse_terms() -> None:
    """Spaces or commas between terms."""
    assert parse_terms(" A=x,B_2=y*  C=@z ") == ("A=x", "B_2=y*", "C=@z")


NOW = datetime.now(UTC)
WHEN = NOW - timedelta(hours=1)


def test_parse_message_is_the_file_grammar() -> None:
    """The journal's fields through the grammar give what the same syslog line gives, at
    the entry's exact time (microseconds, no year to guess)."""
    msg = (
        b"warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, "
        b"sasl_username=admin"
    )
    got = parse_message(b"postfix/submission/smtpd", b"mx", msg, WHEN, NOW)
    line = b"2026-11-25T04:38:00+00:00 mx postfix/submission/smtpd[1]: " + msg
    want = parse_line(line, NOW, UTC)
    assert isinstance(got, AuthFailure) and isinstance(want, AuthFailure)
    assert got == want._replace(time=WHEN)
    assert got.service == "submission" and got.server == "mx"
    dove = parse_message(
        b"dovecot",
        b"mx",
        b"imap-login: Disconnected (auth failed, 2 attempts in 4 secs): user=<bob>, "
        b"method=PLAIN, rip=198.51.100.4, lip=192.0.2.1",
        WHEN,
        NOW,
    )
    assert isinstance(dove, AuthFailure)
    assert (dove.ip, dove.user, dove.service, dove.attempts) == ("198.51.100.4", "bob", "imap", 2)


def test_parse_message_skips_and_nones() -> None:
    """Other traffic is None; a candidate that is not a row is the file source's Skip; a
    time that is no datetime, or more than a day ahead, is skipped as for files."""
    fail = b"warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: x"
    assert parse_message(b"postfix/smtpd", b"mx", b"connect from x[192.0.2.1]", WHEN, NOW) is None
    assert parse_message(b"postfix/smtp", b"mx", fail, WHEN, NOW) is Skip.NOT_SMTPD
    assert parse_message(b"postfix/smtpd", b"mx", fail, None, NOW) is Skip.OUT_OF_RANGE
    later = NOW + timedelta(days=2)
    assert parse_message(b"postfix/smtpd", b"mx", fail, later, NOW) is Skip.IMPLAUSIBLE_TIME
    huge = fail + b"a" * (1 << 17)
    assert parse_message(b"postfix/smtpd", b"mx", huge, WHEN, NOW) is Skip.TOO_LONG


def test_access_problems_name_cause_and_fix(tmp_path: Path) -> None:
    """journalctl's refusals become sentences with the group, or the directory, to fix."""
    system = access_problem("No journal files were opened due to insufficient permissions.", None)
    assert system is not None
    assert "group systemd-journal or adm" in system and "usermod -aG systemd-journal" in system
    hint = access_problem(
        "Hint: You are currently not seeing messages from other users and the system.", None
    )
    assert hint is not None and "systemd-journal" in hint
    local = access_problem(f"Failed to open {tmp_path}: Permission denied", tmp_path)
    assert local is not None and f"journal files in {tmp_path}" in local
    newer = access_problem("Journal file x.journal uses an unsupported feature, ignoring.", None)
    assert newer is not None and "newer systemd" in newer
    assert access_problem("Failed to seek to cursor", None) is None


def _cp(**extra: object) -> str:
    base = {
        "version": 2,
        "source": "journal:system",
        "generation": None,
        "offset": 0,
        "csv_dev": 1,
        "csv_ino": 2,
        "csv_length": 3,
        "committed_at": 4.0,
    }
    return json.dumps({**base, **extra})


def test_checkpoint_cursor_round_trip_and_old_files(tmp_path: Path) -> None:
    """The cursor is an optional field: written only when set, absent in older files."""
    cp = Checkpoint.from_json(_cp(cursor=C), tmp_path)
    assert cp.cursor == C
    assert Checkpoint.from_json(cp.to_json(), tmp_path) == cp
    old = Checkpoint.from_json(_cp(), tmp_path)
    assert old.cursor is None
    assert "cursor" not in old.to_json()


@pytest.mark.parametrize("bad", ["--output=cat", "s=1;i=2\n", 7, "s=1;; rm"])
def test_checkpoint_cursor_must_be_a_cursor(tmp_path: Path, bad: object) -> None:
    """It is handed to journalctl as an argument: nothing but a cursor's form passes."""
    with pytest.raises(StateError, match="cursor is not a journal cursor"):
        Checkpoint.from_json(_cp(cursor=bad), tmp_path)


def test_output_lines_that_are_not_entries_stop_nothing() -> None:
    """journalctl writes one JSON object with a cursor per line; anything else is passed
    over, and the batch's cursor is its last entry's."""
    good = b'{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000000000"}\n'
    assert entry_of(good) == {"__CURSOR": "s=1;i=2", "__REALTIME_TIMESTAMP": "1700000000000000"}
    for bad in (b"-- No entries --", b"[1]", b'{"__CURSOR":5}', b"{", b"\xff"):
        assert entry_of(bad) is None
    assert last_cursor(good + b"-- odd --\n", 0) == "s=1;i=2"
    assert last_cursor(b"-- odd --\n" + good, 0) == "s=1;i=2"
    assert last_cursor(good + b"-- odd --\n", len(good)) is None
    assert last_cursor(b"", 0) is None
    entry = entry_of(good)
    assert entry is not None
    assert entry_time(entry) == realtime(1_700_000_000_000_000)
    assert entry_time({"__CURSOR": "x", "__REALTIME_TIMESTAMP": "soon"}) is None
