"""`mlsd store rebuild` and `mlsd store check`: the event store by hand."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, load_config
from mlsd.errors import MlsdError, StateError

if TYPE_CHECKING:
    from tqdm import tqdm

    from mlsd.config import Config
    from mlsd.ingest.checkpoint import Checkpoint
    from mlsd.store.contract import Position
    from mlsd.store.journals import Journal
    from mlsd.store.ship import Shipper
    from mlsd.store.sqlite import SqliteStore


def rebuild(args: argparse.Namespace) -> int:
    """`mlsd store rebuild`: the store anew from the CSV's committed rows (the old file is
    moved aside); refused while the daemon runs (it holds the state lock)."""
    import asyncio  # noqa: PLC0415 - only this command needs them

    from mlsd import logs  # noqa: PLC0415
    from mlsd.app import archive, progress, storejob  # noqa: PLC0415
    from mlsd.ingest.checkpoint import CheckpointStore  # noqa: PLC0415
    from mlsd.store.contract import Position  # noqa: PLC0415
    from mlsd.store.journals import LOGINS  # noqa: PLC0415
    from mlsd.store.ship import Shipper  # noqa: PLC0415 - at run time, not just typed
    from mlsd.store.sqlite import SqliteStore  # noqa: PLC0415
    from mlsd.store.sqlsink import SqliteSink  # noqa: PLC0415

    cfg = load_config(args, required=True)
    logs.configure(cfg.log.level, cfg.log.format, sys.stderr)
    try:
        held = archive.lock(cfg)
    except MlsdError as exc:
        sys.stderr.write(f"mlsd: store rebuild refused: {exc} (systemctl stop mlsd)\n")
        return EXIT_FAILURE
    try:
        cp = CheckpointStore(cfg.paths.state_dir).load()
        if cp is None:
            raise StateError(
                f"{cfg.paths.state_dir}: no checkpoint, so no committed row to rebuild from"
            )
        st = os.stat(cfg.paths.csv)
        if (st.st_dev, st.st_ino) != (cp.csv_dev, cp.csv_ino):
            raise StateError(
                f"{cfg.paths.csv}: not the CSV the checkpoint was written with; start mlsd "
                "once (it reconciles them), then rebuild"
            )
        path = storejob.store_path(cfg)
        node = storejob.node_name()
        committed = Position(cp.csv_dev, cp.csv_ino, min(cp.csv_length, st.st_size))
        logins_at = _logins_committed(cfg.paths.logins(), cp)

        old = SqliteStore(path)
        old.open(node)  # a damaged file is moved aside here
        if old.count() or old.nodes():
            old.move_aside("`mlsd store rebuild`")
        old.close()

        async def go() -> tuple[int, int]:
            sink = SqliteSink(path)
            # Progress on a terminal only: bytes of the CSV stored, rate, time left.
            line = (
                progress.bar("store rebuild", committed.csv_offset)
                if progress.on_terminal()
                else None
            )
            draw: asyncio.Task[None] | None = None
            try:
                await sink.open(node)
                shipper = Shipper(cfg.paths.csv, lambda: committed, sink, node, tz=cfg.log_tz())
                if line is not None:
                    draw = asyncio.create_task(_draw(shipper, line))
                rows = await shipper.ship_committed()
                logins = 0
                if logins_at is not None:
                    # The logins CSV's committed rows too, into their own table (same file).
                    logins = await Shipper(
                        cfg.paths.logins(),
                        lambda: logins_at,
                        sink.sibling(LOGINS),
                        node,
                        tz=cfg.log_tz(),
                        journal=LOGINS,
                    ).ship_committed()
                return rows, logins
            finally:
                if draw is not None:
                    draw.cancel()
                if line is not None:
                    line.close()
                await sink.close()

        started = time.monotonic()
        rows, logins = asyncio.run(go())
        sys.stdout.write(
            f"store rebuilt: {rows} rows and {logins} logins in "
            f"{time.monotonic() - started:.1f} s into {path}\n"
        )
        return EXIT_OK
    finally:
        held.release()


def _logins_committed(path: Path, cp: Checkpoint) -> Position | None:
    """What the checkpoint committed of the logins CSV at `path`; None when it pins none,
    or the file there is another one (the daemon's next start reconciles and ships it)."""
    from mlsd.store.contract import Position  # noqa: PLC0415

    if cp.logins_dev is None or cp.logins_ino is None or cp.logins_length is None:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if (st.st_dev, st.st_ino) != (cp.logins_dev, cp.logins_ino):
        return None
    return Position(cp.logins_dev, cp.logins_ino, min(cp.logins_length, st.st_size))


async def _draw(shipper: Shipper, line: tqdm[NoReturn]) -> None:
    """Move the progress line to the stored position, five times a second."""
    import asyncio  # noqa: PLC0415 - see rebuild

    while True:
        if shipper.stored is not None:
            line.n = shipper.stored.csv_offset
            line.refresh()
        await asyncio.sleep(0.2)


def check(args: argparse.Namespace) -> int:
    """`mlsd store check`: rows per day in the store against the CSV, up to the stored
    position, for the failures and for the logins; exit 0 when they agree, 1 with the
    differing days listed."""
    from mlsd.app import storejob  # noqa: PLC0415
    from mlsd.store.journals import EVENTS, LOGINS  # noqa: PLC0415
    from mlsd.store.sqlite import Damaged, SqliteStore  # noqa: PLC0415

    cfg = load_config(args, required=True)
    store = SqliteStore(storejob.store_path(cfg))
    try:
        store.connect()
    except Damaged as exc:
        sys.stdout.write(f"store {store.path} is damaged: {exc} (mlsd store rebuild)\n")
        return EXIT_FAILURE
    try:
        problem = store.integrity()
        if problem != "ok":
            sys.stdout.write(f"store {store.path}: integrity_check: {problem}\n")
            return EXIT_FAILURE
        node = storejob.node_name()
        others = [n for n in store.nodes() if n != node]
        if others:
            sys.stdout.write(f"store holds the rows of another node: {', '.join(others)}\n")
            return EXIT_FAILURE
        ok = _check_journal(cfg, store, node, EVENTS, cfg.paths.csv)
        logins = cfg.paths.logins()
        if os.path.lexists(logins):
            ok = _check_journal(cfg, store, node, LOGINS, logins) and ok
        else:
            sys.stdout.write(f"logins: no logins CSV ({logins}), {store.count(LOGINS)} rows\n")
        return EXIT_OK if ok else EXIT_FAILURE
    finally:
        store.close()


def _check_journal(
    cfg: Config, store: SqliteStore, node: str, journal: Journal, path: Path
) -> bool:
    """One journal's counts per day, printed; whether they agree. The failures' lines are
    unprefixed (as before the logins), the logins' start with `logins: `."""
    from mlsd.store.check import csv_counts_by_day, differences  # noqa: PLC0415
    from mlsd.store.journals import EVENTS  # noqa: PLC0415

    say = "" if journal is EVENTS else f"{journal.name}: "
    pos = store.position(node, journal)
    st = os.stat(path)
    if pos is not None and (pos.csv_dev, pos.csv_ino) != (st.st_dev, st.st_ino):
        sys.stdout.write(
            f"{say}store holds the rows of another CSV (rebuilt at the next start, or by "
            "`mlsd store rebuild`)\n"
        )
        return False
    upto = len(journal.header) if pos is None else pos.csv_offset
    # Logins before `kept_from` may have been deleted by retention: compared from then on.
    since = store.kept_from(node) if journal is not EVENTS else None
    day_tz = cfg.report_tz()
    csv_days, bad = csv_counts_by_day(
        path, upto, row_tz=cfg.log_tz(), day_tz=day_tz, journal=journal, since=since
    )
    diffs = differences(csv_days, store.counts_by_day(day_tz, journal, since))
    behind = max(0, st.st_size - upto)
    sys.stdout.write(
        f"{say}store {store.path}: {store.count(journal)} rows, CSV rows up to byte {upto} of "
        f"{st.st_size}" + (f" ({behind} bytes not stored yet)" if behind else "") + "\n"
    )
    if since:
        kept = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        sys.stdout.write(f"{say}compared from {kept} on ([sentinel] keep_days)\n")
    if bad:
        sys.stdout.write(f"{say}{bad} CSV lines are not rows (not stored, not counted)\n")
    if not diffs:
        sys.stdout.write(f"{say}{len(csv_days)} days agree\n")
        return True
    sys.stdout.write(f"{say}days that differ (day, CSV rows, store rows):\n")
    for d in diffs:
        sys.stdout.write(f"  {d.day.isoformat()}  {d.csv}  {d.store}\n")
    return False
