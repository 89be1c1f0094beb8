"""`pack`: a TorchScript model traced elsewhere, with its Elasticsearch config and vocabulary, into a signed bundle.

The same option checks, graph assessment and writer as `export`; only the source differs (files given as they are,
nothing traced or compared here).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bundler.graph import assess, parse_target
from bundler.keys import load_signing_key
from bundler.options import BundleOptions, check_bundle_options
from bundler.stages import StageLog
from bundler.writer.bundle import write_bundle
from bundler.writer.travel import prepared_travel
from loader.errors import ModelError, UsageError
from loader.format.canonical import JsonProblem, strict_loads
from loader.format.manifest import Manifest


@dataclass(frozen=True, kw_only=True)
class PackOptions(BundleOptions):
    definition: Path
    config: Path
    vocabulary: Path


@dataclass(frozen=True)
class PackResult:
    out: Path
    manifest: Manifest

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"bundle": str(self.out), "bundle_id": m.bundle_id, "model_id": m.model_id, "volumes": m.volumes,
                "task_type": m.task_type, "parts": m.definition.part_count,
                "definition_bytes": m.definition.total_length, "signer_key_id": m.signer_key_id}


def read_json(path: Path, what: str) -> Any:
    try:
        return strict_loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    except JsonProblem as exc:
        raise ModelError(f"{what} {path}: {exc}") from None


def run_pack(options: PackOptions, *, log: StageLog | None = None) -> PackResult:
    log = log or StageLog()
    config = read_json(options.config, "config")
    vocabulary = read_json(options.vocabulary, "vocabulary")
    if not isinstance(config, dict) or not isinstance(config.get("inference_config"), dict):
        raise ModelError(f"config {options.config}: has no inference_config object")
    options = replace(options, es_model_id=options.es_model_id or options.definition.stem.lower())
    check_bundle_options(options)
    key = load_signing_key(options.signing_key)
    verdict = assess(options.definition, parse_target(options.target_es_version), options.allow_unsupported_ops,
                     required=False)
    verdict.report(log, indent="")
    graph = verdict.record.get("graph") or {}
    with prepared_travel(options.travel) as travel:
        manifest = write_bundle(
            options.out, definition=options.definition, config=config, vocabulary=vocabulary, signing_key=key,
            model_id=str(options.es_model_id), task_type=next(iter(config["inference_config"]), ""),
            bundle_version=options.bundle_version, expires_in_days=options.expires_in_days,
            part_size=options.part_size, travel=travel, compatibility=verdict.record,
            provenance={"source": {"kind": "pack", "definition": options.definition.name},
                        "torchscript_file_version": graph.get("file_version")})
    return PackResult(options.out, manifest)
