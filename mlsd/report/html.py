"""The HTML part of the report: inline CSS, tables, charts of table cells
(`report.chart_html`), no scripts, no remote anything.

Attacker-chosen cells are escaped by `mlsd.untrusted.html`, which also makes their
invisible characters visible; mlsd's own text by `html.escape`.
"""

from __future__ import annotations

import html

from mlsd.report.chart_html import BAR_COLOUR as _BAR_COLOUR
from mlsd.report.chart_html import LINE as _LINE
from mlsd.report.chart_html import chart_html
from mlsd.report.document import Section, Table
from mlsd.untrusted import html as untrusted_html

_CELL = "padding:2px 10px 2px 0;vertical-align:top;"
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"


def _html_table(table: Table) -> str:
    e = html.escape
    peak = max(
        (int(r[i]) for r in table.rows for i, c in enumerate(table.cols) if c.kind == "bar"),
        default=0,
    )
    head = "".join(
        f'<th style="{_CELL}text-align:{"right" if c.kind == "num" else "left"};'
        f'border-bottom:1px solid {_LINE}">{e(c.title)}</th>'
        for c in table.cols
    )
    body = []
    for n, r in enumerate(table.rows):
        cells = []
        for i, c in enumerate(table.cols):
            if c.kind == "bar":
                pct = round(int(r[i]) / peak * 100) if peak else 0
                cells.append(
                    f'<td style="{_CELL}width:45%"><div style="background:{_BAR_COLOUR};'
                    f'height:.7em;width:{pct}%"></div></td>'
                )
            elif c.kind == "num":
                cells.append(
                    f'<td style="{_CELL}text-align:right;font-variant-numeric:tabular-nums">'
                    f"{e(r[i])}</td>"
                )
            elif c.kind in ("untrusted", "ip"):
                cells.append(f'<td style="{_CELL}{_MONO}">{untrusted_html(r[i])}</td>')
            else:
                cells.append(f'<td style="{_CELL}">{e(r[i])}</td>')
        stripe = "background:rgba(128,128,128,.09)" if n % 2 else ""
        body.append(f'<tr style="{stripe}">{"".join(cells)}</tr>')
    more = f'<p style="margin:.3em 0">{e(table.more)}</p>' if table.more else ""
    return (
        f'<table role="table" style="border-collapse:collapse;font-size:14px">'
        f"<tr>{head}</tr>{''.join(body)}</table>{more}"
    )


def render_html(title: str, header: list[tuple[str, str]], sections: list[Section]) -> str:
    """The HTML part: inline CSS, tables, no scripts, no remote anything, either colour scheme.

    No text or background colour is set, so the mail client's own (light or dark) applies;
    the only colours are a mid-tone bar and translucent grey rules, legible on both, and every
    bar stands beside its number.
    """
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="color-scheme" content="light dark">',
        '<meta name="supported-color-schemes" content="light dark">',
        f"<title>{e(title)}</title>",
        "<style>:root{color-scheme:light dark}</style>",
        "</head>",
        '<body style="margin:0;padding:16px;font-family:system-ui,-apple-system,'
        'Segoe UI,Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.4">',
        f'<h1 style="font-size:20px;margin:0 0 12px">{e(title)}</h1>',
        '<table style="border-collapse:collapse;font-size:14px">',
    ]
    for key, value in header:
        parts.append(
            f'<tr><th style="{_CELL}text-align:left;white-space:nowrap">{e(key)}</th>'
            f'<td style="{_CELL}">{e(value)}</td></tr>'
        )
    parts.append("</table>")
    for s in sections:
        parts.append(
            f'<h2 style="font-size:16px;margin:20px 0 6px;padding-bottom:2px;'
            f'border-bottom:1px solid {_LINE}">{e(s.title)}</h2>'
        )
        parts += [f'<p style="margin:.3em 0">{e(note)}</p>' for note in s.notes if note]
        if s.chart is not None:
            parts.append(chart_html(s.chart))
        elif s.table is not None:
            parts.append(_html_table(s.table))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
