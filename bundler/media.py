"""The travel options shared by `export` and `pack`: volumes, the target filesystem, and the loader's wheelhouse."""
from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from bundler.writer import Media
from loader.format import layout
from loader.units import SIZE

DEFAULT_LOADER_PYTHON = "3.11"
DEFAULT_LOADER_PLATFORM = "manylinux2014_x86_64"


def media_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
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
    ]
    return functools.reduce(lambda cmd, opt: opt(cmd), reversed(options), command)


def travel_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """The travel options with their defaults, for callers that pass only some (the export's library API)."""
    return {"volume_size": None, "filesystem": None, "cluster_size": None, "with_loader": False,
            "loader_python": DEFAULT_LOADER_PYTHON,
            "loader_platform": DEFAULT_LOADER_PLATFORM, **given}


@contextmanager
def prepared_media(volume_size: int | None, filesystem: str | None, with_loader: bool, loader_python: str,
                   loader_platform: str, cluster_size: int | None = None) -> Iterator[Media]:
    """The writer's Media, with the wheelhouse built in a temporary directory that lives until the write ends."""
    if not with_loader:
        yield Media(volume_size=volume_size, filesystem=filesystem, cluster_size=cluster_size)
        return
    from bundler.wheelhouse import build_wheelhouse

    with tempfile.TemporaryDirectory(prefix="esbundle-wheelhouse-") as work:
        files = build_wheelhouse(Path(work), python_version=loader_python, platform=loader_platform)
        yield Media(volume_size=volume_size, filesystem=filesystem, cluster_size=cluster_size,
                    extra_files=tuple((f.relpath, f.source) for f in files))
