"""The state directory as the operator sees it: `mlsd status` reads it, `mlsd reset` and
`mlsd purge` archive it (never delete)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from mlsd import config
from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_config
from mlsd.errors import MlsdError

# Modules that only some commands need (asyncio, structlog, pyinotify, maxminddb, aiodns;
# json too) are imported where used: `mlsd parse` and `--version` start in half the time.


def status(args: argparse.Namespace) -> int:
    """`mlsd status`: health from the state files; exit 0 healthy, 1 not."""
    from mlsd import logs  # noqa: PLC0415 - see the note on imports at the top
    from mlsd.app.status import gather  # noqa: PLC0415
    from mlsd.app.status_render import render  # noqa: PLC0415

    # A config with a typo must not hide whether the daemon, still on its previous config,
    # is healthy: what of it is valid is used (defaults for the rest), the error is shown
    # as a warning, and the exit status is still 2 (the next start or reload will fail).
    cfg, errors = config.salvage(args.config or config.DEFAULT_PATH)
    # Status says itself what it finds wrong (a missing database…): no log lines as well.
    logs.configure("ERROR", "auto", sys.stderr)
    found = gather(cfg, datetime.now(UTC))
    found.warnings[:0] = [
        f"configuration error: {error} (the next start or reload will fail; shown with "
        "the default in its place)"
        for error in errors
    ]
    for error in errors:
        sys.stderr.write(f"mlsd: {error}\n")
    sys.stdout.write(found.to_json() if args.json else render(found))
    if errors:
        return EXIT_USAGE
    return EXIT_OK if found.healthy else EXIT_FAILURE


def reset(args: argparse.Namespace) -> int:
    """`mlsd reset` / `mlsd purge`: archive, never delete; refused while mlsd runs."""
    import time  # noqa: PLC0415

    from mlsd.app import archive  # noqa: PLC0415 - see the note on imports at the top

    cfg = load_config(args, required=True)
    what = "purge" if args.purge else "reset"
    # The lock first: while mlsd runs, asking for --yes (or a confirmation) is asking for
    # something that will be refused anyway.
    try:
        held = archive.lock(cfg)
    except MlsdError as exc:
        why = str(exc)
        if why.endswith("; stop it first"):  # another mlsd holds it: say how, once
            why += " (systemctl stop mlsd), then run this again"
        sys.stderr.write(f"mlsd: {what} refused: {why}\n")
        return EXIT_FAILURE
    try:
        if not args.yes and not sys.stdin.isatty():
            sys.stderr.write(
                f"mlsd: {what} moves files away: confirm with --yes (no terminal to ask on)\n"
            )
            return EXIT_USAGE
        moves = archive.plan(cfg, purge=args.purge)
        if not moves:
            sys.stderr.write(f"mlsd: nothing to {what}: no CSV, checkpoint or report state\n")
            return EXIT_OK
        parent = args.archive or cfg.paths.state_dir
        try:
            archive.check_archive_parent(parent, cfg, purge=args.purge)
        except MlsdError as exc:
            sys.stderr.write(f"mlsd: {what} refused: {exc}; nothing moved\n")
            return EXIT_FAILURE
        sys.stderr.write(f"mlsd: {what} will move into a new archive directory in {parent}:\n")
        for m in moves:
            sys.stderr.write(f"  {m.source}  ({m.what})\n")
        if not args.yes:
            sys.stderr.write("Proceed? [y/N] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                sys.stderr.write(f"mlsd: {what} cancelled; nothing moved\n")
                return EXIT_FAILURE
        dest = archive.new_archive(parent, time.time())
        archive.record_handover(cfg, dest)
        for m in moves:
            sys.stdout.write(f"moved {m.source} -> {archive.move(m.source, dest)}\n")
    finally:
        held.release()
    start = "from its beginning" if cfg.follow.start_at == "beginning" else "from its end"
    sys.stdout.write(
        f"archived in {dest}; the next start reads the live log {start} ([follow] start_at)\n"
    )
    return EXIT_OK
