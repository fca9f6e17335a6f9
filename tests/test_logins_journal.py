"""The logins CSV: written with the failures CSV in one checkpoint, recovered the same way,
cleaned like it, and each committed batch handed to the observer."""

from __future__ import annotations

import csv
import os
import shutil
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlsd.alerts import Observation
from mlsd.errors import StateError
from mlsd.ingest.checkpoint import Checkpoint, CheckpointStore, GenerationId
from mlsd.ingest.csvlog import CsvJournal
from mlsd.ingest.pipeline import Pipeline
from mlsd.ingest.sources.file.follow import Batch
from mlsd.logins import LOGIN_COLUMNS, LOGIN_HEADER, Kind, Login
from mlsd.rows import HEADER, AuthFailure, Enrichment
from tests.followkit import Env

GEN = GenerationId(dev=1, ino=2, head_len=0, head_sha256="")
REF = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
FAIL = (
    b"Nov 25 04:38:12 mail postfix/submission/smtpd[1]: warning: unknown[192.0.2.66]: "
    b"SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice\n"
)
LOGIN = (
    b"Nov 25 04:38:12 mail postfix/submission/smtpd[1]: 4E4EE184124: "
    b"client=mua.example[192.0.2.10], sasl_method=PLAIN, sasl_username=alice\n"
)
QMGR = (
    b"Nov 25 04:38:13 mail postfix/qmgr[2]: 4E4EE184124: from=<alice@example.org>, "
    b"size=398, nrcpt=3 (queue active)\n"
)
IMAP = (
    b"Nov 25 04:40:01 mail dovecot: imap-login: Login: user=<bob>, method=PLAIN, "
    b"rip=192.0.2.20, lip=192.0.2.1, mpid=1, TLS, session=<x>\n"
)
NOISE = b"Nov 25 04:39:00 mail postfix/smtpd[3]: connect from unknown[192.0.2.1]\n"


def _enrich(ev: AuthFailure) -> Enrichment:
    return Enrichment(
        hostname=ev.hostname or "h-" + ev.ip,
        reverse_dns_status="OK",
        country_code="ZZ",
        asn="AS64500",
        aso="Example Net",
    )


class Run:
    """A pipeline in `root` (CSVs and state there), opened from its checkpoint."""

    def __init__(self, root: Path, *, logins: bool = True) -> None:
        self.root = root
        self.seen: list[list[Observation]] = []
        self.store = CheckpointStore(root / "state")
        self.p = Pipeline(
            source="/x/mail.log",
            journal=CsvJournal(root / "out.csv"),
            store=self.store,
            enrich=_enrich,
            tz=UTC,
            date_format="iso",
            cap=64,
            logins=CsvJournal(root / "logins.csv", LOGIN_HEADER, "logins CSV") if logins else None,
        )
        self.offset = 0
        (root / "state").mkdir(mode=0o750, parents=True, exist_ok=True)

    def open(self) -> Run:
        self.p.open(self.store.load())
        self.offset = 0 if self.p.position is None else self.p.position[1]
        return self

    def watch(self) -> None:
        self.p.observe = self.observe

    def observe(self, batch: Sequence[Observation]) -> None:
        self.seen.append(list(batch))

    def commit(self, data: bytes) -> int:
        self.offset += len(data)
        return self.p.commit(Batch(data, REF, GEN, self.offset))

    def rows(self, name: str) -> list[list[str]]:
        text = (self.root / name).read_text(encoding="utf-8")
        return list(csv.reader(text.splitlines()[1:], delimiter=";"))


def test_commit_writes_both_csvs_in_one_checkpoint(tmp_path: Path) -> None:
    """Failures to the failures CSV, logins and submissions to the logins CSV (0640, its
    own header), both lengths in the checkpoint; the counters count logins."""
    r = Run(tmp_path).open()
    assert r.commit(FAIL + LOGIN + NOISE + QMGR + IMAP) == 1
    assert [row[3] for row in r.rows("out.csv")] == ["alice"]
    logins = r.rows("logins.csv")
    assert [(x[3], x[10], x[11]) for x in logins] == [
        ("alice", "login", "0"),
        ("alice", "submit", "3"),
        ("bob", "login", "0"),
    ]
    assert logins[0] == [
        "mail", "2026-11-25T04:38:12+00:00", "192.0.2.10", "alice", "mua.example", "ZZ",
        "AS64500", "Example Net", "submission", "PLAIN", "login", "0",
    ]  # fmt: skip
    path = tmp_path / "logins.csv"
    assert path.read_bytes().startswith(LOGIN_HEADER)
    assert LOGIN_HEADER == (";".join(LOGIN_COLUMNS) + "\n").encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    cp = r.store.load()
    assert cp is not None
    st = path.stat()
    assert (cp.logins_dev, cp.logins_ino, cp.logins_length) == (st.st_dev, st.st_ino, st.st_size)
    assert cp.csv_length == (tmp_path / "out.csv").stat().st_size
    assert (r.p.counters.events, r.p.counters.logins) == (1, 3)
    r.p.close()


def test_observer_gets_the_batch_on_disk_before_the_checkpoint(tmp_path: Path) -> None:
    """The observer is called once the rows of both CSVs are written, before the checkpoint
    says so; failures and logins merged in log time order, failures first at equal time,
    each with its enrichment."""
    r = Run(tmp_path).open()
    r.commit(NOISE)
    before = r.store.load()

    def observe(batch: Sequence[Observation]) -> None:
        assert r.rows("logins.csv") and r.rows("out.csv")
        assert r.store.load() == before  # not yet committed
        r.seen.append(list(batch))

    r.p.observe = observe
    r.commit(IMAP + LOGIN + QMGR + FAIL)  # the IMAP line comes first but is the latest
    (batch,) = r.seen
    assert [(o.kind, o.user, o.ip) for o in batch] == [
        (Kind.FAILURE, "alice", "192.0.2.66"),
        (Kind.LOGIN, "alice", "192.0.2.10"),
        (Kind.SUBMIT, "alice", "192.0.2.10"),
        (Kind.LOGIN, "bob", "192.0.2.20"),
    ]
    sub = batch[2]
    assert (sub.recipients, sub.service, sub.hostname, sub.country, sub.asn, sub.aso) == (
        3, "submission", "mua.example", "ZZ", "AS64500", "Example Net",
    )  # fmt: skip
    assert batch[3].hostname == "h-192.0.2.20"  # Dovecot logs no name: the enrichment's
    assert batch[0].attempts == 1
    r.commit(NOISE)
    assert len(r.seen) == 1  # a batch without events is not handed over
    r.p.close()


def test_record_logins_off_writes_nothing_but_observes(tmp_path: Path) -> None:
    """Without a logins CSV, none is created and the checkpoint pins none; the observer
    still gets the logins. Without an observer either, logins are not even parsed."""
    r = Run(tmp_path, logins=False).open()
    r.commit(LOGIN)
    assert len(r.p.join) == 0 and r.p.counters.logins == 0
    r.watch()
    r.commit(LOGIN.replace(b"4E4EE184124", b"5F5FF184124") + QMGR + FAIL)
    assert not (tmp_path / "logins.csv").exists()
    cp = r.store.load()
    assert cp is not None and cp.logins_ino is None
    assert "logins" not in cp.to_json()
    assert [o.kind for o in r.seen[0]] == [Kind.FAILURE, Kind.LOGIN]
    assert r.p.counters.logins == 1
    r.p.close()


def _reference(tmp_path: Path, *batches: bytes) -> list[list[str]]:
    ref = Run(tmp_path / "ref").open()
    for b in batches:
        ref.commit(b)
    ref.p.close()
    return ref.rows("logins.csv")


def test_crash_before_the_checkpoint_is_cut_back_and_read_again(tmp_path: Path) -> None:
    """Both CSVs written and synced, the checkpoint not: at the next start both are cut
    back to the checkpoint, and the batch read again is recorded once."""
    one, two = LOGIN + FAIL, QMGR + IMAP + FAIL
    r = Run(tmp_path / "a").open()
    r.commit(one)
    saved = r.store.path.read_bytes()
    r.commit(two)
    r.p.close()
    r.store.path.write_bytes(saved)  # as if the second checkpoint never landed
    again = Run(tmp_path / "a").open()
    assert len(again.rows("logins.csv")) == 1  # cut back
    again.commit(two)
    again.p.close()
    # The join was lost with the process: the submission straddling the restart is not
    # counted, and nothing is counted twice.
    assert again.rows("logins.csv") == [
        x for x in _reference(tmp_path, one, two) if x[10] != "submit"
    ]
    assert len(again.rows("out.csv")) == 2


@pytest.mark.parametrize("torn", ["out.csv", "logins.csv"])
def test_crash_between_the_two_appends(tmp_path: Path, torn: str) -> None:
    """One CSV got the batch's rows (or half a row), the other not: each is cut back to the
    checkpoint on its own, and the batch is recorded once."""
    r = Run(tmp_path / "a").open()
    r.commit(LOGIN + QMGR)
    r.p.close()
    with open(tmp_path / "a" / torn, "ab") as fh:
        fh.write(b"mail;2026-11-25T04:40:01+00:00;192.0.2.20;bo")
    again = Run(tmp_path / "a").open()
    assert (tmp_path / "a" / torn).read_bytes().endswith(b"\n")
    again.commit(IMAP + FAIL)
    again.p.close()
    assert again.rows("logins.csv") == _reference(tmp_path, LOGIN + QMGR, IMAP + FAIL)
    assert len(again.rows("out.csv")) == 1


def _committed(tmp_path: Path) -> Path:
    r = Run(tmp_path).open()
    r.commit(LOGIN + IMAP)
    r.p.close()
    return tmp_path / "logins.csv"


def test_logins_csv_shorter_than_committed_is_refused(tmp_path: Path) -> None:
    """Rows removed behind mlsd's back: refused, naming the logins CSV."""
    path = _committed(tmp_path)
    os.truncate(path, path.stat().st_size - 5)
    with pytest.raises(StateError, match="the checkpoint says") as exc:
        Run(tmp_path).open()
    assert str(exc.value).startswith(f"{path}: the logins CSV is ")


def test_another_logins_csv_is_refused_a_new_empty_one_continues(tmp_path: Path) -> None:
    """A copy with rows in its place is refused; moved away, a new one is started."""
    path = _committed(tmp_path)
    path.rename(tmp_path / "logins.old")  # kept: its inode cannot be reused meanwhile
    shutil.copy(tmp_path / "logins.old", path)
    with pytest.raises(StateError, match="not the logins CSV the checkpoint") as exc:
        Run(tmp_path).open()
    assert str(exc.value).startswith(str(path))
    path.unlink()
    r = Run(tmp_path).open()
    r.commit(IMAP)
    assert [x[3] for x in r.rows("logins.csv")] == ["bob"]
    r.p.close()


def test_checkpoint_without_logins_pins_the_logins_csv_at_open(tmp_path: Path) -> None:
    """A checkpoint written without a logins CSV (an older mlsd, or record_logins = no)
    loads as before; the logins CSV is pinned at open. One with rows it does not pin is
    refused, naming it."""
    r = Run(tmp_path, logins=False).open()
    r.commit(FAIL)
    r.p.close()
    (tmp_path / "logins.csv").write_bytes(LOGIN_HEADER + b"x;y\n")
    with pytest.raises(StateError, match="does not pin it") as exc:
        Run(tmp_path).open()
    assert str(exc.value).startswith(f"{tmp_path / 'logins.csv'}: the logins CSV already")
    (tmp_path / "logins.csv").unlink()
    r = Run(tmp_path).open()
    cp = r.store.load()
    assert cp is not None and cp.logins_length == len(LOGIN_HEADER)
    assert cp.offset == len(FAIL)
    r.p.close()


def test_pin_carried_while_logins_are_off(tmp_path: Path) -> None:
    """record_logins turned off keeps the last pin in the checkpoint: turned on again, the
    logins CSV is checked against it (cut back, not refused) and goes on."""
    _committed(tmp_path)
    path = tmp_path / "logins.csv"
    size = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b"uncommitted;")
    off = Run(tmp_path, logins=False).open()
    off.commit(IMAP)
    off.p.close()
    cp = off.store.load()
    assert cp is not None and cp.logins_length == size
    on = Run(tmp_path).open()
    assert path.stat().st_size == size
    on.commit(IMAP)
    on.p.close()
    assert [x[3] for x in on.rows("logins.csv")] == ["alice", "bob", "bob"]


def test_checkpoint_logins_fields_round_trip_and_damage(tmp_path: Path) -> None:
    """The logins pin is saved and loaded as it was; a pin in part is damage."""
    store = CheckpointStore(tmp_path)
    cp = Checkpoint(
        source="/l",
        generation=None,
        offset=0,
        csv_dev=1,
        csv_ino=2,
        csv_length=3,
        committed_at=0,
        logins_dev=4,
        logins_ino=5,
        logins_length=6,
    )
    store.save(cp)
    assert store.load() == cp
    store.path.write_text(store.path.read_text().replace('"logins_ino": 5,', ""))
    with pytest.raises(StateError, match="pinned in part"):
        store.load()
    store.path.write_text(
        store.path.read_text().replace('"logins_length": 6', '"logins_length": -1')
    )
    with pytest.raises(StateError, match="damaged"):
        store.load()


HOSTILE = [
    '=HYPERLINK("http://x.example/")',
    "a;b;c",
    "+1",
    "\x1b[31mred",
    "line\nbreak",
    "\u202etxt.exe",
]


def test_hostile_usernames_are_cleaned_in_the_csv(tmp_path: Path) -> None:
    """Formula starts, the delimiter, escapes, a newline (the journal can carry one), bidi
    overrides: each row stays one line of 12 cells, each cell as mlsd.untrusted makes it."""
    r = Run(tmp_path).open()
    r.watch()
    t = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    logins = [Login(t, "mail", "imap", u, "192.0.2.1", "PLAIN") for u in HOSTILE]
    r.p.commit_entries([], "s=ab;i=1", 6, logins)
    raw = (tmp_path / "logins.csv").read_text().splitlines()
    assert len(raw) == 1 + len(HOSTILE)
    rows = r.rows("logins.csv")
    assert all(len(x) == 12 for x in rows)
    assert [x[3] for x in rows] == [
        '\'=HYPERLINK("http://x.example/")',
        "a;b;c",
        "'+1",
        "\\x1b[31mred",
        "line\\x0abreak",
        "\\u202etxt.exe",
    ]
    assert [o.user for o in r.seen[0]] == HOSTILE  # raw for the observer: each surface cleans
    cp = r.store.load()
    assert cp is not None and cp.cursor == "s=ab;i=1"
    assert r.p.counters.logins == len(HOSTILE)
    r.p.close()


def test_logins_csv_open_rules(tmp_path: Path) -> None:
    """Not through a symbolic link, and not a file with another header."""
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "logins.csv").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateError, match="symbolic link"):
        CsvJournal(tmp_path / "logins.csv", LOGIN_HEADER, "logins CSV").open()
    (tmp_path / "logins.csv").unlink()
    (tmp_path / "logins.csv").write_bytes(HEADER + b"x\n")
    with pytest.raises(StateError, match="does not start with mlsd's header"):
        CsvJournal(tmp_path / "logins.csv", LOGIN_HEADER, "logins CSV").open()


def test_scan_records_logins_once_and_honours_record_logins(env: Env) -> None:
    """`mlsd scan` writes logins.csv beside the CSV; a scan after a lost checkpoint cuts
    it back and records each login once; `record_logins = no` writes none."""
    env.log.write_bytes(FAIL + LOGIN + QMGR)
    env.scan()
    saved = (env.state / "checkpoint.json").read_bytes()
    with open(env.log, "ab") as fh:
        fh.write(IMAP + FAIL)
    env.scan()
    logins = env.csv.with_name("logins.csv")
    full = logins.read_bytes()
    (env.state / "checkpoint.json").write_bytes(saved)
    res = env.scan()
    assert "logins csv cut back" in res.stderr
    assert logins.read_bytes() == full
    assert [x.split(";")[3] for x in full.decode().splitlines()[1:]] == ["alice", "alice", "bob"]
    (env.root / "off").mkdir()
    other = Env(env.root / "off")
    other.extra = "[sentinel]\nrecord_logins = no\n"
    other.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    other.log.write_bytes(FAIL + LOGIN + QMGR)
    other.scan()
    assert other.csv.exists() and not other.csv.with_name("logins.csv").exists()
