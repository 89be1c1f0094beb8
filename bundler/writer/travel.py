"""How a bundle travels: compressed where it pays, cut into volumes, within a filesystem's limits, with the
offline tool's wheelhouse.

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
# auto: each part and the vocabulary zstd-compressed only where that pays (below); zstd: every file that may be
# compressed is; none: nothing is. The config, a package's metadata and the wheelhouse are always stored raw.
COMPRESSION_CHOICES = ("auto", "zstd", "none")
DEFAULT_COMPRESSION = "auto"

# Compression only where it pays (`--compression auto`). Measured on this project's 2-core machine, 1 MiB parts, one
# core: zstd level 3 compresses all-MiniLM-L6-v2's TorchScript file (90 MB, fp32) at 330-415 MB/s and saves 8.3% (82
# of its 87 parts 7.1-7.6%, 5 parts 10-44%); its output decompresses at 630-920 MB/s; sha256 runs at 1,330 MB/s. Level
# 1 saves 8.2% at 470-610 MB/s, levels below 0 save nothing (0.1%), level 6 saves 8.5% at the same speed as 3; random
# bytes save nothing at any level and are tried at about 1,000 MB/s. A compressed part costs, per MB of raw bytes,
# compression once (~2.4-3 ms) plus, at verify and again at load, decompression and a second sha256 (the stored bytes
# and the raw bytes differ; a raw part is hashed once): about 6 ms of CPU in all. Each percent saved spares 10 KB per
# MB at each of the three passes over the medium (written, read by verify, read by load): 0.3 ms at ~100 MB/s (USB),
# 0.26 ms over a 1 GbE link (~117 MB/s). Break-even: 20% saved on one core, 10% on two, 5% on four (23%, 12%, 6% over
# 1 GbE); from a warm cache or a fast disk (GB/s) it never pays. So auto keeps zstd where it saves at least 10%: the
# vocabulary (JSON, 55-60%), int8-quantized matrices and sparse or repetitive tensors (15-60%) stay compressed; fp32
# weights (7-8%) and random data travel raw, hashed once and never decompressed: all-MiniLM-L6-v2's files check in 159
# ms (5 of 87 parts compressed) instead of 310 ms, for 89.2 MB on the medium instead of 82.9. The level stays 3 (the
# format's level since v1): level 1 would save a little less for a compression cost paid once, on the connected side,
# spread over a pool.
ZSTD_LEVEL = 3
MIN_SAVING_PERCENT = 10


def pays(raw_size: int, stored_size: int) -> bool:
    """Whether zstd's output is worth keeping under `auto`: it saves at least MIN_SAVING_PERCENT of the raw bytes."""
    return 100 * (raw_size - stored_size) >= MIN_SAVING_PERCENT * raw_size


def compression_record(compression: str) -> str:
    """How the files were stored, for the manifest's `tools` (names to strings, as format v1 reads it)."""
    if compression == "auto":
        return f"auto: zstd level {ZSTD_LEVEL} where it saves at least {MIN_SAVING_PERCENT}%"
    return f"zstd level {ZSTD_LEVEL}" if compression == "zstd" else "none"


@dataclass(frozen=True, kw_only=True)
class TravelOptions:
    volume_size: int | None = None  # cut into volumes of at most this many bytes
    filesystem: str | None = None  # refuse any file this filesystem cannot hold
    cluster_size: int | None = None  # the medium's allocation unit (default: per filesystem)
    with_loader: bool = False  # carry a wheelhouse of the offline tool on the first volume
    loader_python: str = DEFAULT_LOADER_PYTHON
    loader_platform: str = DEFAULT_LOADER_PLATFORM
    compression: str = DEFAULT_COMPRESSION  # one of COMPRESSION_CHOICES


@dataclass(frozen=True)
class Travel:
    """What the writer follows: volumes of at most `volume_size` bytes, on a filesystem whose file size limit
    must be respected, with the offline tool's wheelhouse (`extra_files`: bundle path -> source file), files
    compressed as `compression` says (auto unless told)."""

    volume_size: int | None = None
    filesystem: str | None = None
    extra_files: Sequence[tuple[str, Path]] = ()
    cluster_size: int | None = None
    compression: str = DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSION_CHOICES:
            raise ValueError(f"compression {self.compression!r} is not one of {', '.join(COMPRESSION_CHOICES)}")

    @property
    def allocation_unit(self) -> int:
        return self.cluster_size or layout.DEFAULT_CLUSTER.get(self.filesystem or "", layout.ALLOCATION_UNIT)


@contextmanager
def prepared_travel(options: TravelOptions) -> Iterator[Travel]:
    plain = Travel(volume_size=options.volume_size, filesystem=options.filesystem, cluster_size=options.cluster_size,
                   compression=options.compression)
    if not options.with_loader:
        yield plain
        return
    from bundler.writer.wheelhouse import build_wheelhouse

    with tempfile.TemporaryDirectory(prefix="esbundle-wheelhouse-") as work:
        files = build_wheelhouse(Path(work), python_version=options.loader_python, platform=options.loader_platform)
        yield replace(plain, extra_files=tuple((f.relpath, f.source) for f in files))
