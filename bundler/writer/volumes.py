"""Cutting a bundle into volumes, one per medium (DVD, USB stick, a data diode's transfer folder).

Volume 1 takes the config, the vocabulary and the whole wheelhouse (so the tool installs from the first medium
alone), then definition parts in order; each further volume takes the next parts. No volume holds more than
SIZE bytes, counting each file rounded up to the filesystem's cluster size (`--cluster-size`, by default what
`--filesystem` usually uses, else 4 KiB), and the signed manifest, its envelope and the label every volume carries.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from loader.bundle.durable import write_durable
from loader.errors import UsageError
from loader.format import layout
from loader.format.manifest import FileEntry, Manifest
from loader.format.volumes import label_bytes, markers

# The envelope is base64 of the manifest plus the signature and a little JSON.
_ENVELOPE_SLACK = 1024


def filesystem_problems(entries: Sequence[FileEntry], filesystem: str | None) -> list[str]:
    """Every file the named filesystem cannot hold, with the numbers."""
    if filesystem is None:
        return []
    cap = layout.FILESYSTEM_MAX_FILE[filesystem]
    return [f"{e.path} is {e.stored_size} bytes; {filesystem} holds at most {cap} bytes in one file"
            for e in entries if e.stored_size > cap]


def overhead(manifest: Manifest, unit: int = layout.ALLOCATION_UNIT) -> int:
    """What every volume spends on the signed manifest, its envelope and its label (an upper bound: the
    manifest is measured with every file on the highest possible volume)."""
    widest = dataclasses.replace(manifest, volumes=layout.MAX_VOLUMES, files=tuple(
        dataclasses.replace(e, volume=layout.MAX_VOLUMES) for e in manifest.files))
    size = len(widest.to_bytes())
    envelope = 4 * -(-size // 3) + _ENVELOPE_SLACK
    return (layout.footprint(size, unit) + layout.footprint(envelope, unit)
            + layout.footprint(len(label_bytes(widest, layout.MAX_VOLUMES)), unit))


def assign(entries: Sequence[FileEntry], volume_size: int, per_volume: int,
           unit: int = layout.ALLOCATION_UNIT) -> tuple[list[FileEntry], int]:
    """Give every file a volume; refuse, with the numbers, a size that cannot hold the largest file."""
    room = volume_size - per_volume
    first = [e for e in entries if e.role != layout.ROLE_DEFINITION_PART]
    parts = sorted((e for e in entries if e.role == layout.ROLE_DEFINITION_PART), key=lambda e: e.part or 0)
    largest = max(entries, key=lambda e: e.stored_size)
    if layout.footprint(largest.stored_size, unit) > room:
        raise UsageError(
            f"--volume-size {volume_size} bytes leaves {max(room, 0)} bytes for files after the manifest, envelope "
            f"and label ({per_volume} bytes); {largest.path} alone needs {layout.footprint(largest.stored_size, unit)}",
            hint=f"use --volume-size {per_volume + layout.footprint(largest.stored_size, unit)} or more, or a smaller "
                 "--part-size")
    needed_first = sum(layout.footprint(e.stored_size, unit) for e in first)
    if needed_first > room:
        raise UsageError(f"the first volume must hold the config, vocabulary and wheelhouse ({needed_first} bytes), "
                         f"but --volume-size {volume_size} leaves {room} bytes for files")
    placed = [dataclasses.replace(e, volume=1) for e in first]
    volume, used = 1, needed_first
    for entry in parts:
        size = layout.footprint(entry.stored_size, unit)
        if used + size > room:
            volume, used = volume + 1, 0
        placed.append(dataclasses.replace(entry, volume=volume))
        used += size
    if volume > layout.MAX_VOLUMES:
        raise UsageError(f"{volume} volumes of {volume_size} bytes exceed the limit of {layout.MAX_VOLUMES}")
    return placed, volume


def lay_out(tmp: Path, manifest: Manifest, manifest_bytes: bytes, envelope_bytes: bytes) -> list[Path]:
    """Move every file into its volume directory and give each volume the manifest, envelope and label."""
    assert manifest.volumes is not None
    dirs = [tmp / layout.volume_dir(n) for n in range(1, manifest.volumes + 1)]
    for directory in dirs:
        directory.mkdir()
    for entry in manifest.files:
        target = tmp / layout.volume_dir(entry.volume or 1) / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp / entry.path, target)
    for number, directory in enumerate(dirs, start=1):
        contents = (manifest_bytes, envelope_bytes, label_bytes(manifest, number))
        for name, data in zip(markers(number), contents, strict=True):
            write_durable(directory / name, data)
    # The directories the files were written into are empty now; deepest first.
    emptied = {parent for e in manifest.files for parent in PurePosixPath(e.path).parents} - {PurePosixPath(".")}
    for directory in sorted(emptied, key=lambda d: len(d.parts), reverse=True):
        (tmp / directory).rmdir()
    return dirs
