"""What the emulated Elasticsearch release runs in its native inference process.

Reads `loader/data/es_libtorch.json` and `loader/data/es_model_ops.json` from the repository *as
data* at run time (never importing the loader's code: the stand-in judges the loader
independently) and answers, for one release: which libtorch it has, the highest TorchScript file
version that libtorch reads, and which graph checks `_start` applies, with which messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parents[2] / "loader" / "data"

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """`9.2.0`, `v9.2.0`, `8.0.0-alpha1` or `9.6.0 (main, unreleased)` → (major, minor, patch)."""
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text.strip())
    if not match:
        raise ValueError(f"not an Elasticsearch version: {text!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


def _floors_cover(version: Version, floors: list[Version]) -> bool:
    """`X.Y.Z and later` lists: covered if a floor of the same minor line is at or below the
    version, or if the version is beyond the highest floor (later minors inherit the check)."""
    same_line = [f for f in floors if f[:2] == version[:2]]
    if same_line:
        return version >= min(same_line)
    return version > max(floors)


def _ranges(text: str) -> list[tuple[Version, Version]]:
    """`8.17.7-8.17.10, 9.1.x, ...` → inclusive version ranges."""
    result = []
    for item in (part.strip() for part in text.split(",")):
        if item.endswith(".x"):
            major, minor = (int(n) for n in item[:-2].split("."))
            result.append(((major, minor, 0), (major, minor, 10**6)))
        elif "-" in item:
            low, high = item.split("-")
            result.append((parse_version(low), parse_version(high)))
        else:
            result.append((parse_version(item), parse_version(item)))
    return result


@dataclass(frozen=True)
class Release:
    """The native-process facts for one Elasticsearch version."""

    version: Version
    libtorch: str
    max_file_version: int
    full_validator: bool
    legacy_check: bool
    state_hook_check: bool

    @property
    def number(self) -> str:
        return ".".join(str(n) for n in self.version)


def release(es_version: str) -> Release:
    version = parse_version(es_version)
    libtorch_data = _load("es_libtorch.json")
    ops = _load("es_model_ops.json")
    ranges = [r for r in libtorch_data["ranges"] if not r.get("prerelease_only")]
    libtorch = ranges[-1]["libtorch"]
    for entry in ranges:
        if parse_version(entry["es_from"]) <= version <= parse_version(entry["es_to"]):
            libtorch = entry["libtorch"]
            break
    else:
        # Outside every known range: older than the first gets the first, newer the newest.
        if version < parse_version(ranges[0]["es_from"]):
            libtorch = ranges[0]["libtorch"]
    full_floors = _release_floors([parse_version(v) for v in ops["full_validator_releases"]])
    hook_floors = [parse_version(v) for v in re.findall(r"\d+\.\d+\.\d+", ops["state_hook_check"])]
    legacy = _ranges(ops["legacy_check"]["releases"])
    return Release(
        version=version,
        libtorch=libtorch,
        max_file_version=int(libtorch_data["max_readable_torchscript_file_version"][libtorch]),
        full_validator=_floors_cover(version, full_floors),
        legacy_check=any(low <= version <= high for low, high in legacy),
        state_hook_check=_floors_cover(version, hook_floors),
    )


def _release_floors(listed: list[Version]) -> list[Version]:
    """The lowest listed patch of each minor line: `v9.4.0 ... v9.4.5` → 9.4.0."""
    floors: dict[tuple[int, int], Version] = {}
    for v in listed:
        floors[v[:2]] = min(floors.get(v[:2], v), v)
    return sorted(floors.values())


@dataclass(frozen=True)
class OpRules:
    allowed: frozenset[str]
    forbidden: frozenset[str]
    legacy_forbidden: tuple[str, ...]
    node_limit: int


def op_rules(rel: Release) -> OpRules:
    ops = _load("es_model_ops.json")
    limit_text = ops["messages"]["too_large"]
    limit = int(re.search(r"limit of (\d+)", limit_text).group(1))  # type: ignore[union-attr]
    forbidden = set(ops["forbidden_operations"])
    # The note names an op some tags lacked in their forbidden list; honour it for those tags.
    absent = re.search(r"(\S+) is absent from the forbidden list in tags (v[\d.]+)-(v[\d.]+)",
                       ops.get("forbidden_note", ""))
    if absent and parse_version(absent.group(2)) <= rel.version <= parse_version(absent.group(3)):
        forbidden.discard(absent.group(1))
    return OpRules(
        allowed=frozenset(ops["allowed_operations"]),
        forbidden=frozenset(forbidden),
        legacy_forbidden=tuple(ops["legacy_check"]["forbidden"]),
        node_limit=limit,
    )


def message(kind: str, items: list[str] | None = None, count: int | None = None) -> str:
    """A native-process message from the data file, with its placeholder filled in.

    The data file writes the texts with a descriptive tail (`<op1>, <op2> (sorted, comma
    separated)`); the real message is the part before the first placeholder plus the items.
    """
    ops = _load("es_model_ops.json")
    if kind == "legacy":
        template = ops["legacy_check"]["message"]
        return template.split("<op>")[0] + (items or [""])[0]
    template = ops["messages"][kind]
    if kind == "too_large":
        return re.sub(r"\bN\b", str(count), template)
    if kind == "state_hooks":
        return template.split(":")[0] + ": " + ", ".join(sorted(items or []))
    prefix = template.split("<op1>")[0]
    return prefix + ", ".join(sorted(items or []))
