"""STATUS= names a sink (the event store, the fleet) only when it is down or far behind."""

from __future__ import annotations

from mlsd.app.statusline import SINK_BEHIND, sink_parts
from mlsd.store.ship import Lag


class Fixed:
    def __init__(self, lag: Lag) -> None:
        self._lag = lag

    def lag(self) -> Lag:
        return self._lag


def _lag(nbytes: int | None, error: str | None = None) -> Fixed:
    return Fixed(Lag(bytes=nbytes, rows=None, last_time=None, stored=None, error=error))


def test_sinks_that_keep_up_say_nothing() -> None:
    assert sink_parts({"store": _lag(0), "fleet": _lag(SINK_BEHIND), "new": _lag(None)}) == []


def test_a_sink_down_or_far_behind_is_named_without_its_error_text() -> None:
    parts = sink_parts(
        {
            "store": _lag(SINK_BEHIND + 1),
            "fleet": _lag(5, error='connection to server at "db" failed: \x1b[31m…'),
        }
    )
    assert parts == ["fleet unavailable, rows wait in the CSV", "store 1.0 MiB behind"]
