"""The operator's words for an access verdict: the path, the config key, what is wrong, the fix.

`sentence` words a verdict (`mlsd.access.probe`) as one line naming the path, the config
key and the fix; `run` (STATUS= and its error line), `scan` and `check-config` all use it,
so the operator reads the same words everywhere. `state_problems` probes every place
`run` and `scan` must write, and says what is wrong with each before they start.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from mlsd.access.probe import ADM, Access, Step, Verdict, probe_dir, probe_write
from mlsd.statedir import LOCK_NAME


def sentence(a: Access, key: str, *, noun: str = "the log") -> str:
    """One line for the operator: the path, the config key, what is wrong and the fix.

    `key` is where the path is configured (`[paths] mail_log`); `noun` names it in a
    sentence (`the state directory`). Meant for verdicts other than OK.
    """
    where = f"{a.path} ({key})"
    if a.verdict is Verdict.MISSING:
        return f"{where} does not exist yet: mlsd waits for it"
    if a.verdict is Verdict.NOT_REGULAR:
        example = " (such as /var/log/mail.log)" if noun == "the log" else ""
        return f"{where} is a {a.kind}, not a regular file: set {key} to a regular file{example}"
    if a.verdict is Verdict.NOT_DIRECTORY:
        return (
            f"cannot use {noun} {where}: {a.blocker} is a {a.kind}, not a directory: "
            f"move it aside or set {key} elsewhere"
        )
    if a.verdict is Verdict.READ_ONLY:
        return (
            f"cannot write {noun} {where}: {a.blocker} is on a read-only file system (under "
            "the shipped unit's ProtectSystem=strict only StateDirectory=, LogsDirectory= "
            f"and ReadWritePaths= are writable): set {key} to such a directory"
        )
    if a.verdict is Verdict.ERROR:
        return f"cannot use {noun} {where}: {a.error}"
    if a.verdict is Verdict.OK:
        return f"{where} is usable"
    return _denied_sentence(a, key, noun)


def short(a: Access) -> str:
    """A few words for STATUS= (cut at 200 characters): what is wrong, not the whole fix."""
    if a.verdict is Verdict.DENIED and a.blocker is not None:
        on = "" if a.step is Step.SELF else f" on directory {a.blocker}"
        return f"permission denied{on} ({a.mode_text()}; mlsd is {a.who})"
    if a.verdict is Verdict.NOT_REGULAR:
        return f"it is a {a.kind}, not a regular file"
    if a.verdict is Verdict.ERROR:
        return a.error
    return a.verdict.value


def _denied_sentence(a: Access, key: str, noun: str) -> str:
    assert a.blocker is not None  # noqa: S101 - every DENIED names what refused
    hint = f"see ls -{'ld' if os.path.isdir(a.blocker) else 'l'} {a.blocker}"
    if a.step is Step.ENTER:
        return (
            f"cannot reach {noun} {a.path} ({key}): mlsd runs as {a.who} and may not enter "
            f"the directory {a.blocker}, which is {a.mode_text()}: give it search permission "
            f"(chmod o+x {a.blocker}, or g+x for a group mlsd is in) ({hint})"
        )
    if a.step is Step.CREATE:
        return (
            f"cannot create {noun} {a.path} ({key}): {a.blocker} is {a.mode_text()} and mlsd "
            f"runs as {a.who}: create it for that user (mkdir -p {a.path} && chown USER "
            f"{a.path}; the shipped unit's StateDirectory=/LogsDirectory= do this), or set "
            f"{key} to a directory it may write ({hint})"
        )
    if a.want == "write":
        return (
            f"cannot write {noun} {a.path} ({key}): it is {a.mode_text()} and mlsd runs as "
            f"{a.who}: chown it to that user, or set {key} elsewhere ({hint})"
        )
    if noun != "the log":
        return (
            f"cannot read {noun} {a.path} ({key}): it is {a.mode_text()} and mlsd runs as "
            f"{a.who}: make it readable (chmod 0644 {a.path}: it holds no secret) ({hint})"
        )
    if a.mode & stat.S_IRGRP and a.group and not _in_group(a):
        fix = f"add the service user to group {a.group} (SupplementaryGroups={a.group} in the unit)"
    elif not a.mode & (stat.S_IRGRP | stat.S_IROTH):
        fix = (
            f"make it readable by a group mlsd is in, as Debian does (chgrp {ADM} {a.path} && "
            f"chmod 0640 {a.path}, and `create 0640 root {ADM}` in its logrotate rule)"
        )
    else:
        fix = (
            "its mode allows reading, so an ACL (getfacl) or a security policy (AppArmor, "
            "the unit's InaccessiblePaths=) refuses it"
        )
    return (
        f"cannot read {a.path} ({key}): it is {a.mode_text()} and mlsd runs as {a.who}: "
        f"{fix} ({hint})"
    )


def _in_group(a: Access) -> bool:
    try:
        gid = grp.getgrnam(a.group).gr_gid
    except KeyError:
        return a.group.isdigit() and int(a.group) in a.who.gids
    return gid in a.who.gids


# ---- what `run` and `scan` need before they start


def state_problems(state_dir: Path, csv: Path) -> list[str]:
    """Sentences for each place mlsd must write but cannot (empty: all usable).

    The state directory and the CSV's directory first: when one of those is refused,
    what is inside it cannot be judged. Then what may already exist inside them (left
    behind by a run as another user, `sudo mlsd run` say): the lock file, the outbox, the
    saved reports, the CSV itself.
    """
    state_key, csv_key = "[paths] state_dir", "[paths] csv"
    found: list[str] = []
    for a, key, noun in (
        (probe_dir(state_dir), state_key, "the state directory"),
        (probe_dir(csv.parent), csv_key, "the directory of the CSV"),
    ):
        if not a.ok:
            found.append(sentence(a, key, noun=noun))
    if found:
        return found
    for a, key, noun in (
        (probe_write(state_dir / LOCK_NAME), state_key, "the lock file"),
        (probe_dir(state_dir / "outbox"), state_key, "the outbox"),
        (probe_dir(state_dir / "outbox" / "failed"), state_key, "the outbox"),
        (probe_dir(state_dir / "reports"), state_key, "the reports directory"),
        (probe_write(csv), csv_key, "the CSV"),
    ):
        if not a.ok:
            found.append(sentence(a, key, noun=noun))
    return found
