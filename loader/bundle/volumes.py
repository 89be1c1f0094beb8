"""Where a bundle's files lie: one directory, or several volume directories (one per medium).

A multi-volume bundle is `OUT/vol001 ... OUT/volNNN`; each volume carries the same signed manifest and envelope,
a small label (`volume.json`: bundle id, volume n of m) and the files the manifest assigns to it. The label is
only a convenience for people and for finding volumes: after the signature check, every volume's manifest,
envelope and label must agree with the authenticated manifest, so a medium from another bundle is refused.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loader.bundle.content import open_regular, read_capped
from loader.errors import LayoutError, Problem
from loader.format import layout
from loader.format.manifest import FileEntry, Manifest
from loader.format.volumes import MAX_LABEL_BYTES, label_bytes, label_number


@dataclass(frozen=True)
class VolumeSet:
    roots: dict[int | None, Path]  # volume number -> directory; {None: dir} for a single-directory bundle

    @property
    def multi(self) -> bool:
        return None not in self.roots

    @property
    def primary(self) -> Path:
        return self.roots[None] if not self.multi else self.roots[min(self.given)]

    @property
    def given(self) -> list[int]:
        return sorted(n for n in self.roots if n is not None)

    def has(self, entry: FileEntry) -> bool:
        return entry.volume in self.roots

    def root_of(self, entry: FileEntry) -> Path:
        return self.roots[entry.volume]

    def display(self, entry: FileEntry) -> str:
        return f"{layout.volume_dir(entry.volume)}/{entry.path}" if entry.volume else entry.path

    def entries(self, manifest: Manifest) -> list[FileEntry]:
        return [e for e in manifest.files if self.has(e)]

    def missing(self, manifest: Manifest) -> list[int]:
        return [n for n in range(1, (manifest.volumes or 0) + 1) if n not in self.roots]


def _label_number(directory: Path) -> int:
    with open_regular(directory / layout.VOLUME_LABEL) as handle:
        data = handle.read(MAX_LABEL_BYTES)
    try:
        return label_number(data)
    except ValueError:
        raise LayoutError(f"{directory}: {layout.VOLUME_LABEL} is not a valid volume label") from None


def _expand(path: Path) -> list[Path]:
    """A volume directory, a directory of volumes, or a single-directory bundle."""
    if not path.is_dir():
        raise LayoutError(f"{path}: not a bundle or volume directory")
    if os.path.lexists(path / layout.VOLUME_LABEL) or os.path.lexists(path / layout.MANIFEST):
        return [path]
    linked = sorted(p.name for p in path.iterdir() if layout.volume_number(p.name) and p.is_symlink())
    if linked:
        raise LayoutError(f"{path}: {', '.join(linked)} is a symbolic link; volumes must be real directories")
    volumes = sorted(p for p in path.iterdir() if layout.volume_number(p.name) and p.is_dir())
    if not volumes:
        raise LayoutError(f"{path}: holds neither a bundle ({layout.MANIFEST}) nor volumes (vol001, ...)")
    return volumes


def locate(paths: Sequence[Path] | Path) -> VolumeSet:
    given = [paths] if isinstance(paths, Path) else list(paths)
    if not given:
        raise LayoutError("no bundle directory given")
    dirs = [d for p in given for d in _expand(p)]
    labelled = [d for d in dirs if os.path.lexists(d / layout.VOLUME_LABEL)]
    if not labelled:
        if len(dirs) > 1:
            raise LayoutError("several single-directory bundles given; give one bundle (or its volumes)")
        return VolumeSet({None: dirs[0]})
    if len(labelled) != len(dirs):
        plain = next(d for d in dirs if d not in labelled)
        raise LayoutError(f"{plain}: not a volume (no {layout.VOLUME_LABEL}) among volumes")
    roots: dict[int | None, Path] = {}
    for directory in dirs:
        number = _label_number(directory)
        if number in roots:
            raise LayoutError(f"{directory} and {roots[number]} both claim to be volume {number}")
        roots[number] = directory
    return VolumeSet(roots)


def agreement_problems(volumes: VolumeSet, manifest: Manifest, manifest_bytes: bytes,
                       envelope_bytes: bytes) -> list[Problem]:
    """Every given volume carries exactly the authenticated manifest, envelope and a matching label."""
    if not volumes.multi:
        return [] if manifest.volumes is None else [Problem(layout.MANIFEST, "volumes", (
            f"the manifest describes {manifest.volumes} volumes, but a single directory was given"))]
    if manifest.volumes is None:
        return [Problem(layout.VOLUME_LABEL, "volumes", "the manifest describes a single-directory bundle")]
    problems = []
    for number, directory in sorted(volumes.roots.items()):  # type: ignore[type-var]
        name = layout.volume_dir(number or 0)
        try:
            same = (_read(directory / layout.ENVELOPE) == envelope_bytes
                    and _read(directory / layout.MANIFEST) == manifest_bytes)
        except LayoutError:
            same = False
        if not same:
            problems.append(Problem(f"{name} ({directory})", "volume set",
                                    f"belongs to another bundle than {manifest.bundle_id}"))
            continue
        if number is None or number > manifest.volumes or _read(directory / layout.VOLUME_LABEL) != label_bytes(
                manifest, number):
            problems.append(Problem(f"{name}/{layout.VOLUME_LABEL}", "volume label",
                                    f"does not match the manifest (volume {number} of {manifest.volumes})"))
    return problems


def _read(path: Path) -> bytes:
    return read_capped(path, layout.MAX_ENVELOPE_BYTES, LayoutError(f"{path}: missing"))
