"""MlConfigVersion: the number a package's `minimum_version` is written in, and the releases that carry each.

Up to 8.9 it was the release number; from 8.10 it is detached from the stack version (Elasticsearch's
`MlConfigVersion`: V_10 in 8.10, V_11 in 8.11, V_12 from 8.12, CURRENT = V_12 in the newest source read).
"""
from __future__ import annotations

from loader.releases.libtorch import Version

FIRST_DETACHED = (10, 0, 0)
_DETACHED = (((8, 12, 0), (12, 0, 0)), ((8, 11, 0), (11, 0, 0)), ((8, 10, 0), (10, 0, 0)))


def ml_config_version(release: Version) -> Version:
    """The MlConfigVersion of a release (of the oldest node, for a whole cluster)."""
    for since, number in _DETACHED:
        if release >= since:
            return number
    return release


def first_release(minimum: Version) -> Version | None:
    """The first release whose MlConfigVersion is at least `minimum`; None when no known release is."""
    if minimum < FIRST_DETACHED:
        return minimum
    for since, number in reversed(_DETACHED):
        if number >= minimum:
            return since
    return None
