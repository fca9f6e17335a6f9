"""One raw log line (bytes) → a successful login, a submission's recipients, or nothing.

The forms (mlsd.logins.Kind):

- Postfix smtpd `QUEUEID: client=host[IP], sasl_method=M, sasl_username=U`: a login (logged
  once per message an authenticated client submits), service from the syslog tag as for
  failures (postfix/submission/smtpd → submission).
- Dovecot `imap-login: [Info: ]Login: user=<U>, method=M, rip=IP, …` (IMAP, POP3,
  submission, ManageSieve), through syslog or in Dovecot's own log file.
- Postfix qmgr `QUEUEID: from=<…>, size=…, nrcpt=N (queue active)`: joined by queue id to
  the smtpd line (SubmitJoin), a Kind.SUBMIT login with `recipients` = N.

The header, stamps, addresses and service names are the failure grammar's (one reading of
a line for both). The same hardening: nothing here raises whatever the bytes, every
regex is linear, the IP is validated and canonical, a line longer than the grammar reads
is not parsed, a stamp more than a day after the time of reading is not recorded. A line
that logs a failure and quotes `sasl_username=` is a failure, not a login (is_success).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Final, NamedTuple

from mlsd.ingest.grammar import (
    _DOVECOT_LOGIN,
    _DOVECOT_METHOD,
    _DOVECOT_RIP,
    _DOVECOT_SYSLOG_LINE,
    _HEADER,
    _HOST,
    _IPS,
    _MECHANISMS,
    _PROG,
    _SERVICES,
    _TEXTS,
    _WORDS,
    MAX_CANDIDATE_LINE,
    _Groups,
    _stamp,
)
from mlsd.ingest.prefilter import (
    QUEUED,
    SUCCESS_NEEDLES,
    SUCCESSES,
    candidate_spans,
    is_success,
)
from mlsd.ingest.stamps import Clock, clock_for, plausible_until
from mlsd.logins import Kind, Login

__all__ = [
    "Parsed",
    "Queued",
    "SubmitJoin",
    "collect",
    "login_of_message",
    "logins_of_block",
    "parse_login_line",
    "submits",
]

PENDING_CAP: Final = 10_000
"""Queue ids SubmitJoin remembers at most (the oldest go first)."""
PENDING_TTL: Final = timedelta(hours=1)
"""Log time after which a queue id's smtpd line no longer waits for its qmgr line."""

# After the header: `QUEUEID: client=host[IP][:port], sasl_method=M, sasl_username=`.
_CLIENT = re.compile(
    rb"([0-9A-Za-z]{5,20}): client=([^\s\[]*)\[([^\]\s]{1,64})\](?::\d{1,5})?"
    rb"(?:, sasl_method=([A-Za-z0-9_-]{1,40}))?, sasl_username="
)
_POSTFIX_LOGIN_LINE = re.compile(b"(?>" + _HEADER.pattern + b")" + _CLIENT.pattern)
# Postfix logs these after the username: the client's MAIL FROM AUTH= (its own text) and
# the original queue id and client of a message that came through a proxy.
_AFTER_USER: Final = (b", sasl_sender=", b", orig_queue_id=", b", orig_client=")
# After the header: `QUEUEID: from=<`; the line ends `, nrcpt=N (queue active)`.
_QUEUED = re.compile(rb"([0-9A-Za-z]{5,20}): from=<")
_QUEUED_LINE = re.compile(b"(?>" + _HEADER.pattern + b")" + _QUEUED.pattern)
_NRCPT = re.compile(rb", nrcpt=(\d{1,9}) \(queue active\)")
_DOVECOT_USER: Final = b"Login: user=<"
_QID_TAIL = re.compile(rb"[0-9A-Za-z]{5,20}$")


class Queued(NamedTuple):
    """qmgr took a message into its active queue: its recipients, by queue id."""

    qid: bytes
    time: datetime
    recipients: int


Parsed = tuple[bytes | None, Login] | Queued | None
"""A login with the queue id of its message (smtpd) or None (Dovecot), a Queued, or
nothing."""


class SubmitJoin:
    """Queue id → the smtpd login of the message, until qmgr logs its recipients.

    Bounded: at most `cap` queue ids (the oldest are dropped first), each for `ttl` of log
    time; a queue id is joined at most once (qmgr logs `(queue active)` again each time a
    deferred message is retried: that is not another submission). Held in memory only:
    the ids pending at a restart are lost, so a submission whose smtpd line was read
    before a restart and its qmgr line after is not counted (never counted twice).
    """

    def __init__(self, cap: int = PENDING_CAP, ttl: timedelta = PENDING_TTL) -> None:
        self.cap = cap
        self.ttl = ttl
        self._pending: dict[bytes, Login] = {}
        self.dropped = 0
        """Queue ids dropped unjoined (expired or over the cap)."""

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, qid: bytes, login: Login) -> None:
        """An smtpd login for the message `qid` (a second one for the same id replaces it)."""
        pending = self._pending
        pending.pop(qid, None)
        pending[qid] = login
        oldest = login.time - self.ttl
        while pending:
            first = next(iter(pending))
            if len(pending) <= self.cap and pending[first].time >= oldest:
                break
            del pending[first]
            self.dropped += 1

    def wants(self, line: bytes) -> bool:
        """Whether a qmgr line (a log line or a journal entry's JSON) names a queue id a
        login waits for: a look at the bytes before `: from=<`, no parse."""
        if not self._pending:
            return False
        at = line.find(b": from=<")
        qid = _QID_TAIL.search(line, max(0, at - 20), at) if at > 0 else None
        return qid is not None and qid[0] in self._pending

    def take(self, queued: Queued) -> Login | None:
        """The submission `queued` completes, once; None when no login waits for it."""
        login = self._pending.pop(queued.qid, None)
        if login is None:
            return None
        if not queued.time - self.ttl <= login.time <= queued.time + self.ttl:
            self.dropped += 1
            return None
        return login._replace(time=queued.time, kind=Kind.SUBMIT, recipients=queued.recipients)


def parse_login_line(line: bytes, clock: Clock) -> Parsed:
    """A login, a Queued, or None for every other line. Never raises."""
    if len(line) > MAX_CANDIDATE_LINE:
        return None
    try:
        return _parse(line.rstrip(b"\r\n"), clock)
    except Exception:  # pragma: no cover - the contract is "never raises"; tests hunt for this
        return None


def _parse(line: bytes, clock: Clock) -> Parsed:
    # Most lines found are smtpd's, qmgr's or Dovecot's through syslog: header and message
    # start in one match. The program decides what a line is, never a needle alone (a
    # sender or a username can quote any of them).
    if b"sasl_username=" in line and is_success(line):
        m = _POSTFIX_LOGIN_LINE.match(line)
        if m is not None and m.groups()[_PROG].endswith(b"smtpd"):
            return _postfix(m.groups(), line[m.end() :], clock)
    if b", nrcpt=" in line:
        m = _QUEUED_LINE.match(line)
        if m is not None and m.groups()[_PROG].endswith(b"qmgr"):
            groups = m.groups()
            return _queued_rest(groups, groups[_PROG + 1], line, clock)
    if not is_success(line):
        return None
    whole = _DOVECOT_SYSLOG_LINE.match(line)
    if whole is not None:
        groups = whole.groups()
        if not groups[_PROG].endswith(b"-login"):
            return _dovecot(groups, groups[_PROG + 1], line[whole.end() :], clock)
    head = _HEADER.match(line)
    return None if head is None else login_of_message(head.groups(), line[head.end() :], clock)


def login_of_message(stamp: _Groups, msg: bytes, clock: Clock) -> Parsed:
    """What follows a header (`stamp`: its groups; `msg`: after `prog[pid]: `)."""
    prog = stamp[_PROG]
    if prog.endswith(b"qmgr"):
        m = _QUEUED.match(msg)
        return None if m is None else _queued_rest(stamp, m[1], msg, clock)
    if not is_success(msg):
        return None
    if prog.endswith(b"smtpd"):
        m = _CLIENT.match(msg)
        return None if m is None else _postfix(stamp + m.groups(), msg[m.end() :], clock)
    if prog.endswith(b"-login"):  # Dovecot's own log file: `imap-login: Info: Login: …`
        body = msg[len(b"Info: ") :] if msg.startswith(b"Info: ") else msg
        return _dovecot(stamp, prog[: -len(b"-login")], body, clock)
    login = _DOVECOT_LOGIN.match(msg)  # `dovecot: imap-login: Login: …`
    return None if login is None else _dovecot(stamp, login[1], msg[login.end() :], clock)


def _queued_rest(stamp: _Groups, qid: bytes, line: bytes, clock: Clock) -> Parsed:
    # The sender is the client's text and comes first: read the count from the line's end.
    at = line.rfind(b", nrcpt=")
    n = _NRCPT.fullmatch(line, at) if at >= 0 else None
    if n is None:
        return None
    when = _stamp(stamp, clock)
    return None if not isinstance(when, datetime) else Queued(qid, when, int(n[1]))


def _postfix(groups: _Groups, rest: bytes, clock: Clock) -> Parsed:
    # The header's groups, then _CLIENT's: queue id, client hostname, IP, mechanism.
    qid, host, raw_ip, mech = groups[_PROG + 1 :]
    if not groups[_PROG].endswith(b"smtpd"):
        return None
    cut = [at for at in (rest.find(m) for m in _AFTER_USER) if at >= 0]
    user = rest[: min(cut)] if cut else rest
    ip = _IPS[raw_ip]
    if ip is None or not user:
        return None
    when = _stamp(groups, clock)
    if not isinstance(when, datetime):
        return None
    login = Login(
        when,
        _WORDS[groups[_HOST] or b""],
        _SERVICES[groups[_PROG]],
        _TEXTS[user],
        ip,
        _MECHANISMS[mech] if mech else "",
        _TEXTS[host],
    )
    return qid, login


def _dovecot(stamp: _Groups, proto: bytes, body: bytes, clock: Clock) -> Parsed:
    # `body`: what follows `imap-login: [Info: ]`. Keys follow the username: `user=<U>,
    # method=M, rip=IP, lip=IP, mpid=N, TLS, session=<…>`: the last `, rip=` is the real
    # one (a fake one inside the username comes earlier), the username ends before it.
    if not body.startswith(_DOVECOT_USER):
        return None
    upto = len(body)
    ip = ""  # no rip: a login through a local socket
    at = body.rfind(b", rip=")
    if at >= 0:
        rip = _DOVECOT_RIP.match(body, at)
        found = None if rip is None else _IPS[rip[1]]
        if found is None:
            return None
        ip, upto = found, at
    method = b""
    at = body.rfind(b", method=", 0, upto)
    if at >= 0:
        m = _DOVECOT_METHOD.fullmatch(body, at, upto)
        if m is not None:
            method, upto = m[1], at
    if body[upto - 1 : upto] != b">":
        return None
    user = body[len(_DOVECOT_USER) : upto - 1]
    if not user:
        return None
    when = _stamp(stamp, clock)
    if not isinstance(when, datetime):
        return None
    login = Login(
        when,
        _WORDS[stamp[_HOST] or b""],
        _WORDS[proto],
        _TEXTS[user],
        ip,
        _MECHANISMS[method] if method else "",
    )
    return None, login


def logins_of_block(
    buf: bytes, ref: datetime, tz: tzinfo, join: SubmitJoin, *, final: bool = False
) -> list[Login]:
    """The logins and submissions in the complete lines of `buf`, in log order (`final`:
    an unterminated last line counts too, as in grammar.parse_block). `join` carries the
    smtpd lines waiting for their qmgr line from one block to the next."""
    lines = in_order(buf, candidate_spans(buf, SUCCESSES), join)
    if final and buf and not buf.endswith(b"\n"):
        last = buf[buf.rfind(b"\n") + 1 :]
        if any(n in last for n in (*SUCCESS_NEEDLES, b", nrcpt=")):
            lines.append(last)
    clock = clock_for(ref, tz)
    return collect(lines, join, ref, lambda line: parse_login_line(line, clock))


def in_order(
    buf: bytes, spans: list[tuple[int, bytes]], join: SubmitJoin, start: int = 0
) -> list[bytes]:
    """The lines of `spans` (found by SUCCESSES in `buf` from `start`) and, when a
    submission may complete in `buf`, its qmgr lines (QUEUED), in log order. An MX without
    submissions pays nothing for queue lines: they are searched for only while a login
    waits for one, or from the first line of `buf` that may be one."""
    if join or any(submits(line) for _, line in spans):
        first = start if join or not spans else spans[0][0]
        spans = sorted(spans + candidate_spans(buf, QUEUED, first))
    return [line for _, line in spans]


def submits(line: bytes) -> bool:
    """Whether a line found by SUCCESSES may be smtpd's login line of a submission (not a
    failure quoting the username, which Postfix >= 3.7.8 logs on every attack line)."""
    return b"sasl_username=" in line and is_success(line)


def collect(
    lines: Iterable[bytes], join: SubmitJoin, ref: datetime, parse: Callable[[bytes], Parsed]
) -> list[Login]:
    """The logins among `lines` (in log order, each read by `parse`), smtpd ones remembered
    in `join` and qmgr ones joined to them; a stamp more than a day after `ref` is not
    recorded. A queue line whose id no login waits for is not parsed (most are not)."""
    limit = plausible_until(ref)
    out: list[Login] = []
    wants = join.wants
    for line in lines:
        if (
            b", nrcpt=" in line
            and not wants(line)
            and b"sasl_username=" not in line
            and b"Login: user=<" not in line
        ):
            continue
        result = parse(line)
        if result is None:
            continue
        if isinstance(result, Queued):
            submit = None if result.time > limit else join.take(result)
            if submit is not None:
                out.append(submit)
            continue
        qid, login = result
        if login.time > limit:
            continue
        out.append(login)
        if qid is not None:
            join.add(qid, login)
    return out
