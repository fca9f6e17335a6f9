"""SIGHUP's configuration: read the file again, keep what cannot change while mlsd runs,
and hand the rest to the parts that use it. The service says what became of it."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Final

from mlsd import config, logs
from mlsd.app.report_jobs import ReportJobs
from mlsd.config import Config
from mlsd.ingest import session
from mlsd.report.outbox import ReportSender

LIVE_ONLY: Final = ("mail_log", "state_dir", "csv")
"""[paths] keys a reload cannot change: the checkpoint, the lock and the CSV are bound to them."""
SOURCE_KEYS: Final = {
    "kind": "type",
    "journal_directory": "journal_directory",
    "journal_match": "journal_match",
}
"""[source] keys a reload cannot change (attribute → key): the reader was started with them."""


@dataclass(frozen=True, slots=True)
class Reread:
    """The configuration file read again."""

    config: Config
    """What to apply: the new configuration, with the running [paths] (see LIVE_ONLY)."""
    refused: tuple[str, ...]
    """The [paths] keys that changed: not applied until a restart."""
    changed: tuple[str, ...]
    """The sections that differ from the running configuration."""
    source: tuple[str, ...] = ()
    """The [source] attributes of the reader that changed: not applied until a restart."""


def reread(running: Config) -> Reread:
    """Load `running`'s file again. Raises ConfigError: the running configuration stays."""
    path = running.source_file
    assert path is not None  # noqa: S101 - `run` always has a config file
    new = config.load(path)
    refused = tuple(
        key for key in LIVE_ONLY if getattr(new.paths, key) != getattr(running.paths, key)
    )
    if refused:
        new = replace(new, paths=running.paths)
    # The source being read is bound to the checkpoint and the running reader too.
    source = tuple(k for k in SOURCE_KEYS if getattr(new.source, k) != getattr(running.source, k))
    if source:
        kept = {k: getattr(running.source, k) for k in SOURCE_KEYS}
        new = replace(new, source=replace(new.source, **kept))
    if new.metrics != running.metrics:
        # The endpoint is bound once, at start (mlsd.app.metrics_wiring).
        logs.get("mlsd.reload").warning(
            "[metrics] listen changed: not applied until a restart (systemctl restart mlsd)"
        )
        new = replace(new, metrics=running.metrics)
    changed = tuple(
        f.name
        for f in fields(Config)
        if f.name != "source_file" and getattr(new, f.name) != getattr(running, f.name)
    )
    return Reread(new, refused, changed, source)


async def apply(
    new: Config, opened: session.Session, sender: ReportSender, jobs: ReportJobs
) -> None:
    """Hand `new` to every running part; raises if one of them refuses it."""
    logs.configure(new.log.level, new.log.format)
    # The ingest side takes it between two batches, all its values together.
    await opened.apply_reload(new)
    sender.reconfigure(new)
    jobs.cfg = new
