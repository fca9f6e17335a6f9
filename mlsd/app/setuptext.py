"""The text of the config `mlsd setup` writes: the schema's keys, each choice with its reason.

The keys and values come from `config.render` of the chosen `Config` compared with the
defaults', so a key can never drift from the schema: only the keys whose value differs
from the default, or that the admin must see, are written; the reasons are comments above
them. The text is read back with the config reader before it is written anywhere.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlsd import config
from mlsd.errors import MlsdError
from mlsd.untrusted import terminal

Spot = tuple[str, str]
"""(section, key); key `""` for a comment on the section as a whole."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The chosen configuration and why each choice was made."""

    cfg: config.Config
    why: Mapping[Spot, Sequence[str]] = field(default_factory=dict)
    """Comment lines (without `# `) for a key, or for a section with key `""`."""
    show: frozenset[Spot] = frozenset()
    """Keys written even at their default value: the admin must see them."""


def values(cfg: config.Config) -> dict[Spot, str]:
    """Each key's value as `check-config` prints it."""
    out: dict[Spot, str] = {}
    section = ""
    for line in config.render(cfg).splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif " = " in line or line.endswith(" ="):
            key, _, value = line.partition(" =")
            out[(section, key)] = value.strip()
    return out


def render(plan: Plan, header: Sequence[str]) -> str:
    """The config file's text: header comments, then each section that has something to say."""
    chosen = values(plan.cfg)
    default = values(config.Config())
    out = [_comment(line) for line in header]
    for section, keys in config.sections().items():
        block = [_comment(line) for line in plan.why.get((section, ""), ())]
        for key in keys:
            spot = (section, key)
            if chosen[spot] == default[spot] and spot not in plan.show:
                continue
            block += [_comment(line) for line in plan.why.get(spot, ())]
            block.append(f"{key} = {chosen[spot]}".rstrip())
        if block:
            out += ["", f"[{section}]", *block]
    return "\n".join(out) + "\n"


def check(text: str, path: Path, plan: Plan) -> None:
    """The written text is valid and reads back as the plan (else a bug, said plainly)."""
    try:
        loaded = config.loads(text, path)
    except MlsdError as exc:
        raise MlsdError(f"setup wrote a configuration the reader refuses ({exc})") from None
    if values(loaded) != values(plan.cfg):
        raise MlsdError("setup wrote a configuration that does not read back as planned")


def _comment(line: str) -> str:
    """`# line`, wrapped at 88 columns; whatever was found on the machine (a group name, a
    path) is escaped, so it cannot end the comment and start a key."""
    if not line:
        return "#"
    return "\n".join(f"# {part}" for part in textwrap.wrap(terminal(line), 86) or [""])
