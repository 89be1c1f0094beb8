"""A directory tree walked without following links: the root is opened, then each directory under it from its
parent's descriptor by one plain name, and files are opened from their directory's descriptor. Whatever names are
asked for and whatever links are planted, nothing reached through it lies outside it. `copy` reads its source and
writes its destination this way.
"""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from loader.errors import EsbundleError, LayoutError

# O_NONBLOCK: opening a named pipe would otherwise wait for a writer before its type could be checked.
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISREG(mode):
        return "is a regular file"
    return "is a special file (device, pipe or socket)"


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """The entry itself (a link is not followed); None when there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def mode_at(dir_fd: int, name: str) -> int | None:
    found = lstat_at(dir_fd, name)
    return None if found is None else found.st_mode


def plain_names(rel: str) -> list[str]:
    """The plain names a manifest path is made of. The manifest checks refuse these already; the walk refuses them
    again because '..' or a leading '/' would take it out of its tree whatever the descriptors say."""
    names = rel.split("/")
    if any(name in ("", ".", "..") or "\x00" in name for name in names):
        raise LayoutError(f"{rel}: safe path: not a plain relative path; refusing to use it")
    return names


class LinkSafeTree:
    """A directory and the directories under it, each opened from its parent's descriptor by one plain name without
    following a link, so that nothing reached through it can lie outside it."""

    def __init__(self, root: Path, fd: int, error: type[EsbundleError], *, reading: bool) -> None:
        self.root, self.fd, self.error = root, fd, error
        self.verb = "read" if reading else "write"
        self.misplaced = ("where a file of the bundle must be; refusing to read it" if reading else
                          "where a file of the bundle must go; refusing to replace it")
        self._fds: dict[tuple[str, ...], int] = {(): fd}

    @classmethod
    def open(cls, root: Path, error: type[EsbundleError], *, reading: bool) -> LinkSafeTree:
        try:
            return cls(root, os.open(root, _DIR_FLAGS), error, reading=reading)
        except OSError as exc:
            what = kind(os.lstat(root).st_mode) if os.path.lexists(root) else exc.strerror
            raise error(f"{root}: {what}, not a directory; refusing to {'read' if reading else 'write'} through "
                        "it") from None

    def __enter__(self) -> LinkSafeTree:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)

    def refusal(self, rel: str, detail: str) -> EsbundleError:
        return self.error(f"{self.root / rel}: {detail}")

    def directory(self, names: Sequence[str], *, create: bool) -> int | None:
        """The descriptor of the directory `names` leads to; None when one is missing and not to be created."""
        for depth in range(1, len(names) + 1):
            key = tuple(names[:depth])
            if key not in self._fds:
                fd = self._open_dir(self._fds[key[:-1]], key, create)
                if fd is None:
                    return None
                self._fds[key] = fd
        return self._fds[tuple(names)]

    def _open_dir(self, parent: int, key: tuple[str, ...], create: bool) -> int | None:
        name = key[-1]
        if create and mode_at(parent, name) is None:
            with contextlib.suppress(FileExistsError):  # made meanwhile: the open below judges what it is
                os.mkdir(name, 0o755, dir_fd=parent)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            what = "vanished as it was made"
        except OSError as exc:
            mode = mode_at(parent, name)
            what = kind(mode) if mode is not None else str(exc.strerror)
        raise self.refusal("/".join(key), f"{what}, not a directory; refusing to {self.verb} through it")

    def fsync_dirs(self) -> None:
        """Every directory entry made durable, deepest first."""
        for key in sorted(self._fds, key=len, reverse=True):
            os.fsync(self._fds[key])


def open_file(tree: LinkSafeTree, rel: str) -> int | None:
    """A descriptor for reading the regular file `rel`; None when it, or a directory on its way, is missing.
    Anything else there (a link, a directory, a device) is refused without being opened."""
    *dirs, name = plain_names(rel)
    parent = tree.directory(dirs, create=False)
    mode = None if parent is None else mode_at(parent, name)
    if parent is None or mode is None:
        return None
    if not stat.S_ISREG(mode):
        raise tree.refusal(rel, f"{kind(mode)} {tree.misplaced}")
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=parent)
    except OSError as exc:  # swapped since the look (a link now fails to open): judged on what is there now
        mode = mode_at(parent, name)
        raise tree.refusal(rel, f"{kind(mode) if mode is not None else exc.strerror} {tree.misplaced}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise tree.refusal(rel, f"is no longer a regular file {tree.misplaced}")
    os.set_blocking(fd, True)
    return fd


def drop_cache(tree: LinkSafeTree, rel: str) -> None:
    """Flush a written file and ask the OS to forget its cached copy, so a read-back comes from the medium (best
    effort: where the OS has no such call, the read-back reads the cache)."""
    fd = open_file(tree, rel) if hasattr(os, "posix_fadvise") else None
    if fd is not None:
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
