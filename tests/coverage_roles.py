"""Print the coverage of each role of the package (`make unit` runs it after the tests).

coverage.py reports per file and in total; the architecture is per role (the contract
modules at the top of mlsd/, then ingest, enrich, report, store, fleet, metrics, app), and
a role whose figure drops is what a reviewer wants to see. Reads the combined data file
named by COVERAGE_FILE.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import coverage

ROLES = ("ingest", "enrich", "report", "store", "fleet", "metrics", "sentinel", "app")


def main() -> int:
    package = Path(__file__).resolve().parent.parent / "mlsd"
    cov = coverage.Coverage(data_file=os.environ.get("COVERAGE_FILE", ".coverage"))
    cov.load()
    measured = {Path(f).resolve() for f in cov.get_data().measured_files()}
    rows = []
    for role in ("contracts", *ROLES):
        if role == "contracts":
            files = sorted(p for p in package.glob("*.py"))
        else:
            files = sorted((package / role).rglob("*.py"))
        files = [f for f in files if f.resolve() in measured]
        if not files:
            rows.append((role, "not measured"))
            continue
        percent = cov.report(morfs=[str(f) for f in files], file=io.StringIO())
        rows.append((role, f"{percent:.0f} %"))
    print("coverage by role: " + ", ".join(f"{role} {figure}" for role, figure in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
