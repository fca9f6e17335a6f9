"""The fleet report's SQL, in two families that return the same rows: from the day totals
(mlsd.fleet.rollup_sql; what the report reads when it can) and from the day's rows (when
it cannot: a report in another zone than the totals', a day with a node past their bits, a
database not yet at schema version 3). The tests hold the two equal.

Each statement returns its figures as rows (kind, key, a, b, c, newest, some nodes):

- `BY_IP`: `node` (node, rows, attempts, distinct IPs, newest row), `total` (rows,
  attempts, distinct IPs), `cross` (IP, nodes, attempts, how many in all, first five
  nodes), `top` (IP, attempts, nodes), `country` (code, attempts, nodes);
- `BY_USER`: `node` (node, distinct users), `total` (distinct users), `cross` (user,
  nodes, attempts, how many in all, first five nodes), `top` (user, attempts, nodes);
- `COVERAGE`: per node, when it last shipped and whether it has rows in the next day.

Ties are broken by value in byte order (`COLLATE "C"`), whatever the database's collation,
so that both families list the same entries. Values reach the SQL as parameters only.
"""

from __future__ import annotations

from typing import Final

MAX_NODES: Final = 1000
"""More nodes than a fleet has; the per-node lists are bounded all the same."""

# ---- from the day's rows: two scans, each grouped once into (node, ip) or (node, user)
# pairs, far fewer than the rows; every figure is then taken from the pairs.

_DAY: Final = "time >= %(start)s AND time < %(end)s"

ROWS_BY_IP: Final = f"""
WITH pairs AS MATERIALIZED (
    SELECT node, ip, country_code AS cc, count(*) AS n, sum(attempts) AS a,
           max(time) AS newest
    FROM mlsd_events WHERE {_DAY} GROUP BY node, ip, country_code
), by_ip AS MATERIALIZED (
    SELECT ip, count(DISTINCT node) AS nodes, sum(a) AS a,
           (array_agg(DISTINCT node COLLATE "C" ORDER BY node COLLATE "C"))[1:5] AS first_nodes
    FROM pairs GROUP BY ip
)
(SELECT 'node', node, sum(n), sum(a), count(DISTINCT ip), max(newest), NULL::text[]
   FROM pairs GROUP BY node ORDER BY node COLLATE "C" LIMIT {MAX_NODES})
UNION ALL
(SELECT 'total', NULL, (SELECT sum(n) FROM pairs), sum(a), count(*), NULL, NULL FROM by_ip)
UNION ALL
(SELECT 'cross', ip, nodes, a, count(*) OVER (), NULL, first_nodes FROM by_ip WHERE nodes >= 2
   ORDER BY nodes DESC, a DESC, ip COLLATE "C" LIMIT %(top)s)
UNION ALL
(SELECT 'top', ip, a, nodes, NULL, NULL, NULL FROM by_ip
   ORDER BY a DESC, ip COLLATE "C" LIMIT %(top)s)
UNION ALL
(SELECT 'country', cc, sum(a), count(DISTINCT node), NULL, NULL, NULL FROM pairs
   GROUP BY cc ORDER BY 3 DESC, cc COLLATE "C" LIMIT %(top)s)
"""  # noqa: S608 - constants only; values are parameters

ROWS_BY_USER: Final = f"""
WITH pairs AS MATERIALIZED (
    SELECT node, "user" AS u, sum(attempts) AS a
    FROM mlsd_events WHERE {_DAY} GROUP BY node, "user"
), by_user AS MATERIALIZED (
    SELECT u, count(*) AS nodes, sum(a) AS a,
           (array_agg(node ORDER BY node COLLATE "C"))[1:5] AS first_nodes
    FROM pairs GROUP BY u
)
(SELECT 'node', node, count(*), NULL::numeric, NULL::bigint, NULL::text[]
   FROM pairs GROUP BY node ORDER BY node COLLATE "C" LIMIT {MAX_NODES})
UNION ALL
(SELECT 'total', NULL, count(*), NULL, NULL, NULL FROM by_user)
UNION ALL
(SELECT 'cross', u, nodes, a, count(*) OVER (), first_nodes FROM by_user WHERE nodes >= 2
   ORDER BY nodes DESC, a DESC, u COLLATE "C" LIMIT %(top)s)
UNION ALL
(SELECT 'top', u, a, nodes, NULL, NULL FROM by_user ORDER BY a DESC, u COLLATE "C" LIMIT %(top)s)
"""  # noqa: S608 - constants only

# Shipping follows the CSV: a node with a row after the day's end has shipped all of it.
ROWS_COVERAGE: Final = f"""
SELECT coalesce(n.node, p.node), p.updated_at,
       EXISTS (SELECT 1 FROM mlsd_events e WHERE e.node = coalesce(n.node, p.node)
               AND e.time >= %(end)s AND e.time < %(after)s)
FROM unnest(%(nodes)s::text[]) AS n(node) FULL JOIN mlsd_positions p ON p.node = n.node
ORDER BY coalesce(n.node, p.node) COLLATE "C" LIMIT {MAX_NODES}
"""  # noqa: S608 - constants only

# ---- from the day totals: the day's few rows per value, never the events.

USABLE: Final = """
SELECT (%(day)s::date::timestamp AT TIME ZONE z.zone) = %(start)s
       AND ((%(day)s::date + 1)::timestamp AT TIME ZONE z.zone) = %(end)s
       AND %(day)s::date >= z.since
       AND coalesce((SELECT max(m.id) FROM mlsd_day_nodes d JOIN mlsd_nodes m USING (node)
                     WHERE d.day = %(day)s), -1) < 63
FROM mlsd_rollup_zone z
"""
"""Whether the totals can give the day [start, end): counted in a zone whose day it is,
from a day it has all the rows of, every node of the day with a bit."""

# `some(v.nodes)`: the first five nodes by name among a value's bits.
_SOME: Final = """ARRAY(SELECT m.node FROM mlsd_nodes m WHERE m.id < 63
                AND v.nodes & (1::bigint << m.id) <> 0 ORDER BY m.node COLLATE "C" LIMIT 5)"""
_NODES_OF: Final = "bit_count(v.nodes::bit(64))"


def _by(kind: str) -> str:
    """The statement for kind `i` (addresses, with the node lines' rows and the countries)
    or `u` (users); constants only."""
    addresses = kind == "i"
    counted = f"""(SELECT count(*) FROM mlsd_day_values c WHERE c.day = %(day)s
                     AND c.kind = '{kind}' AND c.nodes & (1::bigint << d.id) <> 0)"""  # noqa: S608
    node_line = (
        f"d.rows, d.attempts, {counted}, d.newest, NULL::text[]"
        if addresses
        else f"{counted}, NULL::numeric, NULL::bigint, NULL::text[]"
    )
    total = (
        "(SELECT sum(rows) FROM d), (SELECT sum(attempts) FROM d), count(*), NULL, NULL"
        if addresses
        else "count(*), NULL, NULL, NULL"
    )
    pad = ", NULL" if addresses else ""
    text = f"""
WITH d AS MATERIALIZED (
    SELECT n.node, n.rows, n.attempts, n.newest, m.id
    FROM mlsd_day_nodes n JOIN mlsd_nodes m USING (node) WHERE n.day = %(day)s
), v AS (
    SELECT value, attempts, nodes FROM mlsd_day_values WHERE day = %(day)s AND kind = '{kind}'
), crossing AS MATERIALIZED (
    SELECT value, attempts, nodes, count(*) OVER () AS n FROM v WHERE nodes & (nodes - 1) <> 0
    ORDER BY bit_count(nodes::bit(64)) DESC, attempts DESC, value LIMIT %(top)s
)
(SELECT 'node', d.node, {node_line} FROM d ORDER BY d.node COLLATE "C" LIMIT {MAX_NODES})
UNION ALL
(SELECT 'total', NULL, {total} FROM v)
UNION ALL
(SELECT 'cross', v.value, {_NODES_OF}, v.attempts, v.n{pad}, {_SOME} FROM crossing v
   ORDER BY 3 DESC, 4 DESC, 2)
UNION ALL
(SELECT 'top', v.value, v.attempts, {_NODES_OF}, NULL{pad}, NULL FROM v
   ORDER BY 3 DESC, 2 LIMIT %(top)s)
"""  # noqa: S608
    if addresses:
        text += f"""UNION ALL
(SELECT 'country', v.value, v.attempts, {_NODES_OF}, NULL, NULL, NULL
   FROM mlsd_day_values v WHERE v.day = %(day)s AND v.kind = 'c'
   ORDER BY 3 DESC, 2 LIMIT %(top)s)
"""  # noqa: S608
    return text


TOTALS_BY_IP: Final = _by("i")
TOTALS_BY_USER: Final = _by("u")

TOTALS_COVERAGE: Final = f"""
SELECT coalesce(n.node, p.node), p.updated_at,
       EXISTS (SELECT 1 FROM mlsd_day_nodes e WHERE e.node = coalesce(n.node, p.node)
               AND e.day = %(day)s::date + 1)
FROM unnest(%(nodes)s::text[]) AS n(node) FULL JOIN mlsd_positions p ON p.node = n.node
ORDER BY coalesce(n.node, p.node) COLLATE "C" LIMIT {MAX_NODES}
"""  # noqa: S608 - constants only
