"""`mlsd parse`: print the rows log files would give, or why each login attempt gives none.

Touches no state. The block loop (`parse_one`) is the command's hot path, which bench/run.py
times in-process: it adds no Python work per line (lines are counted per block, in C).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import tzinfo
from typing import BinaryIO

from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_config
from mlsd.app.logfiles import open_log
from mlsd.enrich.postfix import no_reverse, postfix_reverse
from mlsd.errors import InputError
from mlsd.ingest.csvlog import RowFormat
from mlsd.ingest.grammar import Skip, parse_block, parse_line
from mlsd.ingest.prefilter import is_success
from mlsd.rows import HEADER, AuthFailure
from mlsd.untrusted import raw_line, terminal

# Modules that only some commands need (asyncio, structlog, pyinotify, maxminddb, aiodns;
# json too) are imported where used: `mlsd parse` and `--version` start in half the time.

# Read in blocks: the needles are searched per block, not per line (see candidate_lines).
_CHUNK = 1 << 20


def parse(args: argparse.Namespace) -> int:
    """`mlsd parse FILE…`: print would-be rows, touch nothing."""
    cfg = load_config(args, required=False)
    log_tz = cfg.log_tz()
    if (args.journal is None) == (not args.files) or (args.journal is not None and args.explain):
        sys.stderr.write("mlsd: parse: give FILEs, or --journal [DIR] (without --explain)\n")
        return EXIT_USAGE
    if args.explain:
        return _explain(args.files, log_tz)
    out = sys.stdout.buffer
    reverse = postfix_reverse if cfg.dns.reverse == "postfix" else no_reverse
    emit: Callable[[list[AuthFailure]], bytes]
    if args.format == "csv":
        out.write(HEADER)

        rows = RowFormat(tz=log_tz, date_format=cfg.csv.date_format, cap=cfg.csv.max_field_length)

        def emit(events: list[AuthFailure]) -> bytes:
            return rows.encode(events, reverse)
    else:
        import json  # noqa: PLC0415 - see the note on imports at the top

        def emit(events: list[AuthFailure]) -> bytes:
            return "".join(
                json.dumps(_event_json(ev, reverse(ev).hostname)) + "\n" for ev in events
            ).encode()

    if args.journal is not None:
        from mlsd.app.journalparse import parse_journal  # noqa: PLC0415 - see cli's note

        label, stats = parse_journal(cfg, args.journal, out, emit)
        out.flush()
        sys.stderr.write(f"mlsd: {terminal(label)}: {_summary(stats)}\n")
        return EXIT_OK
    failed = False
    shown = progress_on_terminal()
    for name in args.files:
        try:
            stats = parse_one(name, out, emit, log_tz, progress=shown)
        except InputError as exc:
            sys.stderr.write(f"mlsd: {exc}\n")
            failed = True
            continue
        sys.stderr.write(f"mlsd: {terminal(name)}: {_summary(stats)}\n")
    out.flush()
    return EXIT_FAILURE if failed else EXIT_OK


def _summary(stats: Counter[object]) -> str:
    """`1000 lines read, 12 events; not recorded: 3 (2 success, 1 server-error)`.

    As fail2ban-regex says it: what was read, what matched, and why the rest of the login
    attempts were not recorded, largest reason first.
    """
    skips = sorted(
        ((r, n) for r, n in stats.items() if isinstance(r, Skip) and n),
        key=lambda item: (-item[1], _by_value(item)),
    )
    lines = stats["lines"]
    text = f"{lines} line{'s' if lines != 1 else ''} read, {stats['events']} events"
    if skips:
        why = ", ".join(f"{n} {r.value}" for r, n in skips)
        text += f"; not recorded: {sum(n for _, n in skips)} ({why})"
    return text


def _explain(files: Sequence[str], log_tz: tzinfo) -> int:
    """`parse --explain`: each line that is a login attempt, recorded or skipped and why.

    Line by line, not by block: slower, but this is for reading a log by hand.
    """
    out = sys.stdout
    failed = False
    for name in files:
        try:
            stream, ref = open_log(name)
            with stream:
                for n, line in enumerate(stream, 1):
                    result = parse_line(line, ref, log_tz)
                    if result is None:
                        if not is_success(line):
                            continue
                        verdict = f"skipped ({Skip.SUCCESS.value})"
                    elif isinstance(result, AuthFailure):
                        # Every field came from the line, the IP and service too.
                        verdict = (
                            f"recorded ip={terminal(result.ip)} user={_shown(result.user)} "
                            f"service={terminal(result.service)} attempts={result.attempts}"
                        )
                    else:
                        verdict = f"skipped ({result.value})"
                    prefix = f"{terminal(name)}:" if len(files) > 1 else ""
                    out.write(f"{prefix}{n}: {verdict}: {raw_line(line)}\n")
        except InputError as exc:
            sys.stderr.write(f"mlsd: {exc}\n")
            failed = True
        except (OSError, EOFError, zlib.error) as exc:
            sys.stderr.write(f"mlsd: {name}: read failed: {exc}\n")
            failed = True
    out.flush()
    return EXIT_FAILURE if failed else EXIT_OK


def _shown(user: str | None) -> str:
    import json  # noqa: PLC0415 - see the note on imports at the top

    return "-" if user is None else json.dumps(raw_line(user.encode(), 200), ensure_ascii=False)


def _by_value(item: tuple[object, int]) -> str:
    key = item[0]
    return key.value if isinstance(key, Skip) else str(key)


def progress_on_terminal() -> bool:
    """Whether `parse` draws its progress line: stderr is a terminal and the rows go elsewhere."""
    from mlsd.app import progress  # noqa: PLC0415 - tqdm only on a terminal

    return progress.on_terminal(rows_to=sys.stdout)


def parse_one(
    name: str,
    out: BinaryIO,
    emit: Callable[[list[AuthFailure]], bytes],
    log_tz: tzinfo,
    *,
    progress: bool = False,
) -> Counter[object]:
    """Print the rows of one file; its counters for the summary. With `progress`, a
    progress line on stderr (one update per block read)."""
    # Lines are counted per block with bytes.count (C, no Python call per line): the
    # summary says "lines read" as fail2ban-regex does, for a few percent of the time.
    stream, ref = open_log(name)
    shown = None
    if progress:
        from mlsd.app.progress import ParseProgress  # noqa: PLC0415 - see above

        shown = ParseProgress(name, getattr(stream, "fileobj", None) or stream)
    skipped: Counter[Skip] = Counter()
    size = 0
    lines = 0
    events = 0
    carry = b""
    try:
        with stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if shown is not None:
                    shown.update(len(chunk))
                lines += chunk.count(b"\n")
                first = chunk.find(b"\n") + 1
                if not first:  # a line longer than a block: keep gathering it
                    carry += chunk
                    continue
                # The line that began in the last block is completed apart: joining it to
                # the whole block would copy a MiB per block (a sixth of a bare read loop).
                batch = parse_block(carry + chunk[:first], ref, log_tz, skipped) if carry else []
                batch += parse_block(chunk, ref, log_tz, skipped, start=first if carry else 0)
                carry = chunk[chunk.rfind(b"\n") + 1 :]
                if batch:
                    out.write(emit(batch))
                    events += len(batch)
            if carry:  # a last line without its newline: the file is complete, so it counts
                lines += 1
                batch = parse_block(carry, ref, log_tz, skipped, final=True)
                out.write(emit(batch))
                events += len(batch)
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated or corrupt .gz: what was read is already printed; say where it stopped.
        if shown is not None:
            shown.close()
        raise InputError(
            f"{terminal(name)}: read failed after {lines} lines ({size} bytes): {exc}"
        ) from None
    if shown is not None:
        shown.close()
    stats: Counter[object] = Counter(skipped)
    stats["events"] = events
    stats["lines"] = lines
    stats["bytes"] = size
    return stats


def _event_json(ev: AuthFailure, hostname: str) -> dict[str, object]:
    return {
        "time": ev.time.isoformat(),
        "server": ev.server,
        "service": ev.service,
        "mechanism": ev.mechanism,
        "ip": ev.ip,
        "user": ev.user,
        "hostname": hostname,
        "attempts": ev.attempts,
        "reason": ev.reason,
    }
