"""PgSink against a real PostgreSQL: one transaction per batch, conflicts, schema versions,
retention by partition, and the node roles of contrib/postgresql/fleet-roles.sql."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from mlsd.config.schema import Secret
from mlsd.fleet.errors import FleetError
from mlsd.fleet.pgsink import PgSink, describe
from mlsd.fleet.schema import SCHEMA_VERSION
from mlsd.store.contract import Batch, StoreConflict
from tests.fleetkit import PASSWORD, Fleet, as_stored, make_fleet, pos, recounted, rows, totals
from tests.pgkit import Database

run = asyncio.run


@pytest.fixture
def fleet(pg_db: Database) -> Fleet:
    return make_fleet(pg_db)


def test_a_batch_and_its_position_are_stored_together(fleet: Fleet) -> None:
    """Rows come back as they went in (asn None stays NULL), the position is the batch's end."""
    batch = rows(30)

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            assert await sink.position("mx1") is None
            await sink.append("mx1", Batch(batch[:10], pos(100), pos(200)))
            await sink.append("mx1", Batch(batch[10:], pos(200), pos(900)))
            assert await sink.position("mx1") == pos(900)
        finally:
            await sink.close()

    run(go())
    assert as_stored("mx1", batch) == fleet.events()


def test_a_batch_not_at_the_stored_position_is_refused_and_stores_nothing(fleet: Fleet) -> None:
    """StoreConflict, and neither rows nor position move (a repeat, or a stranger's CSV)."""

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            await sink.append("mx1", Batch(rows(5), pos(100), pos(200)))
            with pytest.raises(StoreConflict):
                await sink.append("mx1", Batch(rows(5), pos(100), pos(200)))
            with pytest.raises(StoreConflict):
                await sink.append("mx1", Batch(rows(5), pos(200, ino=43), pos(300, ino=43)))
            assert await sink.position("mx1") == pos(200)
        finally:
            await sink.close()

    run(go())
    assert sum(fleet.events().values()) == 5


def test_inode_and_device_beyond_bigint_round_trip(fleet: Fleet) -> None:
    """st_ino and st_dev are unsigned 64-bit: stored as numeric(20), not bigint."""
    big = pos(100, ino=2**64 - 1, dev=2**63 + 5)

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            await sink.append("mx1", Batch([], pos(100), big))
            assert await sink.position("mx1") == big
        finally:
            await sink.close()

    run(go())


def test_a_dropped_connection_is_reopened(fleet: Fleet) -> None:
    """pg_terminate_backend: the next call fails, the one after reconnects and works."""

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            await sink.append("mx1", Batch(rows(3), pos(100), pos(200)))
            fleet.db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'mlsd'"
            )
            with pytest.raises(psycopg.OperationalError):
                await sink.append("mx1", Batch(rows(3, ip_base=9), pos(200), pos(300)))
            assert await sink.position("mx1") == pos(200)
            await sink.append("mx1", Batch(rows(3, ip_base=9), pos(200), pos(300)))
        finally:
            await sink.close()

    run(go())
    assert sum(fleet.events().values()) == 6


def test_rows_of_any_month_get_their_partition(fleet: Fleet) -> None:
    """A batch across a year end creates both months' partitions, and the rows land there;
    a far-future stamp in it gets its own month, not the century between."""
    batch = rows(3, datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    batch.append(rows(1, datetime(2099, 5, 1, tzinfo=UTC))[0])

    async def go() -> None:
        sink = fleet.sink(fleet.owner, today=lambda: date(2026, 12, 10))
        try:
            await sink.append("mx1", Batch(batch, pos(100), pos(200)))
        finally:
            await sink.close()

    run(go())
    counts = {
        str(r[0]): r[1]
        for r in fleet.db.execute(
            "SELECT tableoid::regclass::text, count(*) FROM mlsd_events GROUP BY 1 ORDER BY 1"
        )
    }
    assert {"mlsd_events_202612": 1, "mlsd_events_202701": 2, "mlsd_events_209905": 1} == counts
    made = fleet.db.execute(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'mlsd_events_2%' AND relkind = 'r'"
    )
    assert [(3,)] == made  # December and January (also made ahead), and May 2099


def test_a_newer_schema_is_refused_naming_both_versions(fleet: Fleet) -> None:
    """A database migrated by a newer mlsd is not written by this one."""

    async def migrate() -> None:
        sink = fleet.sink(fleet.owner)
        await sink.position("mx1")
        await sink.close()

    run(migrate())
    fleet.db.execute("INSERT INTO mlsd_schema (version) VALUES (99)")

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            await sink.position("mx1")
        finally:
            await sink.close()

    with pytest.raises(FleetError) as err:
        run(go())
    assert "version 99" in str(err.value)
    assert f"version {SCHEMA_VERSION})" in str(err.value)


def test_retention_drops_whole_old_partitions(fleet: Fleet) -> None:
    """keep_months = 2 on 2027-03-10 keeps February and March; older months' tables go."""
    old = rows(2, datetime(2026, 12, 5, tzinfo=UTC))
    jan = rows(2, datetime(2027, 1, 5, tzinfo=UTC))
    feb = rows(2, datetime(2027, 2, 5, tzinfo=UTC))
    mar = rows(2, datetime(2027, 3, 5, tzinfo=UTC))

    async def go() -> None:
        sink = fleet.sink(fleet.owner, today=lambda: date(2026, 12, 10))
        try:
            await sink.append("mx1", Batch(old + jan + feb + mar, pos(100), pos(200)))
        finally:
            await sink.close()
        keeper = fleet.sink(fleet.owner, keep_months=2, today=lambda: date(2027, 3, 10))
        try:
            await keeper.position("mx1")  # retention runs when it connects
        finally:
            await keeper.close()

    run(go())
    assert as_stored("mx1", feb + mar) == fleet.events()
    tables = {
        str(r[0])
        for r in fleet.db.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'mlsd_events_2%' AND relkind = 'r'"
        )
    }
    # February and March kept, April made ahead.
    assert {"mlsd_events_202702", "mlsd_events_202703", "mlsd_events_202704"} == tables
    # The day totals' months go with them (made a month around the rows' months).
    kept = {
        str(r[0])
        for r in fleet.db.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'mlsd_day_%' AND relkind = 'r'"
        )
    }
    assert {f"mlsd_day_{t}_{m}" for t in ("values", "nodes")
            for m in ("202702", "202703", "202704", "202705")} == kept  # fmt: skip
    assert recounted(fleet.db) == totals(fleet.db)
    assert len(totals(fleet.db)) == 4 + 4 + 2 + 2  # 4 IPs, 4 users, 2 countries, 2 node-days
    deleted = fleet.db.execute(
        "SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables "
        "WHERE relname LIKE 'mlsd_events%' OR relname LIKE 'mlsd_day_%'"
    )
    assert [(0,)] == deleted


def test_a_node_role_inserts_only_its_own_rows(fleet: Fleet) -> None:
    """Row-level security: node A's role ships A's rows, and cannot write B's rows or B's
    position, through the sink or by hand (not even straight into a partition). A's role
    is made before the schema (the migration grants), B's after (the script grants)."""
    a, b = "mx-a.example.org", "mx-b.example.org"
    fleet.add_node(a)
    fleet.migrate()
    fleet.add_node(b)

    async def go() -> None:
        sink = fleet.sink(a)
        try:
            await sink.append(a, Batch(rows(4), pos(100), pos(200)))
            with pytest.raises(FleetError, match=r"refuses rows for node 'mx-b\.example\.org'"):
                await sink.append(b, Batch(rows(4), pos(100), pos(200)))
            assert await sink.position(b) is None
        finally:
            await sink.close()
        sink_b = fleet.sink(b)
        try:
            await sink_b.append(b, Batch(rows(2, ip_base=50), pos(10), pos(20)))
        finally:
            await sink_b.close()
        async with await psycopg.AsyncConnection.connect(
            fleet.db.cluster.url(a, fleet.db.name), password=PASSWORD, autocommit=True
        ) as conn:
            cols = (
                'node, time, server, ip, "user", hostname, reverse_dns_status, country_code, '
                "aso, service, mechanism, attempts"
            )
            values = "%s, %s, 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 1"
            attempts: list[tuple[str, tuple[object, ...]]] = [
                (f"INSERT INTO mlsd_events ({cols}) VALUES ({values})", (b, "2026-12-02")),  # noqa: S608
                (f"INSERT INTO mlsd_events_202612 ({cols}) VALUES ({values})", (a, "2026-12-02")),  # noqa: S608
                ("DELETE FROM mlsd_events WHERE node = %s", (a,)),
                ("INSERT INTO mlsd_positions VALUES (%s, 1, 1, 1)", (b,)),
                ("DROP TABLE mlsd_events_202612", ()),
            ]
            for statement, params in attempts:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute(statement.encode(), params)

    run(go())
    assert as_stored(a, rows(4)) + as_stored(b, rows(2, ip_base=50)) == fleet.events()


def test_a_node_role_cannot_create_the_schema(fleet: Fleet) -> None:
    """Before the owner migrated, a node is told what to do, in one sentence."""
    fleet.add_node("mx-c")

    async def go() -> None:
        sink = fleet.sink("mx-c")
        try:
            await sink.position("mx-c")
        finally:
            await sink.close()

    want = rf"version 0, this mlsd needs version {SCHEMA_VERSION}.*owner role"
    with pytest.raises(FleetError, match=want):
        run(go())


def test_the_target_named_in_logs_has_no_secret() -> None:
    """`describe` keeps user, host, port and database; drops the query string."""
    assert "mx1@db.example.org:5433/mlsd" == describe(
        "postgresql://mx1@db.example.org:5433/mlsd?sslmode=require&passfile=/x"
    )


def test_a_password_given_apart_reaches_the_server_only(fleet: Fleet) -> None:
    """A wrong password is refused by the server, and the error does not repeat it."""
    wrong = PgSink(
        fleet.db.cluster.url(fleet.owner, fleet.db.name),
        password=Secret("Wr0ng-pw-xyz"),
    )

    async def go() -> None:
        try:
            await wrong.position("mx1")
        finally:
            await wrong.close()

    with pytest.raises(psycopg.OperationalError) as err:
        run(go())
    assert "Wr0ng-pw-xyz" not in str(err.value)


def test_nodes_needing_a_new_month_at_once_both_store(fleet: Fleet) -> None:
    """Several sinks create the same month's partition concurrently: each batch is stored
    (a race once showed as "relation already exists" and a retried batch)."""
    nodes = [f"mx{i}" for i in range(6)]

    async def go() -> None:
        sinks = [fleet.sink(fleet.owner) for _ in nodes]
        try:
            for s in sinks:
                await s.position("-")  # connected and migrated, before the race
            when = datetime(2031, 7, 1, tzinfo=UTC)
            await asyncio.gather(
                *(
                    s.append(n, Batch(rows(3, when), pos(10), pos(20)))
                    for s, n in zip(sinks, nodes, strict=True)
                )
            )
        finally:
            for s in sinks:
                await s.close()

    run(go())
    assert 18 == sum(fleet.events().values())


def test_the_readme_example_queries_run(fleet: Fleet) -> None:
    """The README's fleet queries are valid SQL on the schema: the first finds an address
    seen by two nodes, the third (on a day of its own) the usernames tried on three."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Fleet (PostgreSQL)", 1)[1]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    queries = [q for q in block.split(";") if q.strip()]
    assert 3 == len(queries)
    now = datetime.now(UTC) - timedelta(hours=1)
    day = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    async def go() -> None:
        sink = fleet.sink(fleet.owner)
        try:
            await sink.append("mx1", Batch(rows(3, now), pos(10), pos(20)))
            await sink.append("mx2", Batch(rows(2, now), pos(10), pos(20)))
            for node, n in (("mx1", 3), ("mx2", 2), ("mx3", 3)):
                await sink.append(node, Batch(rows(n, day), pos(20), pos(30)))
        finally:
            await sink.close()

    run(go())
    on_three = fleet.db.execute(queries[2].replace("current_date - 1", "date '2026-11-20'"))
    # user2 is on mx1 and mx3 only.
    assert [("user1@example.org", 3, 6), ("user0@example.org", 3, 3)] == on_three
    spread = fleet.db.execute(queries[0])  # the day of the third is older than 24 hours
    assert {("203.0.113.1", 2), ("203.0.113.2", 2)} == {(r[0], r[1]) for r in spread}
    assert ["mx1", "mx2", "mx3"] == [r[0] for r in fleet.db.execute(queries[1])]
