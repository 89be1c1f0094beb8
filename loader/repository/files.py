"""The repository files of a verified package bundle: the three files a cluster asks its model repository for, each
described by the bundle files whose raw bytes, joined in order, are that file.

Nothing here keeps a repository file's bytes. Each piece is re-read and re-checked against the signed manifest
(`read_verified`) at the moment it is used, so what is written or served is what the signature covers, whatever
happened to the medium since verification, and memory stays bounded by one part.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.bundle.content import read_verified
from loader.bundle.verify import Verified
from loader.errors import UsageError
from loader.format import layout
from loader.format import package as packages
from loader.format.manifest import FileEntry


@dataclass(frozen=True)
class Piece:
    """One bundle file and where its raw bytes start in the repository file."""

    root: Path
    entry: FileEntry
    offset: int

    @property
    def end(self) -> int:
        return self.offset + self.entry.size

    def read(self) -> bytes:
        """Its raw bytes, re-checked now; IntegrityError (naming the file and the check) when they changed."""
        return read_verified(self.root, self.entry)


@dataclass(frozen=True)
class RepositoryFile:
    """A file under the name the cluster asks for, with the size and sha256 the signed manifest gives it."""

    name: str
    size: int
    sha256: str
    pieces: tuple[Piece, ...]

    def chunks(self, first: int = 0, last: int | None = None) -> Iterator[bytes]:
        """Bytes `first`..`last` (inclusive; default to the end), one re-checked piece at a time: a piece that fails
        its re-check raises IntegrityError before any of its bytes is given out."""
        last = self.size - 1 if last is None else last
        for piece in self.pieces:
            if piece.end <= first or piece.offset > last:
                continue
            raw = piece.read()
            yield raw[max(first - piece.offset, 0):last + 1 - piece.offset]


@dataclass(frozen=True)
class PackageFiles:
    """One verified package bundle as a model repository holds it."""

    source: str  # the argument(s) it was given as, for messages
    bundle_id: str
    model_id: str
    metadata: RepositoryFile
    vocabulary: RepositoryFile
    model: RepositoryFile

    @property
    def files(self) -> tuple[RepositoryFile, ...]:
        # The metadata last: the cluster asks for it first, so a package is only visible once its other files are.
        return (self.vocabulary, self.model, self.metadata)


def _whole(verified: Verified, name: str, entry: FileEntry) -> RepositoryFile:
    return RepositoryFile(name, entry.size, entry.sha256, (Piece(verified.root_of(entry), entry, 0),))


def _joined(verified: Verified, name: str) -> RepositoryFile:
    """The `.pt`: the definition parts in order; its size and sha256 are the signed whole definition's."""
    pieces, offset = [], 0
    for entry in verified.manifest.parts():
        pieces.append(Piece(verified.root_of(entry), entry, offset))
        offset += entry.size
    definition = verified.manifest.definition
    return RepositoryFile(name, definition.total_length, definition.sha256, tuple(pieces))


def package_files(verified: Verified, source: str) -> PackageFiles:
    """The repository files of a bundle that passed verification; a bundle of any other model is refused."""
    manifest = verified.manifest
    if manifest.package is None:
        raise UsageError(f"{source}: bundle {manifest.bundle_id} carries {manifest.model_id}, not one of Elastic's "
                         "packaged models; a model repository holds only those",
                         hint="load this bundle with `esbundle load` instead")
    names = packages.repository_files(manifest.package.name, manifest.package.metadata)
    metadata, vocabulary = manifest.file(layout.ROLE_PACKAGE_METADATA), manifest.file(layout.ROLE_VOCABULARY)
    assert metadata is not None and vocabulary is not None  # verification guarantees both in a package bundle
    return PackageFiles(source=source, bundle_id=manifest.bundle_id, model_id=manifest.model_id,
                        metadata=_whole(verified, names.metadata, metadata),
                        vocabulary=_whole(verified, names.vocabulary, vocabulary),
                        model=_joined(verified, names.model))
