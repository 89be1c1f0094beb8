"""The bundle writer: cut, compress where it pays, hash, sign, and put a complete bundle in place atomically.

Everything is written into a hidden temporary directory beside the target, verified there with the same code
the offline side runs, and only then renamed into place: a crash never leaves something that looks complete.
The same inputs, options, creation time and key give byte-identical files (zstd at a fixed level is
deterministic, and so is the choice to keep its output; Ed25519 signatures are deterministic, JSON is canonical).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from bundler.keys import SigningKey
from bundler.options import check_identity, refuse_existing
from bundler.sign import sign_manifest
from bundler.writer import volumes
from bundler.writer.travel import ZSTD_LEVEL, Travel, compression_record, pays
from loader import __version__, settings
from loader.bundle.content import sha256_file
from loader.bundle.durable import fsync_dir, fsync_tree, rename_no_replace, write_durable
from loader.bundle.verify import cores, verify_bundle
from loader.errors import ModelError, UsageError
from loader.format import layout
from loader.format import package as packages
from loader.format.canonical import JsonProblem, canonical_bytes, strict_loads
from loader.format.manifest import SCHEMA_V1, Definition, FileEntry, Manifest, Package, format_time
from loader.format.model_config import (
    TASK_TYPES,
    config_problems,
    tokenization_kind,
    vocabulary_problems,
)


@dataclass(frozen=True)
class _Stored:
    entry: FileEntry
    data: bytes


def creation_time(explicit: datetime | None = None) -> datetime:
    if explicit:
        return explicit
    epoch = settings.get(settings.SOURCE_DATE_EPOCH)
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    return datetime.now(timezone.utc)


def _pack(path: str, role: str, raw: bytes, compression: str, part: int | None = None) -> _Stored:
    """One file as stored: zstd (one frame declaring its size) when `compression` asks for it, or under `auto`
    when that pays; else the raw bytes, whose one sha256 is both the stored and the raw one."""
    digest = hashlib.sha256(raw).hexdigest()
    if compression != "none":
        packed = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False).compress(raw)
        if compression == "zstd" or pays(len(raw), len(packed)):
            return _Stored(FileEntry(path=path, role=role, compression="zstd", stored_size=len(packed),
                                     stored_sha256=hashlib.sha256(packed).hexdigest(), size=len(raw), sha256=digest,
                                     part=part), packed)
    return _Stored(FileEntry(path=path, role=role, compression="none", stored_size=len(raw), stored_sha256=digest,
                             size=len(raw), sha256=digest, part=part), raw)


# fsync waits on the disk, not the CPU: concurrent fsyncs share journal commits (here 512 files of 1 MiB took
# 2.7 s one after another, 0.5 s from 8 threads).
_SYNC_THREADS = 8
_WINDOW_BYTES = 64 << 20  # parts held at once between reading and writing, whatever the part size (at least 2)


def _write_parts(tmp: Path, definition: Path, part_size: int, compression: str) -> tuple[list[FileEntry], str, int]:
    """Cut the definition into parts read in order, hashed whole on the way; a pool (one thread per core)
    compresses and hashes them; they are written in order and each fsynced by a pool of its own, so no disk wait
    holds up the next part. Returns the entries in order, the whole sha256 and the length."""
    whole, entries, total = hashlib.sha256(), [], 0
    workers = cores()
    window = max(2, min(2 * workers, _WINDOW_BYTES // part_size))
    (tmp / layout.DEFINITION_DIR).mkdir(parents=True, exist_ok=True)
    with open(definition, "rb", buffering=0) as handle, ThreadPoolExecutor(max_workers=workers) as pool, \
            ThreadPoolExecutor(max_workers=_SYNC_THREADS) as syncing:
        packed: deque[Future[_Stored]] = deque()
        synced: deque[Future[None]] = deque()  # at most a few files open, waiting for their fsync

        def write_next() -> None:
            stored = packed.popleft().result()
            target = open(tmp / stored.entry.path, "xb")  # noqa: SIM115 - closed by _sync, on the syncing pool
            try:
                target.write(stored.data)
            except BaseException:
                target.close()
                raise
            synced.append(syncing.submit(_sync, target))
            entries.append(stored.entry)
            while synced and (synced[0].done() or len(synced) > 4 * _SYNC_THREADS):
                synced.popleft().result()

        index = 0
        while chunk := _read_full(handle, part_size):
            whole.update(chunk)
            total += len(chunk)
            packed.append(pool.submit(_pack, layout.part_path(index), layout.ROLE_DEFINITION_PART, chunk,
                                      compression, index))
            index += 1
            if len(packed) >= window:
                write_next()
        while packed:
            write_next()
        for future in synced:
            future.result()  # every part on disk before the manifest that lists it is signed
    return entries, whole.hexdigest(), total


def _sync(handle: BinaryIO) -> None:
    with handle:
        handle.flush()
        os.fsync(handle.fileno())


def _read_full(handle: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes: fewer only at the end of the file."""
    chunk = handle.read(size) or b""
    while 0 < len(chunk) < size and (more := handle.read(size - len(chunk))):
        chunk += more
    return chunk


def check_inputs(*, definition: Path, config: Mapping[str, Any], vocabulary: Mapping[str, Any], model_id: str,
                 task_type: str, bundle_version: int, part_size: int) -> None:
    """Refuse, before writing anything, what verify or the cluster would refuse later."""
    if task_type not in TASK_TYPES:
        raise UsageError(f"task type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    check_identity(model_id, bundle_version, part_size)
    if not definition.is_file():
        raise UsageError(f"definition {definition}: not a file")
    total = definition.stat().st_size
    if total == 0 or total > layout.MAX_DEFINITION_BYTES:
        raise ModelError(
            f"definition {definition}: {total} bytes; Elasticsearch takes 1..{layout.MAX_DEFINITION_BYTES}")
    if math.ceil(total / part_size) > layout.MAX_PARTS:
        raise UsageError(f"definition {definition}: {math.ceil(total / part_size)} parts of {part_size} bytes exceed "
                         f"Elasticsearch's {layout.MAX_PARTS}",
                         hint=f"use --part-size {math.ceil(total / layout.MAX_PARTS)} or more")
    problems = [f"config: {p}" for p in config_problems(config, task_type)]
    problems += [f"vocabulary: {p}" for p in vocabulary_problems(vocabulary, tokenization_kind(config))]
    if problems:
        raise ModelError("the model's files would be refused by Elasticsearch:\n  " + "\n  ".join(problems))


def write_bundle(out: Path, *, definition: Path, config: Mapping[str, Any], vocabulary: Mapping[str, Any],
                 signing_key: SigningKey, model_id: str, task_type: str, bundle_version: int = 1,
                 expires_in_days: int | None = 365, part_size: int = layout.DEFAULT_PART_SIZE,
                 provenance: Mapping[str, Any] | None = None, samples: Sequence[Mapping[str, Any]] = (),
                 compatibility: Mapping[str, Any] | None = None, created_at: datetime | None = None,
                 travel: Travel | None = None) -> Manifest:
    """Write a signed bundle at `out` (which must not exist) and return its manifest."""
    refuse_existing(out)
    check_inputs(definition=definition, config=config, vocabulary=vocabulary, model_id=model_id,
                 task_type=task_type, bundle_version=bundle_version, part_size=part_size)
    config_bytes = (json.dumps(config, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    travel = travel or Travel()
    others = [_pack(layout.CONFIG, layout.ROLE_CONFIG, config_bytes, "none"),
              _pack(layout.VOCABULARY, layout.ROLE_VOCABULARY, canonical_bytes(vocabulary), travel.compression)]
    return _write(out, definition, others, model_id=model_id, task_type=task_type, signing_key=signing_key,
                  bundle_version=bundle_version, expires_in_days=expires_in_days, part_size=part_size,
                  provenance=provenance, samples=samples, compatibility=compatibility, created_at=created_at,
                  travel=travel)


def write_package_bundle(out: Path, *, definition: Path, metadata_bytes: bytes, vocabulary_bytes: bytes,
                         package: Package, signing_key: SigningKey, bundle_version: int = 1,
                         expires_in_days: int | None = 365, part_size: int = layout.DEFAULT_PART_SIZE,
                         provenance: Mapping[str, Any] | None = None, samples: Sequence[Mapping[str, Any]] = (),
                         compatibility: Mapping[str, Any] | None = None, created_at: datetime | None = None,
                         travel: Travel | None = None) -> Manifest:
    """Write a signed bundle of one of Elastic's packages: the `.pt` cut into parts, the metadata and vocabulary
    kept byte for byte (the vocabulary compressed for the journey where that pays, its raw bytes identical)."""
    refuse_existing(out)
    check_identity(None, bundle_version, part_size)
    problems = package_input_problems(package, metadata_bytes, vocabulary_bytes, definition)
    if problems:
        raise ModelError(f"package {package.name}: the cluster would refuse it:\n  " + "\n  ".join(problems))
    travel = travel or Travel()
    others = [_pack(layout.PACKAGE_METADATA, layout.ROLE_PACKAGE_METADATA, metadata_bytes, "none"),
              _pack(layout.VOCABULARY, layout.ROLE_VOCABULARY, vocabulary_bytes, travel.compression)]
    return _write(out, definition, others, model_id=package.model_id, task_type=str(packages.task_of(
                  package.metadata)), signing_key=signing_key, bundle_version=bundle_version,
                  expires_in_days=expires_in_days, part_size=part_size, provenance=provenance, samples=samples,
                  compatibility=compatibility, created_at=created_at, travel=travel, package=package)


def package_input_problems(package: Package, metadata_bytes: bytes, vocabulary_bytes: bytes,
                           definition: Path) -> list[str]:
    """What the verifier would refuse in a package, found before anything is written."""
    try:
        metadata = strict_loads(metadata_bytes)
        vocabulary = strict_loads(vocabulary_bytes)
    except JsonProblem as exc:
        return [f"not acceptable JSON: {exc}"]
    problems = packages.metadata_problems(metadata, package.name)
    problems += [f"vocabulary: {p}" for p in packages.package_vocabulary_problems(vocabulary, len(vocabulary_bytes))]
    if metadata != package.metadata:
        problems.append("the metadata record differs from the metadata file")
    if not problems:
        problems += packages.definition_problems(metadata, definition.stat().st_size, sha256_file(definition))
    return problems


def _write(out: Path, definition: Path, others: list[_Stored], *, model_id: str, task_type: str,
           signing_key: SigningKey, bundle_version: int, expires_in_days: int | None, part_size: int,
           provenance: Mapping[str, Any] | None, samples: Sequence[Mapping[str, Any]],
           compatibility: Mapping[str, Any] | None, created_at: datetime | None, travel: Travel,
           package: Package | None = None) -> Manifest:
    created = creation_time(created_at)
    others = others + [_pack(path, layout.ROLE_LOADER, source.read_bytes(), "none")
                       for path, source in travel.extra_files]
    with _staging(out) as tmp:
        parts, whole_sha256, total = _write_parts(tmp, definition, part_size, travel.compression)
        for stored in others:
            write_durable(tmp / stored.entry.path, stored.data)
        files = tuple(parts) + tuple(s.entry for s in others)
        manifest = Manifest(
            schema=SCHEMA_V1, bundle_id=_bundle_id(model_id, bundle_version, created, whole_sha256, files,
                                                   signing_key.key_id),
            model_id=model_id, task_type=task_type, bundle_version=bundle_version, created_at=format_time(created),
            expires_at=format_time(created + timedelta(days=expires_in_days)) if expires_in_days else None,
            signer_key_id=signing_key.key_id,
            definition=Definition(total_length=total, part_size=part_size, part_count=len(parts), sha256=whole_sha256),
            files=files, tools={"esbundle": __version__, "format": SCHEMA_V1,
                                "compression": compression_record(travel.compression)},
            provenance=dict(provenance or {}), samples=tuple(samples), compatibility=dict(compatibility or {}),
            package=package,
        )
        manifest = _place_on_volumes(manifest, travel)
        roots = _sign_and_lay_out(tmp, manifest, signing_key)
        # Prove the bundle with the offline side's own verifier before it is allowed to exist.
        verify_bundle(roots, {signing_key.key_id: signing_key.private_key.public_key()}, now=created, progress=False)
        fsync_tree(tmp)  # every entry durable before the bundle may appear under its name
        rename_no_replace(tmp, out)
        fsync_dir(out.parent)
    return manifest


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A hidden directory beside `out`, removed if anything fails before the bundle is renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _bundle_id(model_id: str, bundle_version: int, created: datetime, definition_sha256: str,
               files: Sequence[FileEntry], signer: str) -> str:
    """Derived from everything that makes the bundle what it is: the same inputs give the same id."""
    identity = canonical_bytes({"model_id": model_id, "bundle_version": bundle_version,
                                "created_at": format_time(created), "definition": definition_sha256,
                                "files": [e.stored_sha256 for e in files], "signer": signer})
    return str(uuid.UUID(bytes=hashlib.sha256(identity).digest()[:16], version=4))


def _place_on_volumes(manifest: Manifest, travel: Travel) -> Manifest:
    too_big = volumes.filesystem_problems(manifest.files, travel.filesystem)
    if too_big:
        raise UsageError("files too large for the target filesystem:\n  " + "\n  ".join(too_big),
                         hint="use a smaller --part-size, or a filesystem such as exfat")
    if not travel.volume_size:
        return manifest
    unit = travel.allocation_unit
    placed, count = volumes.assign(manifest.files, travel.volume_size, volumes.overhead(manifest, unit), unit)
    return dataclasses.replace(manifest, files=tuple(placed), volumes=count)


def _sign_and_lay_out(tmp: Path, manifest: Manifest, signing_key: SigningKey) -> list[Path]:
    """Sign the manifest's canonical bytes; write them and the envelope (into every volume when there are some)."""
    manifest_bytes = manifest.to_bytes()
    envelope_bytes = sign_manifest(manifest_bytes, signing_key)
    if manifest.volumes:
        return volumes.lay_out(tmp, manifest, manifest_bytes, envelope_bytes)
    write_durable(tmp / layout.MANIFEST, manifest_bytes)
    write_durable(tmp / layout.ENVELOPE, envelope_bytes)
    return [tmp]
