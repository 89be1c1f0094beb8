"""Elasticsearch's privilege denials, read from their text: what every 403 a user can meet is told to grant.

Apart from privileges.py (the table of calls and the role) so that the client, which reports every error, can use
it without importing the table that imports the client.
"""
from __future__ import annotations

UNAUTHORIZED = " is unauthorized for "  # in every privilege denial, never in the licence's 403
ROLE_HINT = "`esbundle load --print-role` (with this load's flags) prints a role holding every privilege the load needs"


def denial_hint(reason: str) -> str | None:
    """For a 403 met anywhere: the privilege to grant, read from Elasticsearch's own reason (the first privilege it
    says grants the action), or None when the 403 is not a privilege denial (the licence's)."""
    if UNAUTHORIZED not in reason or "granted by the cluster privileges [" not in reason:
        return None
    first = reason.split("granted by the cluster privileges [", 1)[1].split("]", 1)[0].split(",")[0]
    return f"grant the cluster privilege [{first}]; {ROLE_HINT}"
