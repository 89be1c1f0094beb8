"""The volume label (`volume.json`): which bundle a medium belongs to, and which volume of how many it is.

Unsigned: a convenience for people and for finding volumes. After the signature check, a reader compares every
label with the one `label_bytes` makes from the authenticated manifest, so a forged label is refused.
"""
from __future__ import annotations

from loader.format import layout
from loader.format.canonical import JsonProblem, canonical_bytes, strict_loads
from loader.format.manifest import Manifest

MAX_LABEL_BYTES = 4096


def label_bytes(manifest: Manifest, number: int) -> bytes:
    return canonical_bytes({"bundle_id": manifest.bundle_id, "model_id": manifest.model_id, "volume": number,
                            "volumes": manifest.volumes})


def label_number(data: bytes) -> int:
    """The volume number a label claims; ValueError when it is not a label."""
    try:
        number = strict_loads(data)["volume"]
    except (JsonProblem, KeyError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= layout.MAX_VOLUMES:
        raise ValueError(f"volume {number!r} is not 1..{layout.MAX_VOLUMES}")
    return number
