"""The hot path's memo: a repeat is one lookup; attacker-made keys cannot grow it unbounded."""

from __future__ import annotations

from mlsd.memo import Memo


def test_repeats_are_computed_once() -> None:
    """A key seen before is answered without calling the function again."""
    calls: list[str] = []

    def upper(key: str) -> str:
        calls.append(key)
        return key.upper()

    memo = Memo(upper, limit=10)
    assert ["A", "B", "A"] == [memo["a"], memo["b"], memo["a"]]
    assert ["a", "b"] == calls


def test_entries_and_key_lengths_are_bounded() -> None:
    """Past `limit` entries the memo starts over; keys longer than `max_key` are never kept."""
    memo = Memo(str.upper, limit=3, max_key=5)
    for key in ("a", "b", "c", "d"):
        assert key.upper() == memo[key]
    assert {"d": "D"} == dict(memo)
    assert "TOOLONG" == memo["toolong"]
    assert "toolong" not in memo
