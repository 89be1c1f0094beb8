"""Measure a saved TorchScript archive the way Elasticsearch's native process will look at it.

The file version (the archive's `.data/version` record), whether any entry carries custom state hooks, and the
node kinds of every top-level method after inlining, through every sub-block. Needs torch (export extra).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from loader.compat import Version, version_text
from loader.deployability import GraphFacts, accepting_ranges, known_versions, refusal
from loader.errors import ModelError, PolicyError

_HOOKS = (b"__setstate__", b"__getstate__")


def file_version(path: Path) -> int | None:
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if parts[-1] == "version" and (len(parts) == 2 or parts[-2] == ".data"):
                return int(archive.read(name).strip() or 0)
    return None


def has_state_hooks(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as handle:
                tail = b""
                while chunk := handle.read(1 << 20):
                    if any(hook in tail + chunk for hook in _HOOKS):
                        return True
                    tail = chunk[-16:]
    return False


def _kinds(block: Any, into: set[str]) -> int:
    count = 0
    for node in block.nodes():
        into.add(node.kind())
        count += 1
        for sub in node.blocks():
            count += _kinds(sub, into)
    return count


def graph_facts(path: Path) -> GraphFacts:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelError(f"{path}: not a TorchScript archive torch can load ({exc})") from None
    operations: set[str] = set()
    nodes = 0
    for name in module._c._method_names():
        graph = module._c._get_method(name).graph.copy()
        torch._C._jit_pass_inline(graph)
        nodes += _kinds(graph, operations)
    top = {node.kind() for node in module.forward.graph.nodes()} if hasattr(module, "forward") else set()
    return GraphFacts(file_version=file_version(path), operations=frozenset(operations),
                      forward_top_level=frozenset(top), state_hooks=has_state_hooks(path), node_count=nodes)


def judge(facts: GraphFacts, target: Version | None,
          allow_unsupported: bool) -> tuple[dict[str, Any], list[str], list[str]]:
    """Decide, before a bundle is written, whether the target release would deploy it.

    Returns the manifest's record (facts, the release ranges that would deploy it, any override), notes and
    warnings to show. A refusal by the target stops the export unless `allow_unsupported` (recorded).
    """
    ranges = accepting_ranges(facts)
    record: dict[str, Any] = {"graph": facts.to_json(), "deploys_on": ranges, "allow_unsupported_ops": False}
    notes = [f"{len(facts.operations)} operations; releases that would deploy it: {', '.join(ranges) or 'none known'}"]
    warnings: list[str] = []
    if target is None:
        newest = known_versions()[-1]
        reason = refusal(newest, facts)
        if reason:
            warnings.append(f"Elasticsearch {version_text(newest)} would refuse to deploy this model: {reason}")
        return record, notes, warnings
    reason = refusal(target, facts)
    if reason:
        text = f"Elasticsearch {version_text(target)} would refuse to deploy this model: {reason}"
        if not allow_unsupported:
            raise PolicyError(text, hint=f"releases that would deploy it: {', '.join(ranges) or 'none known'}; "
                              "pass --allow-unsupported-ops to write the bundle anyway (recorded in the manifest)")
        record.update(allow_unsupported_ops=True, predicted_refusal=reason)
        warnings.append(f"--allow-unsupported-ops: {text}")
    return record, notes, warnings
