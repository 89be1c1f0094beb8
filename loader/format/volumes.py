"""Volumes: which files each directory of a bundle holds, and the volume label (`volume.json`).

Every directory holds the signed manifest and envelope; a volume also holds its label, which says which bundle the
medium belongs to and which volume of how many it is. The label is unsigned: a convenience for people and for
finding volumes. After the signature check, a reader compares every label with the one `label_bytes` makes from
the authenticated manifest, so a forged label is refused.
"""
from __future__ import annotations

from collections.abc import Iterator

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


def markers(number: int | None) -> tuple[str, ...]:
    """What a directory holds besides its share of the files (`number` None: a single-directory bundle)."""
    return (layout.MANIFEST, layout.ENVELOPE) + ((layout.VOLUME_LABEL,) if number is not None else ())


def files_on(manifest: Manifest, number: int | None) -> Iterator[str]:
    """Every file a directory must hold: its share of the manifest's files, then its markers."""
    yield from (e.path for e in manifest.files if e.volume == number)
    yield from markers(number)
