"""How a bundle travels: cut into volumes, within a filesystem's limits, with the offline tool's wheelhouse.

`TravelOptions` is what was asked (shared by `export` and `pack`); `prepared_travel` turns it into the `Travel`
the writer follows, building the wheelhouse in a temporary directory that lives until the write ends.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from loader.format import layout

DEFAULT_LOADER_PYTHON = "3.11"
DEFAULT_LOADER_PLATFORM = "manylinux2014_x86_64"


@dataclass(frozen=True, kw_only=True)
class TravelOptions:
    volume_size: int | None = None  # cut into volumes of at most this many bytes
    filesystem: str | None = None  # refuse any file this filesystem cannot hold
    cluster_size: int | None = None  # the medium's allocation unit (default: per filesystem)
    with_loader: bool = False  # carry a wheelhouse of the offline tool on the first volume
    loader_python: str = DEFAULT_LOADER_PYTHON
    loader_platform: str = DEFAULT_LOADER_PLATFORM


@dataclass(frozen=True)
class Travel:
    """What the writer follows: volumes of at most `volume_size` bytes, on a filesystem whose file size limit
    must be respected, with the offline tool's wheelhouse (`extra_files`: bundle path -> source file)."""

    volume_size: int | None = None
    filesystem: str | None = None
    extra_files: Sequence[tuple[str, Path]] = ()
    cluster_size: int | None = None

    @property
    def allocation_unit(self) -> int:
        return self.cluster_size or layout.DEFAULT_CLUSTER.get(self.filesystem or "", layout.ALLOCATION_UNIT)


@contextmanager
def prepared_travel(options: TravelOptions) -> Iterator[Travel]:
    plain = Travel(volume_size=options.volume_size, filesystem=options.filesystem, cluster_size=options.cluster_size)
    if not options.with_loader:
        yield plain
        return
    from bundler.writer.wheelhouse import build_wheelhouse

    with tempfile.TemporaryDirectory(prefix="esbundle-wheelhouse-") as work:
        files = build_wheelhouse(Path(work), python_version=options.loader_python, platform=options.loader_platform)
        yield replace(plain, extra_files=tuple((f.relpath, f.source) for f in files))
