"""The sentinel: detectors over committed failures and successful logins, and their alerts.

It alerts; it never blocks (DESIGN.md). Its contract is mlsd.alerts (what it is fed and
what it raises) and mlsd.logins (the successful logins ingest records). The integrator
builds a `mlsd.sentinel.engine.Sentinel(cfg.sentinel)`, `warm`s it with the journals' span
`mlsd.sentinel.engine.warm_window` names, feeds it each committed batch (`observe`) and
`reconfigure`s it on reload. (A role package's `__init__` counts as a contract module in
the architecture test, so it re-exports nothing.)
"""
