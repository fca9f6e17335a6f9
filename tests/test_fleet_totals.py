"""The fleet's day totals (mlsd.fleet.rollup_sql) against a real PostgreSQL: counted in the
rows' own transactions, equal to a recount of the rows, and giving the fleet report the
same figures as the rows do; their zone, the migration of a database that had rows before
them, the nodes past the bits, and who may write them."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from mlsd.fleet import report, rollup_sql, schema
from mlsd.store.contract import Batch, StoredRow
from tests.fleetkit import (
    PASSWORD,
    Fleet,
    make_fleet,
    migrated_fleet,  # noqa: F401 - the `fleet` fixture
    pos,
    recounted,
    totals,
)
from tests.pgkit import Database

run = asyncio.run

# Values drawn from small pools, so that they repeat across nodes and tie in attempts; with
# case and accents (byte order and a language's order differ) and attacker-chosen text.
IPS = ["192.0.2.1", "192.0.2.10", "192.0.2.9", "2001:db8::1", "2001:DB8::1", "198.51.100.7"]
USERS = ["admin", "Admin", "ädmin", "zoe", "Zoe", "info@example.org", "x\x1b[31m", "\u202eevil"]
COUNTRIES = ["FR", "CN", "US", "", "BR"]
NODES = ["mx1", "mx2", "MX3", "imap", "éx"]
DAYS = [date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2)]
TODAY = datetime.now(UTC).date()
RECENT = [TODAY - timedelta(days=d) for d in (6, 5, 4)]
"""Days the totals count from rows already stored (rollup_sql.BACK_DAYS) whenever this runs."""


def random_rows(
    rnd: random.Random, n: int, zone: ZoneInfo, days: list[date] = DAYS
) -> list[StoredRow]:
    """`n` rows over `days` (consecutive) in `zone` (and a little beyond), in time order."""
    first = datetime.combine(days[0], time(0), zone) - timedelta(hours=2)
    span = (len(days) * 24 + 4) * 3600
    stamps = sorted(first + timedelta(seconds=rnd.randrange(span)) for _ in range(n))
    return [
        StoredRow(
            time=at.astimezone(UTC),
            server="mx",
            ip=rnd.choice(IPS),
            user=rnd.choice(USERS),
            hostname="unknown",
            reverse_dns_status="none",
            country_code=rnd.choice(COUNTRIES),
            asn=64500,
            aso="Example AS",
            service="SMTP (587)",
            mechanism="LOGIN",
            attempts=rnd.choice([1, 1, 1, 2, 3, 5]),
        )
        for at in stamps
    ]


def ship(fleet: Fleet, by_node: dict[str, list[StoredRow]], rnd: random.Random) -> None:
    """Each node's rows in batches of random sizes, the nodes interleaved (as the owner)."""

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            left = {node: list(rows) for node, rows in by_node.items()}
            at = dict.fromkeys(by_node, 0)
            while any(left.values()):
                node = rnd.choice([n for n, r in left.items() if r])
                k = rnd.randint(1, 40)
                batch, left[node] = left[node][:k], left[node][k:]
                await sink.append(node, Batch(batch, pos(at[node]), pos(at[node] + k)))
                at[node] += k
        finally:
            await sink.close()

    run(go())


def migrate_in(fleet: Fleet, zone: str) -> None:
    """The owner's node creates the schema, its [report] timezone being `zone`."""

    async def go() -> None:
        sink = fleet.sink(fleet.owner, zone=zone)
        try:
            await sink.position("-")
        finally:
            await sink.close()

    run(go())


def both(fleet: Fleet, day: date, zone: ZoneInfo, top: int) -> report.FleetReport:
    """The day's report from the totals, checked equal to the one from the rows."""
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    with psycopg.connect(fleet.db.su_conninfo(), autocommit=True) as conn:
        assert report.totals_usable(conn, {"day": day, "start": start, "end": end})
        got = report.build(conn, day, start, end, now=now, top=top, totals=True)
        want = report.build(conn, day, start, end, now=now, top=top, totals=False)
    assert got == want
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_totals_give_the_figures_the_rows_give(fleet: Fleet, seed: int) -> None:
    """Five nodes' rows over three days (a month's end among them), shipped in batches of
    random sizes: the totals equal a recount of the rows, and every figure of every day's
    report, with short and long top lists, is the same from the totals and from the rows."""
    rnd = random.Random(seed)
    by_node = {node: random_rows(rnd, rnd.randint(50, 300), ZoneInfo("UTC")) for node in NODES}
    ship(fleet, by_node, rnd)
    assert recounted(fleet.db) == totals(fleet.db)
    for day in DAYS:
        for top in (3, 10):
            r = both(fleet, day, ZoneInfo("UTC"), top)
            assert r.rows > 0 and r.cross_ips and r.cross_users  # the sections are reached


def test_the_totals_zone_is_the_migrating_nodes_and_the_owner_can_change_it(
    pg_db: Database,
) -> None:
    """Created in the zone the owner's node passes (its [report] timezone); a report in
    another zone reads the rows; `mlsd_set_rollup_zone` recounts every day in a new zone,
    refuses a zone PostgreSQL does not know, and is the owner's only."""
    fleet = make_fleet(pg_db)
    auckland = ZoneInfo("Pacific/Auckland")

    migrate_in(fleet, "Pacific/Auckland")
    assert [("Pacific/Auckland",)] == pg_db.execute("SELECT zone FROM mlsd_rollup_zone")
    rnd = random.Random(5)
    ship(fleet, {n: random_rows(rnd, 200, auckland, RECENT) for n in NODES[:3]}, rnd)
    assert recounted(fleet.db) == totals(fleet.db)
    both(fleet, RECENT[1], auckland, 10)
    utc_day = (RECENT[1], datetime.combine(RECENT[1], time(0), UTC))
    with psycopg.connect(pg_db.su_conninfo(), autocommit=True) as conn:
        params = {"day": utc_day[0], "start": utc_day[1], "end": utc_day[1] + timedelta(days=1)}
        assert not report.totals_usable(conn, params)
    fleet.add_node("mx1")
    with psycopg.connect(
        pg_db.cluster.url("mx1", pg_db.name), password=PASSWORD, autocommit=True
    ) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):  # fmt: skip
        conn.execute("SELECT mlsd_set_rollup_zone('UTC')")
    with psycopg.connect(
        pg_db.cluster.url(fleet.owner, pg_db.name), password=PASSWORD, autocommit=True
    ) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="Mars/Olympus"):
            conn.execute("SELECT mlsd_set_rollup_zone('Mars/Olympus')")
        conn.execute("SELECT mlsd_set_rollup_zone('UTC')")
    assert [("UTC",)] == pg_db.execute("SELECT zone FROM mlsd_rollup_zone")
    assert recounted(fleet.db) == totals(fleet.db)
    both(fleet, RECENT[1], ZoneInfo("UTC"), 10)


def test_a_zone_postgresql_does_not_know_is_utc(pg_db: Database) -> None:
    fleet = make_fleet(pg_db)

    migrate_in(fleet, "Mars/Olympus")
    assert [("UTC",)] == pg_db.execute("SELECT zone FROM mlsd_rollup_zone")


def test_a_database_with_rows_before_the_totals_is_counted_when_migrated(
    pg_db: Database,
) -> None:
    """A fleet at schema version 2 with rows: the owner's upgrade counts those of the last
    BACK_DAYS days, in the migration's transaction (a day older is reported from its rows,
    rightly); the rows shipped after are added by the trigger."""
    fleet = make_fleet(pg_db)
    owner_url = pg_db.cluster.url(fleet.owner, pg_db.name)

    async def at_version_2() -> None:
        async with await psycopg.AsyncConnection.connect(
            owner_url, password=PASSWORD, autocommit=True
        ) as conn:
            was = schema.MIGRATIONS
            try:
                schema.MIGRATIONS = was[:2]  # type: ignore[misc]
                schema.SCHEMA_VERSION = 2  # type: ignore[misc]
                await schema.migrate(conn)
            finally:
                schema.MIGRATIONS = was  # type: ignore[misc]
                schema.SCHEMA_VERSION = len(was)  # type: ignore[misc]

    run(at_version_2())
    assert [(2,)] == pg_db.execute("SELECT max(version) FROM mlsd_schema")
    assert [(None,)] == pg_db.execute("SELECT to_regclass('mlsd_day_values')")
    rnd = random.Random(9)
    old = [TODAY - timedelta(days=rollup_sql.BACK_DAYS + 30)]
    before = {n: random_rows(rnd, 100, ZoneInfo("UTC"), RECENT) for n in NODES[:3]}
    before["mx1"] += random_rows(rnd, 40, ZoneInfo("UTC"), old)

    async def old_node() -> None:  # a node still at version 2: the rows, no totals
        async with await psycopg.AsyncConnection.connect(
            owner_url, password=PASSWORD, autocommit=True
        ) as conn:
            await conn.execute(
                "SELECT mlsd_ensure_partitions('mlsd_events', %s, %s)",
                (old[0] - timedelta(days=1), TODAY),
            )
            for node, rows in before.items():
                async with conn.cursor() as cur:
                    await cur.executemany(
                        'INSERT INTO mlsd_events (node, time, server, ip, "user", hostname, '
                        "reverse_dns_status, country_code, asn, aso, service, mechanism, "
                        "attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(node, *r) for r in rows],
                    )

    run(old_node())
    fleet.migrate()  # the owner's node, upgraded
    assert [(3,)] == pg_db.execute("SELECT max(version) FROM mlsd_schema")
    since = TODAY - timedelta(days=rollup_sql.BACK_DAYS)
    assert [(since,)] == pg_db.execute("SELECT since FROM mlsd_rollup_zone")
    counted = totals(fleet.db)
    assert counted == recounted(fleet.db, since) and len(counted) > 30
    first = pg_db.execute(
        "SELECT min(day) FROM mlsd_day_values UNION ALL SELECT min(day) FROM mlsd_day_nodes"
    )
    assert all(since <= d < TODAY for (d,) in first)  # type: ignore[operator]
    ship(fleet, {n: random_rows(rnd, 50, ZoneInfo("UTC"), RECENT) for n in NODES[3:]}, rnd)
    assert recounted(fleet.db, since) == totals(fleet.db)
    both(fleet, RECENT[1], ZoneInfo("UTC"), 10)
    start = datetime.combine(old[0], time(0), UTC)
    with psycopg.connect(pg_db.su_conninfo(), autocommit=True) as conn:
        day = {"day": old[0], "start": start, "end": start + timedelta(days=1)}
        assert not report.totals_usable(conn, day)  # before `since`: from the rows
        got = report.build(
            conn, old[0], start, start + timedelta(days=1), now=start + timedelta(days=9)
        )
    assert got.rows == sum(1 for r in before["mx1"] if r.time.date() == old[0]) > 0


def test_a_node_role_cannot_write_the_totals_and_its_rows_are_counted(fleet: Fleet) -> None:
    """The totals are the owner's: a node's role gets them counted by inserting its own rows
    (the trigger runs with the owner's rights), and cannot write or read them itself."""
    fleet.add_node("mx1")
    rnd = random.Random(3)

    async def go() -> None:
        sink = fleet.sink("mx1")
        try:
            await sink.append("mx1", Batch(random_rows(rnd, 30, ZoneInfo("UTC")), pos(0), pos(30)))
        finally:
            await sink.close()

    run(go())
    assert recounted(fleet.db) == totals(fleet.db) and totals(fleet.db)
    with psycopg.connect(
        fleet.db.cluster.url("mx1", fleet.db.name), password=PASSWORD, autocommit=True
    ) as conn:
        for sql in (
            "UPDATE mlsd_day_values SET attempts = attempts + 1",
            "INSERT INTO mlsd_day_nodes VALUES ('2026-12-01', 'mx2', 1, 1, now())",
            "UPDATE mlsd_nodes SET id = id + 1",
            "SELECT count(*) FROM mlsd_day_values",
            "SELECT mlsd_rollup_partitions('2030-01-01')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    assert recounted(fleet.db) == totals(fleet.db)


def test_a_day_with_a_node_past_the_bits_is_read_from_the_rows(fleet: Fleet) -> None:
    """Nodes 0..62 have a bit; the 64th node's day is reported from the rows, rightly."""
    fleet.db.execute(
        "INSERT INTO mlsd_nodes (id, node) SELECT i, 'n' || i FROM generate_series(0, 62) AS i"
    )
    rnd = random.Random(4)
    ship(fleet, {"mx1": random_rows(rnd, 80, ZoneInfo("UTC"))}, rnd)
    assert [(63,)] == fleet.db.execute("SELECT id FROM mlsd_nodes WHERE node = 'mx1'")
    day = DAYS[1]
    start = datetime.combine(day, time(0), UTC)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    with psycopg.connect(fleet.db.su_conninfo(), autocommit=True) as conn:
        params = {"day": day, "start": start, "end": start + timedelta(days=1)}
        assert not report.totals_usable(conn, params)
        auto = report.build(conn, day, start, start + timedelta(days=1), now=now)
        rows = report.build(conn, day, start, start + timedelta(days=1), now=now, totals=False)
    assert auto == rows and auto.rows > 0 and auto.ips > 0
