"""End-to-end suite: mlsd against a real Postfix + Dovecot (needs root and the Debian packages)."""
