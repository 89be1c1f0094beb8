"""Which command-line arguments make up which bundle, each bundle verified, and the names they fill together.

Each BUNDLE argument is one bundle (a bundle directory, or the directory holding its volumes), except volume
directories (`OUT/vol001`, ...): those join the other volumes given of the same bundle, found by the bundle id on
their label. The label is unsigned and only groups; every group is then fully verified, labels included.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.bundle.content import read_capped
from loader.bundle.verify import Check, Verified, verify_bundle
from loader.errors import EsbundleError, LayoutError, Problem, UsageError
from loader.format import layout
from loader.format.canonical import JsonProblem, strict_loads
from loader.format.volumes import MAX_LABEL_BYTES
from loader.repository.files import PackageFiles, RepositoryFile, package_files


def _label_bundle(path: Path) -> str | None:
    """The bundle id a volume directory's label claims; None for anything else (verification judges it)."""
    if not os.path.lexists(path / layout.VOLUME_LABEL):
        return None
    try:
        label = strict_loads(read_capped(path / layout.VOLUME_LABEL, MAX_LABEL_BYTES, LayoutError("")))
    except (EsbundleError, JsonProblem):
        return None
    return str(label.get("bundle_id")) if isinstance(label, dict) else None


def bundle_arguments(paths: Sequence[Path]) -> list[tuple[Path, ...]]:
    """The arguments grouped into bundles, in the order first given."""
    groups: dict[str, list[Path]] = {}
    for index, path in enumerate(paths):
        bundle = _label_bundle(path)
        groups.setdefault(f"volume of {bundle}" if bundle else f"argument {index}", []).append(path)
    return [tuple(group) for group in groups.values()]


def verify_packages(paths: Sequence[Path], trusted: Mapping[str, Ed25519PublicKey], *,
                    on_verified: Callable[[Verified, str], None] | None = None,
                    on_check: Callable[[Check], None] | None = None,
                    progress: bool | None = None) -> tuple[PackageFiles, ...]:
    """Every bundle fully verified (all its volumes needed) and a package, or the first failure, naming the bundle."""
    found = []
    for group in bundle_arguments(paths):
        source = ", ".join(map(str, group))
        try:
            verified = verify_bundle(group, trusted, on_check=on_check, progress=progress)
            found.append(package_files(verified, source))
        except EsbundleError as exc:
            raise exc.add_context(subject=source) from None
        if on_verified:
            on_verified(verified, source)
    catalogue(found)  # refuse clashing names before anything is done with them
    return tuple(found)


def catalogue(found: Sequence[PackageFiles]) -> dict[str, RepositoryFile]:
    """Every repository file by name. Two bundles may share a name only with identical content (the same package
    given twice, or one vocabulary file two packages use); anything else is refused, naming both bundles."""
    files: dict[str, tuple[RepositoryFile, PackageFiles]] = {}
    problems = []
    for package in found:
        for file in package.files:
            first = files.setdefault(file.name, (file, package))
            if (first[0].size, first[0].sha256) != (file.size, file.sha256):
                problems.append(Problem(file.name, "repository name", f"{first[1].source} and {package.source} "
                                        "both carry a file of this name, with different content"))
    if problems:
        raise UsageError(f"{len(problems)} repository file name(s) claimed twice; a repository holds one file of "
                         "each name", problems=problems, hint="install or serve those bundles separately")
    return {name: file for name, (file, _) in files.items()}


def model_ids(found: Sequence[PackageFiles]) -> list[str]:
    return list(dict.fromkeys(package.model_id for package in found))
