"""The DSSE signature envelope: `{payload, payloadType, signatures: [{keyid, sig}]}`.

The signature covers PAE(payloadType, payload), the pre-authentication encoding, never the JSON around it,
so nothing in the envelope can be reinterpreted. Signing lives on the connected side; this module only
encodes, parses and verifies, with Ed25519 from `cryptography`.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.errors import NoTrustedKeyError, SignatureError, UntrustedSignerError
from loader.format.canonical import JsonProblem, canonical_bytes, strict_loads
from loader.format.layout import ENVELOPE, MAX_MANIFEST_BYTES

MAX_SIGNATURES = 8
ED25519_SIGNATURE_BYTES = 64
_KEY_ID = re.compile(r"^[0-9a-f]{64}$")


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
        """Parse an envelope, bounded before any cryptography: its shape, how many signatures, their sizes."""
        try:
            obj = strict_loads(data, max_depth=3, max_values=4 * MAX_SIGNATURES + 8)
        except JsonProblem as exc:
            raise SignatureError(f"{ENVELOPE}: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
            raise SignatureError(f"{ENVELOPE}: not a DSSE envelope (needs exactly payload, payloadType, signatures)")
        sigs = obj["signatures"]
        if not isinstance(obj["payloadType"], str) or not isinstance(sigs, list) or not sigs:
            raise SignatureError(f"{ENVELOPE}: payloadType must be a string and signatures a non-empty list")
        if len(sigs) > MAX_SIGNATURES:
            raise SignatureError(f"{ENVELOPE}: {len(sigs)} signatures; at most {MAX_SIGNATURES} are read")
        payload = _base64(obj["payload"], MAX_MANIFEST_BYTES, "payload")
        return cls(payload=payload, payload_type=obj["payloadType"],
                   signatures=tuple(_signature(s) for s in sigs))


def _base64(value: object, limit: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * -(-limit // 3):
        raise SignatureError(f"{ENVELOPE}: {what} must be base64 of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{ENVELOPE}: {what} is not valid base64") from None


def _signature(obj: object) -> Signature:
    if not isinstance(obj, dict) or set(obj) != {"keyid", "sig"}:
        raise SignatureError(f"{ENVELOPE}: a signature must hold exactly keyid and sig")
    if not isinstance(obj["keyid"], str) or not _KEY_ID.match(obj["keyid"]):
        raise SignatureError(f"{ENVELOPE}: a signature's keyid is not a key id (64 lower-case hex digits)")
    sig = _base64(obj["sig"], ED25519_SIGNATURE_BYTES, "a signature")
    if len(sig) != ED25519_SIGNATURE_BYTES:
        raise SignatureError(f"{ENVELOPE}: a signature is {len(sig)} bytes; Ed25519 signatures are "
                             f"{ED25519_SIGNATURE_BYTES}")
    return Signature(keyid=obj["keyid"], sig=sig)


def verify_envelope(envelope: Envelope, expected_type: str, trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """Return the key id of the trusted key that signed the payload, or raise SignatureError.

    Only signatures whose key id names a trusted key are tried, each once with that key: the id picks the key to
    try, and trust comes from the key that verifies, never from the id. So the work is bounded by the number of
    signatures, whatever the envelope holds.
    """
    if envelope.payload_type != expected_type:
        raise SignatureError(f"{ENVELOPE}: payloadType is {envelope.payload_type!r}, expected {expected_type!r}")
    if not trusted:
        raise NoTrustedKeyError("no trusted public key was given")
    candidates = [s for s in envelope.signatures if s.keyid in trusted]
    if not candidates:
        hinted = ", ".join(s.keyid[:16] for s in envelope.signatures)
        raise UntrustedSignerError(f"{ENVELOPE}: signed by key {hinted}, which is not among the {len(trusted)} "
                                   "trusted key(s)")
    message = pae(envelope.payload_type, envelope.payload)
    for signature in candidates:
        try:
            trusted[signature.keyid].verify(signature.sig, message)
        except InvalidSignature:
            continue
        return signature.keyid
    raise SignatureError(f"{ENVELOPE}: the signature does not match the manifest (tampered or corrupted)")
