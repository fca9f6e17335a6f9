"""`mlsd report --fleet` against a real PostgreSQL: three nodes' rows shipped by PgSink, the
cross-node sections, the coverage table naming a node behind, hostile text neutralised."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from mlsd import untrusted
from mlsd.fleet import report, report_text
from mlsd.store.contract import Batch, LoginRow, StoredRow
from mlsd.store.journals import LOGINS
from tests import smtpkit
from tests.fleetkit import PASSWORD, Fleet, make_fleet, pos
from tests.pgkit import Database

DAY = date(2026, 12, 1)
START = datetime(2026, 12, 1, tzinfo=UTC)
END = START + timedelta(days=1)
CROSS_IP = "198.51.100.7"
CASES = Path(__file__).resolve().parent / "hostile" / "cases.jsonl"


def hostile_users() -> list[str]:
    """The raw usernames of the hostile cases (as the log line carries them)."""
    found = []
    for line in CASES.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        m = re.search(r"sasl_username=(.*)$", case["line"])
        if case["surface"] == "user" and m and m.group(1):
            found.append(m.group(1))
    assert len(found) >= 5
    return found


def row(at: datetime, ip: str, user: str, attempts: int = 1, cc: str = "FR") -> StoredRow:
    return StoredRow(
        time=at, server="mx", ip=ip, user=user, hostname="unknown", reverse_dns_status="none",
        country_code=cc, asn=64500, aso="Example AS", service="SMTP (587)", mechanism="LOGIN",
        attempts=attempts,
    )  # fmt: skip


def h(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return START + timedelta(days=day, hours=hour, minutes=minute)


NODE_ROWS: dict[str, list[StoredRow]] = {
    # mx1 and mx3 have rows after the day's end: they have shipped all of it.
    "mx1": [
        row(h(1), CROSS_IP, "admin", 3),
        row(h(2), "203.0.113.1", "alice"),
        row(h(3), "203.0.113.2", "bob", 2, "CN"),
        row(h(0, 5, day=1), "203.0.113.9", "late"),
    ],
    # mx2 stops at 23:41: behind.
    "mx2": [
        row(h(4), CROSS_IP, "admin", 2),
        row(h(5), "203.0.113.3", "carol"),
        row(h(23, 41), "203.0.113.4", "dave"),
    ],
    "mx3": [
        row(h(6), "203.0.113.5", "admin", 4, "BR"),
        row(h(7), "203.0.113.6", "erin"),
        row(h(0, 10, day=1), "203.0.113.9", "late"),
        # The day before: outside the report.
        row(h(12, day=-1), CROSS_IP, "erin", 9),
    ],
}


@pytest.fixture
def fleet(pg_db: Database) -> Fleet:
    f = make_fleet(pg_db)
    ship(f, NODE_ROWS)
    return f


def ship(fleet: Fleet, by_node: dict[str, list[StoredRow]]) -> None:
    """Each node's rows through PgSink (as the owner, who may write any node's rows)."""

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            for node, rows in by_node.items():
                at = await sink.position(node)
                offset = at.csv_offset if at else 0
                await sink.append(node, Batch(rows, pos(offset), pos(offset + 100)))
        finally:
            await sink.close()

    asyncio.run(go())


def build(fleet: Fleet, now: datetime | None = None) -> report.FleetReport:
    """The report from the day totals, checked equal to the one from the rows."""
    at = now or datetime.now(UTC)
    with psycopg.connect(fleet.db.su_conninfo(), autocommit=True) as conn:
        assert report.totals_usable(conn, {"day": DAY, "start": START, "end": END})
        from_totals = report.build(conn, DAY, START, END, now=at, totals=True)
        from_rows = report.build(conn, DAY, START, END, now=at, totals=False)
    assert from_totals == from_rows
    return from_totals


def test_the_cross_node_sections_count_nodes_and_attempts(fleet: Fleet) -> None:
    """An IP on two nodes and a user on three, with their attempts; nothing from other days."""
    r = build(fleet)
    assert [(c.value, c.nodes, c.attempts, c.some_nodes) for c in r.cross_ips] == [
        (CROSS_IP, 2, 5, ("mx1", "mx2"))
    ]
    assert r.cross_ips_total == 1
    assert [(c.value, c.nodes, c.attempts) for c in r.cross_users] == [("admin", 3, 9)]
    assert r.cross_users_total == 1
    assert (r.rows, r.attempts, r.nodes_seen) == (8, 15, 3)
    assert [(n.node, n.rows, n.attempts) for n in r.per_node] == [
        ("mx1", 3, 6), ("mx2", 3, 4), ("mx3", 2, 5)
    ]  # fmt: skip
    assert r.top_ips[0] == report.Top(CROSS_IP, 5, 2)
    assert [t.value for t in r.top_countries] == ["FR", "BR", "CN"]


def test_a_node_behind_is_named_with_its_last_row(fleet: Fleet) -> None:
    """mx2 has no row after the day's end: named, with 23:41; the others are complete."""
    r = build(fleet)
    assert [n.node for n in r.behind()] == ["mx2"]
    assert r.behind()[0].newest == h(23, 41)
    out = report_text_of(r)
    assert "mx2: rows up to 23:41 only" in out
    assert "Incomplete: mx2 " in out


def test_today_names_a_node_that_has_not_shipped_lately(fleet: Fleet) -> None:
    """For the day so far, recent shipping is what counts (no row can be after now): mx2 last
    shipped at 11:00, the report is built at 12:00, so mx2 is named; the others shipped since."""
    fleet.db.execute(
        "UPDATE mlsd_positions SET updated_at = '2026-12-01 11:00+00' WHERE node = 'mx2'"
    )
    r = build(fleet, now=h(12))
    assert r.partial and r.end == h(12)
    assert [(n.node, n.shipped_at) for n in r.behind()] == [("mx2", h(11))]
    assert "(UTC, so far)" in report_text_of(r)
    fleet.db.execute("UPDATE mlsd_positions SET updated_at = '2026-12-01 11:55+00'")
    assert build(fleet, now=h(12)).behind() == ()


def report_text_of(r: report.FleetReport) -> str:
    from mlsd.fleet import report_text

    return report_text.render(r, UTC)


def write_config(tmp_path: Path, url: str | None) -> Path:
    conf = tmp_path / "mlsd.conf"
    text = f"[paths]\nstate_dir = {tmp_path / 'state'}\ncsv = {tmp_path / 'f.csv'}\n"
    text += "[report]\ntimezone = UTC\n"
    if url is not None:
        pw = tmp_path / "fleet.pass"
        pw.write_text(PASSWORD + "\n")
        pw.chmod(0o600)
        text += f"[fleet]\nurl = {url}\npassword_file = {pw}\n"
    conf.write_text(text)
    return conf


def mlsd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlsd", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "TZ": "UTC"}, check=False,
    )  # fmt: skip


def test_the_cli_prints_the_fleet_report_with_hostile_users_neutralised(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Every hostile username of the corpus on two nodes: listed escaped, the output holds no
    control or invisible character."""
    hostile = hostile_users()
    # 20 attempts each: they fill the top lists (TOP entries each).
    ship(fleet, {n: [row(h(9, i), "192.0.2.1", u, 10) for i, u in enumerate(hostile)]
                 for n in ("mx1", "mx3")})  # fmt: skip
    conf = write_config(tmp_path, fleet.db.cluster.url(fleet.owner, fleet.db.name))
    done = mlsd("report", "--fleet", "-c", str(conf), "--day", str(DAY))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "mx2: rows up to 23:41 only" in out
    assert re.search(rf"^ +2 +5  {re.escape(CROSS_IP)} +mx1, mx2$", out, re.M)
    assert all(ch.isprintable() for line in out.splitlines() for ch in line)
    shown = [untrusted.terminal(u) for u in hostile]
    listed = [s for s in shown if (s if len(s) <= 40 else s[:39] + "…") in out]
    assert len(listed) >= report.TOP
    assert "\\x1b" in out or "\\x9d" in out  # an escape sequence, shown as text
    assert PASSWORD not in out + done.stderr


def test_fleet_without_a_url_exits_2_naming_the_key(tmp_path: Path) -> None:
    done = mlsd("report", "--fleet", "-c", str(write_config(tmp_path, None)))
    assert done.returncode == 2
    assert "[fleet] url is not set" in done.stderr


def test_fleet_html_is_the_text_escaped_in_a_page(fleet: Fleet, tmp_path: Path) -> None:
    """--html: the text in a <pre>, every hostile value HTML-escaped on top of the terminal form."""
    ship(fleet, {"mx1": [row(h(9), "192.0.2.1", "<script>alert(1)</script>", 50)]})
    conf = write_config(tmp_path, fleet.db.cluster.url(fleet.owner, fleet.db.name))
    done = mlsd("report", "--fleet", "--html", "-c", str(conf), "--day", str(DAY))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in done.stdout
    assert "<script" not in done.stdout
    assert "mx2: rows up to 23:41 only" in done.stdout


def test_fleet_send_mails_the_text_and_says_who_got_it(fleet: Fleet, tmp_path: Path) -> None:
    """A text/plain mail through a real SMTP server on loopback; the subject names the day
    and that a server may be behind."""
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        conf = write_config(tmp_path, fleet.db.cluster.url(fleet.owner, fleet.db.name))
        conf.write_text(
            conf.read_text().replace("[report]\n", "[report]\nto = admin@example.org\n")
            + f"[smtp]\nhost = 127.0.0.1\nport = {server.port}\ntimeout = 5\n"
        )
        done = mlsd("report", "--fleet", "--send", "-c", str(conf), "--day", str(DAY))
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "fleet report delivered to admin@example.org" in done.stderr
    assert [m[1] for m in sink.messages] == [["admin@example.org"]]
    msg = sink.parsed()
    assert msg["Subject"] == f"mlsd fleet report for {DAY}: 1 server(s) may be behind"
    assert msg.get_content_type() == "text/plain"
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "mx2: rows up to 23:41 only" in body.decode()


def test_a_node_role_may_not_read_and_is_told_why(fleet: Fleet, tmp_path: Path) -> None:
    """A node's role can only insert: exit 1 and a sentence saying which role can read."""
    fleet.add_node("mx9")
    conf = write_config(tmp_path, fleet.db.cluster.url("mx9", fleet.db.name))
    done = mlsd("report", "--fleet", "-c", str(conf), "--day", str(DAY))
    assert done.returncode == 1
    assert "needs a role with SELECT on mlsd_events" in done.stderr


def test_hostile_node_names_and_values_are_escaped_in_every_section() -> None:
    """A node's role may insert any node name: escaped in per-server, cross and coverage."""
    evil = "mx\x1b]0;pwned\x07\u202e"
    shown = untrusted.terminal(evil)
    at = h(23, 41)
    r = report.FleetReport(
        day=DAY, start=START, end=END, partial=False, rows=1, attempts=1, ips=1, users=1,
        nodes_seen=1,
        per_node=(report.NodeLine(evil, 1, 1, 1, 1, at, at, complete=False),),
        cross_ips=(report.Cross(evil, 2, 3, (evil, "mx2")),), cross_ips_total=1,
        cross_users=(), cross_users_total=0,
        top_ips=(report.Top(evil, 1, 1),), top_users=(), top_countries=(report.Top(evil, 1, 1),),
    )  # fmt: skip
    out = report_text_of(r)
    assert all(ch.isprintable() for line in out.splitlines() for ch in line)
    assert f"{shown}: rows up to 23:41 only" in out
    assert out.count(shown) == 7  # per server, cross (value, on), top IP, country, coverage x2


def test_the_day_is_cut_in_the_report_timezone(fleet: Fleet, tmp_path: Path) -> None:
    """In Pacific/Auckland (UTC+13 in December) 2026-12-01 ends at 11:00 UTC: mx2's 23:41 UTC
    row is the next day's there, and its newest row of the day is 05:00 UTC = 18:00 local."""
    conf = write_config(tmp_path, fleet.db.cluster.url(fleet.owner, fleet.db.name))
    conf.write_text(conf.read_text().replace("timezone = UTC", "timezone = Pacific/Auckland"))
    done = mlsd("report", "--fleet", "-c", str(conf), "--day", str(DAY))
    assert done.returncode == 0, done.stderr
    assert "(Pacific/Auckland, whole day)" in done.stdout
    # mx2 has a row after the day's end there (23:41 UTC): complete; mx1's 01:00 UTC is 14:00.
    assert "BEHIND" not in done.stdout
    assert re.search(r"^  mx2 +18:00 ", done.stdout, re.M), done.stdout


def ship_logins(fleet: Fleet, node: str, rows: list[LoginRow]) -> None:
    """`node`'s logins through PgSink (as the owner)."""

    async def go() -> None:
        sink = fleet.sink(fleet.owner, journal=LOGINS)
        try:
            await sink.append(node, Batch(rows, pos(0), pos(100)))
        finally:
            await sink.close()

    asyncio.run(go())


def login_row(at: datetime, user: str, ip: str) -> LoginRow:
    return LoginRow(
        time=at, server="imap", ip=ip, user=user, hostname="", country_code="SE", asn=64501,
        aso="Example Net", service="imap", mechanism="PLAIN", event="login", recipients=0,
    )  # fmt: skip


def test_a_login_after_failures_spread_over_servers_is_a_possible_compromise(
    fleet: Fleet,
) -> None:
    """Guesses for frank spread over mx1 and mx2 (6 + 5: neither alone reaches 10), then a
    login on mx3: the fleet report names it, with the servers the failures came from. A
    login with too few failures before it, or after the window, is not named."""
    ship(fleet, {"mx1": [row(h(10, i), "192.0.2.50", "frank") for i in range(6)],
                 "mx2": [row(h(10, 10 + i), "192.0.2.51", "frank") for i in range(5)]})  # fmt: skip
    ship_logins(fleet, "mx3", [
        login_row(h(10, 30), "frank", "198.51.100.99"),  # 11 failures in the hour before
        login_row(h(12, 30), "frank", "198.51.100.99"),  # the failures are 2 hours old
        login_row(h(10, 30), "alice", "192.0.2.7"),  # one failure (NODE_ROWS): not named
    ])  # fmt: skip
    built = build(fleet)
    assert [(c.node, c.user, c.failures, c.failed_on) for c in built.compromises] == [
        ("mx3", "frank", 11, ("mx1", "mx2"))
    ]
    text = report_text.render(built, UTC)
    assert "Possible compromises across servers (a login after failures for the user): 1" in text
    assert re.search(r"10:30:00 +mx3 +frank +198\.51\.100\.99 +SE +11 +mx1, mx2", text), text


def test_no_login_after_failures_says_none(fleet: Fleet) -> None:
    text = report_text.render(build(fleet), UTC)
    assert "Possible compromises across servers (a login after failures for the user): none" in text
