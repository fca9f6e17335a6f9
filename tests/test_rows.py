"""The row contract's decoder: every line of a CSV, edited by hand or not, decodes or is
told apart as not a row; none raises (a report must never stop at one line)."""

from __future__ import annotations

from mlsd.report.attachment import _day_csv
from mlsd.rows import COLUMNS, Column, decode_row, encode_rows, split_cells

ROW = ["mx", "2026-12-05T10:00:00+00:00", "203.0.113.5", "alice", "", "N/A", "", "", ""]
ROW += ["smtp", "LOGIN", "1"]


def test_a_written_row_decodes_to_its_cells() -> None:
    line = encode_rows([ROW]).decode().rstrip("\n")
    assert ROW == decode_row(line)
    quoted = [*ROW[:3], 'a;"b"', *ROW[4:]]
    assert quoted == decode_row(encode_rows([quoted]).decode().rstrip("\n"))
    assert len(COLUMNS) == len(Column) == len(ROW)


def test_a_carriage_return_in_an_unquoted_cell_does_not_raise() -> None:
    """The csv module raises on it ("new-line character seen in unquoted field")."""
    line = ";".join([*ROW[:3], 'al\rice"', *ROW[4:]])
    cells = split_cells(line)
    assert cells[Column.DATE] == ROW[1] and cells[Column.USER] == 'al\rice"'
    assert decode_row(line) is not None
    out = _day_csv([line], cap=256, masked=True)
    assert b"\r" not in out.split(b"\n", 1)[1]


def test_a_short_line_is_not_a_row() -> None:
    assert decode_row("mx;2026-12-05T10:00:00+00:00;203.0.113.5") is None
    assert decode_row("") is None
