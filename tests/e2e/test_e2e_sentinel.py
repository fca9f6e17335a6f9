"""The sentinel end to end (issue 20): a guessed password on a real Postfix + Dovecot.

One scenario per logging variant, shared by the tests of this module. `mlsd run` (with
`[sentinel] failures = 10` and its alerts to a mailbox of that same Postfix) follows the
mail log while, from loopback sources of their own:

1. carol: 9 failed IMAP LOGINs, then a successful one — below the threshold, no alert;
2. alice: 10 failed SMTP AUTHs on submission (587, STARTTLS), then a successful one that
   sends a message — the alert must be in the mailbox within 5 s of the line
   `client=…, sasl_username=alice…` appearing in the mail log;
3. bob: 13 failed IMAP LOGINs, then a successful one — the same, from `Login: user=<bob…>`.

The delay is measured from the test's side: the log and the Maildir are polled together
(every 10 ms) and the figure is the time between first seeing the login line and first
seeing the message file. Then mlsd is killed with SIGKILL and started again, stopped with
SIGTERM and started again: no alert may be mailed twice. Last, alice logs in again (same
IP, her failures still within the window): `[sentinel] quiet_minutes` holds that alert
back, across the restarts.
"""

from __future__ import annotations

import csv
import email
import email.policy
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from mlsd.logins import LOGIN_COLUMNS
from tests.e2e.attack import Attempt, Outcome, Session, breach, run_session
from tests.e2e.mailserver import (
    ALERT_RCPT,
    IMAP_PORT,
    MYHOSTNAME,
    SERVICE_BY_PORT,
    MailServer,
    wait_for,
)
from tests.e2e.test_e2e import Mlsd, read_csv, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FAILURES = 10
"""`[sentinel] failures` in the test's config."""
ALERT_WITHIN = 5.0
"""Seconds from the login line to the alert in the mailbox (issue 20, "Tests")."""
WATCH = 15.0
"""How long to keep watching past the login line: a late alert then still gets a figure."""
SETTLE = 2.0
"""Seconds to wait, once mlsd has read everything, for a duplicate to show."""
POLL = 0.01
BARRIER_IP = "127.0.0.250"


@dataclass(frozen=True, slots=True)
class Case:
    """One brute force then a success."""

    name: str
    port: int
    user: str
    source: str
    failures: int
    alerts: bool

    @property
    def service(self) -> str:
        return SERVICE_BY_PORT[self.port]

    def is_login_line(self, line: bytes) -> bool:
        """The line that says this login succeeded (the sentinel's trigger)."""
        if self.port == IMAP_PORT:
            # `imap-login: Login: user=<U>, …` (syslog); `imap-login: Info: Login: …` (log_path).
            return (
                b"-login: " in line
                and b" Login: user=<" + self.user.encode() + b">, " in line
                and b" rip=" + self.source.encode() + b"," in line
            )
        return b" client=unknown[" + self.source.encode() + b"]" in line and line.endswith(
            b"sasl_username=" + self.user.encode()
        )


CASES = (
    Case("below threshold", IMAP_PORT, "carol", "127.0.0.202", FAILURES - 1, alerts=False),
    Case("smtp", 587, "alice@e2e.example", "127.0.0.200", FAILURES, alerts=True),
    Case("imap", IMAP_PORT, "bob@e2e.example", "127.0.0.201", FAILURES + 3, alerts=True),
)
AGAIN = CASES[1]
"""Logs in once more after the restarts, within quiet_minutes of its alert."""


@dataclass
class Seen:
    """What the test saw for one case: the login line and the alert, with their times."""

    case: Case
    outcomes: list[Outcome]
    line: str = ""
    line_at: float = 0.0
    alert: EmailMessage | None = None
    alert_at: float = 0.0

    @property
    def delay(self) -> float | None:
        return self.alert_at - self.line_at if self.alert is not None else None

    @property
    def server(self) -> str:
        """The host field of the login line (what mlsd calls the server), or "" when the
        line has none: Dovecot's own log_path lines are `Dec 05 17:14:14 imap-login: …`."""
        fields = self.line.split()
        if re.match(r"\d{4}-\d\d-\d\dT", self.line):  # rsyslog: `2026-…+00:00 host prog: …`
            return fields[1]
        return "" if fields[3].endswith(":") else fields[3]


@dataclass
class Run:
    server: MailServer
    mlsd: Mlsd
    csv: Path
    logins: Path
    started: datetime
    seen: dict[str, Seen] = field(default_factory=dict)
    after_restarts: dict[str, EmailMessage] = field(default_factory=dict)
    """The alert mailbox once mlsd was restarted twice, by file name."""
    again: Seen | None = None
    at_end: dict[str, EmailMessage] = field(default_factory=dict)
    """The alert mailbox at the end."""


class LogTail:
    """The mail log's complete lines written since it was created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size
        self.rest = b""

    def lines(self) -> list[bytes]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *whole, self.rest = (self.rest + data).split(b"\n")
        return whole


class Mailbox:
    """The alerts' Maildir: messages in `new/`, in order of arrival."""

    def __init__(self, path: Path) -> None:
        self.new = path / "new"
        self.known: set[str] = set()

    def names(self) -> set[str]:
        return {p.name for p in self.new.iterdir()} if self.new.exists() else set()

    def read(self, name: str) -> EmailMessage:
        msg = email.message_from_bytes((self.new / name).read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def all(self) -> dict[str, EmailMessage]:
        return {n: self.read(n) for n in sorted(self.names())}


def about(msg: EmailMessage, user: str) -> bool:
    return f"possible compromise of {user} " in str(msg["Subject"] or "")


def watch(seen: Seen, tail: LogTail, box: Mailbox, want_alert: bool) -> None:
    """Poll the log for the case's login line and the Maildir for its alert, together."""
    deadline = time.monotonic() + WATCH
    while True:
        now = time.time()
        if not seen.line:
            for raw in tail.lines():
                if seen.case.is_login_line(raw):
                    seen.line, seen.line_at = raw.decode(errors="replace"), now
                    deadline = time.monotonic() + WATCH
                    break
        if seen.alert is None:
            for name in sorted(box.names() - box.known):
                msg = box.read(name)
                if about(msg, seen.case.user):
                    seen.alert, seen.alert_at = msg, now
                    box.known.add(name)
        if seen.line and (seen.alert is not None or not want_alert):
            return
        if time.monotonic() > deadline:
            return
        time.sleep(POLL)


def barrier(run: Run, n: int) -> None:
    """A failed login of a user of its own, then wait for its row: mlsd has read the log
    up to here (the CSV row is committed after everything before it in the log)."""
    user = f"barrier-{n}@e2e.example"
    run_session(
        Session(IMAP_PORT, BARRIER_IP, (Attempt(IMAP_PORT, BARRIER_IP, user, "x", "LOGIN"),))
    )

    def arrived() -> bool:
        run.mlsd.assert_running()
        return any(r["user"] == user for r in read_csv(run.csv))

    wait_for(f"mlsd's row for {user}", arrived, 30)


def attack(run: Run, case: Case, box: Mailbox) -> Seen:
    tail = LogTail(run.server.maillog)
    seen = Seen(case, breach(case.port, case.source, case.user, case.failures))
    watch(seen, tail, box, case.alerts)
    assert seen.line, f"no login line for {case.user} in {run.server.maillog}:\n{run.server.tail()}"
    return seen


@pytest.fixture(scope="module")
def sentinel_run(mail_server: MailServer) -> Iterator[Run]:
    server = mail_server
    home = server.root / "mlsd"
    logins = home / "logins-e2e.csv"
    conf = write_config(
        server,
        "postfix" if server.variant == "postlogd" else "off",
        paths=f"logins_csv = {logins}",
        extra=f"""
[sentinel]
to = {ALERT_RCPT}
failures = {FAILURES}
failure_window = 60
quiet_minutes = 60
""",
    )
    run = Run(
        server=server,
        mlsd=Mlsd(conf, home / "mlsd.out"),
        csv=home / "mlsd.csv",
        logins=logins,
        started=datetime.now(UTC),
    )
    box = Mailbox(server.alert_mailbox)
    try:
        run.mlsd.start()
        barrier(run, 1)
        for case in CASES:
            run.seen[case.name] = attack(run, case, box)
        # Replays: a crash, then a clean restart; neither may mail an alert again.
        run.mlsd.kill9()
        run.mlsd.start()
        barrier(run, 2)
        run.mlsd.stop()
        run.mlsd.start()
        barrier(run, 3)
        time.sleep(SETTLE)
        run.after_restarts = box.all()
        # alice again, her failures still in the window: held back by quiet_minutes.
        box.known = box.names()
        again = Case("again", AGAIN.port, AGAIN.user, AGAIN.source, 0, alerts=False)
        run.again = attack(run, again, box)
        barrier(run, 4)
        time.sleep(max(0.0, run.again.line_at + ALERT_WITHIN + 1 - time.time()))
        run.at_end = box.all()
        for s in run.seen.values():
            d = f"{s.delay:.3f} s" if s.delay is not None else "none"
            print(f"[{server.variant}] {s.case.name}: login line -> alert mail: {d}")
        yield run
    finally:
        code = run.mlsd.stop()
        print(f"mlsd stopped with {code}; its output:\n{run.mlsd.output(200)}")


def context(run: Run) -> str:
    return f"--- mlsd:\n{run.mlsd.output(40)}\n--- mail log:\n{run.server.tail(15)}"


@pytest.mark.parametrize("name", ["smtp", "imap"])
def test_breach_alert_mailed_within_seconds(sentinel_run: Run, name: str) -> None:
    run = sentinel_run
    seen = run.seen[name]
    case = seen.case
    assert seen.alert is not None, (
        f"no alert for {case.user} within {WATCH} s of its login line ({case.failures} "
        f"failures from {case.source} over {case.service}, then a login):\n{context(run)}"
    )
    assert seen.delay is not None and seen.delay <= ALERT_WITHIN, (
        f"the alert for {case.user} arrived {seen.delay:.2f} s after the login line"
    )
    msg = seen.alert
    subject = str(msg["Subject"])
    # A line without a host (Dovecot's log_path): `?`, or this machine's name.
    servers = [seen.server] if seen.server else ["?", socket.gethostname()]
    pattern = (
        rf"\[mlsd\] ALERT (?:{'|'.join(map(re.escape, servers))}): possible compromise of "
        rf"{re.escape(case.user)} \(.+\)"
    )
    assert re.fullmatch(pattern, subject), subject
    # Delivered by our Postfix, to the sentinel's recipients.
    assert any(MYHOSTNAME in str(h) for h in msg.get_all("Received", [])), msg.items()
    assert str(msg["To"]) == ALERT_RCPT, msg.items()
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None, "the alert has no text part"
    text = body.get_content()
    assert re.search(rf"(?<![\d.]){re.escape(case.source)}(?![\d])", text), text
    # A word of its own: `min13` or `13x` is not a count an admin can read.
    count = re.compile(rf"(?<![\w.,]){case.failures}(?![\w]|[.,]\d)")
    # Not the threshold (`failures  10`, the [sentinel] key): alice's count is the same.
    said = [ln for ln in text.splitlines() if not re.fullmatch(r"\s*failures\s+\d+\s*", ln)]
    assert any(re.search("fail", ln, re.I) and count.search(ln) for ln in said), (
        f"the alert does not name the {case.failures} failures:\n{text}"
    )


def test_no_alert_below_the_threshold(sentinel_run: Run) -> None:
    run = sentinel_run
    below = run.seen["below threshold"]
    assert below.line, "carol's login is in the log"
    assert run.seen["smtp"].alert is not None, "no alert at the threshold either"
    late = [m for m in run.at_end.values() if about(m, below.case.user)]
    assert not late, f"alert after {below.case.failures} failures: {late[0]['Subject']}"


def test_each_alert_mailed_once_across_restarts(sentinel_run: Run) -> None:
    run = sentinel_run
    assert run.mlsd.starts == 3
    mails = run.after_restarts.values()
    got = Counter(case.user for m in mails for case in CASES if about(m, case.user))
    want = Counter(case.user for case in CASES if case.alerts)
    subjects = [str(m["Subject"]) for m in mails]
    assert got == want and len(run.after_restarts) == sum(want.values()), (
        f"alerts after a kill -9 and a restart: {subjects}\n{context(run)}"
    )


def test_quiet_minutes_holds_back_a_second_alert(sentinel_run: Run) -> None:
    run = sentinel_run
    assert run.again is not None and run.again.line
    assert run.seen["smtp"].alert is not None, "no first alert to hold a second one back"
    new = [str(m["Subject"]) for n, m in run.at_end.items() if n not in run.after_restarts]
    assert not new, f"a second alert for {run.again.case.user} within quiet_minutes: {new}"


def read_logins(path: Path) -> list[dict[str, str]]:
    assert path.exists(), f"no logins CSV at {path}"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=";")
        assert list(reader.fieldnames or ()) == list(LOGIN_COLUMNS)
        return list(reader)


def ours(run: Run, event: str) -> list[dict[str, str]]:
    sources = {case.source for case in CASES} | {BARRIER_IP}
    return [r for r in read_logins(run.logins) if r["ip"] in sources and r["event"] == event]


def test_logins_csv_holds_each_successful_login_once(sentinel_run: Run) -> None:
    run = sentinel_run
    rows = ours(run, "login")
    got = Counter((r["ip"], r["user"], r["service"]) for r in rows)
    want = Counter((c.source, c.user, c.service) for c in (*CASES, AGAIN))
    assert got == want, f"logins.csv: {rows}\n{context(run)}"
    server = {s.case.source: s.server for s in run.seen.values()}
    lo = run.started - timedelta(minutes=5)
    hi = datetime.now(UTC) + timedelta(minutes=5)
    for r in rows:
        assert (r["server"], r["mechanism"]) == (server[r["ip"]], "PLAIN"), r
        assert (r["country_code"], r["asn"], r["aso"]) == ("N/A", "N/A", "N/A"), r
        assert lo <= datetime.fromisoformat(r["date"]) <= hi, r


def test_logins_csv_holds_each_submission_once(sentinel_run: Run) -> None:
    """Both of alice's logins sent one message (qmgr `nrcpt=1`, joined to smtpd's line)."""
    rows = ours(sentinel_run, "submit")
    got = [(r["ip"], r["user"], r["service"], r["recipients"]) for r in rows]
    assert got == [(AGAIN.source, AGAIN.user, AGAIN.service, "1")] * 2, rows
