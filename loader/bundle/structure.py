"""What a signed manifest may describe, and whether a directory holds exactly that: steps 5 and 6 of the order.

Manifest-only checks first (paths, each role in its place and within its caps, parts that add up, volumes, the
model id and task), then the walk of each directory, which never follows a link and never descends deeper than
any listed path could be.
"""
from __future__ import annotations

import math
import os
import stat
from collections import Counter
from pathlib import Path, PurePosixPath

from loader.errors import Problem
from loader.format import layout
from loader.format.manifest import Manifest
from loader.format.model_config import TASK_TYPES, model_id_problem
from loader.format.volumes import files_on

# What the loader will hold in memory per file, by role. A signed manifest may still declare absurd sizes.
ROLE_LIMITS = {layout.ROLE_CONFIG: layout.MAX_CONFIG_BYTES, layout.ROLE_VOCABULARY: layout.MAX_VOCABULARY_BYTES,
               layout.ROLE_DEFINITION_PART: layout.MAX_PART_SIZE, layout.ROLE_LOADER: layout.MAX_LOADER_FILE_BYTES,
               layout.ROLE_PACKAGE_METADATA: layout.MAX_PACKAGE_METADATA_BYTES}
# Stored as they are: the config and a package's metadata for people to read, the wheelhouse for pip and sha256sum
# to use directly.
RAW_ROLES = (layout.ROLE_CONFIG, layout.ROLE_LOADER, layout.ROLE_PACKAGE_METADATA)
# The files besides the parts: an ordinary model has its Elasticsearch config; a package has its metadata instead,
# from which the cluster builds the config.
SINGLE_FILES = {False: ((layout.ROLE_CONFIG, layout.CONFIG), (layout.ROLE_VOCABULARY, layout.VOCABULARY)),
                True: ((layout.ROLE_PACKAGE_METADATA, layout.PACKAGE_METADATA),
                       (layout.ROLE_VOCABULARY, layout.VOCABULARY))}


def structure_problems(manifest: Manifest) -> list[Problem]:
    """Safe paths, each role in its place and within its caps, parts that add up, volumes, model id and task."""
    problems = layout.path_problems(e.path for e in manifest.files)
    counts = Counter(e.path for e in manifest.files)
    problems += [Problem(path, "layout", "listed more than once") for path, n in sorted(counts.items()) if n > 1]
    if problems:
        return problems
    problems += _role_problems(manifest)
    problems += _definition_problems(manifest)
    problems += _volume_problems(manifest)
    if manifest.task_type not in TASK_TYPES:
        problems.append(Problem(layout.MANIFEST, "task type", f"unknown task type {manifest.task_type!r}"))
    why = model_id_problem(manifest.model_id) if not manifest.is_package else None
    if why:
        problems.append(Problem(layout.MANIFEST, "model id", why))
    return problems


def _role_problems(manifest: Manifest) -> list[Problem]:
    problems = []
    for role, path in SINGLE_FILES[manifest.is_package]:
        found = [e.path for e in manifest.files if e.role == role]
        if found != [path]:
            problems.append(Problem(path, "layout", f"exactly one {role} file must be at {path}, found {found}"))
    other = layout.ROLE_PACKAGE_METADATA if not manifest.is_package else layout.ROLE_CONFIG
    problems += [Problem(e.path, "layout", f"a {'package' if manifest.is_package else 'model'} bundle has no {other} "
                         "file") for e in manifest.files if e.role == other]
    loader_files = [e for e in manifest.files if e.role == layout.ROLE_LOADER]
    if len(loader_files) > layout.MAX_LOADER_FILES:
        problems.append(Problem(layout.LOADER_DIR, "layout", f"{len(loader_files)} wheelhouse files; at most "
                                f"{layout.MAX_LOADER_FILES}"))
    for entry in manifest.files:
        why = layout.role_place_problem(entry.role, entry.path)
        if why:
            problems.append(Problem(entry.path, "layout", why))
        if (entry.part is not None) != (entry.role == layout.ROLE_DEFINITION_PART):
            problems.append(Problem(entry.path, "layout", "only definition parts carry a part number"))
        if entry.role in RAW_ROLES and (entry.compression != "none" or entry.stored_size != entry.size):
            problems.append(Problem(entry.path, "compression", f"a {entry.role} file is stored uncompressed"))
        limit = ROLE_LIMITS[entry.role]
        # zstd never grows data by more than a small fraction; a stored file much larger than its limit is hostile.
        if entry.size > limit or entry.stored_size > limit + limit // 64 + 4096:
            problems.append(Problem(entry.path, "size limit", f"{max(entry.size, entry.stored_size)} bytes "
                                    f"exceeds the {limit} byte limit for a {entry.role} file"))
    return problems


def _definition_problems(manifest: Manifest) -> list[Problem]:
    problems = []
    d, parts = manifest.definition, manifest.parts()
    if [e.part for e in parts] != list(range(len(parts))) or any(
            e.path != layout.part_path(e.part or 0) for e in parts):
        problems.append(Problem(layout.DEFINITION_DIR, "definition parts", "parts must be numbered 0..n-1 at "
                                "definition/part-NNNNN.zst"))
    if d.part_count != len(parts):
        problems.append(Problem(layout.DEFINITION_DIR, "definition parts",
                                f"manifest lists {len(parts)} parts, definition says {d.part_count}"))
    if not 0 < d.part_count <= layout.MAX_PARTS or d.total_length > layout.MAX_DEFINITION_BYTES:
        problems.append(Problem(layout.DEFINITION_DIR, "definition limits", f"{d.part_count} parts of "
                                f"{d.total_length} bytes exceed Elasticsearch's limits"))
    if d.part_count != math.ceil(d.total_length / d.part_size) or sum(e.size for e in parts) != d.total_length:
        problems.append(Problem(layout.DEFINITION_DIR, "definition length",
                                f"parts add up to {sum(e.size for e in parts)} bytes, total_length is "
                                f"{d.total_length} in parts of {d.part_size}"))
    problems += [Problem(e.path, "part size", f"{e.size} bytes, every part but the last must be {d.part_size}")
                 for e in parts[:-1] if e.size != d.part_size]
    if not layout.MIN_PART_SIZE <= d.part_size <= layout.MAX_PART_SIZE:
        problems.append(Problem(layout.DEFINITION_DIR, "part size", f"{d.part_size} bytes is outside "
                                f"{layout.MIN_PART_SIZE}..{layout.MAX_PART_SIZE}"))
    return problems


def _volume_problems(manifest: Manifest) -> list[Problem]:
    if manifest.volumes is None:
        return [Problem(e.path, "volume", "names a volume in a single-directory bundle") for e in manifest.files
                if e.volume is not None]
    if not 1 <= manifest.volumes <= layout.MAX_VOLUMES:
        return [Problem(layout.MANIFEST, "volumes", f"{manifest.volumes} volumes is outside 1..{layout.MAX_VOLUMES}")]
    problems = [Problem(e.path, "volume", f"volume {e.volume} is not one of 1..{manifest.volumes}")
                for e in manifest.files if e.volume is None or not 1 <= e.volume <= manifest.volumes]
    problems += [Problem(e.path, "volume", "must be on the first volume") for e in manifest.files
                 if e.role != layout.ROLE_DEFINITION_PART and e.volume != 1]
    return problems


def file_set_problems(root: Path, manifest: Manifest, volume: int | None = None) -> list[Problem]:
    """Step 6: what is on the medium equals what the manifest lists; no links, devices or pipes anywhere.

    Only directories the manifest implies are entered: an extra one is reported, not walked, so a tree of any depth
    costs one line."""
    listed = set(files_on(manifest, volume))
    dirs = {parent.as_posix() for p in listed for parent in PurePosixPath(p).parents} - {"."}
    prefix = f"{layout.volume_dir(volume)}/" if volume else ""
    problems: list[Problem] = []
    found: set[str] = set()
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        for name in sorted(os.listdir(root / rel_dir) if rel_dir else os.listdir(root)):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            mode = os.lstat(root / rel).st_mode
            if stat.S_ISDIR(mode) and rel in dirs:
                pending.append(rel)
                continue
            why = _unlisted(mode, rel in listed)
            if why:
                problems.append(Problem(prefix + rel, *why))
            else:
                found.add(rel)
    reported = {p.path for p in problems}
    problems += [Problem(prefix + p, "file set", "missing") for p in sorted(listed - found)
                 if prefix + p not in reported]
    return problems


def _unlisted(mode: int, listed: bool) -> tuple[str, str] | None:
    """(check, detail) for an entry that must not be there; None for a listed regular file."""
    if stat.S_ISLNK(mode):
        return "file type", "is a symbolic link; bundles hold regular files only"
    if stat.S_ISDIR(mode):
        return "file set", "extra directory not listed in the manifest"
    if not stat.S_ISREG(mode):
        return "file type", "is a special file (device, pipe or socket)"
    return None if listed else ("file set", "extra file not listed in the manifest")
