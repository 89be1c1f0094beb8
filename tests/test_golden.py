"""A bundle written by format v1's first release must keep verifying, byte for byte, in every later release."""
from __future__ import annotations

import hashlib
from pathlib import Path

from loader.bundle.content import read_verified
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle

GOLDEN = Path(__file__).parent / "golden"


def test_golden_v1_bundle_still_verifies_and_reassembles() -> None:
    verified = verify_bundle(GOLDEN / "v1-bundle", load_trusted_keys([GOLDEN / "v1-golden.pub"]), progress=False)
    manifest = verified.manifest
    assert (manifest.model_id, manifest.schema, manifest.expires_at) == ("golden", "esbundle.manifest.v1", None)
    definition = b"".join(read_verified(GOLDEN / "v1-bundle", part) for part in manifest.parts())
    expected = (GOLDEN / "v1-definition.sha256").read_text().strip()
    assert hashlib.sha256(definition).hexdigest() == expected == manifest.definition.sha256
