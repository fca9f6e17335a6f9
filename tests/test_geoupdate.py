"""`mlsd geoip update` against a local HTTP server serving MaxMind's test databases: good,
unchanged (304), stale, corrupt, truncated, too large and wrong-kind files (issue 21)."""

from __future__ import annotations

import base64
import csv
import os
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mlsd import config
from mlsd.app.cli import main
from mlsd.enrich.geoupdate.updater import RETRY_AFTER, next_due, update
from mlsd.enrich.mmdb import file_identity
from mlsd.errors import ConfigError
from tests.followkit import Env, Writer, wait_for
from tests.geoipkit import ASN, BUILD, COUNTRY, Route, gz, serve, tar_gz, with_build

DAY = date(2026, 12, 5)
COUNTRY_PATH = "/geoip/databases/GeoLite2-Country/download"
ASN_PATH = "/geoip/databases/GeoLite2-ASN/download"
LICENSE = "s3cr3t-Licence-K3y"
GB_LINE = (
    "Nov 25 04:38:04 mail postfix/smtpd[1]: warning: unknown[81.2.69.142]: "
    "SASL LOGIN authentication failed: (reason unavailable), sasl_username=gb\n"
)


def _cfg(tmp_path: Path, base: str, provider: str = "maxmind", extra: str = "") -> config.Config:
    key = tmp_path / "licence.key"
    key.write_text(LICENSE + "\n")
    token = tmp_path / "token"
    token.write_text("tok3n-SECRET\n")
    text = (
        f"[paths]\nstate_dir = {tmp_path / 'state'}\ncsv = {tmp_path / 'mlsd.csv'}\n"
        f"[geoip]\nupdate = yes\nprovider = {provider}\naccount_id = 42\n"
        f"license_key_file = {key}\ntoken_file = {token}\ndownload_base = {base}\n{extra}"
    )
    path = tmp_path / "mlsd.conf"
    path.write_text(text)
    return config.load(path)


def _maxmind(server_routes: dict[str, Route], country: bytes = COUNTRY, asn: bytes = ASN) -> None:
    server_routes[COUNTRY_PATH] = Route(tar_gz("GeoLite2-Country", country), etag='"c1"')
    server_routes[ASN_PATH] = Route(tar_gz("GeoLite2-ASN", asn), etag='"a1"')


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_good_download_is_installed_in_the_state_directory(tmp_path: Path) -> None:
    """Unset paths are in the state directory (the shipped unit's one writable place); the
    tar.gz is unpacked, the key goes in the basic-auth header and nowhere in the outcome."""
    with serve() as server:
        _maxmind(server.routes)
        cfg = _cfg(tmp_path, server.base)
        outcomes = update(cfg, today=DAY)
    where = tmp_path / "state" / "geoip"
    assert cfg.geoip.country_db == where / "GeoLite2-Country.mmdb"
    assert [(o.role, o.status) for o in outcomes] == [
        ("country", "installed"),
        ("asn", "installed"),
    ]
    assert (where / "GeoLite2-Country.mmdb").read_bytes() == COUNTRY
    assert (where / "GeoLite2-ASN.mmdb").read_bytes() == ASN
    assert oct((where / "GeoLite2-ASN.mmdb").stat().st_mode & 0o777) == "0o644"
    assert _leftovers(where) == []
    auth = server.seen[0][1]["Authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == f"42:{LICENSE}"
    assert LICENSE not in repr(outcomes)


def test_the_key_is_not_sent_where_the_download_redirects(tmp_path: Path) -> None:
    """MaxMind answers with a redirect to its storage: the key stays with the first host."""
    with serve() as server:
        _maxmind(server.routes)
        server.routes["/r2/country"] = server.routes[COUNTRY_PATH]
        server.routes[COUNTRY_PATH] = Route(b"", status=302, location="/r2/country")
        cfg = _cfg(tmp_path, server.base)
        outcomes = update(cfg, today=DAY)
    assert outcomes[0].status == "installed"
    (followed,) = [h for p, h in server.seen if p == "/r2/country"]
    assert "Authorization" not in followed
    assert [p for p, _ in server.seen][:2] == [f"{COUNTRY_PATH}?suffix=tar.gz", "/r2/country"]


def test_a_second_run_asks_with_the_etag_and_replaces_nothing(tmp_path: Path) -> None:
    """304 Not Modified: the files keep their identity (the daemon reopens nothing)."""
    with serve() as server:
        _maxmind(server.routes)
        cfg = _cfg(tmp_path, server.base)
        update(cfg, today=DAY)
        before = file_identity(cfg.geoip.country_db)
        again = update(cfg, today=DAY)
        sent = server.seen[-1][1]
    assert [o.status for o in again] == ["not-modified", "not-modified"]
    assert sent.get("If-None-Match") == '"a1"'
    assert file_identity(cfg.geoip.country_db) == before


def test_a_deleted_database_is_downloaded_again_despite_the_etag(tmp_path: Path) -> None:
    with serve() as server:
        _maxmind(server.routes)
        cfg = _cfg(tmp_path, server.base)
        update(cfg, today=DAY)
        cfg.geoip.country_db.unlink()
        again = update(cfg, today=DAY)
    assert [o.status for o in again] == ["installed", "not-modified"]
    assert cfg.geoip.country_db.read_bytes() == COUNTRY


def _refused(tmp_path: Path, country: Route, reason: str, extra: str = "") -> None:
    """Install the good files, then serve `country`: refused for `reason`, old file kept."""
    with serve() as server:
        _maxmind(server.routes)
        cfg = _cfg(tmp_path, server.base, extra=extra)
        update(cfg, today=DAY)
        before = file_identity(cfg.geoip.country_db)
        server.routes[COUNTRY_PATH] = country
        outcomes = update(cfg, today=DAY)
    first = outcomes[0]
    assert (first.role, first.status) == ("country", "failed")
    assert reason in first.detail
    assert file_identity(cfg.geoip.country_db) == before
    assert cfg.geoip.country_db.read_bytes() == COUNTRY
    assert _leftovers(cfg.geoip.country_db.parent) == []


@pytest.mark.parametrize(
    ("name", "route", "reason"),
    [
        ("stale", Route(tar_gz("GeoLite2-Country", with_build(COUNTRY, BUILD - 86400))), "stale"),
        ("corrupt", Route(tar_gz("GeoLite2-Country", os.urandom(4096))), "not a usable MMDB"),
        ("truncated mmdb", Route(tar_gz("GeoLite2-Country", COUNTRY[:-2000])), "not a usable"),
        ("cut archive", Route(tar_gz("GeoLite2-Country", COUNTRY)[:-500]), "corrupt archive"),
        (
            "dropped connection",
            Route(tar_gz("GeoLite2-Country", COUNTRY), cut_at=1000),
            "truncated: 1000 of",
        ),
        ("wrong kind", Route(tar_gz("GeoLite2-Country", ASN)), "holds no country"),
        ("no mmdb inside", Route(tar_gz("GeoLite2-Country", COUNTRY, ".txt")), "holds no .mmdb"),
        ("not gzip at all", Route(b"<html>login required</html>"), "not a usable MMDB"),
        ("server error", Route(b"", status=500), "HTTP 500"),
    ],
)
def test_a_bad_download_never_replaces_the_working_file(
    tmp_path: Path, name: str, route: Route, reason: str
) -> None:
    _refused(tmp_path, route, reason)


def test_a_newer_build_replaces_the_installed_one(tmp_path: Path) -> None:
    newer = with_build(COUNTRY, BUILD + 86400)
    with serve() as server:
        _maxmind(server.routes)
        cfg = _cfg(tmp_path, server.base)
        update(cfg, today=DAY)
        server.routes[COUNTRY_PATH] = Route(tar_gz("GeoLite2-Country", newer), etag='"c2"')
        outcomes = update(cfg, today=DAY)
    assert outcomes[0].status == "installed"
    assert cfg.geoip.country_db.read_bytes() == newer


def test_the_size_cap_refuses_a_larger_download(tmp_path: Path) -> None:
    big = Route(tar_gz("GeoLite2-Country", COUNTRY + os.urandom(2 << 20)))
    _refused(tmp_path, big, "max_download", extra="max_download = 1\n")


def test_the_size_cap_holds_without_a_content_length(tmp_path: Path) -> None:
    big = Route(tar_gz("GeoLite2-Country", COUNTRY + os.urandom(2 << 20)), chunked=True)
    _refused(tmp_path, big, "larger than the 1048576 bytes allowed", extra="max_download = 1\n")


def test_the_size_cap_also_bounds_what_a_small_archive_unpacks_to(tmp_path: Path) -> None:
    """A gzip bomb: 3 MiB of zeros is a few KiB compressed."""
    bomb = Route(tar_gz("GeoLite2-Country", COUNTRY + bytes(3 << 20)))
    assert len(bomb.body) < 1 << 20
    _refused(tmp_path, bomb, "unpacks to more than", extra="max_download = 1\n")


def test_a_symbolic_link_at_the_path_is_not_replaced(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.mmdb"
    elsewhere.write_bytes(b"not mine")
    where = tmp_path / "dbs"
    where.mkdir(mode=0o755)
    (where / "c.mmdb").symlink_to(elsewhere)
    with serve() as server:
        _maxmind(server.routes)
        cfg = _cfg(tmp_path, server.base, extra=f"country_db = {where / 'c.mmdb'}\n")
        outcomes = update(cfg, today=DAY)
    assert outcomes[0].status == "failed"
    assert "symbolic link" in outcomes[0].detail
    assert elsewhere.read_bytes() == b"not mine"
    assert (where / "c.mmdb").is_symlink()


def test_dbip_takes_last_months_file_until_this_months_is_out(tmp_path: Path) -> None:
    """DB-IP names its files by month; early in a month only last month's exists."""
    with serve() as server:
        server.routes["/dbip-country-lite-2026-11.mmdb.gz"] = Route(gz(COUNTRY))
        server.routes["/dbip-asn-lite-2026-12.mmdb.gz"] = Route(gz(ASN))
        cfg = _cfg(tmp_path, server.base, provider="dbip")
        outcomes = update(cfg, today=DAY)
    where = tmp_path / "state" / "geoip"
    assert [(o.path.name, o.status) for o in outcomes] == [
        ("dbip-country-lite.mmdb", "installed"),
        ("dbip-asn-lite.mmdb", "installed"),
    ]
    assert outcomes[0].source.endswith("/dbip-country-lite-2026-11.mmdb.gz")
    assert (where / "dbip-country-lite.mmdb").read_bytes() == COUNTRY


def test_dbip_asks_for_a_months_file_once(tmp_path: Path) -> None:
    """The month in the name is the condition: an installed month is not fetched again,
    the next month's name is."""
    with serve() as server:
        server.routes["/dbip-country-lite-2026-12.mmdb.gz"] = Route(gz(COUNTRY))
        server.routes["/dbip-asn-lite-2026-12.mmdb.gz"] = Route(gz(ASN))
        cfg = _cfg(tmp_path, server.base, provider="dbip")
        update(cfg, today=DAY)
        again = update(cfg, today=DAY)
        assert server.hits("/dbip-country-lite-2026-12.mmdb.gz") == 1
        newer = with_build(COUNTRY, BUILD + 86400)
        server.routes["/dbip-country-lite-2027-01.mmdb.gz"] = Route(gz(newer))
        january = update(cfg, today=date(2027, 1, 3))
    assert [o.status for o in again] == ["not-modified", "not-modified"]
    assert january[0].status == "installed"
    assert cfg.geoip.country_db.read_bytes() == newer


def test_the_ipinfo_token_is_sent_but_never_shown(tmp_path: Path) -> None:
    with serve() as server:
        server.routes["/data/ipinfo_lite.mmdb"] = Route(b"", status=403)
        cfg = _cfg(tmp_path, server.base, provider="ipinfo")
        outcomes = update(cfg, today=DAY)
    assert server.seen[0][0] == "/data/ipinfo_lite.mmdb?token=tok3n-SECRET"
    # One file answers both roles, at one path by default.
    assert [(o.role, o.path.name, o.status) for o in outcomes] == [
        ("country+asn", "ipinfo_lite.mmdb", "failed")
    ]
    assert "tok3n" not in repr(outcomes)
    assert "HTTP 403" in outcomes[0].detail


def test_maxmind_without_an_account_id_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "mlsd.conf"
    path.write_text("[geoip]\nupdate = yes\nprovider = maxmind\n")
    with pytest.raises(ConfigError, match=r"\[geoip\] account_id is not set"):
        config.load(path)


def test_check_config_warns_about_a_missing_licence_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon reads it only at its first update: check-config says so now."""
    cfg = _cfg(tmp_path, "http://127.0.0.1:9")
    (tmp_path / "licence.key").unlink()
    assert cfg.source_file is not None
    assert main(["check-config", "-c", str(cfg.source_file)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err
    assert "[geoip] license_key_file" in err and str(tmp_path / "licence.key") in err


def test_an_unreadable_licence_file_names_the_key_not_the_content(tmp_path: Path) -> None:
    with serve() as server:
        cfg = _cfg(tmp_path, server.base)
        (tmp_path / "licence.key").unlink()
        with pytest.raises(ConfigError, match=r"\[geoip\] license_key_file = .*cannot read"):
            update(cfg, today=DAY)


@pytest.mark.parametrize(
    ("checked", "ok", "now", "due"),
    [
        (None, False, 1000.0, 1000.0),  # never run: now
        (0.0, True, 1000.0, 7 * 86400.0),  # the interval after a good run
        (0.0, False, 1000.0, RETRY_AFTER),  # a failed run is retried sooner
        (5000.0, True, 1000.0, 1000.0),  # a clock that went back: now, not in a week
    ],
)
def test_next_due(checked: float | None, ok: bool, now: float, due: float) -> None:
    assert due == next_due(checked, ok, 7, now)


def test_the_command_prints_one_line_per_database_and_exits_1_on_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve() as server:
        server.routes[COUNTRY_PATH] = Route(tar_gz("GeoLite2-Country", COUNTRY))
        cfg = _cfg(tmp_path, server.base)
        assert cfg.source_file is not None
        code = main(["geoip", "update", "-c", str(cfg.source_file)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "country" in out and ": installed (GeoLite2-Country, built" in out
    assert "asn" in err and "failed (HTTP 404" in err and "installed file is kept" in err
    assert LICENSE not in out + err


def test_the_daemon_installs_on_its_schedule_and_enriches_with_the_new_file(env: Env) -> None:
    """`[geoip] update = yes`: the running daemon downloads the databases it lacks, the
    rows written afterwards carry the country, and the key is in no log line."""
    key = env.root / "licence.key"
    key.write_text(LICENSE + "\n")
    with serve() as server:
        _maxmind(server.routes)
        env.extra = (
            f"[geoip]\nupdate = yes\nprovider = maxmind\naccount_id = 42\n"
            f"license_key_file = {key}\ndownload_base = {server.base}\n"
        )
        env.write_conf({"reconcile_interval": "1"})
        proc = env.start()
        installed = env.state / "geoip" / "GeoLite2-Country.mmdb"
        wait_for(lambda: installed.exists() and "geoip database installed" in env.stderr(proc))
        w = Writer(env.log)
        w.write(GB_LINE.encode())
        env.wait_rows(Counter({"gb": 1}))
        assert env.stop(proc) == 0
    with open(env.csv, newline="", encoding="utf-8") as fh:
        (row,) = csv.DictReader(fh, delimiter=";")
    assert row["country_code"] == "GB"
    log = env.all_stderr()
    assert log.count("geoip database installed") == 2
    assert LICENSE not in log
    assert base64.b64encode(f"42:{LICENSE}".encode()).decode() not in log


def test_the_report_credits_dbip_when_its_data_answers(tmp_path: Path) -> None:
    """CC BY 4.0: the report ends with the attribution, in both parts; not for MaxMind."""
    from mlsd.report import compose

    cfg = config.Config(
        paths=config.PathsConfig(
            mail_log=tmp_path / "mail.log", csv=tmp_path / "mlsd.csv", state_dir=tmp_path
        )
    )
    now = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    dbip = "country: DBIP-Country-Lite, built 2026-12-01 (dbip-country-lite.mmdb)"
    maxmind = "country: GeoLite2-Country, built 2026-12-01 (GeoLite2-Country.mmdb)"
    credited = compose.build(cfg, DAY, geoip_dates=[dbip], hostname="mx", now=now)
    plain = compose.build(cfg, DAY, geoip_dates=[maxmind], hostname="mx", now=now)
    assert compose.DBIP_ATTRIBUTION in credited.text.split("Data sources")[-1]
    assert "https://db-ip.com" in credited.html
    assert "DB-IP" not in plain.text and "Data sources" not in plain.text


def test_unset_paths_follow_the_provider_into_the_state_directory(tmp_path: Path) -> None:
    """Set paths are kept; unset ones are the provider's names in <state_dir>/geoip."""
    path = tmp_path / "mlsd.conf"
    path.write_text(
        f"[paths]\nstate_dir = {tmp_path / 's'}\n[geoip]\nprovider = ipinfo\n"
        "asn_db = /srv/asn.mmdb\n"
    )
    geo = config.load(path).geoip
    assert (geo.country_db, geo.asn_db) == (
        tmp_path / "s" / "geoip" / "ipinfo_lite.mmdb",
        Path("/srv/asn.mmdb"),
    )
    path.write_text("[geoip]\nasn_db = /srv/asn.mmdb\n")
    assert config.load(path).geoip.country_db == config.GeoipConfig().country_db
