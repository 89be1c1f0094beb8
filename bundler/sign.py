"""Signing: a DSSE envelope with an Ed25519 signature over PAE(payloadType, exact manifest bytes)."""
from __future__ import annotations

from bundler.keys import SigningKey
from loader.format.dsse import Envelope, Signature, pae
from loader.format.manifest import PAYLOAD_TYPE


def sign_manifest(manifest_bytes: bytes, key: SigningKey) -> bytes:
    signature = key.private_key.sign(pae(PAYLOAD_TYPE, manifest_bytes))
    envelope = Envelope(payload=manifest_bytes, payload_type=PAYLOAD_TYPE,
                        signatures=(Signature(keyid=key.key_id, sig=signature),))
    return envelope.to_bytes()
