"""`mlsd parse --journal [DIR]`: the events in the journal, printed as `mlsd parse` prints a
file's; reads the whole journal (or DIR's journal files) once, touches no state."""

from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from mlsd.config import Config
from mlsd.errors import InputError
from mlsd.ingest.grammar import Skip
from mlsd.ingest.sources.journal import access_problem, argv, journalctl_env, machine_of
from mlsd.ingest.sources.journalevents import events_of
from mlsd.journalmatch import Matcher
from mlsd.rows import AuthFailure

_CHUNK: Final = 1 << 20


def parse_journal(
    cfg: Config, directory: str, out: BinaryIO, emit: Callable[[list[AuthFailure]], bytes]
) -> tuple[str, Counter[object]]:
    """Print the events of the journal in `directory` (empty: `[source] journal_directory`,
    else the system journal), selected by `[source] journal_match`. Returns what was read
    (for the summary line) and the counts: `lines` (entries), `events`, skips by reason."""
    where = Path(directory) if directory else cfg.source.journal_directory
    label = f"journal:{where}" if where is not None else "journal:system"
    matcher = Matcher(cfg.source.journal_match)
    stats: Counter[object] = Counter()
    skipped: Counter[Skip] = Counter()
    with tempfile.TemporaryFile() as err:
        # stderr to a file: journalctl says little there, but a pipe left unread could
        # fill and stall it while its output is read here.
        args = argv(matcher, where, follow=False, machine_id=machine_of(where))
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=journalctl_env())
        except OSError as exc:
            raise InputError(f"{label}: cannot run {args[0]}: {exc.strerror or exc}") from None
        assert proc.stdout is not None  # noqa: S101 - a pipe, asked for above
        carry = b""
        with proc.stdout:
            while chunk := proc.stdout.read(_CHUNK):
                block = carry + chunk
                end = block.rfind(b"\n") + 1
                carry = block[end:]
                stats["lines"] += block.count(b"\n", 0, end)
                events = events_of(block[:end], 0, matcher, skipped)
                if events:
                    out.write(emit(events))
                    stats["events"] += len(events)
        code = proc.wait()
        err.seek(0)
        said = err.read().decode("utf-8", "backslashreplace").splitlines()
    stats.update(skipped)
    problem = next((p for p in (access_problem(x, where) for x in said) if p), None)
    if problem is None and code:
        problem = f"journalctl ended with status {code}" + (f": {said[-1]}" if said else "")
    if problem is not None:
        raise InputError(f"{label}: {problem}")
    return label, stats
