"""Options shared by the commands that write a bundle (`export`, `pack`)."""
from __future__ import annotations

from pathlib import Path

import click

from bundler.cli.sizes import SIZE
from bundler.options import DEFAULT_EXPIRES_IN_DAYS
from loader.format.layout import DEFAULT_PART_SIZE

signing_key_option = click.option("--signing-key", required=True, type=click.Path(path_type=Path),
                                  help="Private key from keygen.")
out_option = click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
bundle_version_option = click.option("--bundle-version", type=int, default=1, show_default=True,
                                     help="Raise for each new bundle of a model.")
expires_option = click.option("--expires-in", "expires_in", default=str(DEFAULT_EXPIRES_IN_DAYS), show_default=True,
                              metavar="DAYS", help="Days until the bundle expires (0 or never: no expiry).")
part_size_option = click.option("--part-size", type=SIZE, default=str(DEFAULT_PART_SIZE), show_default=True,
                                help="Raw bytes per definition part (e.g. 1M, 512K).")
allow_unsupported_option = click.option("--allow-unsupported-ops", is_flag=True,
                                        help="Write the bundle even if the target release would refuse its graph "
                                        "(recorded).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
