"""One raw log line (bytes) → an authentication failure, a counted non-attack, or nothing.

Pure: no I/O, no clock. The reference time used to infer the year of classic syslog stamps
is passed in by the caller (the file's mtime for a rotated file, "now" for the live one).
Nothing in here raises, whatever the bytes: every field of a line is chosen by whoever
writes to the log, and a parser that can be crashed is a parser that can be blinded.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

__all__ = [
    "NEEDLES",
    "AuthFailure",
    "Skip",
    "candidate_lines",
    "parse_block",
    "parse_line",
    "parse_stamp",
    "success_lines",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailure:
    """A failed authentication: one client, one attempt (or N, when Dovecot folds them)."""

    time: datetime
    """When it was logged, timezone-aware."""
    server: str
    """The syslog host field; empty when the log has none (Dovecot's own log file)."""
    service: str
    """smtp, submission, smtps, submissions, imap, pop3, managesieve, …"""
    mechanism: str
    """SASL mechanism in upper case (PLAIN, LOGIN, CRAM-MD5…); empty when not logged."""
    hostname: str
    """Client hostname as the server logged it (`unknown` included); empty when not logged."""
    ip: str
    """Client IP, validated and in canonical form (IPv6 compressed)."""
    user: str | None
    """The username the client tried; None when the line does not say."""
    reason: str
    """The server's reason text, as logged."""
    attempts: int = 1
    """Failed attempts this line stands for (Dovecot logs `auth failed, 3 attempts` once)."""


class Skip(enum.Enum):
    """Why a line that looked like an authentication failure does not become a row."""

    SERVER_ERROR = "server-side error"
    """`Connection lost to authentication server`: the SASL backend did not answer."""
    INVALID_MECHANISM = "mechanism not offered"
    """The client asked for a mechanism the server does not offer: no password was tried."""
    BACKEND = "auth backend line"
    """Dovecot's auth process repeats an attempt already logged by smtpd or *-login."""
    NOT_SMTPD = "not an smtpd line"
    """e.g. Postfix's smtp client failing to log in to a relay: not an attack on us."""
    NO_CLIENT_IP = "no client IP"
    INVALID_IP = "invalid IP"
    BAD_TIMESTAMP = "unknown timestamp"
    UNKNOWN_FORMAT = "unknown format"
    TOO_LONG = "line too long"
    SUCCESS = "successful login"
    """A login that worked (`sasl_username=`, Dovecot `Login:`): what MailLogSentinel
    counted as an attack. Only `parse --explain` and debug logging report it; the
    counters never see it (a mail log is mostly successes, and they cost a search)."""


Result = AuthFailure | Skip | None

# Real Postfix and Dovecot lines stay far below this; anything longer that passes the
# prefilter is not worth a regex over megabytes of attacker-supplied bytes.
MAX_CANDIDATE_LINE = 64 * 1024

# The prefix of every line we know: a timestamp, an optional host, a program[pid].
# Written to be linear-time: no nested quantifiers, each alternative anchored.
_HEADER = re.compile(
    rb"(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)"
    rb"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)"
    rb"|@(?P<tai>[0-9a-f]{24}))"
    rb" (?:(?P<host>[^\s:\[]+) )?(?P<prog>[^\s\[:]+)(?:\[\d+\])?: "
)

_POSTFIX_FAIL = re.compile(
    rb"warning: (?P<host>[^\s\[]*)\[(?P<ip>[^\]\s]{1,64})\](?::\d+)?: "
    rb"SASL (?P<mech>[A-Za-z0-9_-]{1,40}) authentication failed(?::(?P<rest>.*))?$",
    re.DOTALL,
)

# `imap-login: [Info: ]<reason text>(auth failed, 2 attempts in 3 secs)[ (auth_failed)]: user=<…>`
_DOVECOT_LOGIN = re.compile(rb"(?P<proto>[a-z0-9]{1,20})-login: (?:Info: )?")
_DOVECOT_FAILED = re.compile(rb"\(auth failed, (?P<n>\d{1,6}) attempts?|\(proxy dest auth failed\)")
_DOVECOT_METHOD = re.compile(rb", method=(?P<m>[A-Za-z0-9_-]{1,40})")
_DOVECOT_RIP = re.compile(rb", rip=(?P<ip>[0-9A-Fa-f:.]{2,64})")

_MONTHS = {
    name.encode(): i
    for i, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

_POSTFIX_SERVICE_DEFAULT = "smtp"
# TAI64 labels count from 2**62; daemontools adds the 10 s TAI-UTC offset of 1970.
_TAI64_EPOCH = 2**62 + 10
_ONE_DAY = timedelta(days=1)


# Every line the parser can turn into a result contains one of these. Neither contains
# the other, so a line is found by the needle(s) it holds and by nothing else.
NEEDLES: tuple[bytes, ...] = (b"authentication failed", b"auth failed")
# Successful logins: Postfix's `client=…, sasl_method=PLAIN, sasl_username=u` and Dovecot's
# `imap-login: Login: user=<u>` (with or without `Info: `).
SUCCESS_NEEDLES: tuple[bytes, ...] = (b"sasl_username=", b"Login: user=<")


def candidate_lines(buf: bytes, needles: tuple[bytes, ...] = NEEDLES) -> list[bytes]:
    """The lines of `buf` (complete, `\n`-terminated) that contain a needle, in order.

    ~97 % of a mail log is normal traffic. Searching a whole block with `bytes.find`
    runs at memory speed; a Python loop over every line would cost a bytecode round
    per line. Each returned line includes its `\n`. Bytes after the last `\n` are
    never returned: a partial line is the caller's to keep until it is complete.
    """
    end = buf.rfind(b"\n") + 1
    if end == 0:
        return []
    starts: set[int] = set()
    for needle in needles:
        i = buf.find(needle, 0, end)
        while i >= 0:
            start = buf.rfind(b"\n", 0, i) + 1
            stop = buf.find(b"\n", i, end) + 1
            starts.add(start)
            i = buf.find(needle, stop, end)
    out = []
    for start in sorted(starts):
        out.append(buf[start : buf.find(b"\n", start, end) + 1])
    return out


def success_lines(buf: bytes) -> list[bytes]:
    """The complete lines of `buf` that log a successful login (see Skip.SUCCESS)."""
    return [line for line in candidate_lines(buf, SUCCESS_NEEDLES) if is_success(line)]


def is_success(line: bytes) -> bool:
    """Whether one line logs a successful login (a failure line quoting one is a failure)."""
    return any(n in line for n in SUCCESS_NEEDLES) and not any(n in line for n in NEEDLES)


def parse_block(
    buf: bytes,
    ref: datetime,
    tz: tzinfo,
    skipped: Counter[Skip],
    *,
    final: bool = False,
    rejected: list[tuple[Skip, bytes]] | None = None,
) -> list[AuthFailure]:
    """The events in the complete lines of `buf`; skip reasons are counted into `skipped`.

    With `final` (a sealed file, a finished stream) an unterminated last line counts too:
    nothing more will ever complete it. With `rejected`, each skipped line is appended to
    it with its reason (debug logging).
    """
    lines = candidate_lines(buf)
    if final and buf and not buf.endswith(b"\n"):
        lines.append(buf[buf.rfind(b"\n") + 1 :])
    events: list[AuthFailure] = []
    for line in lines:
        result = parse_line(line, ref, tz)
        if isinstance(result, AuthFailure):
            events.append(result)
        elif result is not None:
            skipped[result] += 1
            if rejected is not None:
                rejected.append((result, line))
    return events


def parse_line(line: bytes, ref: datetime, tz: tzinfo) -> Result:
    """Parse one log line.

    `ref` is the reference time for year inference (aware); `tz` is the zone of stamps
    that carry no offset. Returns an AuthFailure, a Skip saying why a line that looked
    like one is not recorded, or None for every other line.
    """
    # The prefilter: ~97 % of a mail log is normal traffic and must cost one or two
    # substring searches, nothing more.
    if b"authentication failed" in line:
        kind = 1
    elif b"auth failed" in line:
        kind = 2
    else:
        return None
    try:
        return _parse_candidate(line, ref, tz, kind)
    except Exception:  # pragma: no cover - the contract is "never raises"; tests hunt for this
        return Skip.UNKNOWN_FORMAT


def _parse_candidate(line: bytes, ref: datetime, tz: tzinfo, kind: int) -> Result:
    if len(line) > MAX_CANDIDATE_LINE:
        return Skip.TOO_LONG
    line = line.rstrip(b"\r\n")
    head = _HEADER.match(line)
    if head is None:
        return Skip.UNKNOWN_FORMAT
    prog = head["prog"]
    msg = line[head.end() :]
    if kind == 1:
        if not prog.endswith(b"smtpd"):
            if b"-login" in prog or prog.startswith(b"dovecot") or prog.startswith(b"auth"):
                return Skip.BACKEND
            return Skip.NOT_SMTPD
        return _postfix(head, prog, msg, ref, tz)
    return _dovecot(head, prog, msg, ref, tz)


def _postfix(head: re.Match[bytes], prog: bytes, msg: bytes, ref: datetime, tz: tzinfo) -> Result:
    m = _POSTFIX_FAIL.match(msg)
    if m is None:
        return Skip.UNKNOWN_FORMAT
    rest = (m["rest"] or b"").lstrip(b" ")
    # The username is attacker-chosen and comes last, so split at the *first* marker:
    # whatever follows it, commas and fake markers included, is the username.
    reason, sep, user = rest.partition(b", sasl_username=")
    if reason.startswith(b"Connection lost to authentication server"):
        return Skip.SERVER_ERROR
    if reason.startswith(b"Invalid authentication mechanism"):
        return Skip.INVALID_MECHANISM
    ip = _valid_ip(m["ip"])
    if ip is None:
        return Skip.INVALID_IP
    when = _stamp(head, ref, tz)
    if when is None:
        return Skip.BAD_TIMESTAMP
    # postfix/smtpd → smtp; postfix/submission/smtpd → submission; postfix-out/smtpd → smtp.
    parts = prog.split(b"/")
    service = _text(parts[-2]) if len(parts) >= 3 else _POSTFIX_SERVICE_DEFAULT
    return AuthFailure(
        time=when,
        server=_text(head["host"] or b""),
        service=service,
        mechanism=_text(m["mech"]).upper(),
        hostname=_text(m["host"]),
        ip=ip,
        # Postfix writes `(unavailable)` when the client never got as far as a username.
        user=_text(user) if sep and user and user != b"(unavailable)" else None,
        reason=_text(reason),
    )


def _dovecot(head: re.Match[bytes], prog: bytes, msg: bytes, ref: datetime, tz: tzinfo) -> Result:
    # Either `dovecot: imap-login: …` (through syslog) or `imap-login: …` (Dovecot's own file).
    if prog.endswith(b"-login"):
        proto = prog[: -len(b"-login")]
        body = msg[len(b"Info: ") :] if msg.startswith(b"Info: ") else msg
    else:
        login = _DOVECOT_LOGIN.match(msg)
        if login is None:
            return Skip.BACKEND if b"auth" in prog or b"auth" in msg[:40] else Skip.UNKNOWN_FORMAT
        proto = login["proto"]
        body = msg[login.end() :]
    failed = _DOVECOT_FAILED.search(body)
    if failed is None:
        return Skip.UNKNOWN_FORMAT
    # Keys follow the reason: `…): user=<u>, method=M, rip=IP, lip=IP, …`. The username
    # is attacker-chosen and comes *before* rip, so take the last `, rip=` (a fake one
    # inside the username comes earlier) and read the username up to the real keys.
    rip = None
    for rip in _DOVECOT_RIP.finditer(body):  # noqa: B007 - we want the last match
        pass
    if rip is None:
        return Skip.NO_CLIENT_IP
    ip = _valid_ip(rip["ip"])
    if ip is None:
        return Skip.INVALID_IP
    upto = rip.start()
    method = None
    for method in _DOVECOT_METHOD.finditer(body, failed.end(), upto):  # noqa: B007
        pass
    if method is not None:
        upto = method.start()
    user = None
    ustart = body.find(b"user=<", failed.end(), upto)
    if ustart >= 0 and body[upto - 1 : upto] == b">":
        raw = body[ustart + len(b"user=<") : upto - 1]
        user = _text(raw) if raw else None
    reason_end = body.find(b": ", failed.end())
    reason = body[: reason_end if 0 <= reason_end < upto else failed.end()]
    when = _stamp(head, ref, tz)
    if when is None:
        return Skip.BAD_TIMESTAMP
    n = int(failed["n"]) if failed["n"] else 1
    return AuthFailure(
        time=when,
        server=_text(head["host"] or b""),
        service=_text(proto),
        mechanism=_text(method["m"]).upper() if method is not None else "",
        hostname="",
        ip=ip,
        user=user,
        reason=_text(reason),
        attempts=max(n, 1),
    )


@functools.lru_cache(maxsize=65536)
def _valid_ip(raw: bytes) -> str | None:
    # Memoised: attackers come back from the same addresses, and ipaddress is slow.
    try:
        return str(ipaddress.ip_address(raw.decode("ascii")))
    except ValueError:
        return None


def _text(raw: bytes) -> str:
    # Never lose what an attacker sent, never let invalid UTF-8 raise: keep it as \xNN.
    return raw.decode("utf-8", "backslashreplace")


def _stamp(head: re.Match[bytes], ref: datetime, tz: tzinfo) -> datetime | None:
    if head["mon"] is not None:
        return classic_stamp(
            _MONTHS.get(head["mon"], 0), int(head["day"]), head["hms"].decode(), ref, tz
        )
    if head["iso"] is not None:
        return parse_stamp(head["iso"].decode(), tz)
    return _tai64(head["tai"])


def classic_stamp(month: int, day: int, hms: str, ref: datetime, tz: tzinfo) -> datetime | None:
    """Resolve a year-less `Mmm dd HH:MM:SS` stamp against `ref`.

    The year is the one that puts the stamp nearest to `ref` without being more than a day
    after it: a log is written before it is read, and a day of slack absorbs clock skew
    and zone differences. So a December line read in January is last year's, and a line
    in an old rotated file, read with that file's mtime as `ref`, lands in the right year.
    """
    if not 1 <= month <= 12:
        return None
    h, mi, s = (int(x) for x in hms.split(":"))
    year = _year_of_day(month, day, ref, tz)
    if year is None:  # the day straddles the limit (or does not exist): decide by the time
        return _pick_year(month, day, (h, mi, s), ref, tz)
    try:
        return datetime(year, month, day, h, mi, s, tzinfo=tz)
    except ValueError:  # hour 24, second 61, …
        return None


@functools.lru_cache(maxsize=4096)
def _year_of_day(month: int, day: int, ref: datetime, tz: tzinfo) -> int | None:
    # Memoised per day: every line of a day shares its year unless the day straddles
    # ref + 1 day, in which case the time of day decides (None: ask _pick_year).
    first = _pick_year(month, day, (0, 0, 0), ref, tz)
    last = _pick_year(month, day, (23, 59, 59), ref, tz)
    if first is None or last is None or first.year != last.year:
        return None
    return first.year


def _pick_year(
    month: int, day: int, hms: tuple[int, int, int], ref: datetime, tz: tzinfo
) -> datetime | None:
    h, mi, s = hms
    limit = ref + _ONE_DAY
    for year in (ref.year + 1, ref.year, ref.year - 1):
        try:
            cand = datetime(year, month, day, h, mi, s, tzinfo=tz)
        except ValueError:  # Feb 29 in a common year, hour 24, …
            continue
        if cand <= limit:
            return cand
    return None


def parse_stamp(text: str, tz: tzinfo) -> datetime | None:
    """Parse an RFC 3339 / ISO 8601 stamp; one without an offset is in `tz`."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when


def _tai64(label: bytes) -> datetime | None:
    # daemontools/multilog `@4000000…` TAI64N stamps: 8 bytes of seconds, 4 of nanoseconds.
    secs = int(label[:16], 16) - _TAI64_EPOCH
    nanos = int(label[16:], 16)
    try:
        return datetime.fromtimestamp(secs, UTC) + timedelta(microseconds=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        return None
