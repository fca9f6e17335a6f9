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
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    table: Table | None = None


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
