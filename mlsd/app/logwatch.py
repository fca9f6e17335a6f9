"""Whether the daemon can read its log file: said once when it cannot, once when it can again.

A log mlsd may not read does not stop the daemon (mlsd.app.service): STATUS= and an
error line say why, and reading starts by itself once the permission is fixed.
"""

from __future__ import annotations

import os

from mlsd import access, logs
from mlsd.config import Config
from mlsd.ingest import session

log = logs.get("mlsd.service")


class LogWatch:
    """The live log's readability, probed at each status refresh."""

    def __init__(self, opened: session.Session) -> None:
        self._session = opened
        self.problem: access.Access | None = None
        """Why the log cannot be read, while it cannot (a missing log is not a problem)."""

    def check(self, cfg: Config) -> None:
        """Probe the live log; say once, as an error, when it becomes unreadable, and when
        it is readable again. A log that does not exist yet is the follower's to report."""
        if self._session.journal is not None:
            return  # the journal's reader says what it cannot read
        path = cfg.paths.mail_log
        found = access.probe_read(path)
        problem = None if found.verdict in (access.Verdict.OK, access.Verdict.MISSING) else found
        if problem == self.problem:
            return
        self.problem = problem
        if problem is None:
            log.info("log file readable again", source=str(path))
            return
        detail = access.sentence(problem, "[paths] mail_log")
        if self.reading_live(cfg):
            detail += (
                "; mlsd still reads it through the descriptor it opened before, "
                "but could not open it again after a restart or a rotation"
            )
        log.error(
            "cannot read the log file",
            source=str(path),
            reason=problem.verdict.value,
            detail=detail,
        )

    def reading_live(self, cfg: Config) -> bool:
        """Whether the open generation is the file at the log's path (same inode)."""
        cur = self._session.follower.cur
        try:
            st = os.stat(cfg.paths.mail_log)
        except OSError:
            return False
        return cur is not None and (cur.dev, cur.ino) == (st.st_dev, st.st_ino)
