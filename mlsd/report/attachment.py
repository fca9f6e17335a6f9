"""The report's attachment: the window's rows as a CSV file (gzipped above a size), the
whole CSV gzipped, or nothing (`[report] attach`), and the sentence that says which."""

from __future__ import annotations

import gzip
import io
import re
from datetime import date
from typing import Final

from mlsd.config import Config
from mlsd.report.display import mask
from mlsd.report.document import number, size
from mlsd.report.window import BLOCK
from mlsd.rows import HEADER, Column, encode_rows, split_cells
from mlsd.safefs import nofollow_opener
from mlsd.untrusted import csv_cell, is_safe

# A cell that starts a formula (after spaces too), or a character csvlog would have
# escaped: such a line did not come from csvlog as it is today (an edited file, an older
# version) and is cleaned again. Three searches, because a pattern that starts with a literal
# is searched for much faster than one alternation (`(?:^|;)`) over a day of rows; the
# class is mlsd.untrusted's, tested in C by `is_safe`.
_FORMULA: Final = "=+-@\t\r"
_FORMULA_AFTER_SEP: Final = re.compile(';"? *[=+\\-@\t\r]')
_FORMULA_AT_START: Final = re.compile('\n"? *[=+\\-@\t\r]')


def _risky(text: str) -> bool:
    """Whether some line of `text` holds a cell csvlog would have cleaned."""
    return bool(
        text.lstrip('" ')[:1] in tuple(_FORMULA)
        or _FORMULA_AFTER_SEP.search(text)
        or _FORMULA_AT_START.search(text)
        or not is_safe(text.replace("\n", " "))
    )


def _day_csv(lines: list[str], cap: int, masked: bool) -> bytes:
    """The window's rows as a CSV file: the lines as they are in the file, except those
    that need cleaning (or masking), which are parsed, cleaned with csvlog's rules, and
    written again."""
    text = "\n".join(lines)
    if not masked and not _risky(text):
        return HEADER + (text + "\n").encode()  # the common case: the lines as they are
    out = []
    for line in lines:
        if masked or _risky(line):
            cells = split_cells(line)
            if masked and len(cells) > Column.USER and cells[Column.USER]:
                cells[Column.USER] = mask(cells[Column.USER])
            out.append(encode_rows([[csv_cell(c, cap) for c in cells]]).decode().rstrip("\n"))
        else:
            out.append(line)
    return HEADER + ("\n".join(out) + "\n").encode()


def attach(
    cfg: Config, day: date, partial: bool, rows: list[str]
) -> tuple[tuple[str, bytes, str] | None, str]:
    """The attachment and the sentence that describes it in the report."""
    rc = cfg.report
    if rc.attach == "none":
        return None, "Nothing attached ([report] attach = none)."
    if rc.attach == "full":
        buf = io.BytesIO()
        with (
            open(cfg.paths.csv, "rb", opener=nofollow_opener) as src,
            gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz,
        ):
            while block := src.read(BLOCK):
                gz.write(block)
        data = buf.getvalue()
        return (
            ("mlsd-full.csv.gz", data, "application/gzip"),
            f"Attached: the whole CSV, gzipped ({size(len(data))}; [report] attach = full).",
        )
    if not rows:
        return None, "Nothing attached: the window has no rows."
    data = _day_csv(rows, cfg.csv.max_field_length, rc.mask_usernames)
    name = f"mlsd-{day.isoformat()}{'-so-far' if partial else ''}.csv"
    what = f"{number(len(rows))} rows of the window"
    if len(data) > rc.gzip_above * 1024:
        # Level 4: half the time of 6 (25 ms for a 3.4 MB day), and 8 % larger.
        packed = gzip.compress(data, compresslevel=4, mtime=0)
        return (
            (name + ".gz", packed, "application/gzip"),
            f"Attached: {name}.gz, {what} ({size(len(data))}, {size(len(packed))} gzipped).",
        )
    return (name, data, "text/csv"), f"Attached: {name}, {what} ({size(len(data))})."
