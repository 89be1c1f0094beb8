"""The travel options of `export` and `pack`, parsed into one `TravelOptions` value at the command line's edge."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from bundler.cli.sizes import SIZE
from bundler.writer.travel import (
    COMPRESSION_CHOICES,
    DEFAULT_COMPRESSION,
    DEFAULT_LOADER_PLATFORM,
    DEFAULT_LOADER_PYTHON,
    MIN_SAVING_PERCENT,
    TravelOptions,
)
from loader.format import layout

_OPTIONS = (
    click.option("--volume-size", type=SIZE, help="Cut the bundle into volumes of at most SIZE (700M, 4.7G)."),
    click.option("--filesystem", type=click.Choice(sorted(layout.FILESYSTEM_MAX_FILE)),
                 help="Refuse any file this filesystem cannot hold (fat32: 4 GiB - 1 per file)."),
    click.option("--cluster-size", type=SIZE, help="The medium's allocation unit, to count files as they take "
                 "room (default: 32K for fat32, 128K for exfat, else 4K)."),
    click.option("--with-loader", is_flag=True, help="Add a wheelhouse of the offline tool (no torch)."),
    click.option("--loader-python", default=DEFAULT_LOADER_PYTHON, show_default=True,
                 help="Python version of the closed network's machine."),
    click.option("--loader-platform", default=DEFAULT_LOADER_PLATFORM, show_default=True,
                 help="Platform tag of the closed network's machine."),
    click.option("--compression", type=click.Choice(COMPRESSION_CHOICES), default=DEFAULT_COMPRESSION,
                 show_default=True,
                 help=f"zstd for each part and the vocabulary: auto where it saves at least {MIN_SAVING_PERCENT}% "
                 "(fp32 weights barely compress: they travel raw, and verify and load faster), zstd always, none "
                 "never."),
)


def travel_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the travel options to a command, which receives them as one keyword argument, `travel`."""
    @functools.wraps(command)
    def with_travel(*args: Any, volume_size: int | None, filesystem: str | None, cluster_size: int | None,
                    with_loader: bool, loader_python: str, loader_platform: str, compression: str,
                    **kwargs: Any) -> Any:
        travel = TravelOptions(volume_size=volume_size, filesystem=filesystem, cluster_size=cluster_size,
                               with_loader=with_loader, loader_python=loader_python, loader_platform=loader_platform,
                               compression=compression)
        return command(*args, travel=travel, **kwargs)

    return functools.reduce(lambda cmd, opt: opt(cmd), reversed(_OPTIONS), with_travel)
