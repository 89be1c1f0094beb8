"""Durable writes, for the writer and for `copy`: a bundle may only appear under its name, or count as copied,
once every byte and every directory entry is on disk.

Each file is written and fsynced; every directory is fsynced; the writer's final rename refuses to replace
anything that appeared at the target meanwhile.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from loader.errors import UsageError


def write_durable(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable, where the OS lets a directory be opened (not on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Every directory under root, deepest first, then root itself."""
    for directory in sorted({p.parent for p in root.rglob("*")} | {root}, reverse=True):
        fsync_dir(directory)


def rename_no_replace(source: Path, target: Path) -> None:
    """Rename, refusing to replace anything at `target`: a plain rename silently replaces an empty directory
    created there while the bundle was being written. Linux's renameat2(RENAME_NOREPLACE) where available."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_noreplace) == 0:
            return
        error = ctypes.get_errno()
        if error == errno.EEXIST:
            raise UsageError(f"{target}: appeared while the bundle was written; refusing to replace it")
        if error not in (errno.EINVAL, errno.ENOSYS):  # not supported by this filesystem: fall back below
            raise OSError(error, os.strerror(error), str(target))
    if os.path.lexists(target):
        raise UsageError(f"{target}: appeared while the bundle was written; refusing to replace it")
    os.rename(source, target)
