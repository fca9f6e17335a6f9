"""The exceptions mlsd raises on purpose; the CLI maps them to exit codes, nothing else does."""

from __future__ import annotations

from pathlib import Path


class MlsdError(Exception):
    """Base of every error mlsd reports to the operator as one sentence, without a traceback."""


class ConfigError(MlsdError):
    """The configuration file is missing, unreadable or invalid.

    The message names the file, the section and the key, the bad value and what is
    expected, because the operator has to find and fix it without reading our code.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.section = section
        self.key = key


class InputError(MlsdError):
    """A file the operator asked us to read cannot be read (missing, permission, not gzip)."""


class StateError(MlsdError):
    """The state directory, checkpoint or CSV disagree in a way we must not paper over."""
