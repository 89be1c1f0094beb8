"""What a bundle says about itself, for people: model, task, source, sizes, signer, dates.

Without a trusted key nothing is authenticated, and the summary says so plainly.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.bundle.content import read_capped
from loader.bundle.verify import authenticate
from loader.bundle.volumes import locate
from loader.errors import LayoutError
from loader.format import layout
from loader.format.manifest import Manifest
from loader.releases.deployability import GraphFacts, accepting_ranges, allowed_operations


def describe(root: Path, trusted: Mapping[str, Ed25519PublicKey] | None) -> dict[str, Any]:
    primary = locate(root).primary
    if trusted:
        manifest, _, signer, _ = authenticate(primary, trusted)
        signature = f"checked: valid, signed by trusted key {signer}"
    else:
        manifest_bytes = read_capped(primary / layout.MANIFEST, layout.MAX_MANIFEST_BYTES,
                                     LayoutError(f"{layout.MANIFEST}: missing"))
        manifest = Manifest.from_bytes(manifest_bytes)
        signature = "NOT checked (no trusted key given); nothing below is authenticated"
    d = manifest.definition
    source = manifest.provenance.get("source", {})
    return {
        "bundle_id": manifest.bundle_id,
        "model_id": manifest.model_id,
        "task_type": manifest.task_type,
        "bundle_version": manifest.bundle_version,
        "source": source,
        "created_at": manifest.created_at,
        "expires_at": manifest.expires_at,
        "signer_key_id": manifest.signer_key_id,
        "signature": signature,
        "signature_checked": bool(trusted),
        "definition_bytes": d.total_length,
        "part_size": d.part_size,
        "part_count": d.part_count,
        "definition_sha256": d.sha256,
        "stored_bytes": manifest.stored_bytes,
        "files": len(manifest.files),
        "samples": len(manifest.samples),
        "compatibility": dict(manifest.compatibility),
        "tools": dict(manifest.tools),
        "package": _package(manifest),
    }


def _package(manifest: Manifest) -> dict[str, Any] | None:
    package = manifest.package
    if package is None:
        return None
    meta = package.metadata
    return {"name": package.name, "source_url": package.source_url, "fetched_at": package.fetched_at,
            "minimum_version": meta.get("minimum_version"), "platform_architecture": meta.get("platform_architecture"),
            "sha256": meta.get("sha256"), "size": meta.get("size"), "description": meta.get("description")}


def render(info: Mapping[str, Any]) -> list[str]:
    """One line per row; the command line prints each as exactly one line."""
    src = info["source"]
    source = src.get("hub_model_id") or src.get("directory") or src.get("url") or "-"
    if src.get("commit_sha"):
        source += f" @ {src['commit_sha']}"
    rows = [
        ("model id", info["model_id"]), ("task", info["task_type"]), ("bundle", info["bundle_id"]),
        ("bundle version", info["bundle_version"]), ("source", source),
        ("definition", f"{info['definition_bytes']} bytes in {info['part_count']} parts of {info['part_size']}"),
        ("stored", f"{info['stored_bytes']} bytes in {info['files']} files"),
        ("signer key id", info["signer_key_id"]), ("signature", info["signature"]),
        ("created", info["created_at"]), ("expires", info["expires_at"] or "never"),
        ("samples", f"{info['samples']} recorded for the smoke test"),
    ]
    package = info.get("package")
    if package:
        rows += [("package", f"{package['name']} (Elastic's packaged model), minimum_version "
                  f"{package['minimum_version']}, platform {package['platform_architecture'] or 'any'}"),
                 ("fetched", f"{package['fetched_at']} from {package['source_url']}")]
    compatibility = dict(info["compatibility"])
    graph = compatibility.pop("graph", None)
    compatibility.pop("deploys_on", None)  # recomputed below from the facts, with this release's data
    for key, value in sorted(compatibility.items()):
        rows.append((key.replace("_", " "), value))
    if isinstance(graph, dict):
        facts = GraphFacts.from_json(graph)
        rows.append(("graph", f"{len(facts.operations)} operations, {facts.node_count} nodes, TorchScript file "
                     f"version {facts.file_version}, state hooks: {'YES' if facts.state_hooks else 'none'}"))
        outside = sorted(facts.operations - allowed_operations())
        rows.append(("ops not allowlisted", ", ".join(outside) or "none"))
        rows.append(("deploys on", ", ".join(accepting_ranges(facts)) or "no known release"))
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]
