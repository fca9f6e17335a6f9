"""Enrichment wired into the commands: `mlsd scan` and `mlsd run` write country and ASN.

MaxMind's test databases know 81.2.69.142 (GB) and 1.128.0.1 (AS1221, Telstra).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from tests.followkit import Env, Writer

GEOIP = Path(__file__).resolve().parent / "data" / "geoip"
LINE = (
    "Nov 25 04:38:04 mail postfix/submission/smtpd[31226]: warning: unknown[{ip}]: "
    "SASL LOGIN authentication failed: (reason unavailable), sasl_username={user}\n"
)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["user"]: r for r in csv.DictReader(fh, delimiter=";")}


def _with_geoip(env: Env) -> None:
    env.extra = (
        f"[geoip]\ncountry_db = {GEOIP / 'GeoLite2-Country-Test.mmdb'}\n"
        f"asn_db = {GEOIP / 'GeoLite2-ASN-Test.mmdb'}\n"
    )
    env.write_conf({"reconcile_interval": "1"})


def test_scan_writes_country_asn_and_organisation(env: Env) -> None:
    _with_geoip(env)
    env.log.write_text(
        LINE.format(ip="81.2.69.142", user="gb")
        + LINE.format(ip="1.128.0.1", user="au")
        + LINE.format(ip="192.0.2.7", user="doc")
    )
    env.scan()
    rows = _rows(env.csv)
    assert (rows["gb"]["country_code"], rows["gb"]["asn"]) == ("GB", "N/A")
    assert (rows["au"]["asn"], rows["au"]["aso"]) == ("AS1221", "Telstra Pty Ltd")
    assert (rows["doc"]["country_code"], rows["doc"]["asn"], rows["doc"]["aso"]) == (
        "N/A",
        "N/A",
        "N/A",
    )


def test_run_writes_them_too(env: Env) -> None:
    _with_geoip(env)
    w = Writer(env.log)
    proc = env.start()
    w.write(LINE.format(ip="81.2.69.142", user="gb").encode())
    env.wait_rows(Counter({"gb": 1}))
    assert env.stop(proc) == 0
    assert _rows(env.csv)["gb"]["country_code"] == "GB"
