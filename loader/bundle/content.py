"""Reading a bundle file's bytes safely: no symlinks, no blocking on pipes, bounded memory, bounded decompression.

Every bundle file is small enough to hold (its role caps it, and the stored size was checked first), so each is
read once into memory, its stored sha256 checked, and only then, when it is one well-formed zstd frame of the
declared size, decompressed and its raw sha256 checked: libzstd never sees a byte that is not authenticated.
`check_file` is that check; `read_verified` returns the raw bytes it proved, so that what is uploaded is exactly
what was hashed (no window between check and use).
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


def frame_problem(stored: bytes, size: int) -> str | None:
    """Why `stored` is not exactly one zstd frame that declares `size` bytes of content; None when it is.

    Read from the frame's own headers, before any decompression: the declared size bounds what decompression may
    produce, and bytes after the frame (a second frame, or anything else) are refused, so the one frame is all
    that is ever used."""
    try:
        header = zstandard.frame_header_size(stored)
        params = zstandard.get_frame_parameters(stored)
    except zstandard.ZstdError as exc:
        return f"not a zstd frame ({exc})"
    if params.dict_id or zstandard.frame_content_size(stored) != size:
        return f"the frame does not declare its content size as {size} bytes without a dictionary"
    position, last = header, False
    while not last:
        if position + 3 > len(stored):
            return "the frame is truncated"
        block = int.from_bytes(stored[position:position + 3], "little")
        last, kind, length = bool(block & 1), (block >> 1) & 3, block >> 3
        if kind == 3:
            return "the frame holds a reserved block type"
        position += 3 + (1 if kind == 1 else length)  # an RLE block stores one byte
    position += 4 if params.has_checksum else 0
    if position != len(stored):
        return f"{len(stored) - position} bytes follow the frame; a file is one zstd frame"
    return None


def decode(entry: FileEntry, stored: bytes) -> tuple[list[Problem], bytes | None]:
    """Check one file's stored bytes against the manifest, then decompress them: problems, and the raw bytes
    when there are none. Nothing is decompressed before the stored sha256 matched."""
    if len(stored) != entry.stored_size:
        return [Problem(entry.path, "stored size", f"the bytes on the medium differ from the signed manifest "
                        f"({len(stored)} bytes read, {entry.stored_size} expected)")], None
    stored_sha256 = hashlib.sha256(stored).hexdigest()
    if stored_sha256 != entry.stored_sha256:
        return [Problem(entry.path, "stored sha256", "the bytes on the medium differ from the signed manifest")], None
    if entry.compression != "zstd":
        # Stored as they are: the bytes just hashed are the raw bytes, so their one sha256 is also the raw one.
        problems = _raw_problems(entry, len(stored), stored_sha256)
        return problems, None if problems else stored
    why = frame_problem(stored, entry.size)
    if why:
        return [Problem(entry.path, "decompression", why)], None
    try:
        raw = _decompressor().decompress(stored, max_output_size=entry.size)
    except zstandard.ZstdError as exc:
        return [Problem(entry.path, "decompression", f"not a valid zstd stream ({exc})")], None
    problems = _raw_problems(entry, len(raw), hashlib.sha256(raw).hexdigest())
    return problems, None if problems else raw


def _raw_problems(entry: FileEntry, size: int, sha256: str) -> list[Problem]:
    if size != entry.size:
        return [Problem(entry.path, "decompressed size", f"{size} bytes, manifest says {entry.size}")]
    if sha256 != entry.sha256:
        return [Problem(entry.path, "decompressed sha256", "differs from the signed manifest")]
    return []


def read_stored(root: Path, entry: FileEntry) -> bytes:
    """The bytes on the medium, at most one more than the manifest says (so a longer file shows as longer): one
    large read (a file is at most a part), repeated only if the OS returns less before the end of the file."""
    want = entry.stored_size + 1
    with open_regular(root / entry.path) as handle:
        data = handle.read(want) or b""
        while 0 < len(data) < want and (more := handle.read(want - len(data))):
            data += more
    return data


def check_file(root: Path, entry: FileEntry) -> list[Problem]:
    """Every check of one file against its manifest entry (its size is capped by its role)."""
    return decode(entry, read_stored(root, entry))[0]


def read_verified(root: Path, entry: FileEntry) -> bytes:
    """The raw (decompressed) bytes of one file, re-read and re-checked against the manifest in memory right now:
    what is used is exactly what was hashed."""
    problems, raw = decode(entry, read_stored(root, entry))
    if raw is None:
        raise IntegrityError(f"{entry.path} changed on the medium since it was verified: it failed its re-check "
                             "before upload", problems=problems,
                             hint="the medium changed after verification; nothing of this file was sent")
    return raw
