"""The Prometheus endpoint: `[metrics] listen` serves `/metrics`, read at scrape time.

A role of its own, and a reader only: it imports no other role. `mlsd.app.metrics_wiring`
hands it one function that takes a `Readings` snapshot of the daemon's counters (and any
extra collectors), so nothing in ingest or report calls a metric; a scrape reads what they
already count. readings.py is that snapshot, collector.py turns it into metric families,
server.py serves them on the daemon's event loop.
"""
