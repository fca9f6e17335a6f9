"""Can mlsd read this file or write in that directory: a typed verdict and the operator's sentence.

Two modules, one job each: `probe` finds out (the verdict, and what refused: the file or a
directory on the way, its owner, group and mode, and who mlsd runs as); `words` says it to
the operator (the path, the config key and the fix), the same words in `run`, `scan` and
`check-config`. The public names are re-exported here: callers say `access.probe_read`
and `access.sentence` without knowing which module holds them.
"""

from mlsd.access.probe import (
    ADM,
    Access,
    Step,
    Verdict,
    Who,
    probe_dir,
    probe_read,
    probe_write,
    readable,
)
from mlsd.access.words import sentence, short, state_problems

__all__ = [
    "ADM",
    "Access",
    "Step",
    "Verdict",
    "Who",
    "probe_dir",
    "probe_read",
    "probe_write",
    "readable",
    "sentence",
    "short",
    "state_problems",
]
