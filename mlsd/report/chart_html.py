"""A `document.Chart` as HTML a mail client draws: vertical bars made of table cells.

No SVG, no script, no image (remote or `data:`), nothing in a `<style>` element (Gmail and
Outlook drop or rewrite them): a table whose cells carry their size and colour both as
attributes (`height`, `bgcolor`: Outlook's Word engine ignores much CSS) and as inline
styles. Each bar has its count above it and its label below, so the chart reads without
colour; the exact count is also in each column's `title` and the table's `aria-label`.
"""

from __future__ import annotations

from typing import Final

from mlsd.report.document import Bar, Chart, number
from mlsd.untrusted import html as untrusted_html

BAR_COLOUR: Final = "#3b82f6"
"""A mid-tone blue, readable on a white and on a black background alike."""
MARK_COLOUR: Final = "#f59e0b"
"""A mid-tone orange for the marked bar, as legible on both backgrounds."""
LINE: Final = "rgba(128,128,128,.45)"
HEIGHT: Final = 80
"""The tallest bar, in pixels."""
COLUMN: Final = 20
"""Width of one bar's column, in pixels: 30 days fit in a 600-pixel mail."""
BAR_WIDTH: Final = 12


def compact(n: int) -> str:
    """A count in at most 4 characters, for the label above a bar: `987`, `1.2k`, `45k`,
    `3.1M` (the exact count is in the column's title and in the text part)."""
    if n < 1000:
        return str(n)
    if n < 9_950:
        return f"{n / 1000:.1f}k"
    if n < 999_500:
        return f"{round(n / 1000)}k"
    if n < 9_950_000:
        return f"{n / 1_000_000:.1f}M"
    return f"{round(n / 1_000_000)}M"


def _said(bar: Bar) -> str:
    if bar.value is None:
        return f"{bar.title}: not known"
    return f"{bar.title}: {number(bar.value)} failure{'' if bar.value == 1 else 's'}"


def _column(bar: Bar, peak: int) -> str:
    """One bar: its count above, the bar itself (a one-cell table) at the bottom."""
    e = untrusted_html
    value = "" if bar.value is None else str(bar.value)
    label = "?" if bar.value is None else compact(bar.value)
    out = [
        f'<td data-value="{value}" title="{e(_said(bar))}" width="{COLUMN}" valign="bottom" '
        f'align="center" style="width:{COLUMN}px;padding:0 1px;vertical-align:bottom;'
        f'text-align:center">',
        f'<div style="font-size:9px;line-height:11px;white-space:nowrap">{e(label)}</div>',
    ]
    height = round(bar.value / peak * HEIGHT) if bar.value and peak else 0
    if bar.value:
        height = max(height, 1)  # a count above 0 never looks like none
    if height:
        colour = MARK_COLOUR if bar.marked else BAR_COLOUR
        out.append(
            f'<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
            f'width="{BAR_WIDTH}" align="center" style="border-collapse:collapse;'
            f'margin:0 auto"><tr><td height="{height}" bgcolor="{colour}" '
            f'style="height:{height}px;width:{BAR_WIDTH}px;background-color:{colour};'
            f'font-size:0;line-height:0;mso-line-height-rule:exactly">&nbsp;</td></tr></table>'
        )
    out.append("</td>")
    return "".join(out)


def _label(bar: Bar) -> str:
    mark = "font-weight:bold;text-decoration:underline;" if bar.marked else ""
    return (
        f'<td align="center" style="padding:2px 1px 0;text-align:center;font-size:10px;'
        f'border-top:1px solid {LINE};{mark}">{untrusted_html(bar.label)}</td>'
    )


def chart_html(chart: Chart) -> str:
    """The chart as a table: a row of bars on a common baseline, a row of labels."""
    e = untrusted_html
    peak = max((b.value or 0 for b in chart.bars), default=0)
    summary = "; ".join(_said(b) for b in chart.bars)
    return (
        f'<table data-chart="{e(chart.name)}" role="img" aria-label="{e(summary)}" '
        f'cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;'
        f'margin:4px 0">'
        f"<tr>{''.join(_column(b, peak) for b in chart.bars)}</tr>"
        f"<tr>{''.join(_label(b) for b in chart.bars)}</tr></table>{_legend(chart)}"
    )


def _legend(chart: Chart) -> str:
    """What the marked bar is, said in words as well as in colour."""
    if not chart.mark or not any(b.marked for b in chart.bars):
        return ""
    swatch = (
        f'<span style="display:inline-block;width:10px;height:10px;background-color:'
        f'{MARK_COLOUR};margin-right:4px"></span>'
    )
    return (
        f'<p style="margin:2px 0;font-size:12px">{swatch}In orange, its label in bold and '
        f"underlined: {untrusted_html(chart.mark)}.</p>"
    )
