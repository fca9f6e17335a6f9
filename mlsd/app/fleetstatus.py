"""`mlsd status`'s fleet line: how far the fleet's PostgreSQL is behind this node's CSV.

Read-only and bounded: one connection with a short timeout, one SELECT of this node's
position, compared with the checkpoint's committed CSV length. Never the password, never
the url's query string; PostgreSQL's own error otherwise (it names no secret).
"""

from __future__ import annotations

import contextlib
from typing import Final

from mlsd.config import Config
from mlsd.errors import MlsdError
from mlsd.fleet.pgsink import describe
from mlsd.ingest.checkpoint import CHECKPOINT_NAME, Checkpoint
from mlsd.safefs import read_file
from mlsd.untrusted import terminal

TIMEOUT: Final = 3
"""Seconds `status` waits for the fleet database."""


def summary(cfg: Config) -> str:
    """One line: `mx1@db:5432/mlsd as mx1: up to date` (or how far behind, or why not known);
    empty when the fleet is off."""
    fleet = cfg.fleet
    if not fleet.url:
        return ""
    import psycopg  # noqa: PLC0415 - only with a fleet configured
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415 - same

    node = fleet.node_name()
    head = f"{describe(fleet.url)} as {node}"
    password = fleet.password.reveal() if fleet.password is not None else None
    conninfo = make_conninfo(fleet.url, password=password) if password else fleet.url
    try:
        with psycopg.connect(
            conninfo, connect_timeout=TIMEOUT, prepare_threshold=None, autocommit=True
        ) as conn:
            if conn.execute("SELECT to_regclass('mlsd_positions')").fetchone() == (None,):
                return f"{head}: no schema yet (the owner's first connection creates it)"
            row = conn.execute(
                "SELECT csv_dev, csv_ino, csv_offset FROM mlsd_positions WHERE node = %s",
                (node,),
            ).fetchone()
    except psycopg.Error as exc:
        return f"{head}: cannot reach it ({terminal(str(exc).strip())})"
    if row is None:
        return f"{head}: nothing shipped yet"
    cp = None
    where = cfg.paths.state_dir / CHECKPOINT_NAME
    with contextlib.suppress(OSError, MlsdError):  # status says elsewhere what is wrong
        cp = Checkpoint.from_json(read_file(where).decode("utf-8", "replace"), where)
    dev, ino, offset = (int(str(v)) for v in row)
    if cp is None:
        return f"{head}: shipped up to byte {offset}"
    if (dev, ino) != (cp.csv_dev, cp.csv_ino):
        return f"{head}: its position is on another CSV (shipping stopped: a conflict)"
    behind = max(0, cp.csv_length - offset)
    return f"{head}: " + (f"{behind} bytes behind the CSV" if behind else "up to date")
