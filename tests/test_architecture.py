"""The package's shape, held by a test: who may import whom, and how long a module may grow.

The roles (README, "Architecture"): `ingest` turns log lines into rows exactly once,
`enrich` adds what mlsd knows about an address, `report` reads rows and mails them, `app`
wires the others into commands and the daemon. The modules at the top (`rows`, `config`,
`statedir`, `untrusted`, …) are the contracts they share. `ingest` and `report` never import
each other: they meet only through those contracts and the files on disk, so the store and
the journal source that come next can change one side without reading the other.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

PACKAGE: Final = Path(__file__).resolve().parent.parent / "mlsd"
ROLES: Final = ("ingest", "enrich", "report", "store", "fleet", "metrics", "sentinel", "app")

# Which roles each part may import (the top-level contract modules are "base", and so are
# the modules of a contract package such as `mlsd.config`: only the roles are roles).
ALLOWED: Final[dict[str, frozenset[str]]] = {
    "base": frozenset({"base"}),
    "ingest": frozenset({"base", "ingest", "enrich"}),
    "enrich": frozenset({"base", "enrich"}),
    "report": frozenset({"base", "report"}),
    # A reader of everyone's counters, but only through the snapshot app hands it.
    "metrics": frozenset({"base", "metrics"}),
    # The event store follows the CSV through the row contract; only app wires it in.
    "store": frozenset({"base", "store"}),
    # The fleet's PostgreSQL is one more sink: it implements the store's contract.
    "fleet": frozenset({"base", "store", "fleet"}),
    # The detectors see only the contracts (mlsd.alerts, mlsd.logins): app feeds them.
    "sentinel": frozenset({"base", "sentinel"}),
    "app": frozenset(
        {"base", "ingest", "enrich", "report", "store", "fleet", "metrics", "sentinel", "app"}
    ),
}

# Imports that break the rule today, each with the reason it is still there. The list may
# only shrink: a new entry needs a reason a reviewer accepts.
KNOWN_EXCEPTIONS: Final[frozenset[tuple[str, str]]] = frozenset()

MAX_LINES: Final = 400
# Modules still over MAX_LINES, each with its ceiling (its length when the limit came in,
# after the move into roles).
# A ceiling may only go down; splitting a module removes its line.
OVERSIZE: Final[dict[str, int]] = {}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _role(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ROLES else "base"


def _imports(path: Path) -> set[str]:
    """Every mlsd module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlsd")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mlsd":
                # `from mlsd import config`: the names are modules (or __version__).
                found |= {f"mlsd.{a.name}" for a in node.names if a.name != "__version__"}
            elif node.module.startswith("mlsd."):
                found.add(node.module)
    return found


def _role_of_import(target: str) -> str:
    parts = target.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROLES else "base"


def test_roles_import_only_what_the_architecture_allows() -> None:
    broken = []
    for path in _modules():
        module = _name(path)
        if module in ("mlsd", "mlsd.__main__"):
            continue  # the package root and `python -m mlsd` may reach the CLI
        role = _role(module)
        for target in sorted(_imports(path)):
            if (
                _role_of_import(target) not in ALLOWED[role]
                and (
                    module,
                    target,
                )
                not in KNOWN_EXCEPTIONS
            ):
                broken.append(f"{module} ({role}) imports {target} ({_role_of_import(target)})")
    assert not broken, "imports across the architecture's walls:\n" + "\n".join(broken)


def test_known_exceptions_are_still_needed() -> None:
    """An exception that no longer happens is deleted, so the list cannot hide a new one."""
    present = {(_name(p), t) for p in _modules() for t in _imports(p)}
    stale = sorted(KNOWN_EXCEPTIONS - present)
    assert not stale, f"remove these from KNOWN_EXCEPTIONS: {stale}"


def test_the_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: an import from report into ingest is found, inside a function too."""
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from mlsd.report.compose import build\n    return build\n")
    assert _imports(mod) == {"mlsd.report.compose"}
    assert _role("mlsd.ingest.pipeline") == "ingest"
    assert _role_of_import("mlsd.report.compose") == "report"
    assert "report" not in ALLOWED["ingest"]
    # The store follows the CSV: what writes or reads rows never reaches into it.
    assert _role("mlsd.store.ship") == "store"
    assert all("store" not in ALLOWED[r] for r in ("ingest", "enrich", "report", "base"))
    # The fleet is one more sink: only app wires it in, and the store never needs it.
    assert _role("mlsd.fleet.pgsink") == "fleet"
    assert all("fleet" not in ALLOWED[r] for r in ("ingest", "enrich", "report", "base", "store"))
    assert _role("mlsd.rows") == "base"
    # A contract split into a package stays a contract, inside and seen from outside.
    assert _role("mlsd.config.reader") == "base"
    assert _role_of_import("mlsd.config.schema") == "base"
    assert _role_of_import("mlsd.config") == "base"


def test_modules_stay_small() -> None:
    over = []
    for path in _modules():
        rel = str(path.relative_to(PACKAGE.parent))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        limit = OVERSIZE.get(rel, MAX_LINES)
        if lines > limit:
            over.append(f"{rel}: {lines} lines (limit {limit})")
    assert not over, "split these by job:\n" + "\n".join(over)


def test_oversize_ceilings_are_tight() -> None:
    """A ceiling above a module's length is lowered; one for a split module is removed."""
    loose = []
    for rel, ceiling in OVERSIZE.items():
        path = PACKAGE.parent / rel
        if not path.exists():
            loose.append(f"{rel}: no such module")
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines <= MAX_LINES or lines < ceiling:
            loose.append(f"{rel}: {lines} lines, ceiling {ceiling}")
    assert not loose, "tighten OVERSIZE:\n" + "\n".join(loose)
