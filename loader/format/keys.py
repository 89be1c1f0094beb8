"""Key ids: how a bundle names the key that signed it.

A key id is the sha256 of the raw 32-byte Ed25519 public key, in hex. It names a key; it never makes one trusted
(which keys are trusted is the operator's choice: `loader.bundle.trust`).
"""
from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# What a public key file is called, so a directory of pinned keys can be read.
PUBLIC_KEY_SUFFIXES = (".pub", ".pem")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
