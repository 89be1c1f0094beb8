"""Offline verification of a bundle, in the order of the threat model; it never touches the network.

Each stage either passes (reported through `on_check`) or raises the error class of that stage, listing every
problem it found (one per file and check). Later stages never run on what an earlier stage refused. Each file is
read once into memory and its stored bytes hashed; only when they match the signed manifest is a compressed file
decompressed (window and output capped) and hashed again. Files are read in order by one thread and checked by a
pool of threads, one per core; problems are listed in the same order whatever the number of threads.
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.bundle.content import decode, read_capped, read_stored, read_verified
from loader.bundle.structure import file_set_problems, structure_problems
from loader.bundle.volumes import VolumeSet, agreement_problems, locate
from loader.errors import (
    EsbundleError,
    IncompleteError,
    IntegrityError,
    LayoutError,
    PolicyError,
    Problem,
    SignatureError,
)
from loader.format import layout
from loader.format import package as packages
from loader.format.canonical import JsonProblem, strict_loads
from loader.format.cluster_metadata import bundle_metadata
from loader.format.dsse import Envelope, verify_envelope
from loader.format.manifest import PAYLOAD_TYPE, FileEntry, Manifest, parse_time
from loader.format.model_config import (
    config_problems,
    tokenization_kind,
    vocabulary_problems,
)
from loader.progress import Progress


@dataclass(frozen=True)
class Check:
    name: str
    detail: str


@dataclass(frozen=True)
class Verified:
    """A bundle that passed every check; what the loader may upload."""

    volumes: VolumeSet
    manifest: Manifest
    manifest_bytes: bytes
    signer_key_id: str
    checks: tuple[Check, ...] = ()

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def root(self) -> Path:
        return self.volumes.primary

    def root_of(self, entry: FileEntry) -> Path:
        return self.volumes.root_of(entry)

    def read_json(self, role: str) -> Any:
        """The config or vocabulary, re-read and re-hashed now (what is used is what was verified), parsed."""
        entry = self.manifest.file(role)
        assert entry is not None  # verification guarantees one config and one vocabulary
        return strict_loads(read_verified(self.root_of(entry), entry))

    def cluster_metadata(self) -> dict[str, Any]:
        """The record the loader writes into the model's config in the cluster."""
        return bundle_metadata(self.manifest, self.manifest_sha256, self.signer_key_id)


OnCheck = Callable[[Check], None]


def authenticate(root: Path, trusted: Mapping[str, Ed25519PublicKey]) -> tuple[Manifest, bytes, str, bytes]:
    """Steps 1-3: read envelope and manifest with caps, check the signature, parse strictly.
    Returns the manifest, its exact bytes, the signer's key id and the envelope's bytes."""
    envelope_bytes = read_capped(root / layout.ENVELOPE, layout.MAX_ENVELOPE_BYTES, SignatureError(
        f"{layout.ENVELOPE}: missing: the bundle is not signed", hint="only signed bundles are accepted"))
    envelope = Envelope.from_bytes(envelope_bytes)
    signer = verify_envelope(envelope, PAYLOAD_TYPE, trusted)
    manifest_bytes = read_capped(root / layout.MANIFEST, layout.MAX_MANIFEST_BYTES, LayoutError(
        f"{layout.MANIFEST}: missing"))
    if manifest_bytes != envelope.payload:
        raise SignatureError(f"{layout.MANIFEST}: differs from the manifest that was signed (tampered or corrupted)")
    manifest = Manifest.from_bytes(manifest_bytes)
    if manifest.signer_key_id != signer:
        raise SignatureError(f"{layout.MANIFEST}: names signer {manifest.signer_key_id[:16]} but was signed by "
                             f"{signer[:16]}")
    return manifest, manifest_bytes, signer, envelope_bytes


# Clocks on either side of an air gap drift; a day covers that, and a date beyond it is a wrong clock or a forgery.
CLOCK_SKEW = timedelta(days=1)


def expiry_problem(manifest: Manifest, now: datetime) -> str | None:
    if manifest.expires_at and now >= parse_time(manifest.expires_at):
        return f"the bundle expired at {manifest.expires_at} (now {now:%Y-%m-%dT%H:%M:%SZ})"
    if parse_time(manifest.created_at) > now + CLOCK_SKEW:
        return (f"the bundle says it was created at {manifest.created_at}, after now ({now:%Y-%m-%dT%H:%M:%SZ}): "
                "the publisher's clock or this machine's is wrong")
    return None


def size_problems(volumes: VolumeSet, manifest: Manifest) -> list[Problem]:
    problems = []
    for entry in volumes.entries(manifest):
        actual = os.lstat(volumes.root_of(entry) / entry.path).st_size
        if actual != entry.stored_size:
            problems.append(Problem(volumes.display(entry), "stored size",
                                    f"{actual} bytes, manifest says {entry.stored_size}"))
    return problems


def cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS tells it): the size of the pools that
    hash, decompress and encode parts, whose work releases the GIL on large buffers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every OS
        return os.cpu_count() or 1


# Raw bytes of parts in flight at once (read, being checked, waiting for the whole-definition hash), however many
# cores: two per core with the default 1 MiB parts, never fewer than two parts.
WINDOW_BYTES = 128 << 20


def window(workers: int, part_size: int) -> int:
    """How many parts may be in flight at once."""
    return max(2, min(2 * workers, WINDOW_BYTES // max(part_size, 1)))


def joined_mismatch() -> Problem:
    """The parts, joined in order, do not hash to the signed whole-definition sha256 (step 8)."""
    return Problem(layout.DEFINITION_DIR, "definition sha256",
                   "the parts joined differ from the signed sha256 of the whole definition")


def content_problems(volumes: VolumeSet, manifest: Manifest, workers: int, progress: Progress, *,
                     whole_definition: bool = True) -> list[Problem]:
    """Steps 7-8 for every file; with every part given and `whole_definition`, the raw parts in order must also
    hash to the signed whole-definition sha256.

    This thread reads the files in order, each in one large read (sequential on the medium); a pool of `workers`
    threads hashes and decompresses them; results are taken in the files' order, so the problems come out exactly
    as one thread would list them. The whole-definition sha256, which cannot be split, runs alongside in a thread
    of its own over the parts already proven. At most about 1.5 `window` parts are in memory at once."""
    def check(entry: FileEntry, stored: bytes) -> tuple[list[Problem], bytes | None]:
        found, raw = decode(entry, stored)
        progress.advance(entry.stored_size)
        return [Problem(volumes.display(entry), p.check, p.detail) for p in found], raw

    entries = sorted(volumes.entries(manifest), key=lambda e: (e.part is None, e.part or 0, e.path))
    whole = hashlib.sha256() if whole_definition and not volumes.missing(manifest) else None
    problems: list[Problem] = []
    ahead = window(workers, manifest.definition.part_size)
    with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as joiner:
        checked: deque[tuple[FileEntry, Future[tuple[list[Problem], bytes | None]]]] = deque()
        joined: deque[Future[None]] = deque()  # one thread, so the parts are hashed in the order given

        def take() -> None:
            entry, future = checked.popleft()
            found, raw = future.result()
            problems.extend(found)
            if whole is not None and raw is not None and not problems and entry.role == layout.ROLE_DEFINITION_PART:
                joined.append(joiner.submit(whole.update, raw))
                if len(joined) > ahead // 2:
                    joined.popleft().result()

        for entry in entries:
            checked.append((entry, pool.submit(check, entry, read_stored(volumes.root_of(entry), entry))))
            if len(checked) >= ahead:
                take()
        while checked:
            take()
        for future in joined:
            future.result()
    if whole is not None and not problems and whole.hexdigest() != manifest.definition.sha256:
        problems.append(joined_mismatch())
    return problems


def semantic_problems(volumes: VolumeSet, manifest: Manifest) -> list[Problem]:
    """Step 9: config and vocabulary parse and fit Elasticsearch's rules (their bytes are already verified)."""
    if manifest.package is not None:
        return package_problems(volumes, manifest)
    problems: list[Problem] = []
    config_entry, vocab_entry = manifest.file(layout.ROLE_CONFIG), manifest.file(layout.ROLE_VOCABULARY)
    assert config_entry and vocab_entry  # structure_problems guarantees both
    if not volumes.has(config_entry):
        return []  # they live on the first volume, which was not given
    kind = None
    try:
        config = strict_loads(read_verified(volumes.root_of(config_entry), config_entry))
        problems += [Problem(layout.CONFIG, "Elasticsearch config", p)
                     for p in config_problems(config, manifest.task_type)]
        kind = tokenization_kind(config)
    except JsonProblem as exc:
        problems.append(Problem(layout.CONFIG, "Elasticsearch config", str(exc)))
    try:
        vocabulary = strict_loads(read_verified(volumes.root_of(vocab_entry), vocab_entry))
        problems += [Problem(layout.VOCABULARY, "vocabulary", p) for p in vocabulary_problems(vocabulary, kind)]
    except JsonProblem as exc:
        problems.append(Problem(layout.VOCABULARY, "vocabulary", str(exc)))
    return problems


def package_problems(volumes: VolumeSet, manifest: Manifest) -> list[Problem]:
    """Step 9 for one of Elastic's packages: its metadata passes the cluster's checks, says what the signed manifest
    says (name, task, the whole definition's size and sha256), and its vocabulary fits the package loader."""
    package = manifest.package
    meta_entry, vocab_entry = manifest.file(layout.ROLE_PACKAGE_METADATA), manifest.file(layout.ROLE_VOCABULARY)
    assert package and meta_entry and vocab_entry  # structure_problems guarantees both
    if not volumes.has(meta_entry):
        return []
    where = layout.PACKAGE_METADATA
    try:
        metadata = strict_loads(read_verified(volumes.root_of(meta_entry), meta_entry))
    except JsonProblem as exc:
        return [Problem(where, "package metadata", str(exc))]
    problems = [Problem(where, "package metadata", p) for p in packages.metadata_problems(metadata, package.name)]
    if not problems:
        problems += [Problem(where, "package definition", p) for p in packages.definition_problems(
            metadata, manifest.definition.total_length, manifest.definition.sha256)]
        if metadata != package.metadata:
            problems.append(Problem(where, "package metadata", "differs from the copy in the signed manifest"))
        if packages.task_of(metadata) != manifest.task_type:
            problems.append(Problem(where, "package metadata", f"is for {packages.task_of(metadata)!r}, the manifest "
                                    f"says {manifest.task_type!r}"))
    raw = read_verified(volumes.root_of(vocab_entry), vocab_entry)
    try:
        problems += [Problem(layout.VOCABULARY, "package vocabulary", p)
                     for p in packages.package_vocabulary_problems(strict_loads(raw), len(raw))]
    except JsonProblem as exc:
        problems.append(Problem(layout.VOCABULARY, "package vocabulary", str(exc)))
    return problems


def verify_bundle(paths: Path | Sequence[Path], trusted: Mapping[str, Ed25519PublicKey], *,
                  now: datetime | None = None, on_check: OnCheck | None = None, workers: int | None = None,
                  progress: bool | None = None, allow_incomplete: bool = False,
                  whole_definition: bool = True) -> Verified:
    """Run every check on a bundle directory, or on the volumes given; return the verified bundle or raise the
    first failing stage's error. Volumes that are all correct but not all there raise IncompleteError, unless
    `allow_incomplete` (checking each medium as it arrives).

    `whole_definition`: also hash the parts joined against the signed whole-definition sha256, one serial pass
    over every byte (sha256 cannot be split). Every part's own sha256 is signed, so without it every byte is still
    proven; what it adds is that the signer's whole-file figure agrees with its parts, which matters where the
    definition is assembled or that figure is written somewhere (load, repository install and serve)."""
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        if on_check:
            on_check(check)

    now = now or datetime.now(timezone.utc)
    volumes = locate(paths)
    manifest, manifest_bytes, signer, envelope_bytes = authenticate(volumes.primary, trusted)
    report(Check("signature", f"valid, signed by trusted key {signer[:16]}"))
    report(Check("manifest", f"schema {manifest.schema}, {len(manifest.files)} files, bundle {manifest.bundle_id}"))
    _stage("volumes", LayoutError, agreement_problems(volumes, manifest, manifest_bytes, envelope_bytes), report,
           _volumes_text(volumes, manifest))
    why = expiry_problem(manifest, now)
    if why:
        raise PolicyError(why, hint="ask the publisher for a fresh bundle")
    report(Check("expiry", f"valid until {manifest.expires_at}" if manifest.expires_at else "no expiry date"))
    stages: list[tuple[str, type[EsbundleError], Callable[[], list[Problem]], str]] = [
        ("paths", LayoutError, lambda: structure_problems(manifest), "all paths safe and portable; parts add up"),
        ("file set", LayoutError, lambda: [p for number, root in volumes.roots.items()
                                           for p in file_set_problems(root, manifest, number)],
         "exactly the files listed"),
        ("sizes", IntegrityError, lambda: size_problems(volumes, manifest), "every stored size matches"),
    ]
    for name, error, run, ok_text in stages:
        _stage(name, error, run(), report, ok_text)
    _bytes_stage(volumes, manifest, report, workers or cores(), progress, whole_definition)
    _stage("content", LayoutError, semantic_problems(volumes, manifest), report,
           _content_text(manifest, volumes.entries(manifest)))
    missing = volumes.missing(manifest)
    if missing and not allow_incomplete:
        raise IncompleteError(
            f"every volume given is correct, but {len(missing)} of {manifest.volumes} volumes are missing: "
            + ", ".join(layout.volume_dir(n) for n in missing),
            hint="check the other media as they arrive; load needs all of them")
    return Verified(volumes=volumes, manifest=manifest, manifest_bytes=manifest_bytes, signer_key_id=signer,
                    checks=tuple(checks))


def _bytes_stage(volumes: VolumeSet, manifest: Manifest, report: OnCheck, workers: int, progress: bool | None,
                 whole_definition: bool) -> None:
    """Steps 7-8: every stored byte, with a progress bar."""
    entries = volumes.entries(manifest)
    total = sum(e.stored_size for e in entries)
    with Progress("verify", total, enabled=progress) as bar:
        found = content_problems(volumes, manifest, workers, bar, whole_definition=whole_definition)
    joined = "; the parts joined match the definition's sha256" if whole_definition and not volumes.missing(
        manifest) else ""
    _stage("sha256", IntegrityError, found, report,
           f"{len(entries)} files, {total} stored bytes; decompressed sizes and sha256 match{joined}")


def _content_text(manifest: Manifest, entries: Sequence[FileEntry]) -> str:
    if not any(e.role == layout.ROLE_VOCABULARY for e in entries):
        return "config and vocabulary are on vol001, not given"
    if manifest.package is not None:
        return (f"package {manifest.package.name}: metadata passes the cluster's checks and matches the definition; "
                "vocabulary fits the package loader")
    return "config and vocabulary fit Elasticsearch's rules"


def _volumes_text(volumes: VolumeSet, manifest: Manifest) -> str:
    if not volumes.multi:
        return "one directory"
    given = ", ".join(f"{layout.volume_dir(n)} ({volumes.roots[n]})" for n in volumes.given)
    missing = volumes.missing(manifest)
    return f"{len(volumes.given)} of {manifest.volumes} given: {given}" + (
        f"; missing: {', '.join(layout.volume_dir(n) for n in missing)}" if missing else "")


def _stage(name: str, error: type[EsbundleError], problems: list[Problem], report: OnCheck, ok_text: str) -> None:
    if problems:
        raise error(f"{name} check failed for {len(problems)} item(s)", problems=problems)
    report(Check(name, ok_text))
