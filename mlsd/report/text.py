"""The plain-text part of the report: at most WIDTH columns, counts on the left."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Final

from mlsd.report.display import cut, width
from mlsd.report.document import Section, Table

WIDTH: Final = 78
"""Longest line of the plain-text part, in terminal columns."""
INDENT: Final = 2
MIN_COLUMN: Final = 8
"""A text column holding attacker text is never shrunk below this to make a table fit."""


def _fit(table: Table) -> tuple[list[int], list[int], int]:
    """Which columns the text part shows, their widths, and the bar width (0: no bar)."""
    keep = list(range(len(table.cols)))
    natural = [
        max([width(c.title)] + [width(r[i]) for r in table.rows]) for i, c in enumerate(table.cols)
    ]
    avail = WIDTH - INDENT
    has_bar = any(c.kind == "bar" for c in table.cols)
    while True:
        widths = [0 if table.cols[i].kind == "bar" else natural[i] for i in keep]
        need = sum(widths) + 2 * (len(keep) - 1) + (10 if has_bar else 0)
        for j in sorted(range(len(keep)), key=lambda j: -widths[j]):
            if need <= avail:
                break
            if table.cols[keep[j]].kind == "untrusted" and widths[j] > MIN_COLUMN:
                take = min(need - avail, widths[j] - MIN_COLUMN)
                widths[j] -= take
                need -= take
        droppable = [i for i in keep if table.cols[i].drop]
        if need <= avail or not droppable:
            bar = avail - (need - 10) if has_bar else 0
            return keep, widths, min(bar, 40)
        keep.remove(min(droppable, key=lambda i: table.cols[i].drop))


def _text_table(table: Table) -> list[str]:
    keep, widths, bar = _fit(table)
    peak = max(
        (int(r[i]) for r in table.rows for i in keep if table.cols[i].kind == "bar"), default=0
    )

    def line(cells: Sequence[str], header: bool) -> str:
        out = []
        for j, i in enumerate(keep):
            col, w = table.cols[i], widths[j]
            if col.kind == "bar":
                value = int(cells[i]) if not header else 0
                out.append("#" * (round(value / peak * bar) if peak else 0))
                continue
            text = cut(cells[i], w)
            pad = " " * (w - width(text))
            out.append(pad + text if col.kind == "num" else text + pad)
        return (" " * INDENT + "  ".join(out)).rstrip()

    lines = [line([c.title for c in table.cols], header=True)]
    lines += [line(r, header=False) for r in table.rows]
    if table.more:
        lines.append(" " * INDENT + table.more)
    dropped = [table.cols[i].title for i in range(len(table.cols)) if i not in keep]
    if dropped:
        lines += _wrap(f"(Left out for width, shown in the HTML part: {', '.join(dropped)}.)")
    return lines


def _wrap(text: str, indent: int = INDENT) -> list[str]:
    pad = " " * indent
    return textwrap.wrap(text, WIDTH - indent, initial_indent=pad, subsequent_indent=pad) or [""]


def render_text(title: str, header: list[tuple[str, str]], sections: list[Section]) -> str:
    """The plain-text part: at most WIDTH columns, counts on the left."""
    lines = [title, "=" * min(width(title), WIDTH), ""]
    label_w = max(width(k) for k, _ in header) + 2
    for key, value in header:
        chunks = textwrap.wrap(value, WIDTH - label_w, break_on_hyphens=False) or [""]
        lines.append(key.ljust(label_w) + chunks[0])
        lines += [" " * label_w + c for c in chunks[1:]]
    for s in sections:
        lines += ["", s.title, "-" * width(s.title)]
        for note in s.notes:
            lines += _wrap(note)
        table = s.chart.table() if s.chart is not None else s.table
        if table is not None:
            if s.notes:
                lines.append("")
            lines += _text_table(table)
    return "\n".join(lines) + "\n"
