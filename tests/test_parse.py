"""The parser on hostile and edge-case input: spoofing, garbage, year inference, stamps."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.ingest.grammar import Skip, parse_line
from mlsd.ingest.prefilter import NEEDLES, SUCCESS_NEEDLES, SUCCESSES, candidate_lines
from mlsd.ingest.stamps import classic_stamp
from mlsd.rows import AuthFailure

REF = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PF = b"Nov 25 04:38:00 mail postfix/smtpd[1]: warning: "
DV = b"Nov 25 04:38:00 mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): "


def parse(line: bytes) -> AuthFailure:
    result = parse_line(line, REF, UTC)
    assert isinstance(result, AuthFailure), result
    return result


def test_ip_comes_from_brackets_not_from_a_dotted_hostname() -> None:
    """MailLogSentinel took 165.199.148.122 from the hostname; the client is in brackets."""
    ev = parse(
        PF + b"165.199.148.122.sta.example.net[122.148.199.165]: SASL LOGIN authentication "
        b"failed: (reason unavailable), sasl_username=admin"
    )
    assert ("122.148.199.165", "165.199.148.122.sta.example.net") == (ev.ip, ev.hostname)


def test_ipv6_client_is_kept_and_canonical() -> None:
    """IPv6 clients are recorded, in compressed form."""
    ev = parse(PF + b"unknown[2001:0db8:0000::0001]: SASL PLAIN authentication failed: x")
    assert "2001:db8::1" == ev.ip


def test_username_with_fake_marker_stays_the_username() -> None:
    """Everything after the first `, sasl_username=` is the attacker's username."""
    ev = parse(
        PF + b"unknown[192.0.2.1]: SASL PLAIN authentication failed: (reason unavailable), "
        b"sasl_username=a, sasl_username=b"
    )
    assert "a, sasl_username=b" == ev.user


def test_dovecot_username_cannot_spoof_the_client_ip() -> None:
    """A username carrying `>, rip=6.6.6.6` must not become the client IP."""
    ev = parse(
        DV + b"user=<x>, method=PLAIN, rip=6.6.6.6, lip=1>, method=PLAIN, rip=192.0.2.9, "
        b"lip=192.0.2.1, TLS, session=<abc>"
    )
    assert ("192.0.2.9", "x>, method=PLAIN, rip=6.6.6.6, lip=1", "PLAIN") == (
        ev.ip,
        ev.user,
        ev.mechanism,
    )


@pytest.mark.parametrize(
    ("client", "reason"),
    [
        (b"unknown[999.1.1.1]", Skip.INVALID_IP),
        (b"unknown[not-an-ip]", Skip.INVALID_IP),
        (b"unknown[]", Skip.UNKNOWN_FORMAT),
    ],
)
def test_invalid_ip_is_skipped_with_a_reason(client: bytes, reason: Skip) -> None:
    """A bracket that does not hold a valid IP is counted, never recorded."""
    line = PF + client + b": SASL LOGIN authentication failed: x"
    assert reason is parse_line(line, REF, UTC)


def test_postfix_smtp_client_failure_is_not_an_attack_on_us() -> None:
    """Postfix failing to log in to a relay (postfix/smtp) is our failure, not an attack."""
    line = (
        b"Nov 25 04:38:00 mail postfix/smtp[9]: warning: relay.example[192.0.2.7]: SASL "
        b"authentication failed; server relay.example[192.0.2.7] said: 535 5.7.8 bad"
    )
    assert Skip.NOT_SMTPD is parse_line(line, REF, UTC)


@pytest.mark.parametrize(
    "line",
    [
        DV + b"user=<authentication failed>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1",
        b"Nov 25 04:38:00 imap-login: Info: Disconnected (auth failed, 1 attempts in 2 secs): "
        b"user=<x authentication failed>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1",
    ],
)
def test_a_username_holding_postfix_needle_does_not_hide_a_dovecot_attempt(line: bytes) -> None:
    """`authentication failed` as a Dovecot username made the line a `backend` skip."""
    assert "192.0.2.9" == parse(line).ip


def test_a_relay_reply_holding_both_needles_is_still_not_smtpd() -> None:
    """Postfix's smtp client quoting a relay's `auth failed` stays our own failure."""
    line = (
        b"Nov 25 04:38:00 mail postfix/smtp[9]: warning: SASL authentication failed; server "
        b"relay.example[192.0.2.7] said: 535 5.7.8 Error: auth failed"
    )
    assert Skip.NOT_SMTPD is parse_line(line, REF, UTC)


def test_non_utf8_username_is_kept_visible() -> None:
    """Invalid UTF-8 never raises and is kept as \\xNN text."""
    ev = parse(
        PF + b"unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=\xff\xfeok"
    )
    assert "\\xff\\xfeok" == ev.user


def test_huge_candidate_line_is_skipped() -> None:
    """A 10 MiB line that mentions the magic words costs one length check."""
    line = PF + b"unknown[192.0.2.1]: SASL LOGIN authentication failed: " + b"A" * (10 << 20)
    assert Skip.TOO_LONG is parse_line(line, REF, UTC)


def test_huge_noise_line_is_ignored() -> None:
    """A 10 MiB line without the magic words is not a candidate at all."""
    assert parse_line(b"\x00" * (10 << 20), REF, UTC) is None


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    """Whatever the bytes, the parser returns a result instead of raising."""
    parse_line(data, REF, UTC)
    parse_line(PF + data + b" authentication failed", REF, UTC)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"Nov 25 04:38:00 ",
                b"2026-11-25T04:38:00.1+01:00 ",
                b"@400000004c91b044077a9e94 ",
                b"mail ",
                b"postfix/smtpd[1]: ",
                b"dovecot: ",
                b"imap-login: ",
                b"warning: ",
                b"unknown[",
                b"192.0.2.1",
                b"::1",
                b"]",
                b":25",
                b": ",
                b"SASL ",
                b"LOGIN ",
                b"authentication failed",
                b"(auth failed, 3 attempts)",
                b", sasl_username=",
                b"user=<",
                b">",
                b", method=",
                b", rip=",
                b"\x00",
                b"\r",
                b"\xff",
                b" ",
            ]
        ),
        max_size=30,
    )
)
def test_never_raises_on_shuffled_real_fragments(parts: list[bytes]) -> None:
    """Recombined fragments of real lines reach deep into the parser; it still never raises."""
    result = parse_line(b"".join(parts), REF, UTC)
    assert result is None or isinstance(result, AuthFailure | Skip)


PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("stamp", "ref", "expected"),
    [
        # Same day.
        ((11, 25, "04:38:00"), datetime(2026, 11, 25, 5, tzinfo=UTC), "2026-11-25T04:38:00+00:00"),
        # A December line read in January belongs to last year.
        ((12, 31, "23:59:59"), datetime(2027, 1, 1, 0, 5, tzinfo=UTC), "2026-12-31T23:59:59+00:00"),
        # A January line read late on Dec 31 (clock skew, zones) is tomorrow, not last January.
        (
            (1, 1, "00:10:00"),
            datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
            "2027-01-01T00:10:00+00:00",
        ),
        # More than a day ahead of the reference: last year's.
        ((11, 27, "00:00:00"), datetime(2026, 11, 25, 5, tzinfo=UTC), "2025-11-27T00:00:00+00:00"),
        # An old rotated file, read with its mtime as reference.
        ((3, 1, "10:00:00"), datetime(2026, 3, 2, tzinfo=UTC), "2026-03-01T10:00:00+00:00"),
        # Feb 29 only exists in leap years: the nearest leap year not in the future.
        ((2, 29, "12:00:00"), datetime(2025, 3, 1, tzinfo=UTC), "2024-02-29T12:00:00+00:00"),
    ],
)
def test_year_inference(stamp: tuple[int, int, str], ref: datetime, expected: str) -> None:
    """Classic stamps get the year that puts them nearest to, and at most a day after, ref."""
    result = classic_stamp(*stamp, ref, UTC)
    assert result is not None
    assert expected == result.isoformat()


@pytest.mark.parametrize(("second", "year"), [(15, 2027), (45, 2026)])
def test_the_minute_holding_the_year_limit_is_decided_per_second(second: int, year: int) -> None:
    """The parser resolves each minute once; in the minute where ref + 1 day falls, the
    seconds decide the year, as classic_stamp does for each stamp."""
    ref = datetime(2026, 12, 31, 0, 0, 30, tzinfo=UTC)  # the limit: 2027-01-01 00:00:30
    line = PF.replace(b"Nov 25 04:38:00", b"Jan  1 00:00:%02d" % second)
    ev = parse_line(line + b"unknown[192.0.2.1]: SASL LOGIN authentication failed: x", ref, UTC)
    assert isinstance(ev, AuthFailure)
    assert datetime(year, 1, 1, 0, 0, second, tzinfo=UTC) == ev.time
    assert classic_stamp(1, 1, f"00:00:{second}", ref, UTC) == ev.time


def test_classic_stamps_are_local_time_with_dst() -> None:
    """Classic stamps are read in the configured zone, DST included."""
    ref = datetime(2026, 8, 1, tzinfo=UTC)
    summer = classic_stamp(7, 1, "12:00:00", ref, PARIS)
    winter = classic_stamp(1, 15, "12:00:00", ref, PARIS)
    assert summer is not None and winter is not None
    assert (timedelta(hours=2), timedelta(hours=1)) == (summer.utcoffset(), winter.utcoffset())


def test_rfc3339_offset_is_kept() -> None:
    """RFC 3339 stamps carry their own offset; the configured zone does not change them."""
    line = (
        b"2026-11-25T04:26:06.908695+01:00 vm postfix/smtpd[1]: warning: unknown[192.0.2.1]: "
        b"SASL LOGIN authentication failed: x"
    )
    result = parse_line(line, REF, PARIS)
    assert isinstance(result, AuthFailure)
    assert datetime(2026, 11, 25, 3, 26, 6, 908695, tzinfo=UTC) == result.time


def test_mechanism_case_is_normalised_and_service_from_program() -> None:
    """`SASL login` → LOGIN; postfix-out/smtpd → smtp; postfix/submissions/smtpd → submissions."""
    tail = b"[1]: warning: unknown[192.0.2.1]:587: SASL %s authentication failed: x"
    a = parse(b"Nov 25 04:38:00 m postfix-out/smtpd" + tail % b"login")
    b = parse(b"Nov 25 04:38:00 m postfix/submissions/smtpd" + tail % b"scram-sha-256")
    assert (("smtp", "LOGIN"), ("submissions", "SCRAM-SHA-256")) == (
        (a.service, a.mechanism),
        (b.service, b.mechanism),
    )


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                *NEEDLES,
                *(n[:-1] for n in NEEDLES),  # a needle cut short is no needle
                b"x",
                b"\n",
                b"auth",
                b" failed",
                b" failure",
                b"\r",
            ]
        ),
        max_size=40,
    )
)
def test_candidate_lines_equals_a_naive_line_filter(parts: list[bytes]) -> None:
    """The block search returns exactly the complete lines a per-line filter would keep."""
    buf = b"".join(parts)
    complete = buf[: buf.rfind(b"\n") + 1]
    lines = [line + b"\n" for line in complete.split(b"\n")[:-1]]  # \n only: \r is data
    naive = [line for line in lines if any(n in line for n in NEEDLES)]
    assert naive == candidate_lines(buf)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"x", b"\n", b"user", b"sasl_username=", b"Login: user=<", b"Login: ", b"=<", b"sasl_"]
        ),
        max_size=40,
    )
)
def test_success_search_equals_a_naive_line_filter(parts: list[bytes]) -> None:
    """The same anchored search finds successful logins (needles around `user`)."""
    buf = b"".join(parts)
    lines = [line + b"\n" for line in buf[: buf.rfind(b"\n") + 1].split(b"\n")[:-1]]
    naive = [line for line in lines if any(n in line for n in SUCCESS_NEEDLES)]
    assert naive == candidate_lines(buf, SUCCESSES)


OCTETS = ["0", "00", "01", "1", "9", "10", "99", "100", "199", "249", "250", "255", "256", "999"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from([*OCTETS, "", "a", "0x1", "1e1"]), min_size=3, max_size=5))
def test_client_ip_is_valid_exactly_when_ipaddress_says_so(parts: list[str]) -> None:
    """The IPv4 shortcut accepts and writes an address exactly as ipaddress would:
    leading zeros, octets over 255, wrong part counts and stray characters are invalid."""
    raw = ".".join(parts)
    try:
        expected: str | Skip = str(ipaddress.ip_address(raw))
    except ValueError:
        expected = Skip.INVALID_IP
    line = PF + f"unknown[{raw}]: SASL LOGIN authentication failed: x".encode()
    result = parse_line(line, REF, UTC)
    assert expected == (result.ip if isinstance(result, AuthFailure) else result)
