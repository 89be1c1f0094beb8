"""`esbundle inspect`: what a bundle says about itself."""
from __future__ import annotations

from pathlib import Path

import click

from loader.bundle.inspect import describe, render
from loader.cli.options import trusted_key_option, trusted_keys_from
from loader.cli.output import emit, emit_json


@click.command("inspect")
@click.argument("bundle", type=click.Path(path_type=Path))
@trusted_key_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(bundle: Path, trusted_keys: tuple[Path, ...], as_json: bool) -> None:
    """Show what a bundle holds. The signature is checked only when a trusted key is given."""
    info = describe(bundle, trusted_keys_from(trusted_keys, required=False))
    if as_json:
        emit_json(info, indent=2, sort_keys=True)
    else:
        emit(*render(info))
