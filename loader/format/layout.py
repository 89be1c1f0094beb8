"""Where each file lives in a bundle, the rules every path must follow, and the hard limits.

Names are lower-case ASCII so that a bundle survives FAT32, exFAT, NTFS and ext4 alike (no case clashes,
none of the characters Windows refuses, no reserved device names).
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from loader.errors import Problem

MANIFEST = "manifest.json"
ENVELOPE = "manifest.dsse.json"
CONFIG = "config.json"
VOCABULARY = "vocabulary.json.zst"
DEFINITION_DIR = "definition"

# Files a reader opens before anything is authenticated get hard caps: a hostile medium could hold a
# multi-GB "manifest" to exhaust memory.
MAX_MANIFEST_BYTES = 8 << 20
MAX_ENVELOPE_BYTES = 12 << 20  # base64 of the manifest plus a little JSON
MAX_CONFIG_BYTES = 1 << 20
MAX_VOCABULARY_BYTES = 64 << 20  # uncompressed; Elastic's own loader caps around 10 MB, leave room
# Elasticsearch's limits on a definition (trained-model API).
MAX_PARTS = 10_000
MAX_DEFINITION_BYTES = (1 << 32) - 1
# A 1 MiB raw part is what Elastic's loaders send; base64 makes a request 4/3 larger and the cluster's
# default http.max_content_length is 100 MB, so parts must stay well under 75 MB.
DEFAULT_PART_SIZE = 1 << 20
MIN_PART_SIZE = 4 << 10
MAX_PART_SIZE = 64 << 20
# Decompression never allocates a window larger than this (zstd's default for level <= 19 is far below).
MAX_ZSTD_WINDOW = 1 << 27

ROLE_CONFIG = "config"
ROLE_VOCABULARY = "vocabulary"
ROLE_DEFINITION_PART = "definition_part"
ROLE_LOADER = "loader"  # the offline tool's wheelhouse, carried with the bundle
ROLES = (ROLE_CONFIG, ROLE_VOCABULARY, ROLE_DEFINITION_PART, ROLE_LOADER)
LOADER_DIR = "loader"

# Multi-volume bundles: OUT/vol001, OUT/vol002, ... each holding the signed manifest and envelope, a small
# unsigned label (checked against the manifest), and the files the manifest assigns to it.
VOLUME_LABEL = "volume.json"
MAX_VOLUMES = 999
# Bytes a file is counted for when filling a volume: rounded up to the filesystem's allocation unit (cluster).
# Defaults per filesystem are what formatting tools pick for large media; --cluster-size overrides.
ALLOCATION_UNIT = 4096
DEFAULT_CLUSTER = {"fat32": 32 << 10, "exfat": 128 << 10, "ntfs": 4 << 10, "ext4": 4 << 10}
FILESYSTEM_MAX_FILE = {"fat32": (1 << 32) - 1, "exfat": 1 << 60, "ntfs": 1 << 60, "ext4": 16 << 40}

_PART_RE = re.compile(r"^definition/part-(\d{5})\.zst$")
_FORBIDDEN_CHARS = set(':*?"<>|\\')
_RESERVED = {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
MAX_COMPONENT_LEN = 255


def volume_dir(number: int) -> str:
    return f"vol{number:03d}"


def volume_number(name: str) -> int | None:
    match = re.match(r"^vol(\d{3})$", name)
    return int(match.group(1)) if match else None


def footprint(size: int, unit: int = ALLOCATION_UNIT) -> int:
    return -(-size // unit) * unit


def part_path(index: int) -> str:
    return f"{DEFINITION_DIR}/part-{index:05d}.zst"


def part_index(path: str) -> int | None:
    match = _PART_RE.match(path)
    return int(match.group(1)) if match else None


def path_problem(path: str) -> str | None:
    """Why `path` is not a safe, portable, relative bundle path; None when it is."""
    if not path:
        return "empty path"
    if "\x00" in path:
        return "contains a NUL byte"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "contains a control character"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or path.startswith("\\"):
        return "is absolute"
    bad = sorted(c for c in set(path) if c in _FORBIDDEN_CHARS)
    if bad:
        return "contains characters some filesystems refuse: " + " ".join(bad)
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return "has an empty, '.' or '..' component"
        if len(part.encode("utf-8")) > MAX_COMPONENT_LEN:
            return f"has a component longer than {MAX_COMPONENT_LEN} bytes"
        if part.endswith((" ", ".")):
            return "has a component ending in a space or a dot"
        if part.split(".")[0].lower() in _RESERVED:
            return f"uses the reserved device name {part.split('.')[0]!r}"
    return None


def path_problems(paths: Iterable[str]) -> list[Problem]:
    """Every unsafe path, and every pair that would clash on a case-insensitive filesystem."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in paths:
        why = path_problem(path)
        if why:
            problems.append(Problem(path, "safe path", why))
            continue
        folded = path.casefold()
        if folded in seen:
            clash = f"clashes with {seen[folded]!r} on a case-insensitive filesystem"
            problems.append(Problem(path, "safe path", clash))
        else:
            seen[folded] = path
    return problems
