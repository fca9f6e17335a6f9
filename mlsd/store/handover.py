"""What `mlsd reset` leaves behind for the fleet: the CSVs it moved aside, in order.

A fleet's PostgreSQL keeps each node's position on that node's CSV (device, inode, offset).
`mlsd reset` moves the CSV into an archive (a rename: same device and inode) and the next
start begins a new one, so the node's stored position names a file that is no longer the
CSV. Rather than stop there (the fleet has no rows of the node's new CSV, and may lack the
tail of the old one), reset records here each CSV it moves: its identity, the length the
checkpoint had committed, and where it now is. The shipper then follows the chain:

- the stored position is on a moved CSV, before its committed length: the rest of that
  file is shipped from the archive (read only if it is still the same file: a copy across
  file systems has another inode and is refused, naming it);
- at its committed length: the next CSV of the chain (a later reset's, or the live one)
  is shipped from its first row, in a batch whose expected start is that stored position —
  the sink's compare-and-set moves the node from one file to the next in the same
  transaction as the rows, so nothing is shipped twice or skipped.

The local SQLite store is moved aside by reset with its CSV and rebuilt; only the fleet
(one position per node, kept elsewhere) needs this. `state_dir/handover.json`, 0600,
written atomically; the newest MAX_MOVED moves of each journal are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlsd.durable import replace_atomically
from mlsd.safefs import read_file
from mlsd.store.contract import Position

NAME: Final = "handover.json"
MAX_MOVED: Final = 16
"""Moves kept per journal: a node reset more often than this while its fleet was
unreachable stops with a conflict naming its position, as before this record existed."""


@dataclass(frozen=True, slots=True)
class Moved:
    """A CSV moved aside by `mlsd reset`: who it was, how much was committed, where it is."""

    dev: int
    ino: int
    length: int
    path: Path

    def holds(self, position: Position) -> bool:
        """Whether `position` is on this CSV."""
        return (position.csv_dev, position.csv_ino) == (self.dev, self.ino)


def load(state_dir: Path, journal: str) -> list[Moved]:
    """The CSVs of `journal` ("events" or "logins") reset moved, oldest first ([] when
    there is no record, or it cannot be read: then a moved CSV is a conflict as before)."""
    try:
        data = json.loads(read_file(state_dir / NAME))
        return [
            Moved(int(m["dev"]), int(m["ino"]), int(m["length"]), Path(str(m["path"])))
            for m in data.get(journal, [])
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def record(state_dir: Path, journal: str, moved: Moved) -> None:
    """Add a move of `journal`'s CSV to the record (written before the move is made)."""
    try:
        data = json.loads(read_file(state_dir / NAME))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    entries = [m for m in data.get(journal, []) if isinstance(m, dict)]
    entries.append(
        {"dev": moved.dev, "ino": moved.ino, "length": moved.length, "path": str(moved.path)}
    )
    data[journal] = entries[-MAX_MOVED:]
    replace_atomically(state_dir / NAME, json.dumps(data, indent=1).encode(), mode=0o600)


@dataclass(frozen=True, slots=True)
class Leg:
    """A stretch to ship: read `path` from `read_from` up to `until`, stored as batches
    whose first expects the sink's position `expect` (the live CSV from the stored
    position, or, after a reset, a moved CSV's rest or the next CSV from its first row)."""

    path: Path
    read_from: Position
    until: Position
    expect: Position


def next_leg(
    chain: list[Moved], stored: Position, live: Path, target: Position, first: int
) -> Leg | None:
    """Where shipping goes on from `stored` (on a moved CSV of `chain`), the live CSV
    `live` being committed up to `target`; None when `stored` is on none of them."""
    at = next((k for k in range(len(chain) - 1, -1, -1) if chain[k].holds(stored)), None)
    if at is None:
        return None
    m = chain[at]
    if stored.csv_offset < m.length:
        return Leg(m.path, stored, Position(m.dev, m.ino, m.length), stored)
    if stored.csv_offset > m.length:
        return None  # past what was committed there: not a position this record explains
    # The next CSV with a committed row (one reset right after another moved an empty CSV).
    for n in chain[at + 1 :]:
        if n.length > first:
            return Leg(
                n.path, Position(n.dev, n.ino, first), Position(n.dev, n.ino, n.length), stored
            )
    return Leg(live, Position(target.csv_dev, target.csv_ino, first), target, stored)
