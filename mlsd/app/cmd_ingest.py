"""`mlsd scan` and `mlsd run`: the commands that read the log into the CSV, once or as the
daemon."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO, cast

from mlsd.app.cmd_common import EXIT_OK, load_config
from mlsd.errors import InputError, StateError

if TYPE_CHECKING:
    from mlsd.app.progress import EntryProgress
    from mlsd.ingest.session import Session

# Modules that only some commands need (asyncio, structlog, pyinotify, maxminddb, aiodns;
# json too) are imported where used: `mlsd parse` and `--version` start in half the time.


def scan(args: argparse.Namespace) -> int:
    """`mlsd scan`: catch up to the end of the live log, commit, exit 0."""
    import asyncio  # noqa: PLC0415

    from mlsd import access, logs  # noqa: PLC0415 - see the note on imports at the top
    from mlsd.app import progress  # noqa: PLC0415
    from mlsd.enrich.enricher import Enricher  # noqa: PLC0415
    from mlsd.enrich.geo import Geo  # noqa: PLC0415
    from mlsd.ingest import session  # noqa: PLC0415 - see the note on imports at the top

    cfg = load_config(args, required=True)
    shown = progress.on_terminal()
    # With a progress line, each log line is written above it, not into it.
    above = cast(TextIO, progress.AboveBar(sys.stderr)) if shown else None  # writes only
    logs.configure(cfg.log.level, cfg.log.format, above)
    # Refused before anything is touched: exit 0 having read nothing would say "all read".
    # A log that does not exist yet is not an error (the follower says it waits for it).
    found = access.probe_read(cfg.paths.mail_log)
    if cfg.source.kind == "file" and found.verdict not in (
        access.Verdict.OK,
        access.Verdict.MISSING,
    ):
        raise InputError(access.sentence(found, "[paths] mail_log") + "; nothing was read")
    problems = access.state_problems(cfg.paths.state_dir, cfg.paths.csv)
    if problems:
        raise StateError(problems[0])

    async def catch_up() -> None:
        enricher = Enricher(cfg, Geo(cfg.geoip))
        try:
            first = session.LIVE_ONLY if args.live_only else session.BACKLOG
            opened = session.open_session(cfg, enricher, first_start=first)
            journal = opened.journal is not None
            bar = progress.ScanProgress(cfg.paths.mail_log) if shown and not journal else None
            entries = progress.EntryProgress() if shown and journal else None
            drawing = asyncio.create_task(_draw(opened, entries)) if entries else None
            try:
                await session.scan(opened, bar)
            finally:
                if drawing is not None:
                    drawing.cancel()
                if entries is not None:
                    entries.done()
                if bar is not None:
                    bar.done()
                session.close_session(opened)
        finally:
            await enricher.close()

    asyncio.run(catch_up())
    return EXIT_OK


async def _draw(opened: Session, entries: EntryProgress) -> None:
    """The journal's entries read, five times a second, until cancelled."""
    import asyncio  # noqa: PLC0415 - see the note on imports at the top

    while True:
        entries.show(opened.pipeline.counters.lines)
        await asyncio.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    """`mlsd run`: follow the log until SIGTERM/SIGINT, everything committed at exit."""
    import asyncio  # noqa: PLC0415 - see the note on imports at the top

    from mlsd import logs  # noqa: PLC0415
    from mlsd.app.service import Service  # noqa: PLC0415

    cfg = load_config(args, required=True)
    logs.configure(cfg.log.level, cfg.log.format)
    return asyncio.run(Service(cfg).run())
