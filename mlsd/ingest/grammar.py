"""One raw log line (bytes) → an authentication failure, a counted non-attack, or nothing.

The line grammar: the header every known line starts with (stamp, host, program), then
Postfix's and Dovecot's failure messages, field by field; why a line that looked like a
failure is not recorded (Skip). Finding the few lines worth parsing in a block is
mlsd.ingest.prefilter's job; reading the stamp is mlsd.ingest.stamps'.

Pure: no I/O, no clock. The reference time used to infer the year of classic syslog stamps
is passed in by the caller (the file's mtime for a rotated file, "now" for the live one).
Nothing in here raises, whatever the bytes: every field of a line is chosen by whoever
writes to the log, and a parser that can be crashed is a parser that can be blinded.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections import Counter
from datetime import datetime, tzinfo
from typing import Any

from mlsd.ingest.prefilter import DOVECOT_NEEDLES, FAILURES, RARE_NEEDLES, candidate_lines
from mlsd.ingest.stamps import EARLIEST, LATEST, Clock, clock_for, plausible_until
from mlsd.ingest.stamps import when as _when
from mlsd.memo import Memo
from mlsd.rows import AuthFailure

__all__ = ["AuthFailure", "Result", "Skip", "parse_block", "parse_line"]


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

_POSTFIX_SERVICE_DEFAULT = "smtp"
_ANCHOR = FAILURES.anchor


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
        last = buf[buf.rfind(b"\n") + 1 :]
        if _ANCHOR in last:  # _parse's test: then every line holds the anchor
            lines.append(last)
    clock = clock_for(ref, tz)
    limit = plausible_until(ref)
    # Datetimes in two zones compare by their UTC offsets (0.2-0.4 µs each time). An offset
    # is under a day, so a stamp dated 3 days before limit's date is before it in any zone.
    surely = limit.toordinal() - 3
    events: list[AuthFailure] = []
    for line in lines:
        result = _candidate(line, clock)
        if isinstance(result, AuthFailure):
            if result.time.toordinal() <= surely or result.time <= limit:
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
    result = _parse(line, clock_for(ref, tz))
    if isinstance(result, AuthFailure) and result.time > plausible_until(ref):
        return Skip.IMPLAUSIBLE_TIME
    return result


def _parse(line: bytes, clock: Clock) -> Result:
    # The prefilter: ~97 % of a mail log is normal traffic and must cost one substring
    # search, nothing more: every needle holds FAILURES.anchor (prefilter checks it).
    if _ANCHOR not in line:
        return None
    return _candidate(line, clock)


def _candidate(line: bytes, clock: Clock) -> Result:
    # `_parse` of a line that holds FAILURES.anchor (parse_block's are found by it).
    if b"authentication failed" in line:
        kind = 1
    elif b"auth failed" in line:
        kind = 2
    elif any(n in line for n in RARE_NEEDLES):
        kind = 2  # Dovecot's rarer forms, searched for last
    else:
        return None
    try:
        return _parse_candidate(line, clock, kind)
    except Exception:  # pragma: no cover - the contract is "never raises"; tests hunt for this
        return Skip.UNKNOWN_FORMAT


def _parse_candidate(line: bytes, clock: Clock, kind: int) -> Result:
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


def _message(stamp: _Groups, msg: bytes, clock: Clock, kind: int) -> Result:
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


def _repeated(stamp: _Groups, msg: bytes, clock: Clock, kind: int) -> Result:
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


def _postfix(groups: _Groups, clock: Clock) -> Result:
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


def _dovecot(stamp: _Groups, proto: bytes, body: bytes, clock: Clock) -> Result:
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


def _stamp(groups: _Groups, clock: Clock) -> datetime | Skip:
    when = _when(groups, clock)
    if when is None:
        return Skip.BAD_TIMESTAMP
    # Only instants that every zone can show go on (see stamps.EARLIEST). One compare
    # for the years no offset can push out of range, the exact test for the two others.
    if 1 < when.year < 9999 or EARLIEST <= when <= LATEST:
        return when
    return Skip.OUT_OF_RANGE
