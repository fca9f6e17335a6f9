"""The fleet: each node's committed rows shipped to one shared PostgreSQL, exactly once.

`schema` creates and migrates the database's tables (monthly partitions, row-level
security, retention); `pgsink` is the `mlsd.store.contract.Sink` that appends a batch and
the node's position in one transaction; `target` checks `[fleet] url` and names the
database in logs without a secret.
"""
