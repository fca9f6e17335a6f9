"""The fleet's day totals (schema version 3): what the fleet report reads instead of a day of
rows, kept by PostgreSQL in the same transaction as the rows they count.

A day of 10 nodes x 1 M rows takes seconds to group however it is indexed: the report
needs, per address and per username, the attempts and the set of nodes, and per node its
rows and distinct values. So each stored batch adds itself to two tables, from a statement
trigger on `mlsd_events` that sees the batch's rows (a transition table):

- `mlsd_day_values` (day, kind, value): attempts, and `nodes`, a bit per node (bit n is
  the node whose `mlsd_nodes.id` is n) that had the value that day. Kinds: `i` address,
  `u` username, `c` country code. Distinct counts per node and "seen on two or more nodes"
  are bit counts; there is no row per (node, value).
- `mlsd_day_nodes` (day, node): rows, attempts, newest row.

Exactly once by construction: the trigger runs inside the batch's transaction, which also
moves the node's position; a batch that rolls back takes its totals with it. The trigger
is owned by the owner (SECURITY DEFINER): node roles cannot write the totals, only insert
their own rows (row-level security), which the trigger then counts.

"Day" is a calendar day in one zone, `mlsd_rollup_zone.zone` (from the migrating node's
`[report] timezone`, UTC when it has none PostgreSQL knows), from `since` on (BACK_DAYS
before the upgrade). A report in another zone, of a day before `since`, or of a day with a
node past the 63 bits, reads the rows instead (slower, same figures).
`SELECT mlsd_set_rollup_zone('Europe/Paris')` as the owner changes the zone and recounts.

Retention drops the totals' monthly partitions with the rows' (never a `DELETE`).
"""

from __future__ import annotations

from typing import Final

BACK_DAYS: Final = 40
"""The days before today that the totals are counted for from rows already stored (at the
upgrade to version 3, and when the zone changes): counting a year of a large fleet's rows
would hold its nodes' shipping for hours. Older days are reported from their rows."""
NODE_BITS: Final = 63
"""Nodes with ids 0..62 have a bit in `nodes`; a day with a node beyond is read from rows."""
PARENTS: Final = ("mlsd_day_values", "mlsd_day_nodes")
"""The totals' tables, partitioned by month on `day`."""

# Adding a set of rows to the totals, in PL/pgSQL with `z` the zone: the batch's `new_rows`
# in the trigger, all of mlsd_events at the migration and when the zone changes. One text
# for both (a transition table is visible only to its trigger function's own statements,
# so the source is named here, not passed at run time). Sorted upserts take row locks in
# one order: two nodes storing at once never deadlock on the totals.
_ROLL_UP: Final = """
    IF EXISTS (SELECT FROM (SELECT DISTINCT node FROM {src}) n
               WHERE NOT EXISTS (SELECT FROM mlsd_nodes m WHERE m.node = n.node)) THEN
        -- A node's first rows: the next free id, under a lock (two new nodes at once must
        -- not take the same one).
        PERFORM pg_advisory_xact_lock(1835822949);
        INSERT INTO mlsd_nodes (id, node)
        SELECT (SELECT coalesce(max(id) + 1, 0) FROM mlsd_nodes)
               + row_number() OVER (ORDER BY n.node COLLATE "C") - 1, n.node
        FROM (SELECT DISTINCT node FROM {src} EXCEPT SELECT node FROM mlsd_nodes) n;
    END IF;
    FOR m IN SELECT DISTINCT date_trunc('month', time AT TIME ZONE z)::date FROM {src} LOOP
        IF to_regclass('mlsd_day_values_' || to_char(m, 'YYYYMM')) IS NULL
           OR to_regclass('mlsd_day_nodes_' || to_char(m, 'YYYYMM')) IS NULL THEN
            PERFORM mlsd_rollup_partitions(m);
        END IF;
    END LOOP;
    WITH ids AS (
        SELECT m.node, CASE WHEN m.id < 63 THEN 1::bigint << m.id ELSE 0 END AS bit
        FROM mlsd_nodes m WHERE m.node IN (SELECT DISTINCT node FROM {src})
    ), x AS (
        SELECT (r.time AT TIME ZONE z)::date AS day, r.ip, r."user", r.country_code,
               r.attempts, ids.bit
        FROM {src} r JOIN ids USING (node)
    )
    INSERT INTO mlsd_day_values AS t (day, kind, value, attempts, nodes)
    SELECT x.day, v.kind, v.value, sum(x.attempts), bit_or(x.bit)
    FROM x CROSS JOIN LATERAL (VALUES ('i'::"char", x.ip COLLATE "C"), ('u', x."user"),
                                      ('c', x.country_code)) AS v(kind, value)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, kind, value) DO UPDATE
        SET attempts = t.attempts + excluded.attempts, nodes = t.nodes | excluded.nodes;
    INSERT INTO mlsd_day_nodes AS t (day, node, rows, attempts, newest)
    SELECT (time AT TIME ZONE z)::date, node, count(*), sum(attempts), max(time)
    FROM {src} GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, node) DO UPDATE
        SET rows = t.rows + excluded.rows, attempts = t.attempts + excluded.attempts,
            newest = greatest(t.newest, excluded.newest);
"""


def _roll_up(src: str) -> str:
    return _ROLL_UP.format(src=src)


MIGRATION: Final = f"""
    -- From when rows already stored are counted: all of them when there are none (a new
    -- fleet: every row will come through the trigger), else the last BACK_DAYS days.
    CREATE FUNCTION mlsd_rollup_since(zone text) RETURNS date LANGUAGE sql
    SET search_path = public, pg_temp AS $fn$
        SELECT CASE WHEN EXISTS (SELECT FROM mlsd_events) THEN
                   (now() AT TIME ZONE zone)::date - {BACK_DAYS}
               ELSE '-infinity'::date END
    $fn$;
    REVOKE ALL ON FUNCTION mlsd_rollup_since(text) FROM PUBLIC;
    CREATE TABLE mlsd_rollup_zone (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        zone text NOT NULL,
        since date NOT NULL  -- the first day whose totals hold all of its rows
    );
    INSERT INTO mlsd_rollup_zone (zone, since)
        SELECT z, mlsd_rollup_since(z)
        FROM coalesce(nullif(current_setting('mlsd.rollup_zone', true), ''), 'UTC') AS z;
    CREATE TABLE mlsd_nodes (id integer PRIMARY KEY, node text NOT NULL UNIQUE);
    CREATE TABLE mlsd_day_values (
        day date NOT NULL,
        kind "char" NOT NULL CHECK (kind IN ('i', 'u', 'c')),
        value text COLLATE "C" NOT NULL,
        attempts bigint NOT NULL,
        nodes bigint NOT NULL,
        PRIMARY KEY (day, kind, value)
    ) PARTITION BY RANGE (day);
    CREATE TABLE mlsd_day_nodes (
        day date NOT NULL,
        node text NOT NULL,
        rows bigint NOT NULL,
        attempts bigint NOT NULL,
        newest timestamptz NOT NULL,
        PRIMARY KEY (day, node)
    ) PARTITION BY RANGE (day);

    -- The totals' partitions of month m (both tables), when missing.
    CREATE FUNCTION mlsd_rollup_partitions(m date) RETURNS void LANGUAGE plpgsql
    SET search_path = public, pg_temp AS $fn$
    DECLARE
        parent text;
        name text;
    BEGIN
        m := date_trunc('month', m)::date;
        FOREACH parent IN ARRAY ARRAY['mlsd_day_values', 'mlsd_day_nodes'] LOOP
            name := parent || '_' || to_char(m, 'YYYYMM');
            IF to_regclass(name) IS NULL THEN
                PERFORM pg_advisory_xact_lock(1835822948);
                BEGIN
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                        name, parent, m::text, (m + interval '1 month')::date::text);
                EXCEPTION WHEN duplicate_table OR unique_violation THEN
                    NULL;
                END;
            END IF;
        END LOOP;
    END $fn$;
    REVOKE ALL ON FUNCTION mlsd_rollup_partitions(date) FROM PUBLIC;

    -- Each stored batch adds itself to the totals, in its own transaction, with the
    -- owner's rights.
    CREATE FUNCTION mlsd_roll_up() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp AS $fn$
    DECLARE
        z text := (SELECT zone FROM mlsd_rollup_zone);
        m date;
    BEGIN
        {_roll_up("new_rows")}
        RETURN NULL;
    END $fn$;
    REVOKE ALL ON FUNCTION mlsd_roll_up() FROM PUBLIC;
    CREATE TRIGGER mlsd_roll_up AFTER INSERT ON mlsd_events
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mlsd_roll_up();

    -- The rows of mlsd_events from the day `since` on, counted (into empty totals).
    CREATE FUNCTION mlsd_roll_up_all() RETURNS void LANGUAGE plpgsql
    SET search_path = public, pg_temp AS $fn$
    DECLARE
        z text := (SELECT zone FROM mlsd_rollup_zone);
        m date;
    BEGIN
        EXECUTE format('CREATE TEMP VIEW mlsd_recent AS SELECT * FROM mlsd_events '
                       'WHERE time >= %L', (SELECT since::timestamp AT TIME ZONE z
                                           FROM mlsd_rollup_zone));
        {_roll_up("mlsd_recent")}
        DROP VIEW mlsd_recent;
    END $fn$;
    REVOKE ALL ON FUNCTION mlsd_roll_up_all() FROM PUBLIC;

    -- The owner's way to count the days in another zone: every total again, from the rows,
    -- while no batch is stored (the lock waits for those in flight and holds off the next).
    CREATE FUNCTION mlsd_set_rollup_zone(new_zone text) RETURNS void LANGUAGE plpgsql
    SET search_path = public, pg_temp AS $fn$
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_timezone_names WHERE name = new_zone) THEN
            RAISE EXCEPTION 'mlsd_set_rollup_zone: % is not a time zone PostgreSQL knows',
                new_zone;
        END IF;
        LOCK TABLE mlsd_events IN SHARE ROW EXCLUSIVE MODE;
        UPDATE mlsd_rollup_zone SET zone = new_zone, since = mlsd_rollup_since(new_zone);
        TRUNCATE mlsd_day_values, mlsd_day_nodes;
        PERFORM mlsd_roll_up_all();
    END $fn$;
    REVOKE ALL ON FUNCTION mlsd_set_rollup_zone(text) FROM PUBLIC;
    -- The rows' partition maker now also makes the totals' months around them (a day in
    -- the zone may fall in the month before or after the row's UTC month), ahead of the
    -- rows, so that the trigger rarely has to: the version 2 function under another name,
    -- called by one with its name, signature and grants.
    ALTER FUNCTION mlsd_ensure_partitions(text, date, date)
        RENAME TO mlsd_ensure_row_partitions;
    REVOKE ALL ON FUNCTION mlsd_ensure_row_partitions(text, date, date) FROM PUBLIC;
    CREATE FUNCTION mlsd_ensure_partitions(parent text, first_month date, last_month date)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
    DECLARE
        m date := date_trunc('month', first_month)::date - 1;
    BEGIN
        PERFORM mlsd_ensure_row_partitions(parent, first_month, last_month);
        IF parent = 'mlsd_events' THEN
            WHILE m <= last_month + 31 LOOP
                PERFORM mlsd_rollup_partitions(m);
                m := (date_trunc('month', m) + interval '1 month')::date;
            END LOOP;
        END IF;
    END $fn$;
    REVOKE ALL ON FUNCTION mlsd_ensure_partitions(text, date, date) FROM PUBLIC;
    DO $do$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlsd_node') THEN
            GRANT EXECUTE ON FUNCTION mlsd_ensure_partitions(text, date, date) TO mlsd_node;
        END IF;
    END $do$;

    -- The rows stored before this version.
    SELECT mlsd_roll_up_all();
"""  # noqa: S608 - constants only
"""Migration 3 (applied by mlsd.fleet.schema after the others)."""
