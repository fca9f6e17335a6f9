"""The names under `[paths] state_dir`: one place that knows where each state file lives."""

from __future__ import annotations

from typing import Final

LOCK_NAME: Final = "mlsd.lock"
"""The state lock: one mlsd (daemon or command that writes) per state directory."""

ALERTS_NAME: Final = "alerts.jsonl"
"""The alerts journal (mlsd.alertlog): one raised alert per line, appended, never rewritten."""
