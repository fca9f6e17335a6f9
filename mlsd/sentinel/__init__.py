"""The sentinel: detectors over committed failures and successful logins, and their alerts.

It alerts; it never blocks (DESIGN.md). Its contract is mlsd.alerts (what it is fed and
what it raises) and mlsd.logins (the successful logins ingest records).
"""
