"""coverage.json: the per-day counters and the first starts, across a reload."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from mlsd.watched import DayCounts, FirstStart, Ledger

D = date(2026, 11, 25)


def test_first_start_is_written_at_once_and_kept_first(tmp_path: Path) -> None:
    """A first start is on disk without a save (a kill -9 must not lose it); a second one
    the same day does not move it; the first day is the earliest day known."""
    at = datetime(2026, 11, 25, 13, 32, tzinfo=UTC)
    ledger = Ledger(tmp_path)
    assert ledger.first_day() is None
    ledger.note_first_start(D, at, "end")
    ledger.note_first_start(D, datetime(2026, 11, 25, 18, 0, tzinfo=UTC), "beginning")
    again = Ledger(tmp_path)
    assert FirstStart(at, "end") == again.first_start(D)
    assert again.get(D) is None  # started, nothing counted yet: not a made-up 0
    assert D == again.first_day()
    assert again.first_start(date(2026, 11, 24)) is None


def test_counters_and_first_start_share_a_day(tmp_path: Path) -> None:
    """Counters recorded after the start and saved: both come back for that day."""
    ledger = Ledger(tmp_path)
    ledger.note_first_start(D, datetime(2026, 11, 25, 9, 0, tzinfo=UTC), "beginning")
    ledger.record(D, DayCounts(lines=10, events=2))
    ledger.save()
    again = Ledger(tmp_path)
    assert DayCounts(lines=10, events=2) == again.get(D)
    assert "beginning" == (again.first_start(D) or FirstStart(datetime.now(UTC), "")).how


def test_a_file_without_first_starts_still_loads(tmp_path: Path) -> None:
    """coverage.json as earlier versions wrote it: counters only; its first day is the
    earliest counted day."""
    (tmp_path / "coverage.json").write_text(
        json.dumps({"2026-11-20": {"lines": 5, "events": 1, "server_errors": 0, "gaps": 0}})
    )
    ledger = Ledger(tmp_path)
    assert DayCounts(lines=5, events=1) == ledger.get(date(2026, 11, 20))
    assert date(2026, 11, 20) == ledger.first_day()
    assert ledger.first_start(date(2026, 11, 20)) is None
