#!/bin/sh
# Rebuilds the README's sample report: docs/sample-report.txt, .html and .png.
#
# From MailLogSentinel's sample log (real attacker lines from September 28 to October 3,
# tests/corpus/maillogsentinel/) and MaxMind's *test* databases (tests/data/geoip/), which
# know few real IPs. The log's stamps carry no year: mlsd reads them as the last such days
# before now, so the default DAY is the last October 1st (three days of history before it).
# The PNG is the top of the HTML part as wkhtmltoimage (Debian package wkhtmltopdf) draws it.
#
#   contrib/sample-report.sh [DAY]        (run from anywhere; needs `make venv`)
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
mlsd=${MLSD:-$repo/.venv/bin/mlsd}
year=$(date -u +%Y)
[ "$(date -u +%m%d)" -ge 1004 ] || year=$((year - 1))
day=${1:-$year-10-01}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$repo/tests/corpus/maillogsentinel/sample_sasl.log" "$work/mail.log"
cat >"$work/mlsd.conf" <<CONF
[paths]
mail_log = $work/mail.log
csv = $work/mlsd.csv
state_dir = $work/state
[source]
timezone = UTC
[geoip]
country_db = $repo/tests/data/geoip/GeoLite2-Country-Test.mmdb
asn_db = $repo/tests/data/geoip/GeoLite2-ASN-Test.mmdb
[report]
timezone = UTC
CONF
"$mlsd" -c "$work/mlsd.conf" scan 2>/dev/null
"$mlsd" -c "$work/mlsd.conf" report --day "$day" --text >"$repo/docs/sample-report.txt"
"$mlsd" -c "$work/mlsd.conf" report --day "$day" --html >"$repo/docs/sample-report.html"
# The top of the page: the header, the comparison and both charts. For a PNG, Qt reads
# --quality 0 as the strongest compression (the default writes it nearly raw: 3.5 MB).
QT_QPA_PLATFORM=offscreen wkhtmltoimage --quiet --quality 0 --width 760 --height 1150 \
    "$repo/docs/sample-report.html" "$repo/docs/sample-report.png"
