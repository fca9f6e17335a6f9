"""The document model both renderers share (the same content in text and HTML), and how
figures are written in it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Col:
    title: str
    kind: str = "text"
    """num (right-aligned count), text (mlsd's own), untrusted (may be shrunk to fit),
    ip (untrusted, never shrunk), bar (a count drawn as a bar)."""
    drop: int = 0
    """When even shrinking cannot fit a table into the text part's width, columns are left
    out of the text part, lowest `drop` first (0: never); the HTML part keeps every column."""


@dataclass(frozen=True, slots=True)
class Table:
    cols: tuple[Col, ...]
    rows: Sequence[tuple[str, ...]]
    more: str = ""


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a chart."""

    label: str
    """Under the bar, short: `07`, `24`."""
    title: str
    """The bar's full name: `07:00`, `02:00 CEST`, `2026-11-24 (report day)`."""
    value: int | None
    """None: not known (shown as `?`, never as 0)."""
    marked: bool = False
    """Drawn apart (the report day among the days)."""


@dataclass(frozen=True, slots=True)
class Chart:
    """Counts drawn as vertical bars in the HTML part; the text part prints `table()`."""

    name: str
    """What the chart is, one word (`hour`, `day`): the text table's column title."""
    bars: tuple[Bar, ...]
    mark: str = ""
    """What the marked bar is (`the report day`): the HTML legend says it; the text part
    has it in the bar's title."""

    def table(self) -> Table:
        """The same counts as a table with a text bar per row (the text part's histogram)."""
        rows = [
            ("?" if b.value is None else number(b.value), b.title, str(b.value or 0))
            for b in self.bars
        ]
        return Table((Col("fails", "num"), Col(self.name), Col("", "bar")), rows)


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    table: Table | None = None
    chart: Chart | None = None
    """Drawn by the HTML part in place of `table`; the text part prints `chart.table()`."""


def number(value: int) -> str:
    return f"{value:,}"


def plural(value: int, noun: str) -> str:
    """`1 IP`, `2 IPs`: counts in sentences."""
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def pct(value: int, ref: float) -> str:
    if ref == 0:
        return "same" if value == 0 else "up from 0"
    change = round((value - ref) / ref * 100)
    return "same" if change == 0 else f"{change:+d}%"


def decimal(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:,.1f}"


def size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"
