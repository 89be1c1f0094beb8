"""`esbundle copy`: put a bundle on a medium and prove the medium holds it."""
from __future__ import annotations

from pathlib import Path

import click

from loader.bundle.copy import copy_bundle
from loader.cli.options import trusted_key_option, trusted_keys_from
from loader.cli.output import emit


@click.command("copy")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@trusted_key_option
def command(source: Path, dest: Path, trusted_keys: tuple[Path, ...]) -> None:
    """Copy a bundle (or one volume) to DEST, flush it, read it back and verify it.

    The source is checked before anything is written, and nothing is written outside DEST. Resumable: files
    already on DEST and correct are kept. The signature is checked when a trusted key is given; the checksums
    always."""
    report = copy_bundle(source, dest, trusted_keys_from(trusted_keys, required=False), emit)
    emit(f"COPIED   {source} -> {dest}: the medium holds the bundle"
               + ("" if report.signature_checked else " (checksums checked, signature not checked)"))
