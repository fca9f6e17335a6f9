"""One update run: for each provider download, fetch (conditionally), verify, install.

The state (each URL's validators, when the last run was and whether it worked) is one small
JSON file in the state directory, `geoip-update.json`, 0600. Validators are only sent while
every file they were installed to still exists: a deleted database is downloaded again.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal

from mlsd.config import Config
from mlsd.durable import replace_atomically
from mlsd.enrich.geoupdate.fetch import DownloadFailed, Validators, fetch
from mlsd.enrich.geoupdate.install import Refused, install, prepare_dir
from mlsd.enrich.geoupdate.providers import Download, downloads
from mlsd.errors import StateError
from mlsd.safefs import read_file

STATE_FILE: Final = "geoip-update.json"
RETRY_AFTER: Final = 6 * 3600.0
"""Seconds before a failed run is tried again (sooner than the interval, never busier)."""
MIB: Final = 1 << 20

Status = Literal["installed", "unchanged", "not-modified", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one run did to one configured database path."""

    role: str
    """`country`, `asn`, or `country+asn` (IPinfo's one file)."""
    path: Path
    status: Status
    detail: str = ""
    """The reason for `failed`; the database type and build date otherwise."""
    source: str = ""
    """The URL, as it may be shown (no token, no key)."""


def next_due(checked: float | None, ok: bool, interval_days: int, now: float) -> float:
    """When the next run is due: now if never run, else after the interval (or RETRY_AFTER
    after a failed run, if that is sooner). Pure: the daemon's clock is passed in."""
    if checked is None or checked > now:
        return now  # never run, or a clock that went back: do not wait for a future
    wait = interval_days * 86400.0
    return checked + (wait if ok else min(wait, RETRY_AFTER))


def read_state(state_dir: Path) -> dict[str, Any]:
    """The last run's record; empty when there is none or it is unreadable."""
    try:
        data = json.loads(read_file(state_dir / STATE_FILE))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update(cfg: Config, *, today: date | None = None) -> list[Outcome]:
    """Download, verify and install every database of `[geoip] provider`.

    Raises ConfigError for a missing credential; every other failure is an Outcome."""
    geo = cfg.geoip
    day = today or datetime.now(UTC).date()
    todo = downloads(geo, day, config_path=cfg.source_file)
    state_dir = cfg.paths.state_dir
    state = read_state(state_dir)
    seen: dict[str, dict[str, str]] = dict(state.get("urls", {}))
    out: list[Outcome] = []
    for d in todo:
        targets = list(
            dict.fromkeys(geo.country_db if role == "country" else geo.asn_db for role in d.roles)
        )
        out += _one(d, targets, seen, state_dir, geo.max_download * MIB)
    ok = all(o.status != "failed" for o in out)
    record = {"checked": datetime.now(UTC).timestamp(), "ok": ok, "urls": seen}
    with contextlib.suppress(OSError, StateError):
        replace_atomically(state_dir / STATE_FILE, json.dumps(record).encode(), mode=0o600)
    return out


def _one(
    d: Download, targets: list[Path], seen: dict[str, dict[str, str]], state_dir: Path, limit: int
) -> list[Outcome]:
    role = "+".join(d.roles)

    def each(status: Status, detail: str, source: str = d.shown) -> list[Outcome]:
        return [
            Outcome(role=role, path=t, status=status, detail=detail, source=source) for t in targets
        ]

    try:
        for t in targets:
            prepare_dir(t, state_dir)
    except StateError as exc:
        return each("failed", str(exc))
    into = targets[0].with_name(f".{targets[0].name}.download")
    try:
        for n, url in enumerate(d.urls):
            key = _key(url)
            old = seen.get(key)
            if d.dated and old is not None and all(t.exists() for t in targets):
                # This month's file is installed: no request until next month's name.
                return each("not-modified", "installed from this file already", key)
            since = (
                Validators(etag=old.get("etag", ""), last_modified=old.get("last_modified", ""))
                if old and all(t.exists() for t in targets)
                else None
            )
            try:
                got = fetch(url, into, limit=limit, headers=d.headers, since=since)
            except DownloadFailed as exc:
                if str(exc).startswith("HTTP 404") and n + 1 < len(d.urls):
                    continue  # DB-IP: this month's file is not out yet; last month's then
                return each("failed", str(exc), key)
            except OSError as exc:
                return each("failed", f"cannot write {into}: {exc.strerror}", key)
            if got.path is None:
                return each("not-modified", "the server has nothing newer", key)
            results: list[Outcome] = []
            for t in targets:
                try:
                    done = install(got.path, t, d.roles, limit=limit)
                except Refused as exc:
                    results.append(
                        Outcome(role=role, path=t, status="failed", detail=str(exc), source=key)
                    )
                    continue
                results.append(
                    Outcome(
                        role=role,
                        path=t,
                        status="installed" if done.replaced else "unchanged",
                        detail=f"{done.database_type}, built {done.built:%Y-%m-%d}",
                        source=key,
                    )
                )
            if all(r.status != "failed" for r in results):
                seen[key] = {
                    "etag": got.validators.etag,
                    "last_modified": got.validators.last_modified,
                }
            return results
        return each("failed", "no URL to try")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(into)


def _key(url: str) -> str:
    """The URL without its query: IPinfo's holds the token."""
    return url.split("?", 1)[0]
