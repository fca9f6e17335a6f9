"""Keeping the GeoIP databases current: download, verify, install (issue 21).

`providers` says what to fetch, `fetch` downloads one file conditionally and bounded,
`install` unpacks, verifies and renames it into place, `updater` runs them for every role
and keeps the run's state. Part of `enrich`: it verifies with the same reader
(mlsd.enrich.mmdb) that will load the file, and it imports no other role.
"""
