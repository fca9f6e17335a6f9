"""The pipeline in-process: the enrich seam, the counters, and what a commit leaves on disk."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mlsd.ingest.checkpoint import CheckpointStore, GenerationId
from mlsd.ingest.csvlog import CsvJournal
from mlsd.ingest.grammar import Skip
from mlsd.ingest.pipeline import Pipeline
from mlsd.ingest.sources.file.follow import Batch
from mlsd.rows import HEADER, AuthFailure, Enrichment
from tests.followkit import NOISE, lines

GEN = GenerationId(dev=1, ino=2, head_len=0, head_sha256="")
SERVER_ERROR = (
    b"Nov 25 05:00:00 srv postfix/smtpd[1]: warning: unknown[192.0.2.9]: SASL LOGIN "
    b"authentication failed: Connection lost to authentication server\n"
)


def _pipeline(tmp_path: Path) -> Pipeline:
    def enrich(ev: AuthFailure) -> Enrichment:
        return Enrichment(hostname="h-" + ev.ip, reverse_dns_status="OK", country_code="ZZ")

    p = Pipeline(
        source="/x/mail.log",
        journal=CsvJournal(tmp_path / "out.csv"),
        store=CheckpointStore(tmp_path),
        enrich=enrich,
        tz=UTC,
        date_format="iso",
        cap=256,
    )
    p.open(None)
    return p


def test_commit_rows_counters_and_checkpoint(tmp_path: Path) -> None:
    """Rows carry the enrich callable's answer; counters count lines, events and skips;
    the checkpoint records the CSV length after the append."""
    p = _pipeline(tmp_path)
    data = lines(range(3)) + SERVER_ERROR + lines([3], noise=False).rstrip(b"\n")
    batch = Batch(data, datetime(2026, 11, 25, 6, tzinfo=UTC), GEN, 1234)
    assert p.commit(batch) == 4  # the last line has no newline: a sealed file's last line
    rows = (tmp_path / "out.csv").read_bytes()[len(HEADER) :].decode().splitlines()
    assert 4 == len(rows)
    assert rows[0].split(";")[4:7] == ["h-10.0.0.0", "OK", "ZZ"]
    assert 8 == p.counters.lines
    assert 4 == p.counters.events
    assert {Skip.SERVER_ERROR: 1} == dict(p.counters.skipped)
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None
    assert (GEN, 1234) == (cp.generation, cp.offset)
    assert (tmp_path / "out.csv").stat().st_size == cp.csv_length
    p.close()


def test_batch_without_events_still_checkpoints(tmp_path: Path) -> None:
    """Ordinary traffic moves the checkpoint without touching the CSV."""
    p = _pipeline(tmp_path)
    assert p.commit(Batch(NOISE * 5, datetime.now(UTC), GEN, 99)) == 0
    cp = CheckpointStore(tmp_path).load()
    assert cp is not None
    assert 99 == cp.offset
    assert len(HEADER) == cp.csv_length
    p.close()
