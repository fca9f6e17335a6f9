"""`[source] journal_match`: which journal entries are mail, as terms, and the test of an entry.

A term is `FIELD=VALUE`; an entry is mail when any term holds for it (the terms are OR'd).
VALUE may hold `*` (any run of characters), which `journalctl` matches cannot express: a
`*` in any term makes mlsd read every entry and test it here, so that an identifier first
seen while following (a new `postfix@…` instance) is never skipped unsaid. Terms without
`*` are handed to `journalctl` as matches, which then sends only those entries.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Final

DEFAULT_MATCH: Final = (
    "_SYSTEMD_UNIT=postfix.service",
    "_SYSTEMD_UNIT=postfix@*.service",
    "_SYSTEMD_UNIT=dovecot.service",
    "SYSLOG_IDENTIFIER=postfix*",
    "SYSLOG_IDENTIFIER=dovecot",
)
"""Postfix's unit and Debian's multi-instance `postfix@-.service`, Dovecot's, and any entry
logged as Postfix or Dovecot from elsewhere (a container, a unit of another name)."""

# A journal field name: upper-case letters, digits and `_`, not starting with a digit.
_TERM: Final = re.compile(r"([A-Z_][A-Z0-9_]{0,63})=(\S+)")


def parse_terms(raw: str) -> tuple[str, ...]:
    """`FIELD=VALUE` terms separated by spaces or commas; ValueError says what is expected."""
    expected = (
        "FIELD=VALUE terms separated by spaces (any of them selects an entry; VALUE may "
        "hold * for any characters), e.g. _SYSTEMD_UNIT=postfix.service SYSLOG_IDENTIFIER=dovecot"
    )
    terms = tuple(t for t in re.split(r"[,\s]+", raw) if t)
    if not terms or not all(_TERM.fullmatch(t) for t in terms):
        raise ValueError(expected)
    return terms


class Matcher:
    """The terms, split into what journalctl can match and what mlsd must test."""

    def __init__(self, terms: tuple[str, ...]) -> None:
        self.terms = terms
        pairs = [t.split("=", 1) for t in terms]
        self.fields: tuple[str, ...] = tuple(sorted({f for f, _ in pairs}))
        """The fields the test reads (journalctl must output them)."""
        self._globs = [(f, re.compile(fnmatch.translate(v))) for f, v in pairs]
        self.exact = not any("*" in v for _, v in pairs)
        """Whether journalctl can do all the matching (no `*` in any term)."""

    def journalctl_args(self, also: str | None = None) -> list[str]:
        """The matches to pass to journalctl: the terms OR'd with `+`, or none (all entries).
        `also`, a `FIELD=VALUE` term, is AND'd with each of them (journalctl ANDs terms of
        different fields within a group), or is the only match."""
        lead = [also] if also else []
        if not self.exact:
            return lead
        out: list[str] = []
        for term in self.terms:
            out += [*lead, term, "+"]
        return out[:-1]

    def __call__(self, entry: Mapping[str, object]) -> bool:
        """Whether a journal entry (journalctl's JSON object) is selected by any term."""
        if self.exact:
            return True  # journalctl sent only those
        for name, pattern in self._globs:
            value = entry.get(name)
            if isinstance(value, str) and pattern.match(value):
                return True
        return False
