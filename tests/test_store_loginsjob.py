"""The daemon's store job with the logins: given the committed-length callable, a second
shipper follows the logins CSV into the store beside the failures', is entered in the
shippers as "store-logins", and the retention deletes the logins past keep_days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlsd.app import storejob
from mlsd.config import Config
from mlsd.config.schema import SentinelConfig
from mlsd.ingest.pipeline import Pipeline
from mlsd.store.contract import Position
from mlsd.store.journals import LOGINS
from tests.jobkit import fake_session, read, run_job
from tests.storekit import connected, csv_rows, events, login_cells, login_rows, position, write_csv
from tests.storekit import write_logins as write_logins_csv


def test_the_job_ships_the_logins_and_expires_the_old_ones(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    write_csv(tmp_path / "mlsd.csv", events(30))
    old = login_cells(20, seed=1, start=now - timedelta(days=200))
    new = login_cells(20, seed=2, start=now - timedelta(days=3))
    lpath = tmp_path / "logins.csv"
    write_logins_csv(lpath, old + new)
    s = fake_session(tmp_path, SentinelConfig(keep_days=90))
    committed = position(lpath)

    def logins(p: Pipeline) -> Position | None:
        assert p is s.pipeline
        return committed

    db = storejob.store_path(s.cfg)

    def done() -> bool:
        got = read(db, "SELECT (SELECT count(*) FROM mlsd_logins), "
                       "(SELECT max(kept_from) FROM mlsd_login_positions)")  # fmt: skip
        return got is not None and got[0] == 20 and (got[1] or 0) > 0

    seen = run_job(storejob.follow_and_ship, s, logins, done)
    assert {"store", "store-logins"} == set(seen)
    node = storejob.node_name()
    with connected(db) as store:
        assert csv_rows(tmp_path / "mlsd.csv") == store.rows()
        keep = now.timestamp() - 90 * 86400
        assert [r for r in login_rows(lpath) if r.time.timestamp() >= keep] == store.rows(LOGINS)
        assert committed == store.position(node, LOGINS)
        assert abs(store.kept_from(node) - keep) < 60


def test_without_the_callable_no_logins_shipper_runs(tmp_path: Path) -> None:
    """Until the integrator passes it, the store job is the failures' alone."""
    write_csv(tmp_path / "mlsd.csv", events(5))
    write_logins_csv(tmp_path / "logins.csv", login_cells(5))
    s = fake_session(tmp_path, SentinelConfig())
    db = storejob.store_path(s.cfg)

    def done() -> bool:
        got = read(db, "SELECT count(*) FROM mlsd_events")
        return got is not None and got[0] == 5

    assert {"store"} == set(run_job(storejob.follow_and_ship, s, None, done))
    with connected(db) as store:
        assert 0 == store.count(LOGINS)


def test_record_logins_no_keeps_none_in_the_store() -> None:
    """Personal data: with record_logins = no the cut-off is now (every stored login goes)."""
    cfg = Config(sentinel=SentinelConfig(record_logins=False))
    assert storejob.keep_from(cfg, 1000.0) == 1001
    assert storejob.keep_from(Config(), 10_000_000.0) == 10_000_000 - 90 * 86400
