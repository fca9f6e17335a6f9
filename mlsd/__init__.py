"""mlsd: the mail-log sentinel daemon."""

__version__ = "0.1.0"
