"""Offline verification of a bundle, in the order of the threat model; it never touches the network.

Each stage either passes (reported through `on_check`) or raises the error class of that stage, listing every
problem it found (one per file and check). Later stages never run on what an earlier stage refused: nothing is
decompressed before its stored bytes are authenticated.
"""
from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from loader.content import check_file, open_regular, read_verified
from loader.errors import EsbundleError, IntegrityError, LayoutError, PolicyError, Problem, SignatureError
from loader.format import layout
from loader.format.canonical import JsonProblem, strict_loads
from loader.format.dsse import Envelope, verify_envelope
from loader.format.manifest import PAYLOAD_TYPE, Manifest, parse_time
from loader.format.model_config import (
    TASK_TYPES,
    config_problems,
    model_id_problem,
    tokenization_kind,
    vocabulary_problems,
)
from loader.progress import Progress


@dataclass(frozen=True)
class Check:
    name: str
    detail: str


@dataclass
class Verified:
    """A bundle that passed every check; what the loader may upload."""

    root: Path
    manifest: Manifest
    manifest_bytes: bytes
    signer_key_id: str
    checks: list[Check] = field(default_factory=list)

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()


OnCheck = Callable[[Check], None]


def read_capped(path: Path, cap: int, missing: EsbundleError) -> bytes:
    if not os.path.lexists(path):
        raise missing
    with open_regular(path) as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise LayoutError(f"{path.name}: larger than the {cap} byte limit; refusing to read it")
    return data


def authenticate(root: Path, trusted: Mapping[str, Ed25519PublicKey]) -> tuple[Manifest, bytes, str]:
    """Steps 1-3: read envelope and manifest with caps, check the signature, parse strictly."""
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
    return manifest, manifest_bytes, signer


def expiry_problem(manifest: Manifest, now: datetime) -> str | None:
    if manifest.expires_at and now >= parse_time(manifest.expires_at):
        return f"the bundle expired at {manifest.expires_at} (now {now:%Y-%m-%dT%H:%M:%SZ})"
    return None


def structure_problems(manifest: Manifest) -> list[Problem]:
    """Step 5 and the manifest-only semantic checks: safe paths, each role in its place, parts that add up."""
    problems = layout.path_problems(e.path for e in manifest.files)
    if problems:
        return problems
    expected = {layout.ROLE_CONFIG: layout.CONFIG, layout.ROLE_VOCABULARY: layout.VOCABULARY}
    for role, path in expected.items():
        found = [e.path for e in manifest.files if e.role == role]
        if found != [path]:
            problems.append(Problem(path, "layout", f"exactly one {role} file must be at {path}, found {found}"))
    d, parts = manifest.definition, manifest.parts()
    if [e.part for e in parts] != list(range(len(parts))) or any(
            e.path != layout.part_path(e.part or 0) for e in parts):
        problems.append(Problem(layout.DEFINITION_DIR, "definition parts", "parts must be numbered 0..n-1 at "
                                "definition/part-NNNNN.zst"))
    if d.part_count != len(parts):
        problems.append(Problem(layout.DEFINITION_DIR, "definition parts",
                                f"manifest lists {len(parts)} parts, definition says {d.part_count}"))
    if not 0 < d.part_count <= layout.MAX_PARTS or d.total_length > layout.MAX_DEFINITION_BYTES:
        problems.append(Problem(layout.DEFINITION_DIR, "definition limits", f"{d.part_count} parts of "
                                f"{d.total_length} bytes exceed Elasticsearch's limits"))
    if d.part_count != math.ceil(d.total_length / d.part_size) or sum(e.size for e in parts) != d.total_length:
        problems.append(Problem(layout.DEFINITION_DIR, "definition length",
                                f"parts add up to {sum(e.size for e in parts)} bytes, total_length is "
                                f"{d.total_length} in parts of {d.part_size}"))
    problems += [Problem(e.path, "part size", f"{e.size} bytes, every part but the last must be {d.part_size}")
                 for e in parts[:-1] if e.size != d.part_size]
    if manifest.task_type not in TASK_TYPES:
        problems.append(Problem(layout.MANIFEST, "task type", f"unknown task type {manifest.task_type!r}"))
    why = model_id_problem(manifest.model_id)
    if why:
        problems.append(Problem(layout.MANIFEST, "model id", why))
    return problems


def file_set_problems(root: Path, manifest: Manifest) -> list[Problem]:
    """Step 6: what is on the medium equals what the manifest lists; no links, devices or pipes anywhere."""
    listed = {e.path for e in manifest.files} | {layout.MANIFEST, layout.ENVELOPE}
    dirs = {str(Path(p).parent.as_posix()) for p in listed} - {"."}
    problems: list[Problem] = []
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            if stat.S_ISLNK(mode):
                problems.append(Problem(rel, "file type", "is a symbolic link; bundles hold regular files only"))
            elif stat.S_ISDIR(mode):
                if rel not in dirs:
                    problems.append(Problem(rel, "file set", "extra directory not listed in the manifest"))
            elif not stat.S_ISREG(mode):
                problems.append(Problem(rel, "file type", "is a special file (device, pipe or socket)"))
            elif rel not in listed:
                problems.append(Problem(rel, "file set", "extra file not listed in the manifest"))
            else:
                found.add(rel)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    linked = {p.path for p in problems}
    problems += [Problem(p, "file set", "missing") for p in sorted(listed - found - linked)]
    return problems


def size_problems(root: Path, manifest: Manifest) -> list[Problem]:
    problems = []
    for entry in manifest.files:
        actual = os.lstat(root / entry.path).st_size
        if actual != entry.stored_size:
            problems.append(Problem(entry.path, "stored size", f"{actual} bytes, manifest says {entry.stored_size}"))
    return problems


def content_problems(root: Path, manifest: Manifest, workers: int, progress: Progress) -> list[Problem]:
    """Steps 7-8 for every file, several at a time (hashing and zstd release the GIL)."""
    def one(entry):  # type: ignore[no-untyped-def]
        found = check_file(root, entry)
        progress.advance(entry.stored_size)
        return found

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [p for found in pool.map(one, manifest.files) for p in found]


def semantic_problems(root: Path, manifest: Manifest) -> list[Problem]:
    """Step 9: config and vocabulary parse and fit Elasticsearch's rules (their bytes are already verified)."""
    problems: list[Problem] = []
    config_entry, vocab_entry = manifest.file(layout.ROLE_CONFIG), manifest.file(layout.ROLE_VOCABULARY)
    assert config_entry and vocab_entry  # structure_problems guarantees both
    kind = None
    try:
        config = strict_loads(read_verified(root, config_entry))
        problems += [Problem(layout.CONFIG, "Elasticsearch config", p)
                     for p in config_problems(config, manifest.task_type)]
        kind = tokenization_kind(config)
    except JsonProblem as exc:
        problems.append(Problem(layout.CONFIG, "Elasticsearch config", str(exc)))
    try:
        vocabulary = strict_loads(read_verified(root, vocab_entry))
        problems += [Problem(layout.VOCABULARY, "vocabulary", p) for p in vocabulary_problems(vocabulary, kind)]
    except JsonProblem as exc:
        problems.append(Problem(layout.VOCABULARY, "vocabulary", str(exc)))
    return problems


def verify_bundle(root: Path, trusted: Mapping[str, Ed25519PublicKey], *, now: datetime | None = None,
                  on_check: OnCheck | None = None, workers: int | None = None,
                  progress: bool | None = None) -> Verified:
    """Run every check; return the verified bundle or raise the first failing stage's error."""
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        if on_check:
            on_check(check)

    now = now or datetime.now(timezone.utc)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a bundle directory")
    manifest, manifest_bytes, signer = authenticate(root, trusted)
    report(Check("signature", f"valid, signed by trusted key {signer[:16]}"))
    report(Check("manifest", f"schema {manifest.schema}, {len(manifest.files)} files, bundle {manifest.bundle_id}"))
    why = expiry_problem(manifest, now)
    if why:
        raise PolicyError(why, hint="ask the publisher for a fresh bundle")
    report(Check("expiry", f"valid until {manifest.expires_at}" if manifest.expires_at else "no expiry date"))
    stages: list[tuple[str, type[EsbundleError], Callable[[], list[Problem]], str]] = [
        ("paths", LayoutError, lambda: structure_problems(manifest), "all paths safe and portable; parts add up"),
        ("file set", LayoutError, lambda: file_set_problems(root, manifest), "exactly the files listed"),
        ("sizes", IntegrityError, lambda: size_problems(root, manifest), "every stored size matches"),
    ]
    for name, error, run, ok_text in stages:
        _stage(name, error, run(), report, ok_text)
    total = manifest.stored_bytes
    with Progress("verify", total, enabled=progress) as bar:
        found = content_problems(root, manifest, workers or min(4, os.cpu_count() or 1), bar)
    _stage("sha256", IntegrityError, found, report,
           f"{len(manifest.files)} files, {total} stored bytes; decompressed sizes and sha256 match")
    _stage("content", LayoutError, semantic_problems(root, manifest), report,
           "config and vocabulary fit Elasticsearch's rules")
    return Verified(root=root, manifest=manifest, manifest_bytes=manifest_bytes, signer_key_id=signer,
                    checks=checks)


def _stage(name: str, error: type[EsbundleError], problems: list[Problem], report: OnCheck, ok_text: str) -> None:
    if problems:
        raise error(f"{name} check failed for {len(problems)} item(s)", problems=problems)
    report(Check(name, ok_text))
