"""Bytes → parse → enrich → CSV row is total: a line can be skipped, never stop mlsd.

A line is written by whoever can reach the log (a broken clock, `logger`, an attacker's
username), and an exception anywhere between the bytes and the CSV stops the daemon on
the same batch at every restart. So the property runs the whole path, with stamps of all
three families up to the edges of what a datetime can hold, hostile fields, the zones at
both ends of the offset range and both date formats.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.enrich.postfix import no_reverse, postfix_reverse
from mlsd.ingest.csvlog import RowFormat
from mlsd.ingest.grammar import Skip, parse_block, parse_line
from mlsd.ingest.prefilter import NEEDLES
from mlsd.report.window import parse_date
from mlsd.rows import COLUMNS, AuthFailure
from tests.followkit import ENV, Env, Writer

ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("Europe/Paris"),
    ZoneInfo("Pacific/Kiritimati"),  # +14:00, the easternmost offset in use
    ZoneInfo("Etc/GMT+12"),  # -12:00, the westernmost
]
FORMATS = ["iso", "maillogsentinel"]
REF = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)
# TAI64 labels count seconds from 2**62, plus the 10 s TAI-UTC offset of 1970.
TAI = 2**62 + 10
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _tai_secs(when: datetime) -> int:
    return TAI + (when - EPOCH) // timedelta(seconds=1)


def _digits(n: int, width: int) -> bytes:
    return b"%0*d" % (width, n)


MONTHS = [m.encode() for m in "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()]

classic = st.builds(
    lambda mon, day, h, mi, s: b"%s %2d %02d:%02d:%02d" % (mon, day, h, mi, s),
    st.sampled_from([*MONTHS, b"Foo"]),
    st.integers(0, 99),
    st.integers(0, 25),
    st.integers(0, 60),
    st.integers(0, 61),
)

_offset = st.one_of(
    st.sampled_from([b"", b"Z", b"+14:00", b"-12:00", b"+23:59", b"-23:59", b"+24:00"]),
    st.builds(
        lambda sign, h, m, colon: sign + _digits(h, 2) + colon + _digits(m, 2),
        st.sampled_from([b"+", b"-"]),
        st.integers(0, 25),
        st.integers(0, 59),
        st.sampled_from([b":", b""]),
    ),
)
rfc3339 = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: b"".join(
        [
            _digits(y, 4),
            b"-",
            _digits(mo, 2),
            b"-",
            _digits(d, 2),
            sep,
            _digits(h, 2),
            b":",
            _digits(mi, 2),
            b":",
            _digits(s, 2),
            frac,
            off,
        ]
    ),
    st.one_of(st.sampled_from([1, 2, 9998, 9999]), st.integers(1, 9999)),
    st.one_of(st.sampled_from([1, 12]), st.integers(0, 13)),
    st.one_of(st.sampled_from([1, 31]), st.integers(0, 32)),
    st.sampled_from([b"T", b" "]),
    st.one_of(st.sampled_from([0, 23]), st.integers(0, 24)),
    st.integers(0, 60),
    st.integers(0, 61),
    st.one_of(st.just(b""), st.from_regex(rb"\A\.[0-9]{1,9}\Z")),
    _offset,
)

# Around the first and last second a datetime can hold, the epoch, and anywhere at all.
_tai_seconds = st.one_of(
    st.integers(_tai_secs(LAST) - 3 * 86400, _tai_secs(LAST) + 86400),
    st.integers(_tai_secs(FIRST) - 86400, _tai_secs(FIRST) + 3 * 86400),
    st.integers(TAI - 86400, TAI + 86400),
    st.integers(0, 2**64 - 1),
)
tai64n = st.builds(
    lambda secs, nanos: b"@%016x%08x" % (secs, nanos),
    _tai_seconds,
    st.one_of(st.integers(0, 999_999_999), st.integers(0, 2**32 - 1)),
)
stamps = st.one_of(classic, rfc3339, tai64n)

# Attacker-chosen text: anything but a newline (which ends the line), with the bytes
# that break CSVs, terminals and parsers overrepresented.
_hostile = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(
        st.sampled_from(
            [b";", b'"', b"\r", b"=", b"+", b"-", b"@", b"\x00", b"\xff", b"\xe2\x80\xae", b"a"]
        ),
        max_size=12,
    ).map(b"".join),
).map(lambda b: b.replace(b"\n", b""))
ips = st.one_of(st.sampled_from([b"192.0.2.1", b"2001:db8::1", b"::ffff:192.0.2.9"]), _hostile)
hosts = st.one_of(st.sampled_from([b"unknown", b"mail.example.net", b""]), _hostile)

postfix = st.builds(
    lambda stamp, prog, host, ip, mech, user: b"".join(
        [
            stamp,
            b" mail ",
            prog,
            b"[31226]: warning: ",
            host,
            b"[",
            ip,
            b"]: SASL ",
            mech,
            b" authentication failed: UGFzc3dvcmQ6, sasl_username=",
            user,
        ]
    ),
    stamps,
    st.sampled_from([b"postfix/smtpd", b"postfix/submission/smtpd", b"postfix-out/smtpd"]),
    hosts,
    ips,
    st.sampled_from([b"LOGIN", b"PLAIN", b"cram-md5"]),
    _hostile,
)
_dovecot_reasons = st.one_of(
    st.sampled_from([b"0", b"1", b"3", b"999999"]).map(
        lambda n: b"Disconnected (auth failed, " + n + b" attempts in 2 secs)"
    ),
    st.sampled_from(
        [
            b"Login aborted: Connection closed (auth failed, 2 attempts in 4 secs) (auth_failed)",
            b"Disconnected (auth service reported temporary failure)",
            b"Login aborted: Connection closed (auth process communication failure, 1 attempts "
            b"in 5 secs) (auth_process_comm_fail)",
            b"Disconnected (proxy dest auth failed)",
            b"Login aborted: Connection closed (proxy dest authentication failure, 1 attempts in "
            b"0 secs) (proxy_dest_auth_failed)",
        ]
    ),
)
dovecot = st.builds(
    lambda stamp, via, reason, user, ip: b"".join(
        [
            stamp,
            via,
            b"imap-login: ",
            reason,
            b": user=<",
            user,
            b">, method=PLAIN, rip=",
            ip,
            b", lip=192.0.2.1, TLS",
        ]
    ),
    stamps,
    st.sampled_from([b" mail dovecot: ", b" mail dovecot[241]: ", b" "]),
    _dovecot_reasons,
    _hostile,
    ips,
)


def _repeat(line: bytes, times: bytes) -> bytes:
    # rsyslog's reduction: `prog[pid]: message repeated N times: [ <message>]`.
    head, sep, msg = line.partition(b": ")
    return head + sep + b"message repeated " + times + b" times: [ " + msg + b"]"


repeated = st.builds(
    _repeat, st.one_of(postfix, dovecot), st.sampled_from([b"0", b"2", b"999999999"])
)
lines = st.one_of(postfix, dovecot, repeated)


def _is_candidate(line: bytes) -> bool:
    return any(n in line for n in NEEDLES)


def _check_path(
    block: list[bytes], ref: datetime, tz: tzinfo, date_format: str, reverse: bool
) -> None:
    # The daemon's path: one batch through parse_block, enrichment, RowFormat.encode.
    buf = b"\n".join(block)
    skipped: Counter[Skip] = Counter()
    events = parse_block(buf, ref, tz, skipped, final=True)
    candidates = [line for line in block if _is_candidate(line)]
    # Every candidate line is accounted for: a row, or a skip counted with its reason.
    assert len(candidates) == len(events) + sum(skipped.values())
    enrich = postfix_reverse if reverse else no_reverse
    data = RowFormat(tz=tz, date_format=date_format, cap=64).encode(events, enrich)
    # One line per row, and the csv module reads back exactly the columns written.
    assert data.count(b"\n") == len(events)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=";"))
    assert len(events) == len(rows)
    for ev, row in zip(events, rows, strict=True):
        assert len(COLUMNS) == len(row)
        when = parse_date(row[1], tz)
        assert when is not None, row[1]
        if date_format == "iso":
            assert ev.time.replace(microsecond=0) == when
        # What later stages do with the time: STATUS= in UTC, reports in any zone.
        for zone in ZONES:
            ev.time.astimezone(zone)


refs = st.one_of(
    st.sampled_from([REF, FIRST, LAST, FIRST + timedelta(hours=12), LAST - timedelta(hours=12)]),
    st.datetimes(timezones=st.just(UTC)),
)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(lines, min_size=1, max_size=6),
    refs,
    st.sampled_from(ZONES),
    st.sampled_from(FORMATS),
    st.booleans(),
)
def test_bytes_to_csv_never_raises(
    block: list[bytes], ref: datetime, tz: tzinfo, date_format: str, reverse: bool
) -> None:
    """Any block of Postfix/Dovecot failure lines, any stamp, any zone and date format:
    rows and counted skips, and CSV bytes the csv module reads back column for column."""
    _check_path(block, ref, tz, date_format, reverse)


PF_TAIL = (
    b" mail postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x"
)


def _line(stamp: bytes) -> bytes:
    return stamp + PF_TAIL


@settings(max_examples=600, deadline=None)
@given(st.one_of(rfc3339, tai64n), st.sampled_from(ZONES))
def test_a_stamp_is_a_row_exactly_when_every_zone_can_show_it(stamp: bytes, tz: tzinfo) -> None:
    """A valid stamp whose instant is at least a day from datetime's limits is recorded
    (unless it is more than a day after the reference: implausible time); one closer is
    Skip.OUT_OF_RANGE, whatever the configured zone."""
    result = parse_line(_line(stamp), REF, tz)
    if result is Skip.IMPLAUSIBLE_TIME:
        # More than a day after the reference (issue 17): read against the last reference a
        # datetime can hold, the same stamp is a row, and a later one than REF allows.
        result = parse_line(_line(stamp), LAST, tz)
        assert isinstance(result, AuthFailure)
        assert result.time > REF + timedelta(days=1)
    if isinstance(result, AuthFailure):
        assert FIRST + timedelta(days=1) <= result.time <= LAST - timedelta(days=1)
    else:
        assert result in (Skip.BAD_TIMESTAMP, Skip.OUT_OF_RANGE)
        if result is Skip.OUT_OF_RANGE:
            # It was a real stamp, only too close to an end.
            assert stamp[:4] in (b"0001", b"9999") or stamp.startswith(b"@")


@pytest.mark.parametrize(
    "stamp",
    [
        b"9999-12-31T23:59:59-12:00",  # UTC 10000-01-01
        b"0001-01-01T00:00:00+14:00",  # UTC year 0
        b"9999-12-31T23:59:59.999999999+00:00",
        b"0001-01-01 00:00:00Z",
        b"9999-12-31T20:00:00",  # no offset: read in the configured zone
        b"@%016x00000000" % _tai_secs(LAST - timedelta(hours=1)),  # TAI64N, shown east of UTC
        b"@%016x00000000" % _tai_secs(FIRST + timedelta(hours=1)),  # and west of it
    ],
)
@pytest.mark.parametrize("tz", ZONES, ids=str)
@pytest.mark.parametrize("date_format", FORMATS)
def test_stamps_at_the_edges_are_skipped_not_fatal(
    stamp: bytes, tz: tzinfo, date_format: str
) -> None:
    """The stamps of issue 15: counted as `timestamp out of range`, and the good line of
    the same batch still becomes its row."""
    good = _line(b"2026-11-25T04:38:00+00:00")
    block = [_line(stamp), good]
    skipped: Counter[Skip] = Counter()
    events = parse_block(b"\n".join(block) + b"\n", REF, tz, skipped)
    assert (Counter({Skip.OUT_OF_RANGE: 1}), 1) == (skipped, len(events))
    _check_path(block, REF, tz, date_format, True)


@pytest.mark.parametrize(
    ("stamp", "ref"),
    [
        (b"Dec 31 23:59:59", LAST),  # the next year would be 10000
        (b"Dec 31 12:00:00", LAST - timedelta(hours=1)),
        (b"Jan  1 00:00:00", FIRST),  # the previous year would be 0
        (b"Jan  1 12:00:00", FIRST + timedelta(hours=1)),
    ],
)
@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_classic_stamps_read_against_a_reference_at_an_end(
    stamp: bytes, ref: datetime, tz: tzinfo
) -> None:
    """A rotated file's mtime is the reference of its year-less stamps: one at the last
    or first day a datetime can hold skips the line instead of raising."""
    result = parse_line(_line(stamp), ref, tz)
    assert result is Skip.OUT_OF_RANGE or (
        isinstance(result, AuthFailure)
        and FIRST + timedelta(days=1) <= result.time <= LAST - timedelta(days=1)
    )


def test_explain_names_the_reason(tmp_path: Path) -> None:
    """`mlsd parse --explain` says why the line is not recorded; plain `parse` counts it."""
    log = tmp_path / "mail.log"
    log.write_bytes(_line(b"9999-12-31T23:59:59-12:00") + b"\n")
    cmd = [sys.executable, "-m", "mlsd", "parse"]
    res = subprocess.run(
        [*cmd, "--explain", str(log)], capture_output=True, text=True, check=True, env=ENV
    )
    assert res.stdout.startswith("1: skipped (timestamp out of range): 9999-12-31T23:59:59")
    res = subprocess.run([*cmd, str(log)], capture_output=True, text=True, check=True, env=ENV)
    assert "0 events; not recorded: 1 (1 timestamp out of range)" in res.stderr


def test_daemon_keeps_running_past_an_unrepresentable_stamp(env: Env) -> None:
    """A real `mlsd run` in the easternmost zone is fed the lines that used to stop it at
    every restart; it stays up, says why they are not recorded, and records the next one."""
    env.conf.write_text(
        env.conf.read_text().replace("timezone = UTC", "timezone = Pacific/Kiritimati")
    )
    w = Writer(env.log)
    proc = env.start()
    bad = [
        b"9999-12-31T23:59:59-12:00",
        b"0001-01-01T00:00:00+14:00",
        b"@%016x00000000" % _tai_secs(LAST - timedelta(hours=1)),
    ]
    w.write(b"".join(_line(s) + b", sasl_username=bad\n" for s in bad))
    w.write(_line(b"2026-11-25T04:38:00+00:00") + b", sasl_username=good\n")
    env.wait_rows(Counter({"good": 1}))
    assert proc.poll() is None, env.stderr(proc)
    assert env.stderr(proc).count('reason="timestamp out of range"') == 3
    assert env.stop(proc) == 0
