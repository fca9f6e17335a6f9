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
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from mlsd.memo import Memo
from mlsd.rows import AuthFailure

__all__ = [
    "NEEDLES",
    "AuthFailure",
    "Skip",
    "candidate_lines",
    "parse_block",
    "parse_line",
    "parse_message",
    "parse_stamp",
    "success_lines",
]


class Skip(enum.Enum):
    """Why a line that looked like an authentication failure does not become a row."""

    SERVER_ERROR = "server-side error"
    """The authentication service failed, not the client: Postfix's `Connection lost to
    authentication server`, Dovecot's `auth service reported temporary failure` and `auth
    process communication failure`. No password was checked: a fault to fix, not an attack."""
    INVALID_MECHANISM = "mechanism not offered"
    """The client asked for a mechanism the server does not offer (Postfix's `Invalid
    authentication mechanism`, Cyrus SASL's `no mechanism available`): no password was tried."""
    BACKEND = "auth backend line"
    """Dovecot's auth process repeats an attempt already logged by smtpd or *-login."""
    NOT_SMTPD = "not an smtpd line"
    """e.g. Postfix's smtp client failing to log in to a relay: not an attack on us."""
    NO_CLIENT_IP = "no client IP"
    INVALID_IP = "invalid IP"
    """Not an address `ipaddress` accepts, or an IPv6 with a `%scope` id (`fe80::1%eth0`):
    no mail server logs a client that way, and the scope is free text an attacker writes."""
    BAD_TIMESTAMP = "unknown timestamp"
    OUT_OF_RANGE = "timestamp out of range"
    """A stamp within a day of the first or last instant a datetime can hold (year 1 or
    9999): shown in another zone it would not exist, so writing its row would stop mlsd.
    Written by a broken clock or by someone who can write to the log, never by a real login."""
    UNKNOWN_FORMAT = "unknown format"
    TOO_LONG = "line too long"
    IMPLAUSIBLE_TIME = "implausible time"
    """A stamp more than a day after the time the line was read (`ref`: now for the live
    file, the mtime for a rotated one): a wrong clock, remote syslog or a local writer.
    Not recorded, because the CSV is in time order and its readers rely on that (a row
    in 2099 would end the report's window early and hide the rows after it)."""
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
    rb"(?:(?P<minute>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d):(?P<sec>\d\d)"
    rb"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)"
    rb"|@(?P<tai>[0-9a-f]{24}))"
    rb" (?:(?P<host>[^\s:\[]+) )?(?P<prog>[^\s\[:]+)(?:\[\d+\])?: "
)
# Positions in _HEADER.groups(): minute (`Mmm dd HH:MM`), sec, iso, tai, host, prog.
_HOST = 4
_PROG = 5
# What Match.groups() returns (typeshed: `bytes | Any`, for groups that did not take part).
_Groups = tuple[bytes | Any, ...]

# Groups: client hostname, client IP, mechanism, the rest (reason and username).
_POSTFIX_FAIL = re.compile(
    rb"warning: ([^\s\[]*)\[([^\]\s]{1,64})\](?::\d+)?: "
    rb"SASL ([A-Za-z0-9_-]{1,40}) authentication failed(?::(.*))?$",
    re.DOTALL,
)

# _HEADER then _POSTFIX_FAIL in one match. The header is an atomic group, as when matched
# alone: the message part cannot make it backtrack into another reading of the header.
_POSTFIX_LINE = re.compile(b"(?>" + _HEADER.pattern + b")" + _POSTFIX_FAIL.pattern, re.DOTALL)

# `imap-login: [Info: ]<reason text>(auth failed, 2 attempts in 3 secs)[ (auth_failed)]: user=<…>`
_DOVECOT_LOGIN = re.compile(rb"([a-z0-9]{1,20})-login: (?:Info: )?")
# _HEADER then _DOVECOT_LOGIN in one match, as _POSTFIX_LINE: `… dovecot: imap-login: `.
_DOVECOT_SYSLOG_LINE = re.compile(b"(?>" + _HEADER.pattern + b")" + _DOVECOT_LOGIN.pattern)
_DOVECOT_FAILED = re.compile(
    rb"\(auth failed, (\d{1,6}) attempts?|\(proxy dest auth failed\)"
    rb"|\(proxy dest authentication failure, (\d{1,6}) attempts?"  # 2.4's wording
    # The auth service's own failures (2.3: `(reason)`, 2.4: `(reason, N attempts …)`).
    rb"|\((auth service reported temporary failure|auth process communication failure)"
)
# `message repeated N times: [ ` (rsyslog); the rest is the repeated message and `]`.
_REPEATED = re.compile(rb"message repeated (\d{1,9}) times: \[ ?")
_DOVECOT_METHOD = re.compile(rb", method=([A-Za-z0-9_-]{1,40})")
_DOVECOT_RIP = re.compile(rb", rip=([0-9A-Fa-f:.]{2,64})")
# A dotted quad as ipaddress accepts it: no leading zeros, each part <= 255.
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(_OCTET + rb"(?:\." + _OCTET + rb"){3}")

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
_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


# Every line the parser can turn into a result contains one of these. None contains
# another, so a line is found by the needle(s) it holds and by nothing else.
NEEDLES: tuple[bytes, ...] = (
    b"authentication failed",
    b"auth failed",
    # Dovecot 2.4's wording of 2.3's `(proxy dest auth failed)`: the next hop refused.
    b"proxy dest authentication failure",
    # Dovecot's login processes, when the auth service failed (Skip.SERVER_ERROR).
    b"auth service reported temporary failure",
    b"auth process communication failure",
)
# The needles that make a line Dovecot's rather than Postfix's, and the rarer ones.
DOVECOT_NEEDLES: tuple[bytes, ...] = NEEDLES[1:]
_RARE_NEEDLES = NEEDLES[2:]
# Successful logins: Postfix's `client=…, sasl_method=PLAIN, sasl_username=u` and Dovecot's
# `imap-login: Login: user=<u>` (with or without `Info: `).
SUCCESS_NEEDLES: tuple[bytes, ...] = (b"sasl_username=", b"Login: user=<")


class _Search(NamedTuple):
    """Needles found through one anchor that all of them contain: one pass over a block
    instead of one per needle (each pass costs as much as a third of a bare read loop)."""

    anchor: bytes
    needles: tuple[tuple[bytes, int], ...]
    """Each needle with the offset of the anchor inside it."""


def _search(anchor: bytes, needles: tuple[bytes, ...]) -> _Search:
    for needle in needles:
        if anchor not in needle or b"\n" in needle:
            raise ValueError(f"{anchor!r} must be in {needle!r}, and no needle holds a newline")
    return _Search(anchor, tuple((n, n.index(anchor)) for n in needles))


FAILURES = _search(b" fail", NEEDLES)
SUCCESSES = _search(b"user", SUCCESS_NEEDLES)


def candidate_lines(buf: bytes, search: _Search = FAILURES, start: int = 0) -> list[bytes]:
    """The lines of `buf` (complete, `\n`-terminated) that contain a needle, in order.

    `start` must be 0 or just after a `\n`: a caller that handled the first line itself
    (one that began in the previous block) passes where the next one starts.

    ~97 % of a mail log is normal traffic. Searching a whole block with `bytes.find`
    runs at memory speed; a Python loop over every line would cost a bytecode round
    per line. Each returned line includes its `\n`. Bytes after the last `\n` are
    never returned: a partial line is the caller's to keep until it is complete.
    """
    end = buf.rfind(b"\n") + 1
    anchor, needles = search
    find, rfind, startswith = buf.find, buf.rfind, buf.startswith
    out = []
    i = find(anchor, start, end)
    while i >= 0:
        for needle, at in needles:
            # A needle has no newline, so one that holds this anchor is on the anchor's line.
            if i - at >= start and startswith(needle, i - at):
                stop = find(b"\n", i, end) + 1
                out.append(buf[rfind(b"\n", 0, i) + 1 : stop])
                i = find(anchor, stop, end)  # the rest of this line is already taken
                break
        else:
            i = find(anchor, i + 1, end)
    return out


def success_lines(buf: bytes) -> list[bytes]:
    """The complete lines of `buf` that log a successful login (see Skip.SUCCESS)."""
    return [line for line in candidate_lines(buf, SUCCESSES) if is_success(line)]


def is_success(line: bytes) -> bool:
    """Whether one line logs a successful login (a failure line quoting one is a failure)."""
    return any(n in line for n in SUCCESS_NEEDLES) and not any(n in line for n in NEEDLES)


def parse_block(
    buf: bytes,
    ref: datetime,
    tz: tzinfo,
    skipped: Counter[Skip],
    *,
    start: int = 0,
    final: bool = False,
    rejected: list[tuple[Skip, bytes]] | None = None,
) -> list[AuthFailure]:
    """The events in the complete lines of `buf` from `start` (see candidate_lines); skip
    reasons are counted into `skipped`.

    With `final` (a sealed file, a finished stream) an unterminated last line counts too:
    nothing more will ever complete it. With `rejected`, each skipped line is appended to
    it with its reason (debug logging).
    """
    lines = candidate_lines(buf, FAILURES, start)
    if final and buf and not buf.endswith(b"\n"):
        lines.append(buf[buf.rfind(b"\n") + 1 :])
    clock = _clock(ref, tz)
    limit = _plausible_until(ref)
    events: list[AuthFailure] = []
    for line in lines:
        result = _parse(line, clock)
        if isinstance(result, AuthFailure):
            if result.time <= limit:
                events.append(result)
                continue
            result = Skip.IMPLAUSIBLE_TIME
        if result is not None:
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
    result = _parse(line, _clock(ref, tz))
    if isinstance(result, AuthFailure) and result.time > _plausible_until(ref):
        return Skip.IMPLAUSIBLE_TIME
    return result


def _plausible_until(ref: datetime) -> datetime:
    """The latest stamp recorded against `ref`: a day after it (clock skew, time zones), or
    datetime's last instant for a reference in its last day (a file's mtime can be)."""
    try:
        return ref + _ONE_DAY
    except OverflowError:
        return _LAST_INSTANT


def _parse(line: bytes, clock: _Clock) -> Result:
    # The prefilter: ~97 % of a mail log is normal traffic and must cost one or two
    # substring searches, nothing more.
    if b"authentication failed" in line:
        kind = 1
    elif b"auth failed" in line:
        kind = 2
    elif any(n in line for n in _RARE_NEEDLES):
        kind = 2  # Dovecot's rarer forms, searched for last
    else:
        return None
    try:
        return _parse_candidate(line, clock, kind)
    except Exception:  # pragma: no cover - the contract is "never raises"; tests hunt for this
        return Skip.UNKNOWN_FORMAT


def _parse_candidate(line: bytes, clock: _Clock, kind: int) -> Result:
    if len(line) > MAX_CANDIDATE_LINE:
        return Skip.TOO_LONG
    line = line.rstrip(b"\r\n")
    # Most candidates are smtpd's own line or Dovecot's login line through syslog:
    # header and message start in one match.
    if kind == 1:
        whole = _POSTFIX_LINE.match(line)
        if whole is not None:
            groups = whole.groups()
            if groups[_PROG].endswith(b"smtpd"):
                return _postfix(groups, clock)
    else:
        whole = _DOVECOT_SYSLOG_LINE.match(line)
        if whole is not None:
            groups = whole.groups()
            if not groups[_PROG].endswith(b"-login"):
                return _dovecot(groups, groups[_PROG + 1], line[whole.end() :], clock)
    head = _HEADER.match(line)
    if head is None:
        return Skip.UNKNOWN_FORMAT
    # One groups() call instead of lookups by name: this runs once per attack line.
    stamp = head.groups()
    msg = line[head.end() :]
    if msg.startswith(b"message repeated "):
        return _repeated(stamp, msg, clock, kind)
    return _message(stamp, msg, clock, kind)


def _message(stamp: _Groups, msg: bytes, clock: _Clock, kind: int) -> Result:
    # `msg`: what follows the header's `prog[pid]: `.
    prog = stamp[_PROG]
    if kind == 1:
        if prog.endswith(b"smtpd"):
            m = _POSTFIX_FAIL.match(msg)
            return Skip.UNKNOWN_FORMAT if m is None else _postfix(stamp + m.groups(), clock)
        # `authentication failed` can be the username on a Dovecot login line: such a
        # line is Dovecot's (else that username would hide the attempt as a backend line).
        if not (
            any(n in msg for n in DOVECOT_NEEDLES)
            and (prog.endswith(b"-login") or _DOVECOT_LOGIN.match(msg) is not None)
        ):
            if b"-login" in prog or prog.startswith(b"dovecot") or prog.startswith(b"auth"):
                return Skip.BACKEND
            return Skip.NOT_SMTPD
    # Either `dovecot: imap-login: …` (through syslog) or `imap-login: …` (Dovecot's own file).
    if prog.endswith(b"-login"):
        body = msg[len(b"Info: ") :] if msg.startswith(b"Info: ") else msg
        return _dovecot(stamp, prog[: -len(b"-login")], body, clock)
    login = _DOVECOT_LOGIN.match(msg)
    if login is None:
        return Skip.BACKEND if b"auth" in prog or b"auth" in msg[:40] else Skip.UNKNOWN_FORMAT
    return _dovecot(stamp, login[1], msg[login.end() :], clock)


def _repeated(stamp: _Groups, msg: bytes, clock: _Clock, kind: int) -> Result:
    # rsyslog's $RepeatedMsgReduction (on in Ubuntu's rsyslog.conf) folds identical
    # messages into `message repeated N times: [<the message, cut at 800 bytes>]`, the
    # message with its leading space. N failures of one client: one row, N attempts
    # (as Dovecot's own `auth failed, N attempts`). A skip counts once, as one line.
    m = _REPEATED.match(msg)
    if m is None:
        return Skip.UNKNOWN_FORMAT
    inner = msg[m.end() :]
    result = _message(stamp, inner[:-1] if inner.endswith(b"]") else inner, clock, kind)
    if isinstance(result, AuthFailure):
        return result._replace(attempts=result.attempts * max(int(m[1]), 1))
    return result


def _postfix(groups: _Groups, clock: _Clock) -> Result:
    # The header's groups, then _POSTFIX_FAIL's.
    host, raw_ip, mech, rest = groups[_PROG + 1 :]
    rest = (rest or b"").lstrip(b" ")
    # The username is attacker-chosen and comes last, so split at the *first* marker:
    # whatever follows it, commas and fake markers included, is the username.
    reason, sep, user = rest.partition(b", sasl_username=")
    if reason.startswith(b"Connection lost to authentication server"):
        return Skip.SERVER_ERROR
    if (
        reason.startswith(b"Invalid authentication mechanism")
        or reason == b"no mechanism available"
    ):
        # Postfix's own reply, or Cyrus SASL's SASL_NOMECH: no password was checked.
        return Skip.INVALID_MECHANISM
    ip = _IPS[raw_ip]
    if ip is None:
        return Skip.INVALID_IP
    when = _stamp(groups, clock)
    if isinstance(when, Skip):
        return when
    return AuthFailure(
        when,
        _WORDS[groups[_HOST] or b""],
        _SERVICES[groups[_PROG]],
        _MECHANISMS[mech],
        _TEXTS[host],
        ip,
        # Postfix writes `(unavailable)` when the client never got as far as a username.
        _TEXTS[user] if sep and user and user != b"(unavailable)" else None,
        _TEXTS[reason],
    )


def _dovecot(stamp: _Groups, proto: bytes, body: bytes, clock: _Clock) -> Result:
    # `body`: what follows `imap-login: [Info: ]`.
    failed = _DOVECOT_FAILED.search(body)
    if failed is None:
        return Skip.UNKNOWN_FORMAT
    if failed[3] is not None:  # the auth service failed, not the client: no password checked
        return Skip.SERVER_ERROR
    # Keys follow the reason: `…): user=<u>, method=M, rip=IP, lip=IP, …`. The username
    # is attacker-chosen and comes *before* rip, so take the last `, rip=` (a fake one
    # inside the username comes earlier) and read the username up to the real keys.
    at = body.rfind(b", rip=")
    rip = _DOVECOT_RIP.match(body, at) if at >= 0 else None
    while rip is None and at > 0:  # the last `, rip=` holds no address: try earlier ones
        at = body.rfind(b", rip=", 0, at)
        rip = _DOVECOT_RIP.match(body, at) if at >= 0 else None
    if rip is None:
        return Skip.NO_CLIENT_IP
    ip = _IPS[rip[1]]
    if ip is None:
        return Skip.INVALID_IP
    upto = at
    method = None
    after = failed.end()
    at = body.rfind(b", method=", after, upto)
    while at >= 0:
        method = _DOVECOT_METHOD.match(body, at, upto)
        if method is not None:
            upto = at
            break
        at = body.rfind(b", method=", after, at)
    user = None
    ustart = body.find(b"user=<", after, upto)
    if ustart >= 0 and body[upto - 1 : upto] == b">":
        raw = body[ustart + len(b"user=<") : upto - 1]
        user = _TEXTS[raw] if raw else None
    reason_end = body.find(b": ", after)
    reason = body[: reason_end if 0 <= reason_end < upto else after]
    when = _stamp(stamp, clock)
    if isinstance(when, Skip):
        return when
    n = failed[1] or failed[2]
    return AuthFailure(
        when,
        _WORDS[stamp[_HOST] or b""],
        _WORDS[proto],
        _MECHANISMS[method[1]] if method is not None else "",
        "",
        ip,
        user,
        _TEXTS[reason],
        max(int(n), 1) if n else 1,
    )


def _valid_ip(raw: bytes) -> str | None:
    # A dotted quad as ipaddress accepts it (no leading zeros, each part <= 255) is
    # already canonical: skip the slow general parser, which IPv6 still goes through.
    if _IPV4.fullmatch(raw):
        return raw.decode("ascii")
    if b"%" in raw:  # a scope id: free text (ESC, OSC 52…), never a client address
        return None
    try:
        return str(ipaddress.ip_address(raw.decode("ascii")))
    except ValueError:
        return None


def _text(raw: bytes) -> str:
    # Never lose what an attacker sent, never let invalid UTF-8 raise: keep it as \xNN.
    return raw.decode("utf-8", "backslashreplace")


def _service(prog: bytes) -> str:
    # postfix/smtpd → smtp; postfix/submission/smtpd → submission; postfix-out/smtpd → smtp.
    parts = prog.split(b"/")
    return _text(parts[-2]) if len(parts) >= 3 else _POSTFIX_SERVICE_DEFAULT


# The fields a log repeats on every line: decoded once.
_WORDS = Memo(_text)
# Attackers come back from the same addresses (and ipaddress is slow), with the same
# usernames, and the server gives the same few reasons.
_IPS = Memo(_valid_ip, limit=65536)
_TEXTS = Memo(_text, limit=16384)
_SERVICES = Memo(_service)
_MECHANISMS: Memo[bytes, str] = Memo(lambda raw: _text(raw).upper())


class _Clock:
    """What one parse resolves stamps against: the reference time, the zone of classic
    stamps, and the minutes already resolved (lines come minutes apart at most: year
    inference and the zone are worked out once per minute, then seconds are added)."""

    __slots__ = ("minutes", "ref", "tz")

    def __init__(self, ref: datetime, tz: tzinfo) -> None:
        self.ref = ref
        self.tz = tz
        self.minutes: Memo[bytes, datetime | None] = Memo(self._minute, limit=4096)

    def _minute(self, raw: bytes) -> datetime | None:
        # `Mmm dd HH:MM` → that minute's start, _STRADDLES, or None (no such time).
        # Adding seconds to an aware datetime is wall-clock arithmetic on the same tzinfo
        # (fold 0), so base + s is exactly datetime(…, s, tzinfo=tz): DST stays tz's job.
        month, day, h, mi = _minute_fields(raw)
        first = _classic(month, day, (h, mi, 0), self.ref, self.tz)
        if first is None or _year_of_day(month, day, self.ref, self.tz) is not None:
            return first  # no such time, or the whole day has one year: the usual case
        last = _classic(month, day, (h, mi, 59), self.ref, self.tz)
        return first if last is not None and first.year == last.year else _STRADDLES


def _minute_fields(raw: bytes) -> tuple[int, int, int, int]:
    # `Mmm dd HH:MM` (as _HEADER matched it) → month (0 if unknown), day, hour, minute.
    mon, day, hm = raw.split()
    h, mi = hm.split(b":")
    return _MONTHS.get(mon, 0), int(day), int(h), int(mi)


@functools.lru_cache(maxsize=16)
def _clock(ref: datetime, tz: tzinfo) -> _Clock:
    # One per (ref, tz): the daemon's live file, each rotated file's mtime, a CLI run.
    return _Clock(ref, tz)


def _stamp(groups: _Groups, clock: _Clock) -> datetime | Skip:
    when = _when(groups, clock)
    if when is None:
        return Skip.BAD_TIMESTAMP
    # Every stage after this one converts the time to some zone (the CSV's, UTC for
    # STATUS=, the report's): only instants that every zone can show go on. One compare
    # for the years no offset can push out of range, the exact test for the two others.
    if 1 < when.year < 9999 or _EARLIEST <= when <= _LATEST:
        return when
    return Skip.OUT_OF_RANGE


def _when(groups: _Groups, clock: _Clock) -> datetime | None:
    minute = groups[0]
    if minute is not None:
        base = clock.minutes[minute]
        s = int(groups[1])
        if base is None or s > 59:
            return None
        if base is _STRADDLES:  # the year limit falls inside this minute: decide per second
            month, day, h, mi = _minute_fields(minute)
            return _classic(month, day, (h, mi, s), clock.ref, clock.tz)
        return base + _SECONDS[s]
    if groups[2] is not None:
        return parse_stamp(groups[2].decode(), clock.tz)
    return _tai64(groups[3])


# The instants every zone can show: a UTC offset is less than a day, so an instant at
# least a day from datetime's limits converts to any zone (comparing aware datetimes
# subtracts offsets as timedeltas, which cannot overflow).
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


_SECONDS = tuple(timedelta(seconds=s) for s in range(60))
# What _Clock.minutes holds for the one minute in which the inferred year changes.
_STRADDLES = datetime(1, 1, 1, tzinfo=UTC)


def classic_stamp(month: int, day: int, hms: str, ref: datetime, tz: tzinfo) -> datetime | None:
    """Resolve a year-less `Mmm dd HH:MM:SS` stamp against `ref`.

    The year is the one that puts the stamp nearest to `ref` without being more than a day
    after it: a log is written before it is read, and a day of slack absorbs clock skew
    and zone differences. So a December line read in January is last year's, and a line
    in an old rotated file, read with that file's mtime as `ref`, lands in the right year.
    """
    h, mi, s = (int(x) for x in hms.split(":"))
    return _classic(month, day, (h, mi, s), ref, tz)


def _classic(
    month: int, day: int, hms: tuple[int, int, int], ref: datetime, tz: tzinfo
) -> datetime | None:
    if not 1 <= month <= 12:
        return None
    year = _year_of_day(month, day, ref, tz)
    if year is None:  # the day straddles the limit (or does not exist): decide by the time
        return _pick_year(month, day, hms, ref, tz)
    try:
        return datetime(year, month, day, *hms, tzinfo=tz)
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
    limit = _plausible_until(ref)
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
    if nanos >= 1_000_000_000:  # not a TAI64N label: the fraction is less than a second
        return None
    try:
        return datetime.fromtimestamp(secs, UTC) + timedelta(microseconds=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        return None


# What the grammar resolves when a message comes with its own time (parse_message): any
# valid stamp, replaced by that time in the result.
_GIVEN_TIME = (None, None, b"1970-01-01T00:00:00+00:00", None)


def parse_message(
    program: bytes, host: bytes, message: bytes, when: datetime | None, ref: datetime
) -> Result:
    """A message whose program, host and time come beside it (a journal entry's fields),
    through the same grammar as the message part of a log line: the same forms, the same
    skips. `when` is the exact time (None: not one a datetime can hold); `ref` the time
    it is read (a time more than a day after it is implausible)."""
    if b"authentication failed" in message:
        kind = 1
    elif b"auth failed" in message or any(n in message for n in _RARE_NEEDLES):
        kind = 2
    else:
        return None
    if len(message) > MAX_CANDIDATE_LINE:
        return Skip.TOO_LONG
    try:
        stamp = (*_GIVEN_TIME, host or None, program)
        result = _message(stamp, message.rstrip(b"\r\n"), _clock(ref, UTC), kind)
    except Exception:  # pragma: no cover - the contract is "never raises"
        return Skip.UNKNOWN_FORMAT
    if not isinstance(result, AuthFailure):
        return result
    if when is None or not _EARLIEST <= when <= _LATEST:
        return Skip.OUT_OF_RANGE
    if when > _plausible_until(ref):
        return Skip.IMPLAUSIBLE_TIME
    return result._replace(time=when)
