"""The DSSE signature envelope: `{payload, payloadType, signatures: [{keyid, sig}]}`.

The signature covers PAE(payloadType, payload), the pre-authentication encoding, never the JSON around it,
so nothing in the envelope can be reinterpreted. Signing lives on the connected side; this module only
encodes, parses and verifies, with Ed25519 from `cryptography`.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.errors import NoTrustedKeyError, SignatureError, UntrustedSignerError
from loader.format.canonical import JsonProblem, canonical_bytes, strict_loads
from loader.format.layout import ENVELOPE


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(body) SP body."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_bytes(self) -> bytes:
        return canonical_bytes({
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                           for s in self.signatures],
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        try:
            obj = strict_loads(data)
        except JsonProblem as exc:
            raise SignatureError(f"{ENVELOPE}: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
            raise SignatureError(f"{ENVELOPE}: not a DSSE envelope (needs exactly payload, payloadType, signatures)")
        sigs = obj["signatures"]
        if not isinstance(obj["payloadType"], str) or not isinstance(sigs, list) or not sigs:
            raise SignatureError(f"{ENVELOPE}: payloadType must be a string and signatures a non-empty list")
        try:
            payload = base64.b64decode(obj["payload"], validate=True)
            signatures = tuple(
                Signature(keyid=str(s["keyid"]), sig=base64.b64decode(s["sig"], validate=True)) for s in sigs
            )
        except (binascii.Error, TypeError, KeyError, ValueError):
            raise SignatureError(f"{ENVELOPE}: payload or a signature is not valid base64") from None
        return cls(payload=payload, payload_type=obj["payloadType"], signatures=signatures)


def verify_envelope(envelope: Envelope, expected_type: str, trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """Return the key id of the trusted key that signed the payload, or raise SignatureError.

    The key id in the envelope is only a hint for which key to try first; every pinned key is tried,
    and trust comes from the key that verifies, never from the id.
    """
    if envelope.payload_type != expected_type:
        raise SignatureError(f"{ENVELOPE}: payloadType is {envelope.payload_type!r}, expected {expected_type!r}")
    if not trusted:
        raise NoTrustedKeyError("no trusted public key was given")
    message = pae(envelope.payload_type, envelope.payload)
    hinted = [s.keyid for s in envelope.signatures]
    order = sorted(trusted, key=lambda k: k not in hinted)
    for key_id in order:
        for signature in envelope.signatures:
            try:
                trusted[key_id].verify(signature.sig, message)
            except InvalidSignature:
                continue
            return key_id
    if not any(k in trusted for k in hinted):
        raise UntrustedSignerError(f"{ENVELOPE}: signed by key {', '.join(h[:16] for h in hinted)}, which is not "
                                   f"among the {len(trusted)} trusted key(s)")
    raise SignatureError(f"{ENVELOPE}: the signature does not match the manifest (tampered or corrupted)")
