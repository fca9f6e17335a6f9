"""`mlsd run` as a service: a real subprocess, real signals, a real notify socket, real SMTP.

The notify socket is what systemd would listen on: an AF_UNIX datagram socket bound in the
test's directory and handed over in NOTIFY_SOCKET; every datagram mlsd sends is recorded
with its arrival time.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from tests import smtpkit
from tests.followkit import Env, Writer, users, wait_for


class NotifySocket:
    """Records sd_notify datagrams: [(monotonic time, {KEY: value})]."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(
                line.split("=", 1) for line in data.decode("utf-8").splitlines() if "=" in line
            )
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [(t, m) for t, m in self.messages if key in m]

    def statuses(self) -> list[str]:
        return [m["STATUS"] for _, m in self.with_key("STATUS")]

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


def _env(ns: NotifySocket, **more: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(ns.path), **more}


def _wait_ready(ns: NotifySocket, after: float = 0.0, timeout: float = 30.0) -> dict[str, str]:
    wait_for(lambda: any(t >= after for t, _ in ns.with_key("READY")), timeout)
    return next(m for t, m in ns.with_key("READY") if t >= after)


def test_ready_after_start_then_status_and_stopping(env: Env, notify: NotifySocket) -> None:
    w = Writer(env.log)
    w.seq(range(3))
    proc = env.start(env=_env(notify))
    ready = _wait_ready(notify)
    assert ready["READY"] == "1"
    assert "STATUS" in ready
    env.wait_rows(users(range(3)))
    # STATUS= follows what happened: the events of the day are counted.
    wait_for(lambda: any("3 events today" in s for s in notify.statuses()), 15)
    assert env.stop(proc) == 0
    stopping = notify.with_key("STOPPING")
    assert stopping and stopping[0][1]["STOPPING"] == "1"
    # Every message is valid UTF-8 (the reader above decodes strictly) and READY came once.
    assert len(notify.with_key("READY")) == 1
    err = env.stderr(proc)
    assert re.search(r"stopped lines_read=\d+ events_written=3 ", err), err


def test_watchdog_pings_on_time_and_resume_after_sigstop(env: Env, notify: NotifySocket) -> None:
    env.log.write_bytes(b"")
    # 0.4 s: mlsd pings every 0.2 s.
    proc = env.start(env=_env(notify, WATCHDOG_USEC="400000"))
    _wait_ready(notify)
    time.sleep(1.5)
    pings = [t for t, _ in notify.with_key("WATCHDOG")]
    assert len(pings) >= 5, pings
    gaps = [b - a for a, b in zip(pings[-5:], pings[-4:], strict=False)]
    assert max(gaps) < 0.4, gaps  # never a gap as long as the watchdog timeout

    proc.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    time.sleep(1.0)
    during = [t for t, _ in notify.with_key("WATCHDOG") if stopped_at + 0.05 < t]
    proc.send_signal(signal.SIGCONT)
    continued_at = time.monotonic()
    assert during == [], "a stopped process cannot ping"
    wait_for(lambda: len([t for t, _ in notify.with_key("WATCHDOG") if t > continued_at]) >= 3, 5)
    assert env.stop(proc) == 0


def test_watchdog_off_without_watchdog_usec(env: Env, notify: NotifySocket) -> None:
    env.log.write_bytes(b"")
    proc = env.start(env=_env(notify))
    _wait_ready(notify)
    time.sleep(0.5)
    assert notify.with_key("WATCHDOG") == []
    assert env.stop(proc) == 0


def test_sighup_changes_log_level_and_keeps_position(env: Env, notify: NotifySocket) -> None:
    env.write_conf({"reconcile_interval": "1"})
    env.conf.write_text(env.conf.read_text().replace("level = DEBUG", "level = INFO"))
    w = Writer(env.log)
    w.seq(range(5))
    proc = env.start(env=_env(notify))
    _wait_ready(notify)
    env.wait_rows(users(range(5)))
    assert "batch committed" not in env.stderr(proc)

    env.conf.write_text(env.conf.read_text().replace("level = INFO", "level = DEBUG"))
    before = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    ready = _wait_ready(notify, after=before)
    reloading = [m for t, m in notify.with_key("RELOADING") if t >= before]
    assert reloading and int(reloading[0]["MONOTONIC_USEC"]) > 0
    assert "failed" not in ready.get("STATUS", "")
    w.seq(range(5, 10))
    env.wait_rows(users(range(10)))
    wait_for(lambda: "batch committed" in env.stderr(proc), 10)
    # The event, then its fields (the console renderer pads the event and sorts the fields).
    assert re.search(r"\breloaded\s.*\bconfig=", env.stderr(proc))
    assert env.stop(proc) == 0
    # The position survived the reload: a restart adds nothing.
    proc = env.start(env=_env(notify))
    w.seq(range(10, 12))
    env.wait_rows(users(range(12)))
    assert env.stop(proc) == 0


def test_sighup_with_broken_config_keeps_running(env: Env, notify: NotifySocket) -> None:
    w = Writer(env.log)
    w.seq(range(3))
    proc = env.start(env=_env(notify))
    _wait_ready(notify)
    env.wait_rows(users(range(3)))
    good = env.conf.read_text()
    env.conf.write_text(good + "[dns]\ntimeout = soon\n")
    before = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    ready = _wait_ready(notify, after=before)
    assert "reload failed" in ready["STATUS"]
    assert "[dns] timeout" in ready["STATUS"]
    wait_for(lambda: "reload failed, previous config kept" in env.stderr(proc), 5)
    err = env.stderr(proc)
    assert str(env.conf) in err and "[dns] timeout" in err and "soon" in err
    # Still following, and the failure stays visible in STATUS= until a good reload.
    w.seq(range(3, 8))
    env.wait_rows(users(range(8)))
    assert proc.poll() is None
    env.conf.write_text(good)
    before = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    ready = _wait_ready(notify, after=before)
    assert "failed" not in ready["STATUS"]
    assert env.stop(proc) == 0


def test_sighup_refuses_a_new_log_path_and_applies_the_rest(env: Env, notify: NotifySocket) -> None:
    w = Writer(env.log)
    w.seq(range(2))
    proc = env.start(env=_env(notify))
    _wait_ready(notify)
    env.wait_rows(users(range(2)))
    text = env.conf.read_text()
    moved = text.replace(f"mail_log = {env.log}", f"mail_log = {env.root / 'other.log'}")
    env.conf.write_text(moved.replace("level = DEBUG", "level = INFO"))
    before = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    ready = _wait_ready(notify, after=before)
    assert "[paths] mail_log" in ready["STATUS"] and "restart" in ready["STATUS"]
    wait_for(lambda: "needs a restart" in env.stderr(proc), 5)
    w.seq(range(2, 4))  # still the old path
    env.wait_rows(users(range(4)))
    assert "changed=log" in env.stderr(proc)
    assert env.stop(proc) == 0


def test_sigterm_mid_burst_exits_zero_and_loses_nothing(env: Env, notify: NotifySocket) -> None:
    w = Writer(env.log)
    proc = env.start(env=_env(notify))
    _wait_ready(notify)
    written = 0
    stop = threading.Event()

    def burst() -> None:
        nonlocal written
        while not stop.is_set() and written < 200_000:
            w.seq(range(written, written + 500))
            written += 500

    t = threading.Thread(target=burst)
    t.start()
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    took = time.monotonic() - sent
    stop.set()
    t.join()
    assert code == 0
    assert took < 20, took  # the bound of the shutdown, not a speed claim
    # Every line written (before and after the signal) is in the CSV once after a restart.
    proc = env.start(env=_env(notify))
    env.wait_rows(users(range(written)), timeout=120)
    assert env.stop(proc) == 0


def test_second_signal_forces_exit_and_recovery_is_exact(env: Env, notify: NotifySocket) -> None:
    w = Writer(env.log)
    w.seq(range(100))
    proc = env.start(env=_env(notify))
    _wait_ready(notify)
    env.wait_rows(users(range(100)))
    # Stopped, the process cannot act on the first signal before the second arrives.
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    code = proc.wait(timeout=30)
    assert code in (128 + signal.SIGTERM, 128 + signal.SIGINT), code
    assert "exiting at once" in env.stderr(proc)
    w.seq(range(100, 150))
    proc = env.start(env=_env(notify))
    env.wait_rows(users(range(150)))
    assert env.stop(proc) == 0


def _read_journal_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def test_journal_format_under_journal_stream(env: Env, tmp_path: Path) -> None:
    w = Writer(env.log)
    w.seq(range(2))
    env.conf.write_text(env.conf.read_text().replace("format = auto", "format = auto"))
    errpath = tmp_path / "journal.err"
    with open(errpath, "wb") as err:
        st = os.fstat(err.fileno())
        proc = subprocess.Popen(
            env.cmd("run"),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
        )
    try:
        wait_for(lambda: " started config=" in errpath.read_text(), 30)
        env.wait_rows(users(range(2)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = _read_journal_lines(errpath)
    assert lines
    for line in lines:
        # One event per line, a syslog priority first, no timestamp (journald adds it).
        assert re.match(r"^<[0-7]>\S", line), line
        assert not re.match(r"^<\d>\d{4}-\d\d-\d\d", line), line
    assert any(line.startswith("<6>") and "started config=" in line for line in lines)


def test_root_warning(env: Env) -> None:
    if os.geteuid() != 0:
        pytest.skip("the warning is about running as root; this test runs as a normal user")
    env.log.write_bytes(b"")
    proc = env.start()
    assert env.stop(proc) == 0
    err = env.stderr(proc)
    assert "running as root" in err and "adm" in err


def _report_conf(env: Env, port: int, *, password: str | None = None) -> None:
    auth = f"username = {smtpkit.USER}\npassword = {password}\n" if password else ""
    env.extra = (
        "[report]\nto = admin@example.org\nfrom = mlsd@example.org\ntimezone = UTC\n"
        f"[smtp]\nhost = 127.0.0.1\nport = {port}\nsecurity = none\ntimeout = 5\n{auth}"
    )
    env.write_conf({"reconcile_interval": "1"})


def test_sigusr1_sends_the_report_of_today_so_far(env: Env, notify: NotifySocket) -> None:
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        _report_conf(env, server.port)
        w = Writer(env.log)
        w.seq(range(7))
        proc = env.start(env=_env(notify))
        _wait_ready(notify)
        env.wait_rows(users(range(7)))
        # A fresh start queues no daily report (yesterday was not watched): only SIGUSR1's.
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(sink.messages) >= 1, 20)
        mail_from, rcpt, _ = sink.messages[-1]
        assert mail_from == "mlsd@example.org" and rcpt == ["admin@example.org"]
        msg = sink.parsed()
        assert msg.get_content_type() == "multipart/mixed"
        # decode=True gives a leaf part's bytes; the stubs also allow a Message (multipart).
        text = next(
            cast(bytes, p.get_payload(decode=True)).decode()
            for p in msg.walk()
            if p.get_content_type() == "text/plain"
        )
        assert "7" in text
        # The follower was not paused: lines written now still arrive.
        w.seq(range(7, 9))
        env.wait_rows(users(range(9)))
        assert env.stop(proc) == 0
        err = env.stderr(proc)
        assert "report delivered" in err
    finally:
        server.stop()


def test_no_secret_in_the_log_even_at_debug(env: Env, notify: NotifySocket) -> None:
    sink = smtpkit.Sink()
    server = smtpkit.start(sink, auth=True)
    secret = smtpkit.PASSWORD
    try:
        _report_conf(env, server.port, password=secret)
        # No TLS here: aiosmtpd in this test accepts AUTH in clear, so the password
        # really crosses the wire and would show in any protocol debug logging.
        Writer(env.log).seq(range(2))
        proc = env.start(env=_env(notify))
        _wait_ready(notify)
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(sink.messages) >= 1, 20)
        assert env.stop(proc) == 0
    finally:
        server.stop()
    err = env.all_stderr() + "".join(notify.statuses())
    forms = {
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0{smtpkit.USER}\0{secret}".encode()).decode(),
        base64.b64encode(f"{smtpkit.USER}\0{smtpkit.USER}\0{secret}".encode()).decode(),
    }
    for form in forms:
        assert form not in err, form
    assert "DEBUG" in err or "debug" in err  # the test ran at debug level


def test_events_today_counter_is_per_day_not_per_run(env: Env, notify: NotifySocket) -> None:
    w = Writer(env.log)
    w.seq(range(4))
    proc = env.start(env=_env(notify))
    _wait_ready(notify)
    env.wait_rows(users(range(4)))
    assert env.stop(proc) == 0
    w.seq(range(4, 6))
    proc = env.start(env=_env(notify))
    env.wait_rows(users(range(6)))
    wait_for(lambda: any("6 events today" in s for s in notify.statuses()), 15)
    assert env.stop(proc) == 0
    assert Counter(env.rows()) == users(range(6))


def _text_part(sink: smtpkit.Sink, i: int) -> str:
    msg = sink.parsed(i)
    part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def test_fresh_install_mails_no_report_of_a_day_it_never_watched(
    env: Env, notify: NotifySocket
) -> None:
    """First start: no daily report of yesterday is mailed; the report of today (here:
    SIGUSR1's, the same builder as the daily one) says "partial: mlsd started at HH:MM",
    and still says the first start's time after a restart (which is not a first start)."""
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        _report_conf(env, server.port)
        Writer(env.log).seq(range(3))
        before = datetime.now(UTC)
        proc = env.start(env=_env(notify))
        after = datetime.now(UTC)
        _wait_ready(notify)
        env.wait_rows(users(range(3)))
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(sink.messages) >= 1, 20)
        time.sleep(1.5)  # the sender's first tick is long past: a daily report would be here
        assert ["admin@example.org"] == sink.messages[0][1]
        assert 1 == len(sink.messages), [str(sink.parsed(i)["Subject"]) for i in range(2)]
        assert "so far" in str(sink.parsed(0)["Subject"])
        stamps = {f"partial: mlsd started at {t:%H:%M}" for t in (before, after)}
        text = _text_part(sink, 0)
        assert any(s in " ".join(text.split()) for s in stamps), text
        assert env.stop(proc) == 0

        restarted_at = time.monotonic()
        proc = env.start(env=_env(notify))
        _wait_ready(notify, after=restarted_at)
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(sink.messages) >= 2, 20)
        assert env.stop(proc) == 0
        again = " ".join(_text_part(sink, 1).split())
        assert any(s in again for s in stamps), again
        assert "report written" not in env.all_stderr()
        # Two partial reports (so_far=True), never a whole day's.
        assert 2 == len(re.findall(r"report queued day=\S+ so_far=True ", env.all_stderr()))
        assert "so_far=False" not in env.all_stderr()
    finally:
        server.stop()
