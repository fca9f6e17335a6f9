"""`mlsd geoip update`: download, verify and install the GeoIP databases now (issue 21)."""

from __future__ import annotations

import argparse
import sys

from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, load_config
from mlsd.untrusted import terminal


def update(args: argparse.Namespace) -> int:
    """One line per configured database: installed, unchanged, not modified, or failed and
    why (the installed file kept). Exit 1 when any failed."""
    from mlsd.enrich.geoupdate.updater import update as run_update  # noqa: PLC0415

    cfg = load_config(args, required=True)
    outcomes = run_update(cfg)
    for o in outcomes:
        stream = sys.stderr if o.status == "failed" else sys.stdout
        kept = ", the installed file is kept" if o.status == "failed" else ""
        stream.write(
            f"mlsd geoip: {o.role} {terminal(str(o.path))}: {o.status}"
            f" ({terminal(o.detail)}){kept} [{terminal(o.source)}]\n"
        )
    return EXIT_FAILURE if any(o.status == "failed" for o in outcomes) else EXIT_OK
