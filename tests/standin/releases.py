"""What the emulated Elasticsearch release runs in its native inference process (ml-cpp's pytorch_inference).

The facts are the stand-in's own: `release_facts.json` beside this file, written from Elasticsearch's,
ml-cpp's, eland's and PyTorch's sources, each fact with its source (and, where the sources did not settle it,
why it is unconfirmed). Nothing here imports the product's code or reads its data files: the stand-in judges
what the product uploads independently, and tests/test_standin_facts.py compares the two tables so that a wrong
edit on either side fails a test instead of being mirrored by the judge.

For one release this answers: which libtorch it runs, the highest TorchScript file version that libtorch reads,
which checks `_start` applies (pre-load state-hook scan, full graph validator, legacy forward check), with
which operation lists and in which words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FACTS_FILE = Path(__file__).with_name("release_facts.json")

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """`9.2.0`, `v9.2.0`, `8.0.0-alpha1` or `9.6.0 (main, unreleased)` → (major, minor, patch)."""
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text.strip())
    if not match:
        raise ValueError(f"not an Elasticsearch version: {text!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def version_text(version: Version) -> str:
    return ".".join(str(n) for n in version)


@cache
def facts() -> dict[str, Any]:
    """The stand-in's facts file, parsed once."""
    loaded: dict[str, Any] = json.loads(FACTS_FILE.read_text(encoding="utf-8"))
    return loaded


def covered(version: Version, spec: dict[str, Any]) -> bool:
    """Whether a fact with a `lines` map (and `later_lines`) holds for this release."""
    lines: dict[tuple[int, int], dict[str, str]] = {
        (int(key.split(".")[0]), int(key.split(".")[1])): bounds for key, bounds in spec["lines"].items()
    }
    line = version[:2]
    if line in lines:
        bounds = lines[line]
        if version < parse_version(bounds["from"]):
            return False
        return "to" not in bounds or version <= parse_version(bounds["to"])
    return bool(spec.get("later_lines")) and line > max(lines)


def libtorch_for(version: Version) -> str:
    """The main-line upgrade in force at this version, unless the version's line got a backport."""
    table = facts()["libtorch"]
    upgrades = sorted(table["upgrades"], key=lambda u: parse_version(u["first_release"]))
    libtorch = upgrades[0]["libtorch"]  # older than every known upgrade (pre-releases): the first known
    for upgrade in upgrades:
        if parse_version(upgrade["first_release"]) <= version:
            libtorch = upgrade["libtorch"]
    for backport in table["backports"]:
        line = tuple(int(n) for n in backport["line"].split("."))
        if version[:2] == line and version >= parse_version(backport["first_patch"]):
            libtorch = backport["libtorch"]
    return libtorch


def max_file_version(libtorch: str) -> int:
    """The highest TorchScript file version that libtorch reads (KeyError: the facts file lacks it)."""
    readers = {r["libtorch"]: int(r["max_file_version"]) for r in facts()["torchscript_readers"]["readers"]}
    return readers[libtorch]


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
        return version_text(self.version)


def release(es_version: str) -> Release:
    version = parse_version(es_version)
    checks = facts()["checks"]
    libtorch = libtorch_for(version)
    full = covered(version, checks["graph_validator"])
    return Release(
        version=version,
        libtorch=libtorch,
        max_file_version=max_file_version(libtorch),
        full_validator=full,
        # The graph validator replaced the legacy check in the releases that have it.
        legacy_check=not full and covered(version, checks["legacy_forbidden_check"]),
        state_hook_check=covered(version, checks["state_hook_scan"]),
    )


@dataclass(frozen=True)
class OpRules:
    allowed: frozenset[str]
    forbidden: frozenset[str]
    legacy_forbidden: tuple[str, ...]
    node_limit: int


def op_rules(rel: Release) -> OpRules:
    """The operation lists of the release's checks (forbidden entries may be limited to some releases)."""
    validator = facts()["checks"]["graph_validator"]
    forbidden = frozenset(
        entry["op"] for entry in validator["forbidden_operations"]
        if "lines" not in entry or covered(rel.version, entry)
    )
    return OpRules(
        allowed=frozenset(validator["allowed_operations"]),
        forbidden=forbidden,
        legacy_forbidden=tuple(facts()["checks"]["legacy_forbidden_check"]["operations"]),
        node_limit=int(validator["node_limit"]),
    )


def message(kind: str, items: list[str] | None = None, count: int | None = None) -> str:
    """A native-process message in the release's words; lists are sorted and joined with ', '."""
    checks = facts()["checks"]
    joined = ", ".join(sorted(items or []))
    if kind == "legacy":
        return str(checks["legacy_forbidden_check"]["message"]).format(op=(items or [""])[0])
    if kind == "state_hooks":
        return str(checks["state_hook_scan"]["message"]).format(hooks=joined)
    template = str(checks["graph_validator"]["messages"][kind])
    return template.format(ops=joined, count=count)


def version_message(version: int, rel: Release) -> str:
    """libtorch's refusal of a TorchScript file version above what it reads."""
    template = str(facts()["torchscript_readers"]["message"])
    return template.format(version=version, maximum=rel.max_file_version)


def graph_refusal(rel: Release, ops: frozenset[str], forward_top_level: Sequence[str],
                  node_count: int) -> str | None:
    """The release's post-load check on a graph, in its words; None when it accepts the graph.

    `ops`: every node kind of every method after inlining, through sub-blocks (the validator's view);
    `forward_top_level`: the node kinds of forward's top-level block, in graph order (the legacy check's view).
    """
    rules = op_rules(rel)
    if rel.full_validator:
        if node_count > rules.node_limit:
            return message("too_large", count=node_count)
        forbidden = sorted(ops & rules.forbidden)
        if forbidden:
            return message("forbidden", forbidden)
        unrecognised = sorted(ops - rules.allowed)
        if unrecognised:
            return message("unrecognised", unrecognised)
    elif rel.legacy_check:
        hit = [op for op in forward_top_level if op in rules.legacy_forbidden]
        if hit:
            return message("legacy", hit[:1])
    return None
