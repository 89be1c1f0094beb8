"""The stand-in's "native inference process": what pytorch_inference does when a deployment starts.

Given the reassembled definition bytes and the emulated release (its facts: releases.py and
release_facts.json, the stand-in's own, never the product's), in this order: refuse a TorchScript file
version the release's libtorch cannot read (PyTorchStreamReader's check, which also runs before ml-cpp's
pre-load scan: an archive it cannot open is not scanned, the load fails); refuse archives that carry state
hooks (releases that scan, before loading); load with `torch.jit.load`; then run the release's graph check
(the full validator, or the legacy forward check) with the release's allowlist and forbidden operations.
Every refusal is a `NativeFailure` whose text is what the node reports; the API layer wraps it in
Elasticsearch's node-failure error.

What a `started` deployment here proves, and what it cannot:

- The archive's version record is at most what the emulated release's libtorch reads, and the archive carries
  no state hooks where the release scans for them (both read from the archive bytes, as ml-cpp does).
- The graph's operations, as the host's torch inlines them, pass the release's allowlist and forbidden list
  (or its legacy check), by the stand-in's facts.
- The archive loads, and `_infer` runs, in the host's torch. The host's torch is newer than any cluster's
  libtorch, so this proves the archive is loadable by a recent torch, not by the release's libtorch: an
  archive within the version limit can still use an operator overload or schema the older libtorch lacks,
  and an older torch may inline a graph into different operation names. Only a real cluster (or that exact
  libtorch) proves those.
- Without torch installed only the archive checks run (version, state hooks); nothing is loaded.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

from . import releases
from .releases import Release

HOOKS = ("__getstate__", "__setstate__")


class NativeFailure(Exception):
    """The node's reason for failing a deployment."""


@dataclass
class Loaded:
    module: Any  # torch.jit.ScriptModule, or None when torch is not installed
    file_version: int
    ops: frozenset[str]


def _archive(definition: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(definition))
    except zipfile.BadZipFile as exc:
        # libtorch's text for a definition that is not a TorchScript zip archive.
        raise NativeFailure(
            "PytorchStreamReader failed reading zip archive: failed finding central directory"
        ) from exc


def file_version(archive: zipfile.ZipFile) -> int:
    """PyTorchStreamReader's rule: `<root>/.data/version` if present, else `<root>/version`."""
    names = archive.namelist()
    if not names or "/" not in names[0]:
        raise NativeFailure(f"file in archive is not in a subdirectory: {names[0] if names else ''}")
    root = names[0].split("/", 1)[0]
    for candidate in (f"{root}/.data/version", f"{root}/version"):
        if candidate in names:
            text = archive.read(candidate).decode("ascii", errors="replace").strip()
            try:
                return int(text)
            except ValueError as exc:
                raise NativeFailure(f"Couldn't parse the version {text} as Long Long.") from exc
    raise NativeFailure("PytorchStreamReader failed locating file version: file not found")


def state_hooks(archive: zipfile.ZipFile) -> list[str]:
    """Hook names found in the raw bytes of any archive entry."""
    found: set[str] = set()
    for name in archive.namelist():
        data = archive.read(name)
        found.update(hook for hook in HOOKS if hook.encode() in data)
    return sorted(found)


def _collect(block: Any, kinds: set[str], limit: int) -> int:
    count = 0
    for node in block.nodes():
        kinds.add(node.kind())
        count += 1
        for sub in node.blocks():
            count += _collect(sub, kinds, limit)
        if count > limit:
            break
    return count


def graph_ops(module: Any, limit: int) -> tuple[frozenset[str], int]:
    """Node kinds of every top-level method after inlining, recursively through sub-blocks."""
    import torch

    kinds: set[str] = set()
    total = 0
    for name in module._c._method_names():
        graph = module._c._get_method(name).graph.copy()
        torch._C._jit_pass_inline(graph)
        total += _collect(graph, kinds, limit)
    return frozenset(kinds), total


def start(definition: bytes, release: Release) -> Loaded:
    """Everything the native process does before a deployment reports `started`."""
    archive = _archive(definition)
    version = file_version(archive)
    if version > release.max_file_version:
        raise NativeFailure(releases.version_message(version, release))
    if release.state_hook_check:
        hooks = state_hooks(archive)
        if hooks:
            raise NativeFailure(releases.message("state_hooks", hooks))
    try:
        import torch
    except ImportError:
        return Loaded(None, version, frozenset())
    try:
        module = torch.jit.load(io.BytesIO(definition), map_location="cpu")
    except Exception as exc:  # anything libtorch raises fails the deployment with its text
        raise NativeFailure(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from exc
    module.eval()
    rules = releases.op_rules(release)
    ops, count = graph_ops(module, rules.node_limit)
    # The legacy check's view: forward's top-level nodes, in order, no inlining, no sub-blocks.
    forward_top_level = [node.kind() for node in module._c._get_method("forward").graph.nodes()]
    refusal = releases.graph_refusal(release, ops, forward_top_level, count)
    if refusal is not None:
        raise NativeFailure(refusal)
    return Loaded(module, version, ops)
