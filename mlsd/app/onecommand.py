"""Which command an `mlsd` command line runs, and the subcommands' action that builds the
parser of that command alone (mlsd.app.cli's `build_parser(only=…)`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, cast


class Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The subcommands' action that, given `only`, builds that command's parser alone.

    argparse spends about half a millisecond on each parser (gettext lookups, formatters)
    and the options of a command not being run are never read: building all twenty was a
    quarter of `mlsd parse`'s start. The others are an `Unused`, which takes any call.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.only: str | None = None
        self.found = False

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if self.only is not None and name != self.only:
            return cast(argparse.ArgumentParser, Unused())
        self.found = True
        return cast(argparse.ArgumentParser, super().add_parser(name, **kwargs))


class Unused:
    """The parser of a command that is not being run: every call is accepted and ignored."""

    def __getattr__(self, name: str) -> Callable[..., Unused]:
        return self._ignore

    def _ignore(self, *args: object, **kwargs: object) -> Unused:
        return self


def command_of(argv: Sequence[str]) -> str | None:
    """The command `argv` runs, or None when the whole parser is needed (`--help`,
    `--version`, no command, an option this cannot skip over)."""
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--config"):
            next(args, None)
        elif arg == "--debug" or arg.startswith(("--config=", "-c")):
            continue
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None
