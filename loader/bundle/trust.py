"""The public keys the operator pins: read from files or a directory of them, keyed by key id."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.errors import KeyFileError
from loader.format.keys import PUBLIC_KEY_SUFFIXES, key_id

MAX_KEY_FILE_BYTES = 64 << 10


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()[:MAX_KEY_FILE_BYTES]
    except OSError as exc:
        raise KeyFileError(f"trusted key {path}: cannot be read ({exc.strerror})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyFileError(f"trusted key {path}: not a PEM public key",
                           hint="pass the .pub file written by `esbundle keygen`, not the private key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"trusted key {path}: not an Ed25519 key")
    return key


def load_trusted_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Keys from files, or from every *.pub / *.pem file of a directory; keyed by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in PUBLIC_KEY_SUFFIXES and p.is_file())
            if not files:
                raise KeyFileError(f"trusted key directory {path}: holds no *.pub or *.pem file")
        else:
            files = [path]
        for file in files:
            key = load_public_key(file)
            keys[key_id(key)] = key
    return keys
