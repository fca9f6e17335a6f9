"""The attacker-text policy: how text mlsd did not write is made harmless on each surface.

Anything that came from a log line (usernames, hostnames, the server, service and
mechanism fields, even the IP: the CSV is a file anyone with access could edit), from an
SMTP server's reply, or from a file name is attacker-chosen. It reaches five surfaces: CSV
cells, the terminal (`parse --explain`, `status`, the plain-text report), log lines, the
systemd STATUS= line and the HTML report. One rule serves them all:

- **The character class**: every character Python's `str.isprintable()` refuses, i.e. the
  Unicode categories Cc (C0, DEL, C1: ESC, CR, LF, TAB…), Cf (bidi marks and overrides
  U+061C U+200E U+200F U+202A..U+202E U+2066..U+2069, zero-width U+200B..U+200D, soft hyphen
  U+00AD, BOM U+FEFF, tag characters…), Zl/Zp (U+2028, U+2029), Zs other than the ASCII
  space (NBSP…), Cs (lone surrogates), Co and Cn (private and unassigned code points).
  Each becomes visible text: `\\xNN` below U+0100, `\\uNNNN` in the BMP, `\\UNNNNNNNN`
  above. One class on every surface, so what is safe in the CSV is safe in a log line.
- **CSV cells** are also capped and kept from starting a formula: a cell whose first
  character that is not blank (a space, or any character of the class, as a spreadsheet
  trims them) is one of `= + - @` gets a leading `'`; TAB and CR, the DDE starts, are
  escaped anyway.
- **Log lines** keep a newline and a tab only inside a traceback (the journal renderer
  folds those onto one line); every field value is escaped whole.
- **STATUS=** is stricter still: printable ASCII only (systemd wants UTF-8, sdnotify sends
  latin-1), one line, capped.
- **HTML**: the terminal form, then HTML-escaped.

`str.isprintable()` runs in C: the common value (printable, often ASCII) costs one call.
"""

from __future__ import annotations

import re
from typing import Final

FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
"""Spreadsheets evaluate a cell that starts with one of these as a formula (TAB and CR are
DDE starts; they are escaped to `\\x09`/`\\x0d` text, which no spreadsheet evaluates)."""
_FORMULA_CHARS: Final = "=+-@"
"""A formula's first character once a spreadsheet has trimmed the blanks in front."""

STATUS_MAX: Final = 200
"""Longest STATUS= value, in characters."""

_NOT_PRINTABLE_ASCII: Final = re.compile(r"[^\x20-\x7e]")
# Log fields whose text is ours and multi-line by nature (a traceback).
_MULTILINE_LOG_KEYS: Final = frozenset({"exception", "stack"})


def escape_char(ch: str) -> str:
    """One character of the class as visible text: `\\x1b`, `\\u2028`, `\\U000e0041`."""
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_safe(text: str) -> bool:
    """Whether `text` holds no character of the class (then every surface shows it as is)."""
    return text.isprintable()


def terminal(text: str) -> str:
    """`text` for a terminal: every character of the class shown as `\\xNN`/`\\uNNNN`."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else escape_char(ch) for ch in text)


def raw_line(line: bytes, limit: int = 400) -> str:
    """A raw log line for a terminal or a log: decoded (invalid UTF-8 shown as U+FFFD),
    cut at `limit` characters, then escaped as `terminal` does."""
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    if len(text) > limit:
        text = text[:limit] + "…"
    return terminal(text)


def starts_formula(value: str) -> bool:
    """Whether a spreadsheet would read `value` as a formula once it trims the blanks
    (spaces, tabs, NBSP, zero-width characters, BOM: the space and the class) in front."""
    if value[:1].isalnum():  # the common case, decided by the first character
        return False
    for ch in value:
        if ch in _FORMULA_CHARS:
            return True
        if ch != " " and ch.isprintable():
            return False
    return False


def csv_cell(value: str, cap: int) -> str:
    """Make one attacker-influenced value safe for a CSV cell (and a log line).

    The class becomes visible `\\xNN` text, the value is capped at `cap` characters
    (marked with `…`), and a value that would start a formula, after blanks too, gets a
    leading `'`, which spreadsheets show as text.
    """
    # Fast path: most values are short printable ASCII that starts with a letter or digit.
    if value.isascii() and value.isprintable() and len(value) <= cap and value[:1].isalnum():
        return value
    formula = starts_formula(value)
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else escape_char(ch) for ch in value)
    if len(value) > cap:
        value = value[: cap - 1] + "…"
    if formula or value.startswith(FORMULA_START):
        value = "'" + value
    return value


def log_value(key: str, value: str) -> str:
    """A log field's value: escaped as `terminal` does, except that a traceback keeps its
    newlines and tabs (its renderer folds or indents them; they are not a field's end)."""
    if value.isprintable():
        return value
    if key in _MULTILINE_LOG_KEYS:
        return "".join(ch if ch.isprintable() or ch in "\n\t" else escape_char(ch) for ch in value)
    return terminal(value)


def status_line(text: str) -> str:
    """One line of printable ASCII, capped: safe as a STATUS= value (anything else is `?`)."""
    text = _NOT_PRINTABLE_ASCII.sub("?", text)
    return text if len(text) <= STATUS_MAX else text[: STATUS_MAX - 3] + "..."


def html(text: str) -> str:
    """`text` for HTML: the terminal form, HTML-escaped (quotes too), as `html.escape`
    does; written out so that `mlsd parse` does not import the html package to start."""
    text = terminal(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;").replace("'", "&#x27;")
