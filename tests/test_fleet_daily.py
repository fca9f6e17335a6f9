"""`[report] fleet = yes`: the daemon's sender mails the fleet report of each day after the
node's own, through the same outbox, from a real PostgreSQL to a real SMTP server; a fleet
database that cannot be reached costs that day's fleet mail, never the node's report."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlsd import config
from mlsd.app import fleetmail
from mlsd.report.outbox import Rendered, ReportSender
from tests import smtpkit
from tests.fleetkit import Fleet
from tests.followkit import logged
from tests.test_fleet_report import DAY, fleet, h, row, ship, write_config  # noqa: F401
from tests.test_sender import Clock, Producer

# The day after DAY, after the send time: DAY's reports are due.
AFTER = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=9)


def daily_cfg(tmp_path: Path, url: str, port: int, *, fleet_mail: bool = True) -> config.Config:
    conf = write_config(tmp_path, url)
    text = conf.read_text().replace(
        "[report]\n",
        "[report]\nto = admin@example.org\nfrom = mlsd@example.org\ntime = 00:15\n"
        + ("fleet = yes\n" if fleet_mail else ""),
    )
    conf.write_text(text + f"[smtp]\nhost = 127.0.0.1\nport = {port}\ntimeout = 5\n")
    (tmp_path / "state").mkdir(exist_ok=True)
    return config.load(conf)


def sender_for(cfg: config.Config) -> ReportSender:
    async def fleet_report(day: object) -> Rendered:
        now = datetime.now(UTC)
        built = await asyncio.to_thread(fleetmail.build_day, cfg, DAY, now)
        return fleetmail.rendered(cfg, built, now)

    return ReportSender(
        cfg,
        Producer(cfg),
        clock=Clock(AFTER.timestamp()),
        console=io.StringIO(),
        first_day=DAY,
        fleet=fleet_report,
    )


def test_the_fleet_report_follows_the_nodes_own(fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    ship(
        fleet,
        {"mx1": [row(h(9), "192.0.2.1", "alice", 4)], "mx3": [row(h(10), "192.0.2.1", "bob")]},
    )
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        cfg = daily_cfg(tmp_path, fleet.db.cluster.url(fleet.owner, fleet.db.name), server.port)
        sender = sender_for(cfg)
        asyncio.run(sender.tick())
    finally:
        server.stop()
    subjects = [str(sink.parsed(i)["Subject"]) for i in range(len(sink.messages))]
    # Both queued in one tick, the node's first; one delivery pass sends them in the
    # outbox's order, which does not follow the queueing within the same second.
    assert len(subjects) == 2 and f"[mlsd] report {DAY}" in subjects
    (fleet_at,) = [
        i for i, s in enumerate(subjects) if s.startswith(f"mlsd fleet report for {DAY}")
    ]
    body = sink.parsed(fleet_at).get_payload(decode=True)
    assert isinstance(body, bytes) and "mx1" in body.decode() and "mx3" in body.decode()
    assert sender.outbox.entries() == []
    # Queued once: another tick the same day sends nothing more.
    asyncio.run(sender.tick())
    assert len(sink.messages) == 2


def test_an_unreachable_fleet_costs_the_fleet_mail_not_the_report(
    tmp_path: Path,
) -> None:
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    dead = smtpkit.free_port()
    try:
        cfg = daily_cfg(tmp_path, f"postgresql://mx1@127.0.0.1:{dead}/mlsd", server.port)
        sender = sender_for(cfg)
        with logged() as said:
            asyncio.run(sender.tick())
    finally:
        server.stop()
    assert [str(sink.parsed(i)["Subject"]) for i in range(len(sink.messages))] == [
        f"[mlsd] report {DAY}"
    ]
    errors = [s.text for s in said if s.level == "error"]
    assert len(errors) == 1 and errors[0].startswith(f"fleet report not queued day={DAY}")
    assert f'by_hand="mlsd report --fleet --day {DAY} --send"' in errors[0]
    assert sender.last_queued == DAY


def test_without_fleet_yes_only_the_node_report_goes(fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        url = fleet.db.cluster.url(fleet.owner, fleet.db.name)
        cfg = daily_cfg(tmp_path, url, server.port, fleet_mail=False)
        asyncio.run(sender_for(cfg).tick())
    finally:
        server.stop()
    assert len(sink.messages) == 1
