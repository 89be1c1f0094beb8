"""`esbundle copy`: put a bundle (or one volume) on a medium and prove the medium holds it.

Files go to DEST through a temporary name, flushed and renamed; files already there with the right size and
sha256 are kept, so an interrupted copy resumes. Then every file is read back from DEST (its page-cache copy
dropped first, so the bytes come from the medium where the OS allows it) and checked: against the signed
manifest when a trusted key is given, else against the source's manifest byte for byte and every sha256.
A DEST that holds another bundle is never overwritten.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.bundle.content import check_file, open_regular, read_capped, sha256_file
from loader.bundle.durable import fsync_tree
from loader.bundle.verify import file_set_problems, verify_bundle
from loader.bundle.volumes import locate
from loader.errors import EsbundleError, IntegrityError, Problem, UsageError
from loader.format import layout
from loader.format.manifest import Manifest
from loader.format.volumes import files_on, markers
from loader.progress import Progress

CHUNK = 4 << 20


@dataclass
class CopyReport:
    copied: int = 0
    kept: int = 0
    rewritten: int = 0  # present on DEST but wrong: copied again
    bytes_copied: int = 0
    signature_checked: bool = False


def _drop_cache(path: Path) -> None:
    """Ask the OS to forget its cached copy, so the read-back comes from the medium (best effort)."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _copy_one(source: Path, target: Path, progress: Progress) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    if os.path.lexists(partial):
        os.unlink(partial)  # a leftover of an interrupted copy, or a planted link: never write through it
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    copied = 0
    with open_regular(source) as src, os.fdopen(fd, "wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            copied += len(chunk)
            progress.advance(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(partial, target)
    return copied


def copy_bundle(source: Path, dest: Path, trusted: Mapping[str, Ed25519PublicKey] | None,
                on_line: Callable[[str], None], progress: bool | None = None) -> CopyReport:
    found = locate(source)
    if len(found.roots) != 1:
        raise UsageError(f"{source}: give one bundle directory or one volume to copy (several volumes found)",
                         hint="copy each volume to its own medium: esbundle copy BUNDLE/vol001 /media/stick1 ...")
    (number, root), = found.roots.items()
    manifest_bytes = read_capped(root / layout.MANIFEST, layout.MAX_MANIFEST_BYTES,
                                 UsageError(f"{root}: holds no {layout.MANIFEST}"))
    manifest = Manifest.from_bytes(manifest_bytes)
    _check_destination(dest, manifest_bytes)
    # The manifest, envelope and label go first: they mark DEST as this bundle's, so an interrupted copy resumes
    # and no other bundle's copy can land on top of it.
    first = markers(number)
    names = [*first, *sorted(set(files_on(manifest, number)) - set(first))]
    entries = {e.path: e for e in manifest.files if e.volume == number}
    report = CopyReport()
    total = sum((root / name).stat().st_size for name in names)
    dest.mkdir(parents=True, exist_ok=True)
    needed = sum((root / n).stat().st_size for n in names
                 if not (dest / n).exists() or (dest / n).stat().st_size != (root / n).stat().st_size)
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise UsageError(f"{dest}: {free} bytes free, the copy needs {needed}", hint="use a larger medium, or "
                         "cut the bundle into volumes (export/pack --volume-size)")
    with Progress("copy", total, enabled=progress) as bar:
        for name in names:
            src, dst = root / name, dest / name
            if dst.exists() and _same(src, dst, entries.get(name)):
                report.kept += 1
                bar.advance(src.stat().st_size)
                continue
            report.rewritten += dst.exists()
            report.bytes_copied += _copy_one(src, dst, bar)
            report.copied += 1
    fsync_tree(dest)
    for name in names:
        _drop_cache(dest / name)
    on_line(f"copied {report.copied} files ({report.bytes_copied} bytes), kept {report.kept} already correct"
            + (f", rewrote {report.rewritten} that were wrong on {dest}" if report.rewritten else ""))
    _read_back(root, dest, manifest, number, trusted, on_line, report)
    return report


def _check_destination(dest: Path, manifest_bytes: bytes) -> None:
    """DEST must be empty, or hold this very bundle (an interrupted or earlier copy); never links."""
    if os.path.islink(dest):
        raise UsageError(f"{dest}: is a symbolic link; give the real directory")
    if not dest.exists():
        return
    for path in dest.rglob("*"):
        if path.is_symlink():
            raise UsageError(f"{path}: is a symbolic link; refusing to write through it")
    existing = dest / layout.MANIFEST
    if existing.is_file() and existing.stat().st_size <= layout.MAX_MANIFEST_BYTES:
        found = existing.read_bytes()
        if found == manifest_bytes:
            return
        try:
            other = Manifest.from_bytes(found).bundle_id
        except EsbundleError:
            other = "unreadable"
        raise UsageError(f"{dest}: holds another bundle ({other}); refusing to overwrite it",
                         hint="copy to an empty directory")
    if any(dest.iterdir()):
        raise UsageError(f"{dest}: is not empty and holds no copy of this bundle; refusing to write into it",
                         hint="copy to an empty directory")


def _same(src: Path, dst: Path, entry: object) -> bool:
    stored_sha = getattr(entry, "stored_sha256", None)
    if src.stat().st_size != dst.stat().st_size:
        return False
    return sha256_file(dst) == (stored_sha or sha256_file(src))


def _read_back(source: Path, dest: Path, manifest: Manifest, number: int | None,
               trusted: Mapping[str, Ed25519PublicKey] | None, on_line: Callable[[str], None],
               report: CopyReport) -> None:
    if trusted:
        verify_bundle(dest, trusted, allow_incomplete=True, progress=False)
        report.signature_checked = True
        on_line(f"read back {dest}: signature and every byte verified against the trusted key")
        return
    problems: list[Problem] = []
    for name in markers(number):
        if sha256_file(dest / name) != sha256_file(source / name):
            problems.append(Problem(name, "read back", "differs from the source after the copy"))
    problems += file_set_problems(dest, manifest, number)
    for entry in (e for e in manifest.files if e.volume == number):
        problems += check_file(dest, entry)
    if problems:
        raise IntegrityError(f"the copy on {dest} is not what was written", problems=problems,
                             hint="the medium may be failing: run the same copy again, or use another medium")
    on_line(f"read back {dest}: every byte matches the manifest (signature NOT checked: no trusted key given)")
