"""`repository install`: the repository files of verified package bundles written into a directory a cluster reads
as its model repository, and `--check`: that directory compared with the bundles, nothing written.

The directory is reached without following links (`LinkSafeTree`): a link, directory or device under a file's name
is refused, never written through. Every file a command would refuse is found before anything is written, so a
refused install writes nothing. Each file goes through a temporary file created fresh beside it, flushed and
renamed, then the directory is flushed; the file's bytes come piece by piece from the bundle, each re-checked
against the signed manifest, and the written file is read back (its cached copy dropped first where the OS allows)
and hashed against the manifest's size and sha256. Files of other models in the directory are never opened.
Written files are made readable by everyone (0644) whatever the umask, as Elasticsearch's own user must read them.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loader.bundle.tree import LinkSafeTree, drop_cache, open_file
from loader.errors import EsbundleError, IntegrityError, Problem, UsageError
from loader.repository.files import PackageFiles, RepositoryFile

CHUNK = 1 << 20
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
READABLE = 0o644
WRITTEN, REPLACED, KEPT, MATCHES = "written", "replaced", "kept", "matches"  # MATCHES: what --check found


@dataclass(frozen=True)
class Found:
    """What the directory holds under a name: a regular file's size and sha256."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Placed:
    name: str
    size: int
    sha256: str
    action: str  # WRITTEN, REPLACED or KEPT by install; MATCHES by check


@dataclass(frozen=True)
class Planned:
    file: RepositoryFile
    found: Found | None

    @property
    def same(self) -> bool:
        return self.found == Found(self.file.size, self.file.sha256)


def _posix() -> None:
    if not all(call in os.supports_dir_fd for call in (os.open, os.stat, os.unlink, os.rename)):
        raise UsageError("repository install needs an OS that opens files relative to a directory (POSIX); without "
                         "that it cannot keep every write inside the directory")


def repository_dir(path: Path) -> Path:
    """Absolute and normalised, not resolved: the node compares the setting's path with its config directory as
    written, so a link in the way must stay as the operator wrote it."""
    return Path(os.path.abspath(path))


def ordered(found: Sequence[PackageFiles]) -> list[RepositoryFile]:
    """Each name once (bundles may share identical files), every metadata file after every other file."""
    files = {f.name: f for package in found for f in package.files}
    metadata = {package.metadata.name for package in found}
    return sorted(files.values(), key=lambda f: f.name in metadata)


def _digest(tree: LinkSafeTree, name: str) -> Found | None:
    """The regular file under `name`; None when there is none; anything else there is refused."""
    fd = open_file(tree, name)
    if fd is None:
        return None
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Found(size, digest.hexdigest())


def _conflicts(plan: Sequence[Planned], directory: Path) -> list[Problem]:
    return [Problem(str(directory / p.file.name), "existing file",
                    f"sha256 {p.found.sha256} ({p.found.size} bytes); the bundle's is {p.file.sha256} "
                    f"({p.file.size} bytes)") for p in plan if p.found is not None and not p.same]


def _plan(tree: LinkSafeTree, files: Sequence[RepositoryFile], replace: bool) -> list[Planned]:
    plan = [Planned(file, _digest(tree, file.name)) for file in files]
    conflicts = _conflicts(plan, tree.root)
    if conflicts and not replace:
        raise UsageError(f"{tree.root}: {len(conflicts)} file(s) of the same name but other content already there; "
                         "nothing was written", problems=conflicts,
                         hint="pass --replace to overwrite them, or install into another directory")
    needed = sum(p.file.size for p in plan if not p.same)
    fs = os.statvfs(tree.fd)
    if needed > fs.f_bavail * fs.f_frsize:
        raise UsageError(f"{tree.root}: {fs.f_bavail * fs.f_frsize} bytes free, the files need {needed}; nothing "
                         "was written")
    return plan


def _fresh(tree: LinkSafeTree, partial: str) -> int:
    """A new temporary file: a leftover of an interrupted install goes first (a planted link, not its target)."""
    try:
        os.unlink(partial, dir_fd=tree.fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise tree.refusal(partial, f"cannot be removed ({exc.strerror}); refusing to write there") from None
    try:
        return os.open(partial, _CREATE, 0o644, dir_fd=tree.fd)
    except OSError as exc:
        raise tree.refusal(partial, f"cannot be created ({exc.strerror})") from None


def _write(tree: LinkSafeTree, file: RepositoryFile) -> None:
    partial = f".{file.name}.partial"
    fd = _fresh(tree, partial)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in file.chunks():  # each piece re-checked as it is read: a changed part stops the write
                out.write(chunk)
            # Readable by everyone whatever the umask: Elasticsearch runs as its own user, and these files are
            # Elastic's published models, no secret.
            os.fchmod(out.fileno(), READABLE)
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, file.name, src_dir_fd=tree.fd, dst_dir_fd=tree.fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial, dir_fd=tree.fd)
        raise
    os.fsync(tree.fd)  # the new name is durable before the next file (and the metadata last)


def _read_back(tree: LinkSafeTree, files: Sequence[RepositoryFile]) -> None:
    problems = []
    for file in files:
        drop_cache(tree, file.name)
        found = _digest(tree, file.name)
        if found != Found(file.size, file.sha256):
            what = "missing" if found is None else f"{found.size} bytes, sha256 {found.sha256}"
            problems.append(Problem(str(tree.root / file.name), "read back",
                                    f"{what}; the signed manifest says {file.size} bytes, sha256 {file.sha256}"))
    if problems:
        raise IntegrityError(f"{tree.root}: the written files are not what the bundle holds", problems=problems,
                             hint="the disk may be failing, or something else writes there: run the install again")


def install(found: Sequence[PackageFiles], directory: Path, *, replace: bool = False,
            on_placed: Callable[[Placed], None] | None = None) -> list[Placed]:
    """Write every repository file of the verified bundles into `directory` (created when missing)."""
    _posix()
    directory = repository_dir(directory)
    try:
        if not os.path.lexists(directory):
            directory.mkdir(parents=True)
            directory.chmod(READABLE | 0o111)  # entered by Elasticsearch's user, whatever the umask
    except OSError as exc:
        raise UsageError(f"{directory}: cannot be created ({exc.strerror})") from None
    placed = []
    with LinkSafeTree.open(directory, UsageError, reading=False) as tree:
        plan = _plan(tree, ordered(found), replace)
        try:
            for item in plan:
                if not item.same:
                    _write(tree, item.file)
                action = KEPT if item.same else WRITTEN if item.found is None else REPLACED
                placed.append(Placed(item.file.name, item.file.size, item.file.sha256, action))
                if on_placed:
                    on_placed(placed[-1])
            _read_back(tree, [item.file for item in plan if not item.same])
        except EsbundleError as exc:
            raise exc.add_context(outcome=_partly(placed)) from None
    return placed


def _partly(placed: Sequence[Placed]) -> str:
    written = [p.name for p in placed if p.action != KEPT]
    return ("nothing was written" if not written else f"written before it: {', '.join(written)}; run the same "
            "install again once the cause is fixed")


def _check_one(tree: LinkSafeTree, file: RepositoryFile) -> Problem | None:
    where = str(tree.root / file.name)
    try:
        found = _digest(tree, file.name)
    except EsbundleError as exc:  # a link, a directory or a device under the name
        return Problem(where, "regular file", exc.message.removeprefix(where + ": "))
    if found is None:
        return Problem(where, "present", "missing")
    if found.size != file.size:
        return Problem(where, "size", f"{found.size} bytes; the signed manifest says {file.size}")
    if found.sha256 != file.sha256:
        return Problem(where, "sha256", f"{found.sha256}; the signed manifest says {file.sha256}")
    return None


def check(found: Sequence[PackageFiles], directory: Path) -> list[Placed]:
    """Every repository file present in `directory` with the signed size and sha256, or IntegrityError listing
    every file that is not. Nothing is written."""
    _posix()
    directory = repository_dir(directory)
    files = ordered(found)
    if not os.path.lexists(directory):
        problems = [Problem(str(directory / f.name), "present", "missing (the directory does not exist)")
                    for f in files]
    else:
        with LinkSafeTree.open(directory, IntegrityError, reading=True) as tree:
            problems = [p for f in files if (p := _check_one(tree, f))]
    if problems:
        raise IntegrityError(f"{directory}: {len(problems)} repository file(s) differ from the signed bundle",
                             problems=problems, hint="run `esbundle repository install` with the same bundles "
                             "(--replace to overwrite files that differ)")
    return [Placed(f.name, f.size, f.sha256, MATCHES) for f in files]

