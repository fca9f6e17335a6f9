"""What goes wrong with the fleet database, as one sentence for the operator."""

from __future__ import annotations

from mlsd.errors import MlsdError


class FleetError(MlsdError):
    """The fleet database cannot be used as it is (a schema newer than this mlsd, a role
    that may not do what shipping needs): retrying will not help until someone acts."""
