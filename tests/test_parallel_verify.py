"""Verify on every core: files are hashed and decompressed by a pool of threads, yet the problems come out in the
same order, with the same words, as from one thread. Bundles are real and damaged on disk; where a case needs a
hostile manifest, it is re-signed with the trusted key, as a careless or compromised publisher would."""
from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from bundler.sign import sign_manifest
from bundler.writer.bundle import write_bundle
from bundler.writer.travel import Travel
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import content_problems, verify_bundle
from loader.bundle.volumes import locate
from loader.errors import IntegrityError, Problem
from loader.format import layout
from loader.format.canonical import canonical_bytes, strict_loads
from loader.format.manifest import Manifest
from loader.progress import Progress
from tests.conftest import EMBEDDING_CONFIG, TINY_VOCAB, Keys

PART = 16 << 10
PARTS = 24
WORKERS = (2, 3, 8)


def definition_half_compressible(path: Path) -> Path:
    """Even parts compress to about half (16 symbols), odd parts are random: `auto` stores both kinds."""
    rng = random.Random(11)
    path.write_bytes(b"".join(bytes(rng.choices(b"0123456789abcdef", k=PART)) if i % 2 == 0 else rng.randbytes(PART)
                              for i in range(PARTS)))
    return path


def write(tmp_path: Path, keys: Keys, name: str = "b", **travel: Any) -> Path:
    out = tmp_path / name
    write_bundle(out, definition=definition_half_compressible(tmp_path / f"{name}.pt"), config=EMBEDDING_CONFIG,
                 vocabulary=TINY_VOCAB, signing_key=keys.signing, model_id="m", task_type="text_embedding",
                 part_size=PART, expires_in_days=None, travel=Travel(compression="auto", **travel))
    return out


def resign(roots: list[Path], keys: Keys, mutate: Callable[[dict[str, Any]], None]) -> None:
    obj = strict_loads((roots[0] / layout.MANIFEST).read_bytes())
    mutate(obj)
    raw = canonical_bytes(obj)
    for root in roots:
        (root / layout.MANIFEST).write_bytes(raw)
        (root / layout.ENVELOPE).write_bytes(sign_manifest(raw, keys.signing))


def entry_of(obj: dict[str, Any], part: int) -> dict[str, Any]:
    return next(f for f in obj["files"] if f.get("part") == part)


def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def damage(roots: list[Path], keys: Keys) -> dict[int, str]:
    """Seven parts damaged in five ways, spread over the bundle; returns the check each must fail."""
    where = {e.part: root for root in roots for e in Manifest.from_bytes(
        (root / layout.MANIFEST).read_bytes()).files if e.part is not None and (root / e.path).exists()}
    manifest = Manifest.from_bytes((roots[0] / layout.MANIFEST).read_bytes())
    parts = manifest.parts()
    assert [e.compression for e in parts[:4]] == ["zstd", "none", "zstd", "none"]

    def path(part: int) -> Path:
        return where[part] / layout.part_path(part)

    for part in (1, 2, PARTS - 1):  # raw and compressed parts changed on the medium
        flip_bit(path(part))
    two_frames = path(8).read_bytes() + zstandard.ZstdCompressor().compress(b"more")
    path(8).write_bytes(two_frames)
    other_size = zstandard.ZstdCompressor().compress(bytes(PART - 1))
    path(12).write_bytes(other_size)

    def hostile(obj: dict[str, Any]) -> None:
        for part, stored in ((8, two_frames), (12, other_size)):  # signed as they are: caught at the frame
            entry_of(obj, part).update(stored_size=len(stored), stored_sha256=hashlib.sha256(stored).hexdigest())
        entry_of(obj, 15)["sha256"] = "0" * 64  # a raw part whose signed raw hash is wrong
        entry_of(obj, 18)["sha256"] = "0" * 64  # a compressed part whose signed raw hash is wrong

    resign(roots, keys, hostile)
    return {1: "stored sha256", 2: "stored sha256", 8: "decompression", 12: "decompression",
            15: "decompressed sha256", 18: "decompressed sha256", PARTS - 1: "stored sha256"}


def problems_with(roots: list[Path], workers: int, *, whole_definition: bool = True) -> list[Problem]:
    volumes = locate(roots if len(roots) > 1 else roots[0])
    manifest = Manifest.from_bytes((volumes.primary / layout.MANIFEST).read_bytes())
    return content_problems(volumes, manifest, workers, Progress("verify", 1, enabled=False),
                            whole_definition=whole_definition)


def test_parallel_verify_lists_the_same_problems_in_the_same_order_as_one_thread(tmp_path: Path,
                                                                                  keys: Keys) -> None:
    bundle = write(tmp_path, keys)
    expected = damage([bundle], keys)
    alone = problems_with([bundle], 1)
    assert [(p.path, p.check) for p in alone] == [(layout.part_path(n), check) for n, check in expected.items()]
    for workers in WORKERS:
        assert problems_with([bundle], workers) == alone
    trusted = load_trusted_keys([keys.pub])
    refusals = []
    for workers in (1, *WORKERS):
        with pytest.raises(IntegrityError) as caught:
            verify_bundle(bundle, trusted, workers=workers, progress=False)
        refusals.append(caught.value.lines())
    assert all(lines == refusals[0] for lines in refusals)
    assert len(refusals[0]) == 1 + len(expected)


def test_the_same_over_volumes(tmp_path: Path, keys: Keys) -> None:
    bundle = write(tmp_path, keys, volume_size=160 << 10)
    roots = sorted(bundle.glob("vol*"))
    assert len(roots) >= 3
    expected = damage(roots, keys)
    alone = problems_with(roots, 1)
    assert [p.check for p in alone] == list(expected.values())
    assert all(p.path.startswith("vol") for p in alone)
    for workers in WORKERS:
        assert problems_with(roots, workers) == alone


def test_the_whole_definition_is_still_checked_alongside_the_pool(tmp_path: Path, keys: Keys) -> None:
    """Every part right, but the signed sha256 of the whole definition is not theirs: the joined parts, hashed in
    order beside the pool, must catch it with any number of threads."""
    bundle = write(tmp_path, keys)
    resign([bundle], keys, lambda obj: obj["definition"].update(sha256="f" * 64))
    for workers in (1, *WORKERS):
        problems = problems_with([bundle], workers)
        assert [(p.path, p.check) for p in problems] == [(layout.DEFINITION_DIR, "definition sha256")]
        assert problems_with([bundle], workers, whole_definition=False) == []


def test_a_good_bundle_verifies_with_any_number_of_threads(tmp_path: Path, keys: Keys) -> None:
    bundle = write(tmp_path, keys)
    trusted = load_trusted_keys([keys.pub])
    for workers in (1, *WORKERS):
        assert verify_bundle(bundle, trusted, workers=workers, progress=False).manifest.definition.part_count == PARTS
