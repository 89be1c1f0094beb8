"""The `esbundle` command: every subcommand, registered here and nowhere else.

A new command is a module with a click command named `command`, and one line below. Importing this module imports
no torch: `esbundle verify` must start on the offline install.
"""
from __future__ import annotations

from bundler.cli import export, keygen, pack
from loader.cli import copy, inspect, load, repository, status, verify
from loader.cli.group import build_group

cli = build_group(
    keygen.command,
    export.command,
    pack.command,
    verify.command,
    inspect.command,
    copy.command,
    load.command,
    status.command,
    repository.command,
)


def main() -> None:
    cli(prog_name="esbundle")


if __name__ == "__main__":
    main()
