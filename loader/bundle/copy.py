"""`esbundle copy`: put a bundle (or one volume) on a medium and prove the medium holds it.

Nothing is written before the source is checked: with a trusted key, its full verification; without one, the
manifest's structure and paths, the file set and every file's stored size and sha256. Only then are exactly the
files the checked manifest lists copied, each streamed through its hash again, so a source that changes during the
copy never leaves its new bytes under a final name.

Both trees are walked from an open directory one plain name at a time, never following a link: the source and
DEST directories are opened, then each directory under them from its parent's descriptor, and files are created
fresh (O_EXCL) under a temporary name beside their target. Whatever a manifest names and whatever links are
planted on either side, nothing is read from outside the source or written outside DEST, and no other file's
content or mode is touched.

Files go to DEST through `.NAME.partial`, flushed and renamed; files already there with the right size and sha256
are kept, so an interrupted copy resumes. Then every file is read back from DEST (its page-cache copy dropped
first, so the bytes come from the medium where the OS allows it) and checked: against the signed manifest when a
trusted key is given, else against the checked source manifest and every sha256. A DEST that holds another bundle
is never overwritten.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.bundle.content import check_file, read_capped
from loader.bundle.structure import file_set_problems, structure_problems
from loader.bundle.tree import LinkSafeTree, drop_cache, kind, lstat_at, mode_at, open_file, plain_names
from loader.bundle.verify import verify_bundle
from loader.bundle.volumes import VolumeSet, agreement_problems, locate
from loader.errors import EsbundleError, IntegrityError, LayoutError, Problem, SignatureError, UsageError
from loader.format import layout
from loader.format.manifest import Manifest
from loader.format.volumes import MAX_LABEL_BYTES, label_bytes, markers
from loader.progress import Progress

CHUNK = 4 << 20
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_AT_CALLS = (os.open, os.stat, os.mkdir, os.unlink, os.rename)
_MARKER_CAPS = {layout.MANIFEST: layout.MAX_MANIFEST_BYTES, layout.ENVELOPE: layout.MAX_ENVELOPE_BYTES,
                layout.VOLUME_LABEL: MAX_LABEL_BYTES}


@dataclass
class CopyReport:
    copied: int = 0
    kept: int = 0
    rewritten: int = 0  # present on DEST but wrong: copied again
    bytes_copied: int = 0
    signature_checked: bool = False


@dataclass(frozen=True)
class _Item:
    """One file to put on DEST, with what it must be."""

    path: str
    size: int
    sha256: str
    data: bytes | None = None  # the manifest, envelope and label: written from exactly the bytes that were checked


@dataclass(frozen=True)
class _Source:
    """A source directory that passed its checks, and what DEST must hold: the markers first, then its files."""

    volumes: VolumeSet
    manifest: Manifest
    manifest_bytes: bytes
    items: tuple[_Item, ...]

    @property
    def number(self) -> int | None:
        (number,) = self.volumes.roots
        return number


def _read_small(tree: LinkSafeTree, name: str) -> bytes:
    fd = open_file(tree, name)
    if fd is None:
        if name == layout.ENVELOPE:
            raise SignatureError(f"{layout.ENVELOPE}: missing: the bundle is not signed")
        raise LayoutError(f"{name}: missing")
    cap = _MARKER_CAPS[name]
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise LayoutError(f"{tree.root / name}: larger than the {cap} byte limit; refusing to read it")
    return data


def _checked_source(volumes: VolumeSet, src: LinkSafeTree, trusted: Mapping[str, Ed25519PublicKey] | None) -> _Source:
    """The source, checked before anything is written; its markers read once, and what is written is those bytes."""
    (number,) = volumes.roots
    try:
        verified = verify_bundle(src.root, trusted, allow_incomplete=True, progress=False,
                                 whole_definition=False) if trusted else None
        marks = {name: _read_small(src, name) for name in markers(number)}
        if verified is None:
            manifest = _checked_unsigned(volumes, marks)
        elif verified.manifest_bytes != marks[layout.MANIFEST]:
            raise SignatureError(f"{layout.MANIFEST}: changed on the source while it was verified")
        else:
            manifest = verified.manifest
        if number is not None and marks[layout.VOLUME_LABEL] != label_bytes(manifest, number):
            raise LayoutError(f"{layout.VOLUME_LABEL}: volume label: does not match the manifest")
    except EsbundleError as exc:
        raise exc.add_context(subject=f"source {src.root}", outcome="nothing was copied") from None
    # The manifest, envelope and label go first: they mark DEST as this bundle's, so an interrupted copy resumes
    # and no other bundle's copy can land on top of it.
    items = [_Item(name, len(data), hashlib.sha256(data).hexdigest(), data) for name, data in marks.items()]
    items += [_Item(e.path, e.stored_size, e.stored_sha256)
              for e in sorted(manifest.files, key=lambda e: e.path) if e.volume == number]
    return _Source(volumes, manifest, marks[layout.MANIFEST], tuple(items))


def _checked_unsigned(volumes: VolumeSet, marks: Mapping[str, bytes]) -> Manifest:
    """Without a trusted key nothing is authenticated, but the manifest must still describe a safe bundle that this
    directory holds exactly, byte for byte, before a byte of it is written."""
    (number, root), = volumes.roots.items()
    manifest = Manifest.from_bytes(marks[layout.MANIFEST])
    stages: list[tuple[str, type[EsbundleError], Callable[[], list[Problem]]]] = [
        ("volumes", LayoutError, lambda: agreement_problems(volumes, manifest, marks[layout.MANIFEST],
                                                            marks[layout.ENVELOPE])),
        ("paths", LayoutError, lambda: structure_problems(manifest)),
        ("file set", LayoutError, lambda: file_set_problems(root, manifest, number)),
        ("sha256", IntegrityError, lambda: [Problem(volumes.display(e), p.check, p.detail)
                                            for e in volumes.entries(manifest) for p in check_file(root, e)]),
    ]
    for name, error, run in stages:
        problems = run()
        if problems:
            raise error(f"{name} check failed for {len(problems)} item(s)", problems=problems)
    return manifest


def _open_destination(dest: Path, source: _Source) -> LinkSafeTree:
    if os.path.islink(dest):
        raise UsageError(f"{dest}: is a symbolic link; give the real directory")
    try:
        dest.mkdir(parents=True)
    except FileExistsError:
        pass  # a directory to resume or fill, or something else: the open refuses anything but a directory
    except OSError as exc:
        raise UsageError(f"{dest}: cannot be created ({exc.strerror})") from None
    tree = LinkSafeTree.open(dest, UsageError, reading=False)
    try:
        _check_destination(tree, source)
    except BaseException:
        tree.__exit__()
        raise
    return tree


def _first_link(dest: LinkSafeTree, source: _Source) -> str | None:
    """A link in DEST or in a directory the bundle uses. Only those are entered (by the copy, and here): a tree of
    any depth elsewhere is never walked, and the read-back reports it."""
    used = {tuple(names[:depth]) for item in source.items for names in [plain_names(item.path)[:-1]]
            for depth in range(len(names) + 1)}
    for key in sorted(used, key=len):
        fd = dest.directory(key, create=False)  # a link on the way is refused here
        if fd is None:
            continue
        with os.scandir(fd) as entries:
            link = next((entry.name for entry in entries if entry.is_symlink()), None)
        if link:
            return "/".join([*key, link])
    return None


def _check_destination(dest: LinkSafeTree, source: _Source) -> None:
    """DEST must be empty, or hold this very bundle (an interrupted or earlier copy); no links where it is used."""
    link = _first_link(dest, source)
    if link:
        raise dest.refusal(link, "is a symbolic link; refusing to write through it")
    fd = open_file(dest, layout.MANIFEST)
    if fd is not None:
        with os.fdopen(fd, "rb") as handle:
            found = handle.read(layout.MAX_MANIFEST_BYTES + 1)
        if found == source.manifest_bytes:
            return
        try:
            other = Manifest.from_bytes(found).bundle_id
        except EsbundleError:
            other = "unreadable"
        raise UsageError(f"{dest.root}: holds another bundle ({other}); refusing to overwrite it",
                         hint="copy to an empty directory")
    if os.listdir(dest.fd):
        raise UsageError(f"{dest.root}: is not empty and holds no copy of this bundle; refusing to write into it",
                         hint="copy to an empty directory")


def _partial(name: str) -> str:
    return f".{name}.partial"


def _present(dst: LinkSafeTree, item: _Item) -> int | None:
    """The size of the regular file DEST holds at the item's place, None when there is none; anything else there,
    or a directory where the temporary file goes, is refused before anything is written."""
    *dirs, name = plain_names(item.path)
    parent = dst.directory(dirs, create=False)
    if parent is None:
        return None
    partial = mode_at(parent, _partial(name))
    if partial is not None and stat.S_ISDIR(partial):
        raise dst.refusal("/".join([*dirs, _partial(name)]), "is a directory where copy keeps its temporary file; "
                          "refusing to replace it")
    found = lstat_at(parent, name)
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise dst.refusal(item.path, f"{kind(found.st_mode)} {dst.misplaced}")
    return None if found is None else found.st_size


def _intact(dst: LinkSafeTree, item: _Item) -> bool:
    fd = open_file(dst, item.path)
    if fd is None:
        return False
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as handle:
        while (chunk := handle.read(CHUNK)) and size <= item.size:
            digest.update(chunk)
            size += len(chunk)
    return size == item.size and digest.hexdigest() == item.sha256


def _checked_chunks(src: LinkSafeTree, item: _Item) -> Iterator[bytes]:
    """The source file's bytes, hashed again as they pass: if they are not what was checked, the copy stops before
    the file gets its name on DEST."""
    fd = open_file(src, item.path)
    if fd is None:
        raise LayoutError(f"{src.root / item.path}: missing on the source since it was checked")
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as handle:
        while (chunk := handle.read(CHUNK)) and size + len(chunk) <= item.size:
            digest.update(chunk)
            size += len(chunk)
            yield chunk
        over = bool(chunk)
    if over or size != item.size or digest.hexdigest() != item.sha256:
        raise IntegrityError(f"{src.root / item.path}: stored sha256: changed on the source since it was checked; "
                             "it was not copied", hint="check the source medium, then run the same copy again")


def _install(dst: LinkSafeTree, rel: str, chunks: Iterable[bytes], bar: Progress) -> int:
    """Write `rel` under a temporary name created fresh beside it, flush it, and only then give it its name: a link
    is never written through, and an interrupted or refused copy never leaves a file that looks complete."""
    *dirs, name = plain_names(rel)
    parent = dst.directory(dirs, create=True)
    assert parent is not None  # created when missing
    partial = _partial(name)
    try:
        os.unlink(partial, dir_fd=parent)  # a leftover of an interrupted copy; a planted link goes, not its target
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise dst.refusal("/".join([*dirs, partial]), f"cannot be removed ({exc.strerror}); refusing to write "
                          "there") from None
    try:
        out = os.open(partial, _CREATE_FLAGS, 0o644, dir_fd=parent)
    except OSError as exc:  # something appeared there since it was removed
        raise dst.refusal("/".join([*dirs, partial]), f"cannot be created ({exc.strerror})") from None
    written = 0
    try:
        with os.fdopen(out, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
                bar.advance(len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.rename(partial, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as exc:
            raise dst.refusal(rel, f"cannot be replaced ({exc.strerror})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial, dir_fd=parent)
        raise
    return written


def _copy_items(source: _Source, src: LinkSafeTree, dst: LinkSafeTree, progress: bool | None) -> CopyReport:
    present = {item.path: _present(dst, item) for item in source.items}
    needed = sum(item.size for item in source.items if present[item.path] != item.size)
    fs = os.statvfs(dst.fd)
    if needed > fs.f_bavail * fs.f_frsize:
        raise UsageError(f"{dst.root}: {fs.f_bavail * fs.f_frsize} bytes free, the copy needs {needed}",
                         hint="use a larger medium, or have the bundle cut into volumes that fit it")
    report = CopyReport()
    with Progress("copy", sum(item.size for item in source.items), enabled=progress) as bar:
        for item in source.items:
            if present[item.path] == item.size and _intact(dst, item):
                report.kept += 1
                bar.advance(item.size)
                continue
            report.rewritten += present[item.path] is not None
            chunks = [item.data] if item.data is not None else _checked_chunks(src, item)
            report.bytes_copied += _install(dst, item.path, chunks, bar)
            report.copied += 1
    dst.fsync_dirs()
    for item in source.items:
        drop_cache(dst, item.path)
    return report


def copy_bundle(source: Path, dest: Path, trusted: Mapping[str, Ed25519PublicKey] | None,
                on_line: Callable[[str], None], progress: bool | None = None) -> CopyReport:
    if not all(call in os.supports_dir_fd for call in _AT_CALLS):
        raise UsageError("copy needs an OS that opens files relative to a directory (POSIX); without that it "
                         "cannot keep every write inside the destination")
    found = locate(source)
    if len(found.roots) != 1:
        raise UsageError(f"{source}: give one bundle directory or one volume to copy (several volumes found)",
                         hint="copy each volume to its own medium: esbundle copy BUNDLE/vol001 /media/stick1 ...")
    with LinkSafeTree.open(found.primary, LayoutError, reading=True) as src:
        checked = _checked_source(found, src, trusted)  # before DEST is even created
        with _open_destination(dest, checked) as dst:
            report = _copy_items(checked, src, dst, progress)
    on_line(f"copied {report.copied} files ({report.bytes_copied} bytes), kept {report.kept} already correct"
            + (f", rewrote {report.rewritten} that were wrong on {dest}" if report.rewritten else ""))
    _read_back(checked, dest, trusted, on_line, report)
    return report


def _read_back(source: _Source, dest: Path, trusted: Mapping[str, Ed25519PublicKey] | None,
               on_line: Callable[[str], None], report: CopyReport) -> None:
    if trusted:
        verify_bundle(dest, trusted, allow_incomplete=True, progress=False, whole_definition=False)
        report.signature_checked = True
        on_line(f"read back {dest}: signature and every byte verified against the trusted key")
        return
    problems: list[Problem] = []
    for item in (i for i in source.items if i.data is not None):
        try:
            same = read_capped(dest / item.path, item.size, LayoutError(item.path)) == item.data
        except LayoutError:
            same = False
        if not same:
            problems.append(Problem(item.path, "read back", "differs from the source after the copy"))
    problems += file_set_problems(dest, source.manifest, source.number)
    for entry in (e for e in source.manifest.files if e.volume == source.number):
        problems += check_file(dest, entry)
    if problems:
        raise IntegrityError(f"the copy on {dest} is not what was written", problems=problems,
                             hint="the medium may be failing: run the same copy again, or use another medium")
    on_line(f"read back {dest}: every byte matches the manifest (signature NOT checked: no trusted key given)")
