"""The sentinel in the running daemon: a real `mlsd run`, a real SMTP server on loopback.

Failures then a login for the same user become one alert mail within seconds of the line,
recorded once; a restart warms the rules from the journals (failures before the restart
still count) and never mails an alert twice; `mlsd alerts --json` lists what was mailed.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests import smtpkit
from tests.followkit import ENV, Env, Writer, wait_for


def stamp() -> str:
    """Now, as classic syslog writes it (the tests' zone is UTC)."""
    return datetime.now(UTC).strftime("%b %e %H:%M:%S")


def failures(user: str, n: int, ip: str = "203.0.113.9") -> bytes:
    """`n` Postfix SASL failures for `user` from `ip`, stamped now."""
    line = (
        f"{stamp()} mx postfix/submission/smtpd[99]: warning: unknown[{ip}]: SASL LOGIN "
        f"authentication failed: UGFzc3dvcmQ6, sasl_username={user}\n"
    )
    return line.encode() * n


def login(user: str, ip: str = "203.0.113.9") -> bytes:
    """Dovecot's IMAP login for `user` from `ip`, stamped now."""
    return (
        f"{stamp()} mx dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, "
        f"lip=192.0.2.1, mpid=4242, TLS, session=<abc>\n"
    ).encode()


@pytest.fixture
def sink() -> Iterator[tuple[smtpkit.Sink, int]]:
    """A real SMTP server on loopback and its port."""
    s = smtpkit.Sink()
    controller = smtpkit.start(s)
    try:
        yield s, controller.port
    finally:
        controller.stop()


def configure(env: Env, port: int) -> None:
    """Report mail through the sink; the sentinel alerts after 3 failures."""
    env.extra = (
        "[report]\ntimezone = UTC\nto = admin@example.org\nfrom = mlsd@example.org\n"
        f"[smtp]\nhost = 127.0.0.1\nport = {port}\nsecurity = none\n"
        "[sentinel]\nfailures = 3\n"
    )
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})


def subjects(sink: smtpkit.Sink) -> list[str]:
    """The Subject of each message the sink accepted."""
    return [str(sink.parsed(i)["Subject"]) for i in range(len(sink.messages))]


def stored_logins(env: Env) -> list[tuple[str, str, str]]:
    """(user, ip, event) of each row of the store's mlsd_logins."""
    db = env.state / "events.sqlite3"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in con.execute("SELECT user, ip, event FROM mlsd_logins")]
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        con.close()


def alerts_json(env: Env) -> list[dict[str, object]]:
    """`mlsd alerts --json`, parsed."""
    res = subprocess.run(
        env.cmd("alerts", "--json"), capture_output=True, text=True, env=ENV, check=True
    )
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def test_failures_then_a_login_mail_one_alert_within_seconds(
    env: Env, sink: tuple[smtpkit.Sink, int]
) -> None:
    box, port = sink
    configure(env, port)
    w = Writer(env.log)
    proc = env.start()
    w.write(failures("alice@example.org", 3))
    w.write(login("bob@example.org"))  # a login from the IP that failed 3 times (for alice)
    written = time.monotonic()
    wait_for(lambda: len(box.messages) >= 1, timeout=30)
    delay = time.monotonic() - written
    assert delay < 5.0, f"the alert took {delay:.1f} s"
    (subject,) = subjects(box)
    assert subject.startswith("[mlsd] ALERT mx: possible compromise of bob@example.org (")
    payload = box.parsed(0).get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode("utf-8", "replace")
    assert "203.0.113.9" in body
    # The login itself is journaled once.
    logins = env.csv.with_name("logins.csv").read_text().splitlines()
    assert len(logins) == 2 and ";bob@example.org;" in logins[1]
    # … and stored, in the node's SQLite store (issue 20: logins go into the store).
    wait_for(lambda: stored_logins(env) == [("bob@example.org", "203.0.113.9", "login")])
    listed = alerts_json(env)
    assert [(a["rule"], a["user"]) for a in listed] == [
        ("success_after_failures", "bob@example.org")
    ]
    status = subprocess.run(env.cmd("status"), capture_output=True, text=True, env=ENV, check=False)
    assert "alerts        1 today (newest " in status.stdout, status.stdout
    assert "success_after_failures bob@example.org" in status.stdout
    assert env.stop(proc) == 0
    assert "possible compromise" in env.stderr(proc)

    # A restart replays nothing and mails nothing more.
    proc = env.start()
    time.sleep(1.5)
    assert len(box.messages) == 1
    assert env.stop(proc) == 0


def test_failures_before_a_restart_still_count_after_it(
    env: Env, sink: tuple[smtpkit.Sink, int]
) -> None:
    """The rules are warmed from the CSVs: 3 failures, a restart, then the login alerts."""
    box, port = sink
    configure(env, port)
    w = Writer(env.log)
    proc = env.start()
    w.write(failures("carol@example.org", 3, ip="198.51.100.7"))
    env.wait_rows(Counter({"carol@example.org": 3}))
    assert env.stop(proc) == 0
    proc = env.start()
    wait_for(lambda: "sentinel watching" in env.stderr(proc))
    assert "sentinel watching warmed=3 " in env.stderr(proc)
    w.write(login("carol@example.org", ip="192.0.2.200"))
    wait_for(lambda: len(box.messages) >= 1, timeout=30)
    assert "possible compromise of carol@example.org" in subjects(box)[0]
    assert env.stop(proc) == 0


def test_a_login_without_failures_alerts_nothing(env: Env, sink: tuple[smtpkit.Sink, int]) -> None:
    """Two mistyped passwords then a login (under the threshold): no alert, one login row."""
    box, port = sink
    configure(env, port)
    w = Writer(env.log)
    proc = env.start()
    w.write(failures("dave@example.org", 2))
    w.write(login("dave@example.org"))
    wait_for(lambda: env.csv.with_name("logins.csv").exists(), timeout=30)
    wait_for(lambda: len(env.csv.with_name("logins.csv").read_text().splitlines()) == 2)
    time.sleep(1.0)
    assert box.messages == []
    assert alerts_json(env) == []
    assert env.stop(proc) == 0
