"""Would a given Elasticsearch release deploy this traced model? The native process's checks, as data.

Three checks, each in the releases that run it (facts in `loader/data/es_model_ops.json` and `es_libtorch.json`):
the TorchScript file version against what the release's libtorch reads; custom state hooks in the archive; and
the operations of the inlined graph against the allowlist (the whole graph from 8.19.20 and 9.4.0, only
`forward`'s top-level nodes against two forbidden operations in some earlier releases). The exporter predicts
with this module and the loader refuses with it, so both say what the cluster would say, in its words.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loader.releases.libtorch import (
    Version,
    _data,
    libtorch_for,
    max_file_version,
    parse_version,
    releases,
    version_text,
)


@dataclass(frozen=True)
class GraphFacts:
    """What the exporter measured on the traced module (recorded in the signed manifest)."""

    file_version: int | None
    operations: frozenset[str]  # every node kind of every top-level method, inlined, through sub-blocks
    forward_top_level: frozenset[str]  # node kinds of forward's top-level block only (the legacy check's view)
    state_hooks: bool
    node_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"file_version": self.file_version, "operations": sorted(self.operations),
                "forward_top_level_operations": sorted(self.forward_top_level), "state_hooks": self.state_hooks,
                "node_count": self.node_count}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> GraphFacts:
        return cls(file_version=obj.get("file_version"), operations=frozenset(obj.get("operations") or ()),
                   forward_top_level=frozenset(obj.get("forward_top_level_operations") or ()),
                   state_hooks=bool(obj.get("state_hooks")), node_count=int(obj.get("node_count") or 0))


def _ops() -> dict[str, Any]:
    return _data("es_model_ops.json")


def allowed_operations() -> set[str]:
    return set(_ops()["allowed_operations"])


def _in_ranges(version: Version, spec: str) -> bool:
    """'8.17.7-8.17.10, 9.1.x, 9.2.x' -> whether version falls in one of them."""
    for item in (s.strip() for s in spec.split(",")):
        if item.endswith(".x"):
            if version[:2] == parse_version(item[:-2] + ".0")[:2]:
                return True
        elif "-" in item:
            low, high = (parse_version(p) for p in item.split("-"))
            if low <= version <= high:
                return True
        elif version == parse_version(item):
            return True
    return False


def runs_full_validator(version: Version) -> bool:
    return version >= (9, 4, 0) or (version[:2] == (8, 19) and version[2] >= 20)


def runs_state_hook_check(version: Version) -> bool:
    return version >= (9, 5, 0) or (9, 4, 5) <= version < (9, 5, 0) or (version[:2] == (8, 19) and version[2] >= 20)


def forbidden_operations(version: Version) -> list[str]:
    forbidden = list(_ops()["forbidden_operations"])
    # Absent from the list in tags v9.4.0-v9.4.4 (the data file's note).
    if (9, 4, 0) <= version <= (9, 4, 4):
        forbidden = [op for op in forbidden if op != "inductor::_reinterpret_tensor"]
    return forbidden


def _listing(template: str, operations: list[str]) -> str:
    """The data file's message with its `<op1>, <op2> (...)` placeholder replaced by the operations."""
    return template.split("<op1>")[0] + ", ".join(operations)


def refusal(version: Version, graph: GraphFacts) -> str | None:
    """The error the release would give when deploying this model, or None when it would load it."""
    libtorch = libtorch_for(version)
    readable = max_file_version(libtorch) if libtorch else None
    if graph.file_version is not None and readable is not None and graph.file_version > readable:
        return (f"Attempted to read a PyTorch file with version {graph.file_version}, but the maximum supported "
                f"version for reading is {readable}")
    messages = _ops()["messages"]
    if runs_state_hook_check(version) and graph.state_hooks:
        return messages["state_hooks"]
    if runs_full_validator(version):
        if graph.node_count > 1_000_000:
            return f"Model graph is too large: {graph.node_count} nodes exceeds limit of 1000000"
        forbidden = sorted(graph.operations & set(forbidden_operations(version)))
        if forbidden:
            return _listing(messages["forbidden"], forbidden)
        unknown = sorted(graph.operations - set(_ops()["allowed_operations"]))
        if unknown:
            return _listing(messages["unrecognised"], unknown)
    elif _in_ranges(version, _ops()["legacy_check"]["releases"]):
        hit = sorted(graph.forward_top_level & set(_ops()["legacy_check"]["forbidden"]))
        if hit:
            return f"Loading the inference process failed because it contains forbidden operation: {hit[0]}"
    return None


def known_versions() -> list[Version]:
    """The releases of the table: every patch of a range within one minor; for a range over several minors,
    its ends and each minor's .0 (enough to draw the boundaries, which all fall on range ends)."""
    out: set[Version] = set()
    for release in releases():
        (major, low, p0), (_, high, p1) = release.es_from, release.es_to
        if low == high:
            out.update((major, low, patch) for patch in range(p0, p1 + 1))
        else:
            out.update({release.es_from, release.es_to, *((major, minor, 0) for minor in range(low + 1, high + 1))})
    return sorted(out)


def accepting_ranges(graph: GraphFacts, versions: Sequence[Version] | None = None) -> list[str]:
    """The known releases that would deploy the model, as compact ranges ('8.19.8-8.19.19', '9.2.0-9.3.8')."""
    ranges: list[list[Version]] = []
    previous: Version | None = None
    for version in versions or known_versions():
        ok = refusal(version, graph) is None
        if ok and ranges and previous is not None and ranges[-1][1] == previous:
            ranges[-1][1] = version
        elif ok:
            ranges.append([version, version])
        previous = version
    return [version_text(a) if a == b else f"{version_text(a)}-{version_text(b)}" for a, b in ranges]
