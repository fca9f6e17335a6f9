"""A real PostgreSQL cluster for the fleet tests: initdb + pg_ctl in a temporary directory.

No systemd and no system cluster: `initdb` and `pg_ctl` from /usr/lib/postgresql/*/bin run
as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root), as
the current user otherwise. The cluster listens on a free loopback port (password auth,
scram) and on a Unix socket in its own directory (trust, for the tests' superuser). Each
test gets its own database (`pg_db`); roles are cluster-wide, so tests name theirs uniquely.

Under CI (env CI set) missing PostgreSQL binaries are a failure; elsewhere a skip that says
what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.smtpkit import free_port

SUPERUSER = "mlsd_super"


def _bindir() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


def _as_owner() -> list[str]:
    """The prefix that runs a command as the cluster's owner."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


@dataclass
class Cluster:
    """One running cluster: where it listens and how to drive it."""

    bindir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "sock"

    def ctl(self, *args: str) -> None:
        """`pg_ctl` on this cluster, as its owner (start/stop/restart wait until done)."""
        subprocess.run(
            [*_as_owner(), str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w",
             "-l", str(self.root / "server.log"), *args],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def restart(self) -> None:
        """A fast restart: every connection is closed, the server is back when this returns."""
        self.ctl("restart", "-m", "fast")

    def su_conninfo(self, dbname: str = "postgres") -> str:
        """The superuser over the Unix socket (trust)."""
        return f"host={self.sockets} port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, user: str, dbname: str) -> str:
        """A password-less URL over TCP, as `[fleet] url` spells it."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run SQL as the superuser (autocommit); the rows if it returns any."""
        with psycopg.connect(self.su_conninfo(dbname), autocommit=True) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description is not None else []


def start_cluster() -> Cluster:
    """initdb + pg_ctl start in a new temporary directory."""
    bindir = _bindir()
    if bindir is None:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb")
    root = Path(tempfile.mkdtemp(prefix="mlsd-pg-"))
    root.chmod(0o755)
    (root / "sock").mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "sock", "postgres", "postgres")
    port = free_port()
    subprocess.run(
        [*_as_owner(), str(bindir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER,
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with (root / "data" / "postgresql.conf").open("a", encoding="utf-8") as fh:
        # fsync off: the tests restart PostgreSQL, they never crash the machine under it.
        fh.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root / 'sock'}'\nfsync = off\n"
            "max_connections = 60\n"
        )
    cluster = Cluster(bindir=bindir, root=root, port=port)
    cluster.ctl("start")
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster for the whole session, stopped and removed at the end."""
    if _bindir() is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        try:
            cluster.ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(cluster.root, ignore_errors=True)


@dataclass
class Database:
    """A fresh database in the session's cluster."""

    cluster: Cluster
    name: str

    def execute(self, sql: str) -> list[tuple[object, ...]]:
        return self.cluster.execute(sql, self.name)

    def su_conninfo(self) -> str:
        return self.cluster.su_conninfo(self.name)


@pytest.fixture
def pg_db(pg_cluster: Cluster) -> Iterator[Database]:
    """A database of its own for one test, dropped after it."""
    name = "t_" + uuid.uuid4().hex[:12]
    pg_cluster.execute(f"CREATE DATABASE {name}")
    try:
        yield Database(pg_cluster, name)
    finally:
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def new_role(cluster: Cluster, prefix: str, password: str, *extra: str) -> str:
    """A login role with a password (roles are cluster-wide: the name is unique)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    cluster.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' {' '.join(extra)}")
    return name
