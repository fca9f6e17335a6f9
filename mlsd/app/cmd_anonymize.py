"""`mlsd anonymize FILE… [-o OUT] [--key-file K]`: a mail log excerpt fit for a bug report."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import BinaryIO

from mlsd.app.anonymize import Anonymizer
from mlsd.app.cmd_common import EXIT_OK
from mlsd.app.logfiles import open_log
from mlsd.errors import InputError
from mlsd.safefs import open_nofollow, read_file


def default_key_file() -> Path:
    """`$XDG_CONFIG_HOME/mlsd/anonymize.key` (else under ~/.config): kept between runs, so
    later excerpts use the same pseudonyms."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlsd" / "anonymize.key"


def load_key(path: Path) -> bytes:
    """The key in `path`; a random one is written there first (0600) when it is missing."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InputError(f"{path}: cannot create the key file: {exc.strerror}") from None
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        sys.stderr.write(f"mlsd anonymize: new key written to {path} (keep it, never attach it)\n")
    try:
        key = read_file(path).strip()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the key file: {exc.strerror}") from None
    if len(key) < 16:
        raise InputError(f"{path}: the key file holds less than 16 bytes (delete it for a new one)")
    return key


def _same(output: Path, name: str) -> bool:
    try:
        return name != "-" and os.path.samefile(output, name)
    except OSError:
        return False


def anonymize(args: argparse.Namespace) -> int:
    """Each FILE's lines, anonymised, to OUT or stdout, in the order given."""
    key = load_key(args.key_file or default_key_file())
    anon = Anonymizer(key)
    out: BinaryIO
    files: list[str] = args.files or ["-"]
    if args.output is not None and any(_same(args.output, name) for name in files):
        raise InputError(f"{args.output}: is also an input: write the copy elsewhere")
    if args.output is not None:
        fd = open_nofollow(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        out = os.fdopen(fd, "wb")
    else:
        out = sys.stdout.buffer
    try:
        for name in files:
            stream, _ = open_log(name)
            try:
                for line in stream:
                    out.write(anon.line(line))
            finally:
                if stream is not sys.stdin.buffer:
                    stream.close()
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return EXIT_OK
