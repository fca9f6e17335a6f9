"""The fleet database's schema: versioned migrations, monthly partitions, retention.

`mlsd_schema` records the version the database is at. Each migration is applied in its own
transaction, under an advisory lock so that two nodes starting together do not both run it.
A database at a version newer than this mlsd knows is refused (an older mlsd must not
write into a layout it does not understand).

`mlsd_events` is partitioned by month on `time`, and so is `mlsd_logins` (version 2, the
successful logins, with their own positions in `mlsd_login_positions`). Node roles cannot
create tables, so the partitions a batch needs are made by `mlsd_ensure_partitions`, a
SECURITY DEFINER function owned by the owner role. Row-level security lets a role other
than the owner insert only rows whose `node` is its own name (`node = current_user`), and
read and move only its own positions (contrib/postgresql/fleet-roles.sql creates the roles
and grants).

Retention drops whole partitions (`DROP TABLE`), never `DELETE`: it needs the owner.
"""

from __future__ import annotations

from datetime import date
from typing import Final

import psycopg
from psycopg import AsyncConnection, sql

from mlsd.fleet import rollup_sql
from mlsd.fleet.errors import FleetError

SCHEMA_VERSION: Final = 3
"""The newest version this mlsd knows (the number of entries in MIGRATIONS)."""
PARENTS: Final = ("mlsd_events", "mlsd_logins", *rollup_sql.PARENTS)
"""The tables partitioned by month (retention; the rows' two by `mlsd_ensure_partitions`)."""

_LOCK_KEY: Final = 0x6D6C7364  # "mlsd": serialises migrations between nodes

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the events, the positions, the partition maker, row-level security.
    """
    CREATE TABLE mlsd_events (
        node text NOT NULL,
        time timestamptz NOT NULL,
        server text NOT NULL,
        ip text NOT NULL,
        "user" text NOT NULL,
        hostname text NOT NULL,
        reverse_dns_status text NOT NULL,
        country_code text NOT NULL,
        asn bigint,
        aso text NOT NULL,
        service text NOT NULL,
        mechanism text NOT NULL,
        attempts integer NOT NULL
    ) PARTITION BY RANGE (time);
    CREATE INDEX mlsd_events_time ON mlsd_events (time);
    CREATE INDEX mlsd_events_ip_time ON mlsd_events (ip, time);
    CREATE INDEX mlsd_events_user_time ON mlsd_events ("user", time);
    CREATE TABLE mlsd_positions (
        node text PRIMARY KEY,
        csv_dev numeric(20, 0) NOT NULL,
        csv_ino numeric(20, 0) NOT NULL,
        csv_offset bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE FUNCTION mlsd_ensure_partitions(first_month date, last_month date)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        m date := date_trunc('month', first_month)::date;
        name text;
    BEGIN
        IF last_month - first_month > 3660 THEN
            RAISE EXCEPTION 'mlsd_ensure_partitions: % to % is more than ten years',
                first_month, last_month;
        END IF;
        WHILE m <= last_month LOOP
            name := 'mlsd_events_' || to_char(m, 'YYYYMM');
            IF to_regclass(name) IS NULL THEN
                -- Two nodes may need the same month at once: one creates it, the other
                -- waits, then finds it (an advisory lock does not refresh the catalog
                -- cache that to_regclass reads, hence the handler).
                PERFORM pg_advisory_xact_lock(1835822948);
                BEGIN
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF mlsd_events FOR VALUES FROM (%L) TO (%L)',
                        name, m::text || ' 00:00:00+00',
                        (m + interval '1 month')::date::text || ' 00:00:00+00');
                EXCEPTION WHEN duplicate_table OR unique_violation THEN
                    NULL;
                END;
            END IF;
            m := (m + interval '1 month')::date;
        END LOOP;
    END $$;
    REVOKE ALL ON FUNCTION mlsd_ensure_partitions(date, date) FROM PUBLIC;
    ALTER TABLE mlsd_events ENABLE ROW LEVEL SECURITY;
    CREATE POLICY mlsd_events_own_node ON mlsd_events FOR INSERT
        WITH CHECK (node = current_user);
    CREATE POLICY mlsd_events_read ON mlsd_events FOR SELECT USING (true);
    ALTER TABLE mlsd_positions ENABLE ROW LEVEL SECURITY;
    CREATE POLICY mlsd_positions_own_node ON mlsd_positions
        USING (node = current_user) WITH CHECK (node = current_user);
    CREATE POLICY mlsd_positions_read ON mlsd_positions FOR SELECT USING (true);
    DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlsd_node') THEN
            GRANT SELECT ON mlsd_schema TO mlsd_node;
            GRANT INSERT ON mlsd_events TO mlsd_node;
            GRANT SELECT, INSERT, UPDATE ON mlsd_positions TO mlsd_node;
            GRANT EXECUTE ON FUNCTION mlsd_ensure_partitions(date, date) TO mlsd_node;
        END IF;
    END $$;
    """,
    # 2: the successful logins (issue 20): their table, partitioned by month like the
    # events, their own positions, one partition maker for both tables, the same policies.
    """
    CREATE TABLE mlsd_logins (
        node text NOT NULL,
        time timestamptz NOT NULL,
        server text NOT NULL,
        ip text NOT NULL,
        "user" text NOT NULL,
        hostname text NOT NULL,
        country_code text NOT NULL,
        asn bigint,
        aso text NOT NULL,
        service text NOT NULL,
        mechanism text NOT NULL,
        event text NOT NULL,
        recipients integer NOT NULL
    ) PARTITION BY RANGE (time);
    CREATE INDEX mlsd_logins_time ON mlsd_logins (time);
    CREATE INDEX mlsd_logins_user_time ON mlsd_logins ("user", time);
    CREATE TABLE mlsd_login_positions (
        node text PRIMARY KEY,
        csv_dev numeric(20, 0) NOT NULL,
        csv_ino numeric(20, 0) NOT NULL,
        csv_offset bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE FUNCTION mlsd_ensure_partitions(parent text, first_month date, last_month date)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        m date := date_trunc('month', first_month)::date;
        name text;
    BEGIN
        IF parent IS NULL OR parent NOT IN ('mlsd_events', 'mlsd_logins') THEN
            RAISE EXCEPTION 'mlsd_ensure_partitions: % is not a table of mlsd', parent;
        END IF;
        IF last_month - first_month > 3660 THEN
            RAISE EXCEPTION 'mlsd_ensure_partitions: % to % is more than ten years',
                first_month, last_month;
        END IF;
        WHILE m <= last_month LOOP
            name := parent || '_' || to_char(m, 'YYYYMM');
            IF to_regclass(name) IS NULL THEN
                PERFORM pg_advisory_xact_lock(1835822948);
                BEGIN
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                        name, parent, m::text || ' 00:00:00+00',
                        (m + interval '1 month')::date::text || ' 00:00:00+00');
                EXCEPTION WHEN duplicate_table OR unique_violation THEN
                    NULL;
                END;
            END IF;
            m := (m + interval '1 month')::date;
        END LOOP;
    END $$;
    REVOKE ALL ON FUNCTION mlsd_ensure_partitions(text, date, date) FROM PUBLIC;
    ALTER TABLE mlsd_logins ENABLE ROW LEVEL SECURITY;
    CREATE POLICY mlsd_logins_own_node ON mlsd_logins FOR INSERT
        WITH CHECK (node = current_user);
    CREATE POLICY mlsd_logins_read ON mlsd_logins FOR SELECT USING (true);
    ALTER TABLE mlsd_login_positions ENABLE ROW LEVEL SECURITY;
    CREATE POLICY mlsd_login_positions_own_node ON mlsd_login_positions
        USING (node = current_user) WITH CHECK (node = current_user);
    CREATE POLICY mlsd_login_positions_read ON mlsd_login_positions FOR SELECT USING (true);
    DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlsd_node') THEN
            GRANT INSERT ON mlsd_logins TO mlsd_node;
            GRANT SELECT, INSERT, UPDATE ON mlsd_login_positions TO mlsd_node;
            GRANT EXECUTE ON FUNCTION mlsd_ensure_partitions(text, date, date) TO mlsd_node;
        END IF;
    END $$;
    """,
    # 3: the day totals the fleet report reads (mlsd.fleet.rollup_sql).
    rollup_sql.MIGRATION,
)


async def current_version(conn: AsyncConnection[tuple[object, ...]]) -> int:
    """The database's schema version; 0 when mlsd never created its schema there."""
    cur = await conn.execute("SELECT to_regclass('mlsd_schema') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM mlsd_schema")
    row = await cur.fetchone()
    return int(str(row[0])) if row is not None else 0


async def migrate(conn: AsyncConnection[tuple[object, ...]], zone: str = "UTC") -> int:
    """Bring the schema to SCHEMA_VERSION; the version it was at. The connection is in
    autocommit mode on entry and on return. `zone` is the day totals' zone when this
    creates them (version 3): the IANA name of the node's `[report] timezone`; one that
    PostgreSQL does not know is UTC.

    Raises FleetError when the database is newer than this mlsd, or when the role may not
    migrate (a node role on a database the owner has not migrated yet).
    """
    found = await current_version(conn)
    if found == SCHEMA_VERSION:
        return found
    check_known(found)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS mlsd_schema ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        at = await current_version(conn)  # another node may have migrated meanwhile
        check_known(at)
        if at < 3:
            known = await conn.execute(
                "SELECT set_config('mlsd.rollup_zone', name, true) FROM pg_timezone_names "
                "WHERE name = %s",
                (zone,),
            )
            await known.fetchall()
        for version in range(at + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[version - 1].encode())
            await conn.execute("INSERT INTO mlsd_schema (version) VALUES (%s)", (version,))
    return found


async def ensure(conn: AsyncConnection[tuple[object, ...]], zone: str = "UTC") -> int:
    """`migrate`, with a refusal that says what to do when this role may not."""
    try:
        return await migrate(conn, zone)
    except psycopg.errors.InsufficientPrivilege:
        found = await current_version(conn)
        raise FleetError(
            f"the fleet database's schema is at version {found}, this mlsd needs version "
            f"{SCHEMA_VERSION}, and this node's role may not create it: start one mlsd once "
            "with the owner role's url (see contrib/postgresql/fleet-roles.sql)"
        ) from None


def check_known(version: int) -> None:
    """Refuse a schema newer than this mlsd knows."""
    if version > SCHEMA_VERSION:
        raise FleetError(
            f"the fleet database's schema is at version {version}, newer than this mlsd "
            f"knows (version {SCHEMA_VERSION}): upgrade mlsd on this node"
        )


def month_start(day: date, back: int = 0) -> date:
    """The first day of `day`'s month, `back` months earlier."""
    months = day.year * 12 + day.month - 1 - back
    return date(months // 12, months % 12 + 1, 1)


async def drop_old_partitions(
    conn: AsyncConnection[tuple[object, ...]],
    keep_months: int,
    today: date,
    parent: str = "mlsd_events",
) -> list[str]:
    """Drop `parent`'s partitions (one of PARENTS) that end before the kept months; their
    names.

    `keep_months = N` keeps the current month and the N - 1 before it. Whole partitions
    go (`DROP TABLE`, no `DELETE`, no vacuum debt). Needs the owner role.
    """
    if keep_months < 1:
        return []
    if parent not in PARENTS:
        raise ValueError(f"not a partitioned table of mlsd: {parent}")
    cutoff = month_start(today, keep_months - 1)
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass AND c.relname ~ %s "
        "AND c.relname < %s ORDER BY c.relname",
        (parent, f"^{parent}_[0-9]{{6}}$", f"{parent}_{cutoff:%Y%m}"),
    )
    names = [str(r[0]) for r in await cur.fetchall()]
    for name in names:
        async with conn.transaction():
            await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return names
