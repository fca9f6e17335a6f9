"""The logins in the fleet's PostgreSQL (schema 2): their own table partitioned by month and
their own positions, the upgrade from schema 1, retention by partition, and the node roles
that may insert only their own logins."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import structlog

from mlsd.app import fleetjob
from mlsd.config.schema import FleetConfig, Secret, SentinelConfig
from mlsd.fleet import schema
from mlsd.fleet.errors import FleetError
from mlsd.fleet.pgsink import PgSink
from mlsd.fleet.schema import SCHEMA_VERSION
from mlsd.store.contract import Batch, LoginRow
from mlsd.store.journals import LOGINS
from tests.fleetkit import PASSWORD, Fleet, as_stored, make_fleet, pos, rows
from tests.jobkit import fake_session, run_job
from tests.pgkit import Database
from tests.storekit import (
    csv_rows,
    events,
    login_cells,
    login_rows,
    position,
    write_csv,
    write_logins,
)

run = asyncio.run


@pytest.fixture
def fleet(pg_db: Database) -> Fleet:
    return make_fleet(pg_db)


def logins(n: int, start: datetime | None = None, *, user: str = "alice") -> list[LoginRow]:
    """`n` distinct logins an hour apart (every third a submission; asn None on every fourth)."""
    t0 = start or datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    return [
        LoginRow(t0 + timedelta(hours=i), "mx1", f"198.51.100.{i % 250}", f"{user}{i}",
                 "client.example.net", "SE", None if i % 4 == 0 else 3301, 'Telia "AB"; x',
                 "smtp" if i % 3 == 0 else "imap", "PLAIN",
                 "submit" if i % 3 == 0 else "login", 7 if i % 3 == 0 else 0)
        for i in range(n)
    ]  # fmt: skip


def sink(fleet: Fleet, user: str, **kw: object) -> PgSink:
    return fleet.sink(user, journal=LOGINS, **kw)


def stored_logins(fleet: Fleet) -> Counter[tuple[object, ...]]:
    return Counter(
        fleet.db.execute(
            'SELECT node, time, server, ip, "user", hostname, country_code, asn, aso, service, '
            "mechanism, event, recipients FROM mlsd_logins"
        )
    )


def test_logins_and_failures_have_their_own_positions(fleet: Fleet) -> None:
    """One node ships both journals over two connections: each table holds its batches,
    each position its own journal's end; a logins batch at the failures' position is
    refused."""
    batch = logins(30)

    async def go() -> None:
        ev, lo = fleet.sink(fleet.owner), sink(fleet, fleet.owner)
        try:
            await ev.append("mx1", Batch(rows(5), pos(100), pos(200)))
            assert await lo.position("mx1") is None
            await lo.append("mx1", Batch(batch[:10], pos(50, ino=9), pos(80, ino=9)))
            await lo.append("mx1", Batch(batch[10:], pos(80, ino=9), pos(900, ino=9)))
            assert (await ev.position("mx1"), await lo.position("mx1")) == (
                pos(200),
                pos(900, ino=9),
            )
            with pytest.raises(Exception, match="not the batch's start"):
                await lo.append("mx1", Batch(batch, pos(200), pos(300)))
        finally:
            await ev.close()
            await lo.close()

    run(go())
    assert Counter(("mx1", *r) for r in batch) == stored_logins(fleet)
    assert as_stored("mx1", rows(5)) == fleet.events()
    parts = {str(r[0]) for r in fleet.db.execute(
        "SELECT DISTINCT tableoid::regclass::text FROM mlsd_logins")}  # fmt: skip
    assert {"mlsd_logins_202612"} == parts


def migrate_to_1(fleet: Fleet) -> None:
    """The database as the previous mlsd left it: schema version 1, one node's rows."""
    with psycopg.connect(
        fleet.db.cluster.url(fleet.owner, fleet.db.name), password=PASSWORD, autocommit=True
    ) as conn, conn.transaction():  # fmt: skip
        conn.execute(
            "CREATE TABLE mlsd_schema (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(schema.MIGRATIONS[0].encode())
        conn.execute("INSERT INTO mlsd_schema (version) VALUES (1)")
        conn.execute("SELECT mlsd_ensure_partitions('2026-12-01', '2026-12-01')")
        conn.execute(
            'INSERT INTO mlsd_events (node, time, server, ip, "user", hostname, '
            "reverse_dns_status, country_code, asn, aso, service, mechanism, attempts) "
            "VALUES ('mx1', '2026-12-02 10:00+00', 'mx1', '192.0.2.1', 'root', 'unknown', "
            "'NONE', 'FR', NULL, 'N/A', 'smtp', 'LOGIN', 3)"
        )
        conn.execute("INSERT INTO mlsd_positions (node, csv_dev, csv_ino, csv_offset) "
                     "VALUES ('mx1', 7, 42, 500)")  # fmt: skip


def test_schema_1_is_migrated_in_place_and_a_node_role_may_ship_logins(fleet: Fleet) -> None:
    """A node role made under schema 1 (the migration grants it the logins) and one made
    after (the roles script grants them): both ship their logins, the failures stay, the
    version is the newest; a node role cannot migrate, the owner does."""
    a, b = "mx-a.example.org", "mx-b.example.org"
    migrate_to_1(fleet)
    fleet.add_node(a)

    async def refused() -> None:
        s = sink(fleet, a)
        try:
            await s.position(a)
        finally:
            await s.close()

    with pytest.raises(FleetError, match=f"version 1, this mlsd needs version {SCHEMA_VERSION}"):
        run(refused())
    with structlog.testing.capture_logs() as logs:
        fleet.migrate()
    assert [(1, SCHEMA_VERSION)] == [
        (e["was"], e["now"]) for e in logs if e["event"] == "fleet schema migrated"
    ]
    fleet.add_node(b)

    async def go() -> None:
        for node in (a, b):
            s = sink(fleet, node)
            try:
                await s.append(node, Batch(logins(3, user=node), pos(10), pos(20)))
                assert await s.position(node) == pos(20)
            finally:
                await s.close()

    run(go())
    versions = fleet.db.execute("SELECT version FROM mlsd_schema ORDER BY 1")
    assert [(v,) for v in range(1, SCHEMA_VERSION + 1)] == versions
    assert 1 == sum(fleet.events().values())  # the failures of schema 1 are kept
    want = Counter(("mx-a.example.org", *r) for r in logins(3, user=a))
    want += Counter(("mx-b.example.org", *r) for r in logins(3, user=b))
    assert want == stored_logins(fleet)


def test_a_node_role_inserts_only_its_own_logins(fleet: Fleet) -> None:
    """Row-level security on mlsd_logins and mlsd_login_positions, through the sink and by
    hand; the partition maker makes only mlsd's tables' partitions."""
    a, b = "mx-a.example.org", "mx-b.example.org"
    fleet.migrate()
    fleet.add_node(a)
    fleet.add_node(b)

    async def go() -> None:
        s = sink(fleet, a)
        try:
            await s.append(a, Batch(logins(2), pos(10), pos(20)))
            with pytest.raises(FleetError, match="refuses rows for node"):
                await s.append(b, Batch(logins(2), pos(10), pos(20)))
        finally:
            await s.close()
        async with await psycopg.AsyncConnection.connect(
            fleet.db.cluster.url(a, fleet.db.name), password=PASSWORD, autocommit=True
        ) as conn:
            cols = 'node, time, server, ip, "user", hostname, country_code, aso, service, ' \
                "mechanism, event, recipients"  # fmt: skip
            values = "%s, %s, 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'login', 0"
            attempts: list[tuple[str, tuple[object, ...]]] = [
                (f"INSERT INTO mlsd_logins ({cols}) VALUES ({values})", (b, "2026-12-02")),  # noqa: S608
                (f"INSERT INTO mlsd_logins_202612 ({cols}) VALUES ({values})", (a, "2026-12-02")),  # noqa: S608
                ("DELETE FROM mlsd_logins WHERE node = %s", (a,)),
                ("INSERT INTO mlsd_login_positions VALUES (%s, 1, 1, 1)", (b,)),
            ]
            for statement, params in attempts:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute(statement.encode(), params)
            with pytest.raises(psycopg.errors.RaiseException, match="not a table of mlsd"):
                await conn.execute("SELECT mlsd_ensure_partitions('pg_authid', %s, %s)",
                                   (date(2027, 1, 1), date(2027, 1, 1)))  # fmt: skip

    run(go())
    assert Counter((a, *r) for r in logins(2)) == stored_logins(fleet)


def test_keep_months_drops_old_login_partitions(fleet: Fleet) -> None:
    """keep_months = 2 on 2027-03-10: the logins of February and March stay, whole older
    partitions go, nothing is DELETEd."""
    old = logins(2, datetime(2026, 12, 5, tzinfo=UTC))
    jan = logins(2, datetime(2027, 1, 5, tzinfo=UTC))
    feb = logins(2, datetime(2027, 2, 5, tzinfo=UTC))
    mar = logins(2, datetime(2027, 3, 5, tzinfo=UTC))

    async def go() -> None:
        s = sink(fleet, fleet.owner, today=lambda: date(2026, 12, 10))
        try:
            await s.append("mx1", Batch(old + jan + feb + mar, pos(10), pos(20)))
        finally:
            await s.close()
        keeper = sink(fleet, fleet.owner, keep_months=2, today=lambda: date(2027, 3, 10))
        try:
            await keeper.position("mx1")  # retention runs when it connects
        finally:
            await keeper.close()

    run(go())
    assert Counter(("mx1", *r) for r in feb + mar) == stored_logins(fleet)
    made = "SELECT relname FROM pg_class WHERE relname LIKE 'mlsd_logins_2%' AND relkind = 'r'"
    tables = {str(r[0]) for r in fleet.db.execute(made)}
    assert {"mlsd_logins_202702", "mlsd_logins_202703", "mlsd_logins_202704"} == tables
    deleted = fleet.db.execute(
        "SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables "
        "WHERE relname LIKE 'mlsd_logins%'"
    )
    assert [(0,)] == deleted


def test_the_fleet_job_ships_both_journals_beside_the_store(fleet: Fleet, tmp_path: Path) -> None:
    """fleetjob.follow_and_ship given the logins' committed-length callable: four shippers
    (store, store-logins, fleet, fleet-logins), and the fleet holds both CSVs' rows."""
    fleet.migrate()
    fleet.add_node("mx-j")
    write_csv(tmp_path / "mlsd.csv", events(40))
    lpath = tmp_path / "logins.csv"
    write_logins(lpath, login_cells(60))
    committed = position(lpath)
    s = fake_session(
        tmp_path,
        SentinelConfig(),
        FleetConfig(url=fleet.db.cluster.url("mx-j", fleet.db.name), node="mx-j",
                    password=Secret(PASSWORD)),
    )  # fmt: skip

    def done() -> bool:
        got = fleet.db.execute(
            "SELECT (SELECT count(*) FROM mlsd_events), (SELECT count(*) FROM mlsd_logins)"
        )
        return got == [(40, 60)]

    seen = run_job(fleetjob.follow_and_ship, s, lambda _p: committed, done)
    assert {"store", "store-logins", "fleet", "fleet-logins"} == set(seen)
    assert Counter(("mx-j", *r) for r in login_rows(lpath)) == stored_logins(fleet)
    assert Counter(("mx-j", *r) for r in csv_rows(tmp_path / "mlsd.csv")) == fleet.events()
