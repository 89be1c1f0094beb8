"""Signing keys: generate an Ed25519 pair, and load the private key with its passphrase.

The passphrase comes from ESBUNDLE_KEY_PASSPHRASE or an interactive prompt, never from an argument, so it
never lands in shell history or a process listing.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loader import settings
from loader.errors import KeyFileError, UsageError
from loader.format.keys import key_id, public_key_pem


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    key_id: str


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite a key; the mode is set at creation, so the secret is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def generate_keypair(out_dir: Path, name: str = "esbundle", passphrase: bytes | None = None) -> KeyPair:
    """Write NAME.key (0600, encrypted unless passphrase is None) and NAME.pub (0644) into out_dir."""
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path}: already exists; refusing to overwrite a key", hint="choose another --name")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    _write_new(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               encryption), 0o600)
    _write_new(public_path, public_key_pem(key.public_key()), 0o644)
    return KeyPair(private_path, public_path, key_id(key.public_key()))


def read_passphrase(*, confirm: bool) -> bytes:
    value = settings.get(settings.KEY_PASSPHRASE)
    if value is None:
        if not sys.stdin or not sys.stdin.isatty():
            raise UsageError(f"no passphrase: set {settings.KEY_PASSPHRASE} or run in a terminal to be prompted")
        value = click.prompt("Key passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    if not value:
        raise UsageError("the passphrase is empty", hint="use --no-passphrase to write an unencrypted key on purpose")
    return value.encode("utf-8")


def load_signing_key(path: Path) -> SigningKey:
    """Load a PEM private key; asks for the passphrase only when the key is encrypted."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"signing key {path}: cannot be read ({exc.strerror})") from None
    encrypted = b"ENCRYPTED" in data
    try:
        key = serialization.load_pem_private_key(data, password=read_passphrase(confirm=False) if encrypted else None)
    except (ValueError, TypeError):
        what = "wrong passphrase, or not a PEM private key" if encrypted else "not a PEM private key"
        raise KeyFileError(f"signing key {path}: cannot be loaded ({what})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path}: not an Ed25519 key")
    return SigningKey(key, key_id(key.public_key()))
