"""mlsd reading the journal of a real Postfix + Dovecot, attacked by real clients.

Postfix and Dovecot log through syslog(3) to /dev/log, served by a stand-in for journald
(tests/e2e/devlog_journal.py) that writes each message as a journal entry, through
systemd-journal-remote, into a real journal file; mlsd runs with `[source] type =
journal` on that directory. While the attackers go on: `kill -9` mlsd (attacks continue
while it is down) and start it again, then kill its journalctl. The CSV must hold exactly
one row per failed attempt the client saw, none for the successful logins, and no gap.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.attack import Attacker
from tests.e2e.conftest import unavailable
from tests.e2e.mailserver import (
    JOURNAL,
    HarnessError,
    MailServer,
    children,
    logged_failures,
    missing_requirements,
    wait_for,
)
from tests.e2e.test_e2e import (
    MLSD,
    Mlsd,
    Scenario,
    csv_attempts,
    next_step,
    wait_caught_up,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def journal_server() -> Iterator[MailServer]:
    """A started mail server logging into a journal; stopped afterwards, always."""
    reason = missing_requirements(JOURNAL)
    if reason:
        unavailable(reason)
    if os.path.lexists("/dev/log"):
        unavailable(
            "the journal variant needs to own /dev/log, which exists here (a system syslog "
            "daemon or journald): not replacing it"
        )
    root = Path(tempfile.mkdtemp(prefix="mlsd-e2e-journal-"))
    server = MailServer(root, JOURNAL)
    try:
        try:
            server.start()
        except HarnessError as e:
            pytest.fail(str(e), pytrace=False)
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _journal_config(server: MailServer) -> Path:
    conf = write_config(server, "postfix")
    text = conf.read_text()
    conf.write_text(
        text + f"\n[source]\ntype = journal\njournal_directory = {server.journal_dir}\n"
    )
    return conf


def _journalctl_of(pid: int) -> int | None:
    """The journalctl mlsd runs, if it runs one (it has other children: `postconf`
    while it starts, multiprocessing's helpers)."""
    for kid in children(pid):
        try:
            cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"journalctl\0"):
            return kid
    return None


@pytest.fixture(scope="module")
def scenario(journal_server: MailServer) -> Iterator[Scenario]:
    server = journal_server
    assert MLSD.exists()
    conf = _journal_config(server)
    s = Scenario(
        server=server,
        attacker=Attacker(v6=server.v6, seed=18),
        mlsd=Mlsd(conf, server.root / "mlsd" / "mlsd.out"),
        csv=server.root / "mlsd" / "mlsd.csv",
        reverse="postfix",
        started=datetime.now(UTC),
    )
    try:
        s.mlsd.start()
        s.attacker.start()
        next_step(s)
        # kill -9 once mlsd has committed rows; attacks go on while it is down.
        wait_for("mlsd's first rows", lambda: csv_attempts(s.csv) >= 5, 30)
        s.mlsd.kill9()
        next_step(s, mlsd_up=False)
        s.mlsd.start()
        next_step(s, 10)
        # Its journalctl dies: mlsd starts another from the last committed entry.
        wait_for("mlsd's journalctl", lambda: _journalctl_of(s.mlsd.pid) is not None, 10)
        kid = _journalctl_of(s.mlsd.pid)
        assert kid is not None
        os.kill(kid, signal.SIGKILL)
        next_step(s)
        s.attacker.stop()
        assert not s.attacker.errors, s.attacker.errors[:10]
        wait_for(
            "every failure in the journal",
            lambda: logged_failures(server) == s.attacker.failures(),
            15,
        )
        yield s
    finally:
        s.attacker.stop()
        code = s.mlsd.stop()
        print(f"mlsd stopped with {code}; its output:\n{s.mlsd.output(200)}")


def test_csv_holds_each_failed_attempt_exactly_once(scenario: Scenario) -> None:
    s = scenario
    rows = wait_caught_up(s)
    expected = s.attacker.expected_rows()
    got: Counter[tuple[str, str, str]] = Counter()
    for r in rows:
        got[(r["ip"], r["user"], r["service"])] += int(r["attempts"])
    services = {svc for _, _, svc in expected}
    assert services == {"smtp", "submission", "submissions", "imap"}, services
    assert s.mlsd.starts == 2
    missing = expected - got
    extra = got - expected
    assert not missing and not extra, (
        f"CSV differs from the {sum(expected.values())} failed attempts: "
        f"missing {sum(missing.values())} {dict(missing)}, "
        f"extra {sum(extra.values())} {dict(extra)}\n--- mlsd:\n{s.mlsd.output()}"
    )
    lo = s.started - timedelta(minutes=5)
    hi = datetime.now(UTC) + timedelta(minutes=5)
    for r in rows:
        if r["service"] == "imap":  # Dovecot logs no hostname
            assert (r["hostname"], r["reverse_dns_status"]) == ("", "N/A"), r
        else:  # smtpd_peername_lookup = no: Postfix logs unknown[IP]
            assert (r["hostname"], r["reverse_dns_status"]) == ("unknown", "NONE"), r
        assert lo <= datetime.fromisoformat(r["date"]) <= hi, r
    # Successful logins never became rows.
    fail_keys = {(ip, user) for ip, user, _ in expected}
    ok_only = {(a.source, a.user) for a in s.attacker.successes()} - fail_keys
    assert ok_only
    assert not {(r["ip"], r["user"]) for r in rows} & ok_only
    out = s.mlsd.out.read_text(errors="replace")
    # `[log] format = json` here: the reason is a field of its own.
    said = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(
        e["event"] == "journalctl exited" and e["how"] == "killed by SIGKILL" for e in said
    ), s.mlsd.output()
    assert "gap journal" not in out
