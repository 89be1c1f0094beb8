"""Where each file lives in a bundle, the rules every path must follow, and the hard limits.

Every path component is drawn from a small portable set (lower-case ASCII letters, digits, `.`, `_`, `-`; not
starting with a dot; ending in a letter, digit, `_` or `-`), so that a bundle survives FAT32, exFAT, NTFS and ext4
alike: no case clashes, no Unicode normalisation twins, no control or bidirectional characters, none of the
characters Windows refuses, no reserved device names, and paths short enough for any of them.
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
PACKAGE_METADATA = "package/metadata.json"  # an Elastic package's `<name>.metadata.json`, byte for byte

# Files a reader opens before anything is authenticated get hard caps: a hostile medium could hold a
# multi-GB "manifest" to exhaust memory.
MAX_MANIFEST_BYTES = 8 << 20
MAX_ENVELOPE_BYTES = 12 << 20  # base64 of the manifest plus a little JSON
MAX_CONFIG_BYTES = 1 << 20
MAX_PACKAGE_METADATA_BYTES = 1 << 20
MAX_VOCABULARY_BYTES = 64 << 20  # uncompressed; Elastic's own loader caps around 10 MB, leave room
MAX_LOADER_FILE_BYTES = 64 << 20  # one wheel of the offline tool's wheelhouse (cryptography's is under 5 MB)
MAX_LOADER_FILES = 256
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
ROLE_PACKAGE_METADATA = "package_metadata"
ROLES = (ROLE_CONFIG, ROLE_VOCABULARY, ROLE_DEFINITION_PART, ROLE_LOADER, ROLE_PACKAGE_METADATA)
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
_COMPONENT = re.compile(r"^[a-z0-9_-](?:[a-z0-9._-]*[a-z0-9_-])?$")
_RESERVED = {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
MAX_COMPONENT_LEN = 100
MAX_PATH_LEN = 160  # leaves room under Windows' 260 for the directory the bundle is copied into
MAX_PATH_DEPTH = 4  # loader/wheels/NAME.whl is the deepest the writer makes


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
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return "is absolute"
    if len(path) > MAX_PATH_LEN:
        return f"is longer than {MAX_PATH_LEN} characters"
    parts = path.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        return f"is nested deeper than {MAX_PATH_DEPTH} levels"
    for part in parts:
        if part in ("", ".", ".."):
            return "has an empty, '.' or '..' component"
        if len(part) > MAX_COMPONENT_LEN:
            return f"has a component longer than {MAX_COMPONENT_LEN} characters"
        if not _COMPONENT.match(part):
            return ("has a component outside the portable set (lower-case ASCII letters, digits, '.', '_', '-'; "
                    "no leading dot, no trailing dot)")
        if part.split(".")[0] in _RESERVED:
            return f"uses the reserved device name {part.split('.')[0]!r}"
    return None


def role_place_problem(role: str, path: str) -> str | None:
    """Each role lives in its own place: a file never sits where another role's files go."""
    inside_loader = path.startswith(f"{LOADER_DIR}/")
    if role == ROLE_LOADER:
        return None if inside_loader else f"a {role} file must be under {LOADER_DIR}/"
    if inside_loader:
        return f"only the wheelhouse may be under {LOADER_DIR}/"
    return None


def path_problems(paths: Iterable[str]) -> list[Problem]:
    """Every unsafe or non-portable path. (With lower-case names only, no two can clash on a case-insensitive
    filesystem.)"""
    return [Problem(path, "safe path", why) for path in paths if (why := path_problem(path))]
