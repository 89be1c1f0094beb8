"""The `esbundle` command: every subcommand, registered here and nowhere else.

A new command is a module with a click command named `command`, and one line below. A command's module is imported
only when that command runs (or help lists them all): `esbundle verify` does not pay for importing export's and
load's modules, and importing this module imports no torch, so it starts on the offline install.
"""
from __future__ import annotations

from loader.cli.group import build_group

cli = build_group({
    "keygen": "bundler.cli.keygen",
    "export": "bundler.cli.export",
    "pack": "bundler.cli.pack",
    "verify": "loader.cli.verify",
    "inspect": "loader.cli.inspect",
    "copy": "loader.cli.copy",
    "load": "loader.cli.load",
    "status": "loader.cli.status",
    "repository": "loader.cli.repository",
})


def main() -> None:
    cli(prog_name="esbundle")


if __name__ == "__main__":
    main()
