"""Helpers for the fleet tests: a migrated database with roles, rows, and reading them back."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mlsd.config.schema import Secret
from mlsd.fleet.pgsink import PgSink
from mlsd.store.contract import Position, StoredRow
from tests.pgkit import SUPERUSER, Database

ROLES_SQL = Path(__file__).resolve().parent.parent / "contrib/postgresql/fleet-roles.sql"
PASSWORD = "fleet-Pw-0f-the-test"  # noqa: S105 - the test cluster's


@dataclass
class Fleet:
    """A database prepared with contrib/postgresql/fleet-roles.sql."""

    db: Database
    owner: str

    def psql_script(self, **variables: str) -> subprocess.CompletedProcess[str]:
        """The roles script through the real psql, as the superuser."""
        c = self.db.cluster
        args = [str(c.bindir / "psql"), "-X", "-q", "-h", str(c.sockets), "-p", str(c.port),
                "-U", SUPERUSER, "-d", self.db.name, "-f", str(ROLES_SQL)]  # fmt: skip
        for k, v in variables.items():
            args += ["-v", f"{k}={v}"]
        return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)

    def add_node(self, node: str) -> None:
        """A node's login role (named as the node), with the test password."""
        self.psql_script(owner=self.owner, node=node)
        self.db.execute(f"ALTER ROLE \"{node}\" PASSWORD '{PASSWORD}'")

    def sink(self, user: str, **kw: object) -> PgSink:
        """A PgSink logging in as `user` over TCP with the password given apart."""
        return PgSink(
            self.db.cluster.url(user, self.db.name),
            password=Secret(PASSWORD),
            **kw,  # type: ignore[arg-type]
        )

    def migrate(self) -> None:
        """Create the schema as the owner does, by connecting once."""

        async def once() -> None:
            sink = self.sink(self.owner)
            try:
                await sink.position("-")
            finally:
                await sink.close()

        asyncio.run(once())

    def events(self, node: str | None = None) -> Counter[tuple[object, ...]]:
        """Every stored row as (node, StoredRow fields…), as a multiset."""
        rows = self.db.execute(
            'SELECT node, time, server, ip, "user", hostname, reverse_dns_status, '
            "country_code, asn, aso, service, mechanism, attempts FROM mlsd_events"
        )
        return Counter(r for r in rows if node is None or r[0] == node)


# The day totals recounted from the stored rows, as (day, kind, value, attempts, nodes) and
# (day, node, rows, attempts, newest): a second formulation of mlsd.fleet.rollup_sql's
# (arrays of node names, not bits), so the two can be compared.
_RECOUNT_VALUES = """
WITH e AS (
    SELECT (time AT TIME ZONE (SELECT zone FROM mlsd_rollup_zone))::date AS day, node, ip,
           "user", country_code, attempts
    FROM mlsd_events
)
SELECT day, 'i', ip, sum(attempts), array_agg(DISTINCT node) FROM e GROUP BY day, ip
UNION ALL
SELECT day, 'u', "user", sum(attempts), array_agg(DISTINCT node) FROM e GROUP BY day, "user"
UNION ALL
SELECT day, 'c', country_code, sum(attempts), array_agg(DISTINCT node) FROM e
GROUP BY day, country_code
"""
_RECOUNT_NODES = """
SELECT (time AT TIME ZONE (SELECT zone FROM mlsd_rollup_zone))::date, node, count(*),
       sum(attempts), max(time)
FROM mlsd_events GROUP BY 1, 2
"""
_STORED_NODES = "SELECT day, node, rows, attempts, newest FROM mlsd_day_nodes"


def totals(db: Database) -> Counter[tuple[object, ...]]:
    """The day totals as stored, each value's node bits named (mlsd_nodes)."""
    names = {int(str(i)): str(n) for i, n in db.execute("SELECT id, node FROM mlsd_nodes")}
    out: Counter[tuple[object, ...]] = Counter()
    for day, kind, value, attempts, bits in db.execute(
        "SELECT day, kind, value, attempts, nodes FROM mlsd_day_values"
    ):
        mask = int(str(bits))
        nodes = frozenset(n for i, n in names.items() if i < 63 and mask >> i & 1)
        out[(day, str(kind), value, int(str(attempts)), nodes)] += 1
    out.update(("node", *r) for r in db.execute(_STORED_NODES))
    return out


def recounted(db: Database, since: date | None = None) -> Counter[tuple[object, ...]]:
    """What the day totals must be: counted again from every stored row (of the days from
    `since` on)."""
    out: Counter[tuple[object, ...]] = Counter()
    for day, kind, value, attempts, nodes in db.execute(_RECOUNT_VALUES):
        if since is None or day >= since:  # type: ignore[operator]
            out[(day, kind, value, int(str(attempts)), frozenset(nodes))] += 1  # type: ignore[call-overload]
    out.update(
        ("node", *r)
        for r in db.execute(_RECOUNT_NODES)
        if since is None or r[0] >= since  # type: ignore[operator]
    )
    return out


def make_fleet(db: Database, owner_prefix: str = "owner") -> Fleet:
    """Run the roles script for a new owner role and give the owner the test password."""
    import uuid

    owner = f"{owner_prefix}_{uuid.uuid4().hex[:8]}"
    fleet = Fleet(db, owner)
    fleet.psql_script(owner=owner)
    db.execute(f"ALTER ROLE {owner} PASSWORD '{PASSWORD}'")
    return fleet


def rows(n: int, start: datetime | None = None, *, ip_base: int = 1) -> list[StoredRow]:
    """`n` distinct rows a minute apart (asn None on every third, as `N/A`)."""
    t0 = start or datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    return [
        StoredRow(
            time=t0 + timedelta(minutes=i),
            server="mx1",
            ip=f"203.0.113.{(ip_base + i) % 250}",
            user=f"user{i}@example.org",
            hostname="unknown",
            reverse_dns_status="none",
            country_code="FR",
            asn=None if i % 3 == 0 else 64500 + i,
            aso="Example AS" if i % 3 else "N/A",
            service="SMTP (587)",
            mechanism="LOGIN",
            attempts=1 + i % 4,
        )
        for i in range(n)
    ]


def as_stored(node: str, batch: list[StoredRow]) -> Counter[tuple[object, ...]]:
    """What `Fleet.events` returns for these rows shipped for `node`."""
    return Counter((node, *r) for r in batch)


def pos(offset: int, ino: int = 42, dev: int = 7) -> Position:
    return Position(csv_dev=dev, csv_ino=ino, csv_offset=offset)


@pytest.fixture(name="fleet")
def migrated_fleet(pg_db: Database) -> Fleet:
    """Fixture `fleet`: a fresh database with mlsd's fleet schema, for the tests that ship
    into it (import it into the test module; the tests that migrate themselves define
    their own `fleet`)."""
    f = make_fleet(pg_db)
    f.migrate()
    return f
