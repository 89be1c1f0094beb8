"""Reading a bundle file's bytes safely: no symlinks, bounded memory, bounded decompression, hashed as read.

Two ways in: `check_file` streams a file for verification (memory stays flat whatever its size), and
`read_verified` returns the raw bytes of one file after re-checking them against the manifest in memory, so
that what is uploaded is exactly what was hashed (no window between check and use).
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import zstandard

from loader.errors import EsbundleError, IntegrityError, LayoutError, Problem
from loader.format.layout import MAX_ZSTD_WINDOW
from loader.format.manifest import FileEntry

CHUNK = 1 << 20


@contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO]:
    """Open a regular file for reading, refusing symlinks (even a last-moment swap) and special files."""
    # O_NONBLOCK: opening a named pipe would otherwise block until someone writes to it, before the type check.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise LayoutError(f"{path}: is a symbolic link, not a regular file") from None
        raise LayoutError(f"{path}: cannot be opened ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LayoutError(f"{path}: is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_capped(path: Path, cap: int, missing: EsbundleError) -> bytes:
    """A small file read whole, before anything is authenticated: refused past `cap` bytes."""
    if not os.path.lexists(path):
        raise missing
    with open_regular(path) as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise LayoutError(f"{path.name}: larger than the {cap} byte limit; refusing to read it")
    return data


class _HashingReader:
    """A file wrapper that hashes and counts every byte the decompressor pulls through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.digest, self.count = raw, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size and size > 0 else CHUNK)
        self.digest.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def sha256_file(path: Path) -> str:
    """The sha256 of a whole file, streamed. Follows links (a hub cache's snapshot is links to blobs): for
    bundle files, whose links must be refused, use check_file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _decompressor() -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)


def check_file(root: Path, entry: FileEntry) -> list[Problem]:
    """Stream one file: stored size and sha256, then (zstd) the decompressed size and sha256, output capped."""
    problems: list[Problem] = []
    with open_regular(root / entry.path) as handle:
        source = _HashingReader(handle)
        if entry.compression == "none":
            source.drain()
            raw_size, raw_digest = source.count, source.digest.hexdigest()
        else:
            raw_size, raw_hash, overflow = 0, hashlib.sha256(), False
            try:
                with _decompressor().stream_reader(source, read_size=CHUNK, closefd=False) as reader:
                    while chunk := reader.read(CHUNK):
                        raw_size += len(chunk)
                        if raw_size > entry.size:
                            overflow = True
                            break
                        raw_hash.update(chunk)
                decode_error = None
            except zstandard.ZstdError as exc:
                decode_error = str(exc)
            source.drain()
            raw_digest = raw_hash.hexdigest()
    if source.count != entry.stored_size or source.digest.hexdigest() != entry.stored_sha256:
        what = "size" if source.count != entry.stored_size else "sha256"
        return [Problem(entry.path, f"stored {what}", f"the bytes on the medium differ from the signed manifest "
                        f"({source.count} bytes read, {entry.stored_size} expected)" if what == "size" else
                        "the bytes on the medium differ from the signed manifest")]
    if entry.compression == "zstd":
        if decode_error:
            problems.append(Problem(entry.path, "decompression", f"not a valid zstd stream ({decode_error})"))
        elif overflow:
            problems.append(Problem(entry.path, "decompression",
                                    f"expands past its declared size of {entry.size} bytes; stopped there"))
    if not problems and raw_size != entry.size:
        problems.append(Problem(entry.path, "decompressed size", f"{raw_size} bytes, manifest says {entry.size}"))
    elif not problems and raw_digest != entry.sha256:
        problems.append(Problem(entry.path, "decompressed sha256", "differs from the signed manifest"))
    return problems


def read_verified(root: Path, entry: FileEntry) -> bytes:
    """The raw (decompressed) bytes of one file, re-hashed in memory against the manifest right now."""
    with open_regular(root / entry.path) as handle:
        stored = handle.read(entry.stored_size + 1)
    problem: Problem | None = None
    if len(stored) != entry.stored_size or hashlib.sha256(stored).hexdigest() != entry.stored_sha256:
        problem = Problem(entry.path, "stored sha256", "changed on the medium since it was verified")
    else:
        try:
            raw = stored if entry.compression == "none" else _decompressor().decompress(
                stored, max_output_size=entry.size)
        except zstandard.ZstdError as exc:
            problem = Problem(entry.path, "decompression", str(exc))
        else:
            if len(raw) != entry.size or hashlib.sha256(raw).hexdigest() != entry.sha256:
                problem = Problem(entry.path, "decompressed sha256", "differs from the signed manifest")
    if problem:
        raise IntegrityError(f"{entry.path} failed its re-check before upload", problems=[problem],
                             hint="the medium changed after verification; nothing of this file was sent")
    return raw
