"""Measure a saved TorchScript archive the way Elasticsearch's native process will look at it, and judge it.

The file version (the archive's `.data/version` record), whether any entry carries custom state hooks, and the
node kinds of every top-level method after inlining, through every sub-block (measuring needs torch, imported
when called). `assess` is the one step export and pack share: measure, then judge against the target release.
"""
from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.stages import StageLog
from loader.errors import ModelError, PolicyError, UsageError
from loader.releases.deployability import GraphFacts, accepting_ranges, known_versions, refusal
from loader.releases.libtorch import Version, parse_version, version_text

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


def graph_facts(path: Path, module: Any = None) -> GraphFacts:
    """`module`: the archive at `path` already loaded by the caller (export loads it once, for the check too)."""
    import torch

    if module is None:
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


@dataclass(frozen=True)
class GraphVerdict:
    """What the archive holds and what the target release would make of it."""

    facts: GraphFacts | None  # None: not measured (pack without torch, or not an archive torch can load)
    record: Mapping[str, Any]  # the manifest's compatibility entries: facts, releases that deploy it, any override
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def report(self, log: StageLog, indent: str = "  ") -> None:
        for note in self.notes:
            log.say(f"{indent}{note}")
        for warning in self.warnings:
            log.warn(warning)


def parse_target(text: str | None) -> Version | None:
    try:
        return parse_version(text) if text else None
    except ValueError as exc:
        raise UsageError(f"--target-es-version: {exc}") from None


def assess(definition: Path, target: Version | None, allow_unsupported: bool, *, required: bool,
           module: Any = None) -> GraphVerdict:
    """Measure the archive as the cluster will and judge it against the target release (or the newest known).

    A target release that would refuse it stops here unless `allow_unsupported` (recorded). Without a target
    and not `required` (pack), an archive that cannot be measured is written anyway, with a warning: the loader
    then cannot check its graph against the cluster before uploading."""
    try:
        facts = graph_facts(definition, module)
    except ModuleNotFoundError:
        if required:
            raise
        if target:
            raise UsageError("--target-es-version needs torch to read the model's graph",
                             hint="pip install torch (the version the cluster runs), or leave out the target") from None
        return GraphVerdict(None, {}, warnings=("torch is not installed: the graph was not measured, and the loader "
                                                "cannot check it against the cluster before uploading",))
    except ModelError as exc:
        if target or required:
            raise
        return GraphVerdict(None, {}, warnings=(f"{exc.message}: the graph was not measured",))
    return judge(facts, target, allow_unsupported)


def judge(facts: GraphFacts, target: Version | None, allow_unsupported: bool) -> GraphVerdict:
    """Decide, before a bundle is written, whether the target release would deploy it."""
    ranges = accepting_ranges(facts)
    record: dict[str, Any] = {"graph": facts.to_json(), "deploys_on": ranges, "allow_unsupported_ops": False}
    notes = (f"{len(facts.operations)} operations; releases that would deploy it: {', '.join(ranges) or 'none known'}",)
    if target is None:
        newest = known_versions()[-1]
        reason = refusal(newest, facts)
        warnings = (f"Elasticsearch {version_text(newest)} would refuse to deploy this model: {reason}",) if reason \
            else ()
        return GraphVerdict(facts, record, notes, warnings)
    reason = refusal(target, facts)
    if not reason:
        return GraphVerdict(facts, record, notes)
    text = f"Elasticsearch {version_text(target)} would refuse to deploy this model: {reason}"
    if not allow_unsupported:
        raise PolicyError(text, hint=f"releases that would deploy it: {', '.join(ranges) or 'none known'}; "
                          "pass --allow-unsupported-ops to write the bundle anyway (recorded in the manifest)")
    record.update(allow_unsupported_ops=True, predicted_refusal=reason)
    return GraphVerdict(facts, record, notes, (f"--allow-unsupported-ops: {text}",))
