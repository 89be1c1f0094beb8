"""`esbundle keygen`: make the publisher's signing key pair."""
from __future__ import annotations

from pathlib import Path

import click

from bundler.keys import generate_keypair, read_passphrase
from loader.cli.output import emit


@click.command("keygen")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Directory for the key files.")
@click.option("--name", default="esbundle", show_default=True, help="File name stem: NAME.key and NAME.pub.")
@click.option("--no-passphrase", is_flag=True, help="Write the private key unencrypted (an explicit choice).")
def command(out_dir: Path, name: str, no_passphrase: bool) -> None:
    """Make an Ed25519 signing key pair; the passphrase comes from $ESBUNDLE_KEY_PASSPHRASE or a prompt."""
    passphrase = None if no_passphrase else read_passphrase(confirm=True)
    pair = generate_keypair(out_dir, name, passphrase)
    emit(f"private key  {pair.private_path}  (mode 0600{', encrypted' if passphrase else ', NOT encrypted'})")
    emit(f"public key   {pair.public_path}  (give this to the operators of the closed network)")
    emit(f"key id       {pair.key_id}")
