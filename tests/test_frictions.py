"""Issue 21's frictions, each as a new user met it: status with a config typo or as another
user, coverage while running, a stop signal delivered twice, `--day` words, help texts and
hints, `reset` order, `parse`'s summary, the default sender, console colours, the report's
top list."""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mlsd import config, logs
from mlsd.app import cli, service
from mlsd.errors import ConfigError
from mlsd.report import message
from mlsd.report.mailname import mail_hostname
from tests.followkit import ENV, Env, Writer, now_line, wait_for
from tests.test_access import GID, SETPRIV, UID
from tests.test_report import E, build, make_cfg, table, write_csv

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """An installation whose report day is cut in UTC (the lines' zone)."""
    e = Env(tmp_path)
    e.extra = "[report]\ntimezone = UTC\n"
    e.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    yield e
    e.cleanup()


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """A command to completion, text out."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        argv, capture_output=True, text=True, timeout=60, env=ENV, check=False, **kw
    )


def status_json(env: Env) -> tuple[int, dict[str, object], str]:
    """`mlsd status --json`: exit status, the object, stderr."""
    res = run(env.cmd("status", "--json"))
    return res.returncode, json.loads(res.stdout) if res.stdout else {}, res.stderr


# ---- status


def test_status_with_a_config_typo_still_says_the_daemon_runs(env: Env) -> None:
    """A typo made after the start: the daemon (on its previous config) is shown running,
    the error is a warning and on stderr, and the exit status is still 2."""
    Writer(env.log).write(now_line("u0"))
    proc = env.start()
    env.wait_rows(Counter(["u0"]))
    env.extra += "[smtp]\nto = admin@example.org\n"  # a key of [report], not of [smtp]
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})

    code, st, err = status_json(env)
    assert 2 == code
    assert "[smtp] unknown key 'to'" in err
    assert (True, proc.pid) == (st["running"], st["pid"])
    warnings = st["warnings"]
    assert isinstance(warnings, list)
    assert warnings[0].startswith("configuration error: ")
    assert "[smtp] unknown key 'to'" in warnings[0]
    text = run(env.cmd("status")).stdout
    assert f"running, pid {proc.pid}" in text
    assert env.stop(proc) == 0


def test_salvage_keeps_every_valid_key() -> None:
    """Only the keys in error fall back to their defaults; the file's other paths stand."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlsd.conf"
        path.write_text(
            "[paths]\nstate_dir = /srv/mlsd\nbogus = 1\n[report]\ntime = 25:00\n"
            "timezone = Europe/Berlin\n[nosuch]\nx = 1\n"
        )
        cfg, errors = config.salvage(path)
    assert ["bogus", "time", "nosuch"] == [
        next(w for w in ("bogus", "time", "nosuch") if w in str(e)) for e in errors
    ]
    assert Path("/srv/mlsd") == cfg.paths.state_dir
    assert "Europe/Berlin" == cfg.report.timezone
    assert config.ReportConfig().time == cfg.report.time


def test_status_as_a_user_who_cannot_read_the_state_says_cannot_tell() -> None:
    """As nobody, a root daemon's state directory (0700) hides the lock: "cannot tell:
    permission denied on …", never "not running"."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run status as another user")
    root = Path(tempfile.mkdtemp(prefix="mlsd-frictions-"))
    try:
        root.chmod(0o755)
        e = Env(root)
        e.extra = "[report]\ntimezone = UTC\n"
        e.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
        Writer(e.log).write(now_line("u0"))
        proc = e.start()
        try:
            e.wait_rows(Counter(["u0"]))
            e.state.chmod(0o700)
            as_nobody = [SETPRIV, f"--reuid={UID}", f"--regid={GID}", "--clear-groups"]
            res = run([*as_nobody, *e.cmd("status")], cwd="/")
            assert 1 == res.returncode, res.stderr
            assert f"daemon        cannot tell: permission denied on {e.state}" in res.stdout
            assert "not running" not in res.stdout
            assert f"{e.log}: not known (cannot read the checkpoint)" in res.stdout
            st = json.loads(run([*as_nobody, *e.cmd("status", "--json")], cwd="/").stdout)
            assert st["running"] is None
        finally:
            assert e.stop(proc) == 0
            e.cleanup()
    finally:
        shutil.rmtree(root)


def test_status_shows_the_counters_while_the_daemon_runs(env: Env) -> None:
    """coverage.json is written at the first status refresh, not only at stop: status
    knows the gaps (none) within seconds of the start."""
    Writer(env.log).write(now_line("u0"))
    proc = env.start()
    env.wait_rows(Counter(["u0"]))
    wait_for(lambda: status_json(env)[1].get("gaps_today") is not None, 20)
    today = datetime.now(UTC).date().isoformat()
    counts = json.loads((env.state / "coverage.json").read_text())[today]
    assert 1 == counts["events"]
    assert "gaps          0 today, 0 in 7 days" in run(env.cmd("status")).stdout
    assert env.stop(proc) == 0


# ---- a stop signal delivered twice


def test_stop_signal_repeated_at_once_is_the_same_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same signal again within REPEAT_WINDOW is ignored; later, or another signal,
    forces exit as before (os._exit is recorded instead of ending the test)."""
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    svc = service.Service(config.Config(source_file=tmp_path / "x.conf"))
    svc._on_signal(signal.SIGTERM)
    svc._on_signal(signal.SIGTERM)
    assert [] == exits
    svc._stop_signal_at -= service.REPEAT_WINDOW  # a second later
    svc._on_signal(signal.SIGTERM)
    assert [128 + signal.SIGTERM] == exits
    other = service.Service(config.Config(source_file=tmp_path / "x.conf"))
    other._on_signal(signal.SIGTERM)
    other._on_signal(signal.SIGINT)
    assert [128 + signal.SIGTERM, 128 + signal.SIGINT] == exits


def test_make_run_under_timeout_stops_with_its_summary(tmp_path: Path) -> None:
    """`timeout 15 make run`: SIGTERM to the whole process group, and make's own to the
    demo. mlsd is not in that group (the demo forwards), takes copies within a second for
    the same request, stops cleanly (its "stopped" line), and the demo exits 0."""
    var = tmp_path / "var"
    err = tmp_path / "run.err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "contrib/demo/run.py"), "--demo", "--var", str(var)],
            stdout=subprocess.DEVNULL,
            stderr=fh,
            env=ENV,
            start_new_session=True,  # a group of its own, as under `timeout`
        )
    try:
        wait_for(lambda: " started config=" in err.read_text(errors="replace"), 60)
        # What `timeout 15 make run` does: timeout signals its process group, and GNU make,
        # on SIGTERM, signals its child (the demo) again.
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.02)  # make's copy comes a moment later (at once, the kernel merges them)
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(timeout=60), err.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = err.read_text(errors="replace")
    assert "stopped lines_read=" in out
    assert "exiting at once" not in out


# ---- report --day, help, hints


@pytest.mark.parametrize(
    ("raw", "ago"), [("today", 0), ("yesterday", 1), ("Yesterday", 1), ("-3", 3), ("-0", 0)]
)
def test_day_words_are_days_ago(raw: str, ago: int) -> None:
    """`today`, `yesterday`, `-N` parse to a number of days before today."""
    assert ago == cli._day(raw)


@pytest.mark.parametrize("raw", ["tomorrow", "-x", "+3", "-99999999", "24-11-2026"])
def test_day_refuses_other_words(raw: str) -> None:
    """Anything else is refused with the accepted forms named."""
    with pytest.raises(argparse.ArgumentTypeError):
        cli._day(raw)


def test_report_day_minus_one_is_yesterday_in_the_report_zone(tmp_path: Path) -> None:
    """`--day -1` and `--day yesterday` give yesterday's report in [report] timezone."""
    conf = tmp_path / "mlsd.conf"
    conf.write_text(
        f"[paths]\ncsv = {tmp_path / 'x.csv'}\nstate_dir = {tmp_path}\n"
        "[report]\ntimezone = Pacific/Kiritimati\n"
    )
    yesterday = datetime.now(ZoneInfo("Pacific/Kiritimati")).date() - timedelta(days=1)
    for word in ("-1", "yesterday"):
        res = run([sys.executable, "-m", "mlsd", "report", "--day", word, "-c", str(conf)])
        assert 0 == res.returncode, res.stderr
        assert f", {yesterday}" in res.stdout.splitlines()[0]


def test_run_and_check_config_have_descriptions_and_report_flags_help() -> None:
    """Each command's --help says what it does; --text, --html and --send say too."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("run", "check-config"):
        assert sub.choices[name].description, name
    report_parser = sub.choices["report"]
    helps = {opt: a.help for a in report_parser._actions for opt in a.option_strings if opt != "-h"}
    for opt in ("--text", "--html", "--send", "--day"):
        assert helps[opt], opt


def test_a_misspelt_time_zone_gets_a_suggestion(tmp_path: Path) -> None:
    """`Europe/Berln` → did you mean 'Europe/Berlin'?"""
    with pytest.raises(ConfigError) as exc:
        config.loads("[report]\ntimezone = Europe/Berln\n", tmp_path / "mlsd.conf")
    assert str(exc.value).endswith("; did you mean 'Europe/Berlin'?")


def test_a_key_of_another_section_says_where_it_belongs(tmp_path: Path) -> None:
    """`[smtp] to` points at the sections that have a `to`."""
    with pytest.raises(ConfigError) as exc:
        config.loads("[smtp]\nto = a@example.org\n", tmp_path / "mlsd.conf")
    assert str(exc.value).endswith("; did you mean [report] to or [sentinel] to?")


# ---- reset


def test_reset_while_running_checks_the_lock_first_and_says_it_once(env: Env) -> None:
    """Without --yes and without a terminal, a running daemon is the reason given (once),
    not the missing --yes."""
    Writer(env.log).write(now_line("u0"))
    proc = env.start()
    env.wait_rows(Counter(["u0"]))
    res = run(env.cmd("reset"), stdin=subprocess.DEVNULL)
    assert 1 == res.returncode, res.stderr
    assert 1 == res.stderr.count("stop it first")
    assert f"pid {proc.pid}" in res.stderr and "systemctl stop mlsd" in res.stderr
    assert "--yes" not in res.stderr
    assert env.stop(proc) == 0


# ---- parse's summary


def test_parse_summary_counts_lines_events_and_reasons(tmp_path: Path) -> None:
    """Lines read, events, and the lines not recorded with their total and reasons."""
    log = tmp_path / "mail.log"
    log.write_bytes(
        b"Nov 25 05:00:00 mx postfix/smtpd[1]: connect from unknown[192.0.2.1]\n"
        b"Nov 25 05:00:01 mx postfix/smtpd[1]: warning: unknown[192.0.2.7]: SASL LOGIN "
        b"authentication failed: UGFzc3dvcmQ6, sasl_username=a\n"
        b"Nov 25 05:00:02 mx postfix/smtpd[1]: warning: unknown[999.0.2.7]: SASL LOGIN "
        b"authentication failed: UGFzc3dvcmQ6, sasl_username=b"  # no newline: still a line
    )
    res = run([sys.executable, "-m", "mlsd", "parse", str(log)])
    assert 0 == res.returncode, res.stderr
    assert f"mlsd: {log}: 3 lines read, 1 events; not recorded: 1 (1 invalid IP)\n" == res.stderr


# ---- default sender


def test_default_sender_domain_is_postfix_myhostname_then_fqdn(tmp_path: Path) -> None:
    """postconf's answer first; main.cf as written when postconf fails; then the FQDN; the
    short name only when none is qualified."""
    postconf = tmp_path / "postconf"
    postconf.write_text("#!/bin/sh\necho mx1.example.org\n")
    postconf.chmod(0o755)
    main_cf = tmp_path / "main.cf"
    main_cf.write_text("mydomain = example.net\nmyhostname = mx2.example.net\n")
    missing = (str(tmp_path / "no-postconf"),)

    def fqdn() -> str:
        return "vm.example.com"

    def loopback() -> str:
        return "localhost"

    assert "mx1.example.org" == mail_hostname("vm", postconf=(str(postconf),), fqdn=fqdn)
    assert "mx2.example.net" == mail_hostname("vm", postconf=missing, main_cf=main_cf, fqdn=fqdn)
    nothing = tmp_path / "none.cf"
    assert "vm.example.com" == mail_hostname("vm", postconf=missing, main_cf=nothing, fqdn=fqdn)
    assert "vm" == mail_hostname("vm", postconf=missing, main_cf=nothing, fqdn=loopback)
    main_cf.write_text("myhostname = host.$mydomain\n")  # an expansion: not guessed at
    assert "vm" == mail_hostname("vm", postconf=missing, main_cf=main_cf, fqdn=loopback)


def test_the_report_message_takes_its_sender_domain_from_mailname(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The envelope sender, From: and the Message-ID carry mailname's qualified name, not
    the short host name the report is built with."""
    cfg = make_cfg(tmp_path)
    write_csv(cfg.paths.csv, [E("2026-11-24 10:00:00", "203.0.113.5")])
    built = build(cfg)
    monkeypatch.setattr(message, "mail_hostname", lambda short: f"{short}.example.org")
    msg, sender, _ = message.to_message(built, cfg, now=datetime.now(UTC), hostname="vm")
    assert "mlsd@vm.example.org" == sender
    assert b"From: mlsd@vm.example.org\r\n" in msg
    assert re.search(rb"Message-ID: <[^>]+@vm\.example\.org>", msg)


# ---- console colours


def test_console_format_colours_only_a_terminal(tmp_path: Path) -> None:
    """`format = console` into a file or a pipe: no ANSI escapes; on a pty: colours."""
    buf = io.StringIO()
    logs.configure("INFO", "console", buf)
    logs.get("mlsd.test").info("hello", key="value")
    assert "hello" in buf.getvalue()
    assert "\x1b[" not in buf.getvalue()
    leader, follower = pty.openpty()
    try:
        with open(follower, "w", closefd=False) as tty:
            logs.configure("INFO", "console", tty)
            logs.get("mlsd.test").info("hello", key="value")
            tty.flush()
        assert b"\x1b[" in os.read(leader, 65536)
    finally:
        os.close(leader)
        os.close(follower)
        logs.configure("WARNING", "auto", sys.stderr)


# ---- the report's top list


def test_top_list_groups_user_and_ip_across_services(tmp_path: Path) -> None:
    """Postfix's `unknown` and Dovecot's blank for the same user and IP are one entry; a
    real name wins over `unknown`, `unknown` over blank."""
    cfg = make_cfg(tmp_path)
    write_csv(
        cfg.paths.csv,
        [
            E("2026-11-24 10:00:00", "203.0.113.5", "admin", host="unknown"),
            E("2026-11-24 10:01:00", "203.0.113.5", "admin", host="", service="imap"),
            E("2026-11-24 10:02:00", "203.0.113.5", "admin", host="", service="imap"),
            E("2026-11-24 10:03:00", "198.51.100.9", "root", host=""),
            E("2026-11-24 10:04:00", "198.51.100.9", "root", host="bad.example"),
            E("2026-11-24 10:05:00", "198.51.100.9", "root", host="unknown"),
            E("2026-11-24 10:06:00", "192.0.2.1", "x", host=""),
        ],
    )
    rows = table(build(cfg, date(2026, 11, 24)).text, "Top failed authentications")
    assert [
        ("3", "admin", "203.0.113.5", "unknown", "FR"),
        ("3", "root", "198.51.100.9", "bad.example", "FR"),
        ("1", "x", "192.0.2.1", "FR"),  # no line had a name: an empty cell
    ] == rows
