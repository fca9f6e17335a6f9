"""Where an alert shows besides its mail: `mlsd alerts` (table, JSON, --since, exit
codes), the daily report's first section (the report day's alerts, "none" without), and
STATUS= ("N alerts today")."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mlsd.alertlog import AlertLog
from mlsd.alerts import Alert, Rule
from mlsd.app import statusline
from mlsd.ingest.session import Session
from mlsd.report import alertmail, compose
from tests.alertkit import T0, make_cfg, plain
from tests.test_lookup_cli import mlsd

DAY = T0.date()
ALERTS = [
    plain(-24 * 60, user="carol@example.org"),  # the day before
    plain(0),
    plain(
        200, rule=Rule.SUCCESS_AFTER_FAILURES, ip="203.0.113.9", headline="14 failures then a login"
    ),
    plain(24 * 60, user="dave@example.org"),  # the day after
]


def record(tmp_path: Path, alerts: list[Alert]) -> Path:
    """Record `alerts` in the state directory of a config file written beside it."""
    state = tmp_path / "state"
    state.mkdir(mode=0o750, exist_ok=True)
    log = AlertLog(state)
    log.open()
    log.record(alerts)
    conf = tmp_path / "mlsd.conf"
    conf.write_text(f"[paths]\nstate_dir = {state}\n[report]\ntimezone = UTC\n")
    return conf


def test_mlsd_alerts_prints_a_table_oldest_first(tmp_path: Path) -> None:
    conf = record(tmp_path, ALERTS)
    done = mlsd("alerts", "-c", str(conf))
    assert (0, "") == (done.returncode, done.stderr)
    a, b, c, d = ALERTS
    assert [
        "time                 rule                    user               ip             cc  "
        "server  id                headline",
        f"2026-11-23 09:30:05  new_country             carol@example.org  198.51.100.23  SE  "
        f"mx1     {a.id}  new country SE",
        f"2026-11-24 09:30:05  new_country             alice@example.org  198.51.100.23  SE  "
        f"mx1     {b.id}  new country SE",
        f"2026-11-24 12:50:05  success_after_failures  alice@example.org  203.0.113.9    SE  "
        f"mx1     {c.id}  14 failures then a login",
        f"2026-11-25 09:30:05  new_country             dave@example.org   198.51.100.23  SE  "
        f"mx1     {d.id}  new country SE",
    ] == done.stdout.splitlines()


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2026-11-24", ALERTS[1:]),
        ("2026-11-24T12:00:00+00:00", ALERTS[2:]),
        ("2026-11-24T12:00:00", ALERTS[2:]),  # no offset: [report] timezone
        ("2026-11-26", []),
    ],
)
def test_mlsd_alerts_json_since(tmp_path: Path, since: str, expected: list[Alert]) -> None:
    conf = record(tmp_path, ALERTS)
    done = mlsd("alerts", "-c", str(conf), "--json", "--since", since)
    assert (0, "") == (done.returncode, done.stderr)
    assert [a.to_json() for a in expected] == [
        json.loads(line) for line in done.stdout.splitlines()
    ]


def test_a_duration_counts_back_from_now(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    recent = [plain(0, time=now - timedelta(minutes=m)) for m in (90, 20)]
    conf = record(tmp_path, recent)
    done = mlsd("alerts", "-c", str(conf), "--json", "--since", "1h")
    assert [recent[1].id] == [json.loads(line)["id"] for line in done.stdout.splitlines()]
    done = mlsd("alerts", "-c", str(conf), "--since", "2h")
    assert 3 == len(done.stdout.splitlines())


def test_none_says_so_and_succeeds(tmp_path: Path) -> None:
    conf = record(tmp_path, [])
    assert "No alerts.\n" == mlsd("alerts", "-c", str(conf)).stdout
    done = mlsd("alerts", "-c", str(conf), "--since", "2026-11-24")
    assert (0, "No alerts since 2026-11-24 00:00 UTC.\n") == (done.returncode, done.stdout)
    assert (0, "") == (mlsd("alerts", "-c", str(conf), "--json").returncode, "")


def test_exit_codes_bad_since_unreadable_journal_damaged_lines(tmp_path: Path) -> None:
    conf = record(tmp_path, ALERTS[:1])
    done = mlsd("alerts", "-c", str(conf), "--since", "last tuesday")
    assert 2 == done.returncode and "is not a day (YYYY-MM-DD)" in done.stderr
    with (tmp_path / "state" / "alerts.jsonl").open("a") as fh:
        fh.write('{"torn": ')
    done = mlsd("alerts", "-c", str(conf), "--json")
    assert 0 == done.returncode and 1 == len(done.stdout.splitlines())
    assert "1 unreadable line in" in done.stderr
    journal = tmp_path / "state" / "alerts.jsonl"
    journal.rename(tmp_path / "moved")
    journal.symlink_to(tmp_path / "moved")
    done = mlsd("alerts", "-c", str(conf))
    assert 1 == done.returncode and "alerts.jsonl" in done.stderr and "" == done.stdout


def report_cfg(tmp_path: Path, alerts: list[Alert]) -> Any:
    cfg = make_cfg(tmp_path)
    log = AlertLog(cfg.paths.state_dir)
    log.open()
    log.record(alerts)
    return cfg


def test_the_report_opens_with_the_days_possible_compromises(tmp_path: Path) -> None:
    """The section comes first in both parts and holds the report day's alerts only."""
    cfg = report_cfg(tmp_path, ALERTS)
    r = compose.build(cfg, DAY, hostname="mx1")
    text = r.text.split("\n\n", 2)[2]  # after the title and the header
    assert text.startswith(
        "Possible compromises\n--------------------\n"
        "  2 alerts: each was mailed with its evidence when it was raised; `mlsd\n"
    )
    assert text.index("Possible compromises") < text.index("Total attempts")
    table = text.split("\n\n")[1].splitlines()
    assert [
        "  time   user               ip             cc  what",
        "  09:30  alice@example.org  198.51.100.23  SE  new country SE",
        "  12:50  alice@example.org  203.0.113.9    SE  14 failures then a login",
    ] == table
    assert "carol@" not in r.text and "dave@" not in r.text
    assert r.html.index(">Possible compromises</h2>") < r.html.index(">Total attempts</h2>")
    assert 2 == r.html.count("alice@example.org")


def test_a_day_without_alerts_says_none(tmp_path: Path) -> None:
    for alerts in ([], ALERTS[:1]):
        r = compose.build(report_cfg(tmp_path, alerts), date(2026, 11, 24), hostname="mx1")
        assert "\nPossible compromises\n--------------------\n  none\n" in r.text
        assert '>Possible compromises</h2>\n<p style="margin:.3em 0">none</p>' in r.html


def test_masked_usernames_are_masked_in_the_section_too(tmp_path: Path) -> None:
    cfg = report_cfg(tmp_path, ALERTS)
    masked = replace(cfg, report=replace(cfg.report, mask_usernames=True))
    r = compose.build(masked, DAY, hostname="mx1")
    assert "alice@" not in r.text and "a***@example.org" in r.text


def fake_session() -> Session:
    counters = SimpleNamespace(last_event=None)
    session = SimpleNamespace(
        pipeline=SimpleNamespace(counters=counters),
        journal=None,
        follower=SimpleNamespace(cur=None),
    )
    return cast(Session, session)


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        (None, "following {log}; 7 events today"),
        (0, "following {log}; 0 alerts today; 7 events today"),
        (1, "following {log}; 1 alert today; 7 events today"),
        (3, "following {log}; 3 alerts today; 7 events today"),
    ],
)
def test_status_line_says_alerts_today_when_the_sentinel_runs(
    tmp_path: Path, alerts: int | None, expected: str
) -> None:
    cfg = make_cfg(tmp_path)
    line = statusline.compose(
        cfg,
        fake_session(),
        events_today=7,
        log_problem=None,
        reading_live=lambda: True,
        reload_error="",
        pending_error="",
        shippers={},
        alerts_today=alerts,
    )
    assert expected.format(log=cfg.paths.mail_log) == line


def test_a_long_evidence_label_never_runs_into_its_value(tmp_path: Path) -> None:
    """The rules put the username in a label (`failures for U in 60 min`): the value stays a
    word of its own (the e2e suite found `… in 60 min13`)."""
    label = "failures for bob.with.a.long.name@example.org in 60 min"
    alert = plain(evidence=((label, "13, first 10:00:01, last 10:00:09"),))
    text = alertmail.render(alert, make_cfg(tmp_path)).text
    assert "min13" not in text
    assert any(line.strip().startswith("13, first") for line in text.splitlines())
    assert max(len(line) for line in text.splitlines()) <= alertmail.WIDTH


def test_a_line_without_a_host_names_the_node_in_the_subject(tmp_path: Path) -> None:
    """Dovecot's own log file has no host field: the subject says this node, not `?`."""
    cfg = make_cfg(tmp_path, "[fleet]\nnode = mx7\n")
    assert "ALERT mx7: possible compromise" in alertmail.render(plain(server=""), cfg).subject
