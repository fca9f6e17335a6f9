"""The event store: the CSV's committed rows, followed exactly once into a database.

`contract` is the seam every sink implements (SQLite on every node, PostgreSQL for a
fleet); `rowmap` turns a CSV row into the typed row a sink stores; `ship` follows the CSV
up to what the checkpoint committed and hands batches to a sink.
"""
