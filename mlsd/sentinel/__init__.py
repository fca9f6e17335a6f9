"""The sentinel: detectors over committed failures and successful logins, and their alerts.

It alerts; it never blocks (DESIGN.md). Its contract is mlsd.alerts (what it is fed and
what it raises) and mlsd.logins (the successful logins ingest records). The integrator
builds a `Sentinel(cfg.sentinel)`, `warm`s it with the journals' span `warm_window` names,
feeds it each committed batch (`observe`) and `reconfigure`s it on reload.
"""

from mlsd.sentinel.caps import Caps
from mlsd.sentinel.engine import Sentinel, WarmWindow, warm_window

__all__ = ["Caps", "Sentinel", "WarmWindow", "warm_window"]
