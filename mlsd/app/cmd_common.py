"""What the `mlsd` commands share: the exit codes they return and how they read -c.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error. mlsd.app.cli
maps exceptions to them; a command returns one of them itself when it decides.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from mlsd import config

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2


def load_config(args: argparse.Namespace, *, required: bool) -> config.Config:
    """The configuration -c names; without -c, the default file when `required`, else the
    built-in defaults (`mlsd parse` needs no configuration file)."""
    path: Path | None = args.config
    if path is None:
        if not required:
            return config.Config()
        path = config.DEFAULT_PATH
    return config.load(path)


def later(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command's function imported when it runs, not when the parser is built: every
    `mlsd` start (`parse`, `status`) would otherwise import what one command needs."""

    def run(args: argparse.Namespace) -> int:
        func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
        return func(args)

    return run
