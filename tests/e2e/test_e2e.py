"""mlsd against a real Postfix + Dovecot, real clients, real logrotate, a real kill -9.

One scenario per logging variant (postlogd's maillog_file; rsyslog with RFC 3339 stamps),
shared by the tests of this module:

1. `mlsd run` starts as a subprocess; attackers (many 127.0.0.0/8 sources and ::1) try
   wrong passwords over SMTP AUTH PLAIN/LOGIN on 25, 587 (STARTTLS), 465 (TLS) and IMAP
   LOGIN, mixed with successful logins, for the whole run.
2. While they go on: logrotate create + compress + delaycompress (writers reopen);
   `kill -9` mlsd, attacks continue while it is down, restart it; logrotate
   copytruncate; create again (so .1 becomes .2.gz); `postfix logrotate` (postlogd).
   copytruncate and `postfix logrotate` run with the attackers paused and every
   failure already in the log: copytruncate loses what is written between its copy and
   its truncate, and `postfix logrotate` does not reopen Dovecot's log, so lines would be
   lost by the rotation itself, before mlsd could see them.
3. The CSV must then hold exactly one row per failed attempt the client saw (IP, user,
   service), and none for the successful logins; SIGUSR1 must mail a report through the
   same Postfix whose total equals the attempts.
"""

from __future__ import annotations

import contextlib
import csv
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from mlsd.rows import COLUMNS
from tests.e2e.attack import Attacker
from tests.e2e.mailserver import (
    MYHOSTNAME,
    REPORT_RCPT,
    MailServer,
    log_bytes,
    logged_failures,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MLSD = Path(sys.executable).with_name("mlsd")
STEP = 25  # failed attempts between two events of the scenario
# Dovecot's auth process, logging each attempt again (auth_verbose).
DOVECOT_AUTH_REPEAT = re.compile(rb"passwd-file\([^\n]*\): (?:Password mismatch|unknown user)")


class Mlsd:
    """`mlsd run -c CONF` as a real process; its output appended to mlsd.out."""

    def __init__(self, conf: Path, out: Path) -> None:
        self.conf = conf
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.out, "ab") as out:
            out.write(f"==== start {self.starts + 1} at {datetime.now(UTC)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [str(MLSD), "run", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def assert_running(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"mlsd exited {self.proc.returncode}:\n{self.output()}"

    def kill9(self) -> None:
        assert self.proc is not None
        self.assert_running()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def output(self, n: int = 80) -> str:
        try:
            lines = self.out.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


@dataclass
class Scenario:
    server: MailServer
    attacker: Attacker
    mlsd: Mlsd
    csv: Path
    reverse: str
    started: datetime


def write_config(server: MailServer, reverse: str, *, paths: str = "", extra: str = "") -> Path:
    """mlsd's config for `server`; `paths` goes into [paths], `extra` (sections) at the end."""
    assert MLSD.exists(), f"{MLSD} not found: run pytest from the project's virtualenv"
    home = server.root / "mlsd"
    home.mkdir(exist_ok=True)
    conf = home / "mlsd.conf"
    conf.write_text(
        f"""[paths]
mail_log = {server.maillog}
csv = {home / "mlsd.csv"}
state_dir = {home / "state"}
{paths}

[dns]
reverse = {reverse}

[geoip]
# absent on purpose: the columns are N/A, the daemon warns once and carries on
country_db = {home / "absent-country.mmdb"}
asn_db = {home / "absent-asn.mmdb"}

[report]
to = {REPORT_RCPT}

[smtp]
host = 127.0.0.1
port = 25
security = none
timeout = 10

[log]
level = INFO
format = json

[follow]
reconcile_interval = 1.0
{extra}"""
    )
    p = subprocess.run(
        [str(MLSD), "check-config", "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert p.returncode == 0, f"mlsd check-config rejected the test config:\n{p.stderr}"
    return conf


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    # A row is appended whole; a reader racing the writer may still see the last one
    # cut: keep complete lines only.
    text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=";")
    assert reader.fieldnames is None or list(reader.fieldnames) == list(COLUMNS)
    return list(reader)


def csv_attempts(path: Path) -> int:
    return sum(int(r["attempts"]) for r in read_csv(path))


def quiesced(s: Scenario) -> contextlib.AbstractContextManager[None]:
    """Attackers paused and every failure they saw written to the log (any file)."""

    @contextlib.contextmanager
    def cm() -> Iterator[None]:
        s.attacker.pause()
        try:
            want = s.attacker.failures()
            wait_for(
                f"{want} failure lines in {s.server.maillog}*",
                lambda: logged_failures(s.server) == want,
                15,
            )
            yield
        finally:
            s.attacker.resume()

    return cm()


def next_step(s: Scenario, n: int = STEP, *, mlsd_up: bool = True) -> None:
    s.attacker.wait_failures(s.attacker.failures() + n, timeout=60)
    if mlsd_up:
        s.mlsd.assert_running()


@pytest.fixture(scope="module")
def scenario(mail_server: MailServer) -> Iterator[Scenario]:
    server = mail_server
    reverse = "postfix" if server.variant == "postlogd" else "off"
    conf = write_config(server, reverse)
    s = Scenario(
        server=server,
        attacker=Attacker(v6=server.v6, seed=7 if server.variant == "postlogd" else 11),
        mlsd=Mlsd(conf, server.root / "mlsd" / "mlsd.out"),
        csv=server.root / "mlsd" / "mlsd.csv",
        reverse=reverse,
        started=datetime.now(UTC),
    )
    try:
        s.mlsd.start()
        s.attacker.start()
        next_step(s)

        # logrotate: rename, new file, postrotate reopens Postfix (and Dovecot); attacks go on.
        server.logrotate("create")
        next_step(s)

        # kill -9 once mlsd has committed rows; attacks go on while it is down.
        wait_for("mlsd's first rows", lambda: csv_attempts(s.csv) >= 5, 30)
        s.mlsd.kill9()
        next_step(s, mlsd_up=False)
        s.mlsd.start()
        next_step(s, 10)

        with quiesced(s):
            server.logrotate("copytruncate")
        next_step(s)

        # Again with create: mail.log.1 becomes mail.log.2.gz (delaycompress).
        server.logrotate("create")
        next_step(s)

        if server.variant == "postlogd":
            with quiesced(s):
                server.postfix_logrotate()
            next_step(s)

        s.attacker.stop()
        assert not s.attacker.errors, s.attacker.errors[:10]
        # Every failure the client saw is in the log (else the rotation lost it, not mlsd).
        wait_for(
            "every failure in the log",
            lambda: logged_failures(server) == s.attacker.failures(),
            15,
        )
        yield s
    finally:
        s.attacker.stop()
        code = s.mlsd.stop()
        print(f"mlsd stopped with {code}; its output:\n{s.mlsd.output(200)}")


def wait_caught_up(s: Scenario, timeout: float = 60) -> list[dict[str, str]]:
    """Rows once their attempts reach the client's count and nothing more arrives for 3 s."""
    want = s.attacker.failures()
    deadline = time.monotonic() + timeout
    while csv_attempts(s.csv) < want and time.monotonic() < deadline:
        s.mlsd.assert_running()
        time.sleep(0.1)
    # Settle: a duplicate would arrive late (a rotated file read twice, a replay).
    last, since = csv_attempts(s.csv), time.monotonic()
    while time.monotonic() - since < 3 and time.monotonic() < deadline + 3:
        time.sleep(0.2)
        now = csv_attempts(s.csv)
        if now != last:
            last, since = now, time.monotonic()
    return read_csv(s.csv)


def test_csv_holds_each_failed_attempt_exactly_once(scenario: Scenario) -> None:
    s = scenario
    rows = wait_caught_up(s)
    expected = s.attacker.expected_rows()
    got: Counter[tuple[str, str, str]] = Counter()
    for r in rows:
        got[(r["ip"], r["user"], r["service"])] += int(r["attempts"])

    # The scenario covered what it claims to.
    services = {svc for _, _, svc in expected}
    assert services == {"smtp", "submission", "submissions", "imap"}, services
    assert len({ip for ip, _, _ in expected}) >= 20
    assert any(ip == "::1" for ip, _, _ in expected) == s.server.v6
    assert {a.mech for a in (o.attempt for o in s.attacker.outcomes) if a.port != 143} == {
        "PLAIN",
        "LOGIN",
    }
    successes = s.attacker.successes()
    assert {a.port for a in successes} == {25, 587, 465, 143}, "successful logins on every port"
    users = {user for _, user, _ in expected}
    assert any("@" in u for u in users) and any("@" not in u for u in users), users
    assert s.mlsd.starts == 2
    # The rotations happened as described: .1 plain (delaycompress), older ones gzipped,
    # and postfix logrotate's mail.log.YYYYMMDD-HHMMSS.gz.
    names = {p.name for p in s.server.logdir.iterdir()}
    assert {"mail.log", "mail.log.1", "mail.log.2.gz", "mail.log.3.gz"} <= names, names
    if s.server.variant == "postlogd":
        assert any(re.fullmatch(r"mail\.log\.\d{8}-\d{6}\.gz", n) for n in names), names

    missing = expected - got
    extra = got - expected
    assert not missing and not extra, (
        f"CSV differs from the {sum(expected.values())} failed attempts: "
        f"missing {sum(missing.values())} {dict(missing)}, "
        f"extra {sum(extra.values())} {dict(extra)}\n--- mlsd:\n{s.mlsd.output()}"
    )

    # The rest of each row.
    lo = s.started - timedelta(minutes=5)
    hi = datetime.now(UTC) + timedelta(minutes=5)
    for r in rows:
        assert r["mechanism"] in ({"PLAIN", "LOGIN"} if r["service"] != "imap" else {"PLAIN"}), r
        if s.reverse == "off":  # no hostname at all
            assert (r["hostname"], r["reverse_dns_status"]) == ("", "OFF"), r
        elif r["service"] == "imap":  # Dovecot logs none
            assert (r["hostname"], r["reverse_dns_status"]) == ("", "N/A"), r
        else:  # smtpd_peername_lookup = no: Postfix logs unknown[IP]
            assert (r["hostname"], r["reverse_dns_status"]) == ("unknown", "NONE"), r
        assert (r["country_code"], r["asn"], r["aso"]) == ("N/A", "N/A", "N/A"), r
        assert lo <= datetime.fromisoformat(r["date"]) <= hi, r
    # Mechanisms as attempted, per (ip, user, service).
    by_mech = Counter(
        (o.attempt.source, o.attempt.user, o.attempt.mech)
        for o in s.attacker.outcomes
        if o.failed and o.attempt.port != 143
    )
    got_mech = Counter((r["ip"], r["user"], r["mechanism"]) for r in rows if r["service"] != "imap")
    assert got_mech == by_mech

    # Dovecot's auth process repeated every attempt in the same log, and none was counted.
    raw = log_bytes(s.server.logdir, s.server.maillog.name)
    repeats = len(DOVECOT_AUTH_REPEAT.findall(raw))
    assert repeats >= sum(expected.values()) // 2, "Dovecot's auth lines were not in the log"

    # Successful logins never became rows: every (ip, user) with only successes is absent.
    fail_keys = {(ip, user) for ip, user, _ in expected}
    ok_only = {(a.source, a.user) for a in successes} - fail_keys
    assert ok_only
    assert not {(r["ip"], r["user"]) for r in rows} & ok_only


def test_sigusr1_report_through_postfix(scenario: Scenario) -> None:
    s = scenario
    wait_caught_up(s)
    total = s.attacker.failures()
    new = s.server.mailbox / "new"
    before = set(new.iterdir()) if new.exists() else set()
    s.mlsd.assert_running()
    signalled = datetime.now(UTC).replace(microsecond=0)
    os.kill(s.mlsd.pid, signal.SIGUSR1)

    def since_signal() -> list[EmailMessage]:
        # Only what was written after the signal (a fresh install mails no daily report
        # before its first day is over, but a slow clock must not make that matter here).
        out = []
        for path in sorted(set(new.iterdir()) - before) if new.exists() else []:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            date = msg["Date"].datetime if msg["Date"] is not None else None
            if date is not None and date.tzinfo is None:
                date = date.replace(tzinfo=UTC)
            if date is None or date >= signalled:
                out.append(msg)
        return out

    def arrived() -> bool:
        return bool(since_signal())

    try:
        wait_for(f"the report in {new}", arrived, 60, every=0.2)
    except Exception as e:
        pytest.fail(
            f"no report arrived through Postfix after SIGUSR1: {e}\n--- mlsd:\n"
            f"{s.mlsd.output()}\n--- mail log:\n{s.server.tail(30)}",
            pytrace=False,
        )
    time.sleep(1)  # a second message would be a duplicate
    msgs = since_signal()
    assert len(msgs) == 1, f"{len(msgs)} messages after one SIGUSR1"
    msg = msgs[0]
    # Through our Postfix: its smtpd received it from mlsd over SMTP.
    assert any(MYHOSTNAME in str(h) for h in msg.get_all("Received", [])), msg.items()
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None, "the report has no text part"
    text = body.get_content()
    # The total: on a line that says "total", or in the few lines of a "Total …" section
    # (a heading, its underline, the figure).
    number = re.compile(rf"(?<![\d.,]){total}(?![\d.,]?\d)")
    lines = text.splitlines()
    found = [
        "\n".join(lines[i : i + 4])
        for i, ln in enumerate(lines)
        if re.search("total", ln, re.I) and any(number.search(x) for x in lines[i : i + 4])
    ]
    assert found, f"no total of {total} attempts in the report:\n{text}"
    s.mlsd.assert_running()
