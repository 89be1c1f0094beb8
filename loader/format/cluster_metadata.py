"""What the loader writes into the cluster's model config (`metadata.esbundle`): which bundle the model came from.

`status` lists it, and a later load compares it with its own bundle to resume, to skip a model that is already
loaded, and to refuse a rollback. Both sides read it with this definition; nothing else spells these fields.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loader.format.manifest import Manifest

METADATA_KEY = "esbundle"


def bundle_metadata(manifest: Manifest, manifest_sha256: str, signer_key_id: str) -> dict[str, Any]:
    return {"bundle_id": manifest.bundle_id, "bundle_version": manifest.bundle_version,
            "manifest_sha256": manifest_sha256, "signer_key_id": signer_key_id,
            "definition_sha256": manifest.definition.sha256, "created_at": manifest.created_at}


def metadata_of(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle record of a model config the cluster returned; empty when the model came from elsewhere."""
    record = (model_config.get("metadata") or {}).get(METADATA_KEY)
    return dict(record) if isinstance(record, Mapping) else {}
