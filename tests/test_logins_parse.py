"""Successful logins and submissions from real lines: each form, the qmgr join, hostile lines."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlsd.ingest import logins as mod
from mlsd.ingest import prefilter
from mlsd.ingest.entry import parse_login_message
from mlsd.ingest.logins import Parsed, Queued, SubmitJoin, logins_of_block, parse_login_line
from mlsd.ingest.sources.journalevents import logins_of
from mlsd.ingest.stamps import clock_for
from mlsd.journalmatch import Matcher
from mlsd.logins import Kind, Login

CORPUS = Path(__file__).parent / "corpus"
REF = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
SERVICE_BY_PORT = {25: "smtp", 587: "submission", 465: "submissions"}


def _records() -> list[dict[str, Any]]:
    exp = (CORPUS / "logins" / "logins.expected.jsonl").read_text().splitlines()
    return [json.loads(x) for x in exp[1:]]


def _as_dict(x: Login) -> dict[str, Any]:
    return {
        "kind": x.kind.value,
        "time": x.time.isoformat(),
        "server": x.server,
        "service": x.service,
        "user": x.user,
        "ip": x.ip,
        "mechanism": x.mechanism,
        "hostname": x.hostname,
        "recipients": x.recipients,
    }


def test_corpus_line_by_line() -> None:
    """Each line, read one at a time (as a follower's small batches), gives exactly the
    logins written beside it; the join carries smtpd lines from one batch to the next."""
    records = _records()
    lines = (CORPUS / "logins" / "logins.log").read_bytes().splitlines(True)
    assert len(records) == len(lines) == 17
    join = SubmitJoin()
    for rec, line in zip(records, lines, strict=True):
        assert rec["line"].encode() + b"\n" == line
        got = [_as_dict(x) for x in logins_of_block(line, REF, UTC, join)]
        assert rec["logins"] == got, rec["note"]
    assert len(join) == 1  # the rsyslog capture's smtpd line: its qmgr line is not here


def test_corpus_as_one_block_and_without_line_end() -> None:
    """The whole file in one block gives the same logins, in log order; a sealed file's
    last line without a newline counts with `final`."""
    data = (CORPUS / "logins" / "logins.log").read_bytes()
    expected = [x for rec in _records() for x in rec["logins"]]
    assert expected == [_as_dict(x) for x in logins_of_block(data, REF, UTC, SubmitJoin())]
    erin = data[: data.index(b"Nov 25 04:48:13")].rstrip(b"\n")
    got = logins_of_block(erin, REF, UTC, SubmitJoin(), final=True)
    assert (Kind.SUBMIT, 25) == (got[-1].kind, got[-1].recipients)
    assert logins_of_block(erin, REF, UTC, SubmitJoin())[-1].kind is Kind.LOGIN


@pytest.mark.parametrize("variant", ["postlogd", "syslog-traditional", "syslog-rfc3339"])
def test_every_lab_success_is_a_login(variant: str) -> None:
    """Each login the lab's client made (reply 235) is a login of the real mail log with its
    IP, service, mechanism and user; nothing else in that log is."""
    attempts = json.loads((CORPUS / "lab" / f"attack-{variant}.json").read_text())
    wanted = Counter(
        (a["src"], SERVICE_BY_PORT[a["port"]], a["mech"], a["user"])
        for a in attempts
        if a["code"] == 235
    )
    assert sum(wanted.values()) == 3
    data = (CORPUS / "lab" / f"{variant}-mail.log").read_bytes()
    got = logins_of_block(data, REF, UTC, SubmitJoin())
    assert wanted == Counter((x.ip, x.service, x.mechanism, x.user) for x in got)


def test_no_failure_or_other_corpus_line_is_a_login() -> None:
    """Across the failures' corpus (attacks, backend lines, skips, normal traffic), only
    the lab's smtpd `client=…, sasl_username=` lines are logins."""
    clock = clock_for(REF, UTC)
    seen = 0
    for exp_file in sorted(CORPUS.glob("*/*.expected.jsonl")):
        if exp_file.parent.name == "logins":
            continue
        for raw in exp_file.read_text().splitlines()[1:]:
            rec = json.loads(raw)
            result = parse_login_line(rec["line"].encode(), clock)
            if ": client=" in rec["line"] and "sasl_username=" in rec["line"]:
                assert rec["expect"] == "none"
                assert _login(result).user, rec["line"]
                seen += 1
            else:
                assert result is None, rec["line"]
    assert seen == 9


def _login(result: Parsed) -> Login:
    assert result is not None and not isinstance(result, Queued), result
    return result[1]


def _smtpd(qid: str, user: str, minute: int = 0) -> bytes:
    return (
        f"Nov 25 04:{minute:02d}:00 mail postfix/submission/smtpd[1]: {qid}: "
        f"client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username={user}\n"
    ).encode()


def _qmgr(qid: str, n: int, minute: int = 0, hour: int = 4) -> bytes:
    return (
        f"Nov 25 {hour:02d}:{minute:02d}:30 mail postfix/qmgr[2]: {qid}: "
        f"from=<a@example.org>, size=1, nrcpt={n} (queue active)\n"
    ).encode()


def _submits(data: bytes, join: SubmitJoin) -> list[tuple[str, int]]:
    got = logins_of_block(data, REF, UTC, join)
    return [(x.user, x.recipients) for x in got if x.kind is Kind.SUBMIT]


def test_join_cap_evicts_the_oldest() -> None:
    """At most `cap` queue ids wait: the oldest goes first, and its qmgr line then joins
    nothing."""
    join = SubmitJoin(cap=2)
    data = _smtpd("AAAAA1", "u1") + _smtpd("AAAAA2", "u2") + _smtpd("AAAAA3", "u3")
    assert _submits(data, join) == []
    assert (len(join), join.dropped) == (2, 1)
    assert _submits(_qmgr("AAAAA1", 1) + _qmgr("AAAAA3", 3) + _qmgr("AAAAA2", 2), join) == [
        ("u3", 3),
        ("u2", 2),
    ]
    assert len(join) == 0


def test_join_expires_after_an_hour_of_log_time() -> None:
    """A queue id waits an hour of log time: a later smtpd line sweeps it out, and a qmgr
    line more than an hour after its smtpd line joins nothing."""
    join = SubmitJoin()
    ref = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    logins_of_block(_smtpd("BBBBB1", "old") + _smtpd("BBBBB2", "late"), ref, UTC, join)
    assert len(join) == 2
    sweep = b"Nov 25 05:30:00 mail postfix/smtpd[1]: BBBBB3: client=h[192.0.2.3], sasl_username=n\n"
    logins_of_block(sweep, ref, UTC, join)
    assert (len(join), join.dropped) == (1, 2)
    join2 = SubmitJoin()
    logins_of_block(_smtpd("CCCCC1", "slow"), ref, UTC, join2)
    assert logins_of_block(_qmgr("CCCCC1", 4, hour=5, minute=1), ref, UTC, join2) == []
    assert (len(join2), join2.dropped) == (0, 1)


def test_join_a_queue_id_twice() -> None:
    """A qmgr line seen twice (a deferred message retried) counts once; an smtpd line for a
    queue id already waiting replaces it (the newer message)."""
    join = SubmitJoin()
    data = _smtpd("DDDDD1", "first") + _smtpd("DDDDD1", "second") + _qmgr("DDDDD1", 7)
    assert _submits(data + _qmgr("DDDDD1", 7, minute=30), join) == [("second", 7)]
    assert len(join) == 0


def test_queue_line_parsed_from_the_end() -> None:
    """The sender is the client's text and comes first: a fake count inside it is not
    read; a qmgr line that does not end as qmgr writes it is nothing."""
    clock = clock_for(REF, UTC)
    fake = (
        b'Nov 25 04:00:30 mail postfix/qmgr[2]: EEEEE1: from=<"x, nrcpt=999 (queue active)"'
        b"@example.org>, size=1, nrcpt=2 (queue active)"
    )
    assert parse_login_line(fake, clock) == Queued(
        b"EEEEE1", datetime(2026, 11, 25, 4, 0, 30, tzinfo=UTC), 2
    )
    assert parse_login_line(fake + b" trailing", clock) is None
    not_qmgr = fake.replace(b"postfix/qmgr", b"postfix/cleanup")
    assert parse_login_line(not_qmgr, clock) is None


HOSTILE_USERS = [
    '=HYPERLINK("http://x.example/"&A1)',
    "a;b;c;d;e;f;g;h;i;j;k;l;m",
    "@SUM(1+1)",
    "-2+3",
    "\x1b]52;c;AAAA\x07",
    'quote"inside',
    "ünïcödé\u202eevil",
]


@pytest.mark.parametrize("user", HOSTILE_USERS)
def test_hostile_usernames_are_kept_raw(user: str) -> None:
    """Whatever the username holds (formula text, the delimiter, escapes, bidi overrides),
    the parser keeps it as logged; cleaning is each surface's job (tests/test_logins_journal)."""
    clock = clock_for(REF, UTC)
    assert _login(parse_login_line(_smtpd("FFFFF1", user), clock)).user == user
    dovecot = (
        f"Nov 25 04:40:01 mail dovecot: imap-login: Login: user=<{user}>, method=PLAIN, "
        "rip=192.0.2.10, lip=192.0.2.1, mpid=1, TLS, session=<x>"
    ).encode()
    got = _login(parse_login_line(dovecot, clock))
    assert (got.user, got.ip) == (user, "192.0.2.10")


def test_dovecot_fake_keys_inside_the_username() -> None:
    """The last `, rip=` is the real one: keys faked inside the username stay in it."""
    clock = clock_for(REF, UTC)
    line = (
        b"Nov 25 04:40:01 mail dovecot: imap-login: Login: user=<x>, method=LOGIN, rip=10.0.0.1>"
        b", method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, mpid=1, TLS, session=<x>"
    )
    got = _login(parse_login_line(line, clock))
    assert (got.user, got.mechanism, got.ip) == (
        "x>, method=LOGIN, rip=10.0.0.1",
        "PLAIN",
        "192.0.2.10",
    )


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (_smtpd("GGGGG1", "")[:-1], "no username"),
        (
            b"Nov 25 04:00:00 mail postfix/smtpd[1]: GGGGG2: client=h[999.1.1.1], sasl_username=u",
            "not an address",
        ),
        (
            b"Nov 25 04:00:00 mail postfix/smtpd[1]: GGGGG3: client=h[fe80::1%eth0], "
            b"sasl_username=u",
            "a scope id",
        ),
        (
            b"Nov 25 04:00:00 mail postfix/smtp[1]: GGGGG4: client=h[192.0.2.1], sasl_username=u",
            "not smtpd",
        ),
        (
            b"Nov 25 04:40:01 mail dovecot: imap-login: Login: user=<u>, method=PLAIN, "
            b"rip=300.1.1.1, lip=192.0.2.1",
            "Dovecot: not an address",
        ),
        (b"Nov 25 04:40:01 mail dovecot: imap-login: Login: user=<>, rip=192.0.2.1", "empty"),
        (
            b"2027-01-01T00:00:00+00:00 mail dovecot: imap-login: Login: user=<u>, rip=192.0.2.1",
            "a stamp more than a day after reading",
        ),
        (
            b"Nov 31 04:00:00 mail postfix/smtpd[1]: GGGGG5: client=h[192.0.2.1], sasl_username=u",
            "no such day",
        ),
        (
            b"Nov 25 04:00:00 mail postfix/submission/smtpd[1]: warning: unknown[192.0.2.1]: "
            b"SASL PLAIN authentication failed: x, sasl_username=u",
            "a failure",
        ),
    ],
)
def test_not_a_login(line: bytes, why: str) -> None:
    """Lines that look like a login and are not one give nothing (and never raise)."""
    assert logins_of_block(line + b"\n", REF, UTC, SubmitJoin()) == [], why


def test_local_login_has_no_ip() -> None:
    """A Dovecot login without `rip=` (a local socket) is a login with an empty IP."""
    line = b"Nov 25 04:40:01 mail dovecot: imap-login: Login: user=<backup>, method=PLAIN\n"
    (got,) = logins_of_block(line, REF, UTC, SubmitJoin())
    assert (got.user, got.ip, got.mechanism) == ("backup", "", "PLAIN")


def test_huge_and_pathological_lines_are_cheap_and_never_raise() -> None:
    """Over-long lines are not parsed; long repetitions of the keys cost linear time."""
    big = _smtpd("HHHHH1", "u" * 70_000)
    assert logins_of_block(big, REF, UTC, SubmitJoin()) == []
    keys = b", rip=1" * 9000 + b", method=" * 900
    lines = [
        b"Nov 25 04:40:01 mail dovecot: imap-login: Login: user=<" + keys + b">, rip=192.0.2.1",
        b"Nov 25 04:00:00 mail postfix/smtpd[1]: A1B2C3: client=" + b"[" * 60_000,
        b"Nov 25 04:00:30 mail postfix/qmgr[2]: A1B2C3: from=<" + b", nrcpt=1" * 7000,
        b"\xff\xfe Login: user=<\x00> sasl_username=\x80 , nrcpt=",
    ]
    start = time.monotonic()
    for line in lines:
        logins_of_block(line + b"\n", REF, UTC, SubmitJoin())
    assert time.monotonic() - start < 2.0


def _entry(cursor: int, program: str, message: str | list[int], when: datetime) -> bytes:
    micros = int(when.timestamp() * 1_000_000)
    obj = {
        "__CURSOR": f"s=ab;i={cursor:x}",
        "__REALTIME_TIMESTAMP": str(micros),
        "_HOSTNAME": "mx",
        "SYSLOG_IDENTIFIER": program,
        "MESSAGE": message,
    }
    return json.dumps(obj).encode() + b"\n"


def test_journal_entries_give_the_same_logins() -> None:
    """The journal source: the entry's program, host and exact time, the same forms and
    the same join; a username with a newline (a journal message can hold one) is kept."""
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    block = (
        _entry(
            1,
            "postfix/submission/smtpd",
            "AB12C: client=h.example[192.0.2.5], sasl_method=PLAIN, sasl_username=al\nice",
            t,
        )
        + _entry(2, "postfix/cleanup", "AB12C: message-id=<x@y>", t)
        + _entry(
            3,
            "postfix/qmgr",
            "AB12C: from=<a@b>, size=3, nrcpt=4 (queue active)",
            t + timedelta(seconds=1),
        )
        + _entry(
            4,
            "dovecot",
            "imap-login: Login: user=<bob>, method=PLAIN, rip=192.0.2.6, "
            "lip=192.0.2.1, mpid=1, TLS, session=<s>",
            t + timedelta(seconds=2),
        )
        + _entry(
            5,
            "postfix/smtpd",
            "warning: unknown[192.0.2.7]: SASL PLAIN authentication failed: x, sasl_username=eve",
            t,
        )
    )
    got = logins_of(
        block, 0, Matcher(("SYSLOG_IDENTIFIER=postfix*", "SYSLOG_IDENTIFIER=dovecot")), SubmitJoin()
    )
    assert [(x.kind, x.user, x.server, x.service, x.ip, x.recipients, x.time) for x in got] == [
        (Kind.LOGIN, "al\nice", "mx", "submission", "192.0.2.5", 0, t),
        (Kind.SUBMIT, "al\nice", "mx", "submission", "192.0.2.5", 4, t + timedelta(seconds=1)),
        (Kind.LOGIN, "bob", "mx", "imap", "192.0.2.6", 0, t + timedelta(seconds=2)),
    ]
    assert parse_login_message(b"dovecot", b"", b"imap-login: Login: user=<u>", None, t) is None


def test_queue_lines_are_searched_only_when_a_submission_may_complete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An MX under attack (failures quoting `sasl_username=`) and without submissions pays
    no search for qmgr lines; a block with an smtpd login line does, from that line on."""
    searched: list[tuple[bytes, int]] = []
    real = prefilter.candidate_spans

    def spans(buf: bytes, search: Any, start: int = 0) -> list[tuple[int, bytes]]:
        searched.append((search.anchor, start))
        return real(buf, search, start)

    monkeypatch.setattr(mod, "candidate_spans", spans)
    fail = (
        b"Nov 25 04:00:00 mail postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN "
        b"authentication failed: x, sasl_username=admin\n"
    )
    join = SubmitJoin()
    assert logins_of_block(fail * 3 + _qmgr("IIIII1", 2), REF, UTC, join) == []
    assert searched == [(b"user", 0)]
    searched.clear()
    block = _qmgr("IIIII0", 1) + _smtpd("IIIII1", "u") + _qmgr("IIIII1", 2)
    assert _submits(block, join) == [("u", 2)]
    assert searched == [(b"user", 0), (b"nrcpt=", len(_qmgr("IIIII0", 1)))]
