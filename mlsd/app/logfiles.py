"""Opening a log for reading: plain or gzip (recognised by content, not name), or stdin."""

from __future__ import annotations

import gzip
import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from mlsd.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
READ_BUFFER = 1 << 20


def open_log(name: str) -> tuple[BinaryIO, datetime]:
    """Open `name` (`-` for stdin) for binary line reading.

    Returns the stream and its reference time for year inference: the file's
    modification time (a rotated file's lines are all older than it), or now for stdin.
    Raises InputError with one operator-readable sentence.
    """
    if name == "-":
        return sys.stdin.buffer, datetime.now(UTC)
    path = Path(name)
    try:
        raw = cast(io.BufferedReader, open(path, "rb", buffering=READ_BUFFER))
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not a log file") from None
    except PermissionError:
        raise InputError(
            f"{name}: permission denied (mail logs are usually root:adm 0640: "
            "run as a member of the adm group)"
        ) from None
    except OSError as exc:
        raise InputError(f"{name}: cannot open: {exc.strerror}") from None
    mtime = datetime.fromtimestamp(os.fstat(raw.fileno()).st_mtime, UTC)
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb"), mtime  # type: ignore[return-value]
    return raw, mtime
