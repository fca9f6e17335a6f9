"""mlsd's configuration: the INI file → one frozen, validated `Config`.

A package of three modules, each with one job: `schema` (the dataclasses and the closed
choices), `keys` (each INI key, the attribute it sets and its value parser; `render`) and
`reader` (reading and checking a file, errors naming file, section and key). The public
names are re-exported here because some forty modules and tests import `mlsd.config`: they
need not know which of the three holds a name.
"""

from mlsd.config.keys import render, sections
from mlsd.config.reader import load, loads, salvage
from mlsd.config.schema import (
    DEFAULT_PATH,
    Attach,
    Config,
    CsvConfig,
    DateFormat,
    DnsConfig,
    FleetConfig,
    FollowConfig,
    GeoipConfig,
    GeoipProvider,
    LogConfig,
    LogFormat,
    LogLevel,
    PathsConfig,
    ReportConfig,
    ReverseMode,
    Secret,
    Security,
    SentinelConfig,
    SmtpConfig,
    SourceConfig,
    StartAt,
    resolve_tz,
)

__all__ = [
    "DEFAULT_PATH",
    "Attach",
    "Config",
    "CsvConfig",
    "DateFormat",
    "DnsConfig",
    "FleetConfig",
    "FollowConfig",
    "GeoipConfig",
    "GeoipProvider",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "PathsConfig",
    "ReportConfig",
    "ReverseMode",
    "Secret",
    "Security",
    "SentinelConfig",
    "SmtpConfig",
    "SourceConfig",
    "StartAt",
    "load",
    "loads",
    "render",
    "resolve_tz",
    "salvage",
    "sections",
]
