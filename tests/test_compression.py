"""Compression only where it pays: `--compression auto|zstd|none`, the per-file choice, and what verify and load do
with each. A compressed file's stored bytes are hashed before libzstd sees any of them: a decompression bomb in
place of a part is refused at its stored sha256, never expanded.

Bundles are real (packed by the CLI, signed with real keys); damage is done to real files; loads go to the real
stand-in process and are read back through its own endpoint.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from bundler.writer.bundle import write_bundle
from bundler.writer.travel import MIN_SAVING_PERCENT, Travel, pays
from loader.bundle.content import frame_problem
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.errors import IntegrityError
from loader.format import layout
from loader.format.manifest import Manifest
from tests.conftest import EMBEDDING_CONFIG, FIXED_TIME, TINY_VOCAB, Keys, RunCli, random_file
from tests.standin.fixture import StandIn

INTEGRITY = 4
PART = 64 << 10
# A vocabulary as large as a small real one: JSON compresses far past the threshold.
VOCAB = {"vocabulary": [*TINY_VOCAB["vocabulary"], *(f"word{i:04d}" for i in range(3000))]}


def manifest_of(bundle: Path) -> Manifest:
    return Manifest.from_bytes((bundle / layout.MANIFEST).read_bytes())


def pack(run_cli: RunCli, tmp_path: Path, keys: Keys, definition: Path, name: str, *extra: Any,
         vocabulary: dict[str, Any] = VOCAB) -> Path:
    config, vocab = tmp_path / f"{name}-config.json", tmp_path / f"{name}-vocab.json"
    config.write_text(json.dumps(EMBEDDING_CONFIG))
    vocab.write_text(json.dumps(vocabulary))
    out = tmp_path / name
    result = run_cli("pack", "--definition", definition, "--config", config, "--vocab", vocab, "--signing-key",
                     keys.pair.private_path, "--out", out, "--es-model-id", "squeezed", "--part-size", "64K",
                     "--expires-in", "never", *extra)
    assert result.exit_code == 0, result.output
    return out


def verify_and_load_byte_exact(run_cli: RunCli, bundle: Path, keys: Keys, server: StandIn, definition: Path) -> None:
    verified = run_cli("verify", bundle, "--trusted-key", keys.pub)
    assert verified.exit_code == 0, verified.output
    args = ["load", bundle, "--trusted-key", keys.pub, "--url", server.url]
    loaded = run_cli(*args, *(["--ca-certs", server.ca_cert] if server.ca_cert else []))
    assert loaded.exit_code == 0, loaded.output
    stored = server.http("GET", "/_standin/trained_models/squeezed/definition")
    assert stored.status == 200, stored.body[:200]
    assert stored.body == definition.read_bytes()


def torchscript_with_zeros_and_noise(path: Path) -> tuple[Path, bytes]:
    """A real TorchScript archive holding 1 MiB of zeros (a tensor never trained, or padding) and 1 MiB of random
    bytes (weights that do not compress); returns the file and the random bytes."""
    import torch

    noise = random.Random(7).randbytes(1 << 20)

    class Weights(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("zeros", torch.zeros(1 << 18))
            self.register_buffer("noise", torch.frombuffer(bytearray(noise), dtype=torch.uint8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.zeros[0] + self.noise[0].float()

    torch.jit.save(torch.jit.script(Weights()), str(path))
    return path, noise


def test_auto_keeps_random_parts_raw_and_they_verify_and_load_byte_exact(
        run_cli: RunCli, tmp_path: Path, keys: Keys, standin: Callable[..., StandIn]) -> None:
    definition = random_file(tmp_path / "random.pt", 10 * PART + 123)
    bundle = pack(run_cli, tmp_path, keys, definition, "random")
    manifest = manifest_of(bundle)
    assert manifest.tools["compression"] == f"auto: zstd level 3 where it saves at least {MIN_SAVING_PERCENT}%"
    parts = manifest.parts()
    assert len(parts) == 11
    for entry in parts:  # stored as they are: the one sha256 is both the stored and the raw one
        assert (entry.compression, entry.stored_size, entry.stored_sha256) == ("none", entry.size, entry.sha256)
    assert b"".join((bundle / e.path).read_bytes() for e in parts) == definition.read_bytes()
    vocabulary = manifest.file(layout.ROLE_VOCABULARY)
    assert vocabulary is not None and vocabulary.compression == "zstd"  # JSON pays
    verify_and_load_byte_exact(run_cli, bundle, keys, standin(), definition)


def test_auto_compresses_the_parts_that_pay_and_they_verify_and_load_byte_exact(
        run_cli: RunCli, tmp_path: Path, keys: Keys, standin: Callable[..., StandIn]) -> None:
    definition, noise = torchscript_with_zeros_and_noise(tmp_path / "zeros-and-noise.pt")
    bundle = pack(run_cli, tmp_path, keys, definition, "mixed")
    raw = definition.read_bytes()
    kinds: dict[str, list[int]] = {"zeros": [], "noise": []}
    for entry in manifest_of(bundle).parts():
        chunk = raw[(entry.part or 0) * PART:][:PART]
        if chunk == bytes(len(chunk)):
            kinds["zeros"].append(entry.part or 0)
            assert entry.compression == "zstd" and entry.stored_size < entry.size // 100, entry
            assert zstandard.frame_content_size((bundle / entry.path).read_bytes()) == entry.size
        elif chunk in noise:
            kinds["noise"].append(entry.part or 0)
            assert (entry.compression, entry.stored_size) == ("none", entry.size), entry
    assert len(kinds["zeros"]) >= 14 and len(kinds["noise"]) >= 14, kinds
    verify_and_load_byte_exact(run_cli, bundle, keys, standin(), definition)


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_zstd_and_none_apply_to_every_part_and_the_vocabulary_never_to_the_config(
        compression: str, run_cli: RunCli, tmp_path: Path, keys: Keys) -> None:
    definition = random_file(tmp_path / "random.pt", 4 * PART)
    bundle = pack(run_cli, tmp_path, keys, definition, compression, "--compression", compression)
    manifest = manifest_of(bundle)
    assert manifest.tools["compression"] == ("zstd level 3" if compression == "zstd" else "none")
    stored = {e.role: e.compression for e in manifest.files}
    assert stored == {layout.ROLE_DEFINITION_PART: compression, layout.ROLE_VOCABULARY: compression,
                      layout.ROLE_CONFIG: "none"}
    assert {e.compression for e in manifest.parts()} == {compression}
    assert run_cli("verify", bundle, "--trusted-key", keys.pub).exit_code == 0


def test_the_threshold_is_a_share_of_the_raw_bytes() -> None:
    assert MIN_SAVING_PERCENT == 10
    assert pays(1000, 900) and pays(1000, 10) and not pays(1000, 901) and not pays(1000, 1000)
    assert not pays(100, 150)  # zstd's frame around bytes it cannot shrink


def test_the_same_inputs_make_the_same_choices(tmp_path: Path, keys: Keys) -> None:
    definition, _ = torchscript_with_zeros_and_noise(tmp_path / "m.pt")
    for name in ("a", "b"):
        write_bundle(tmp_path / name, definition=definition, config=EMBEDDING_CONFIG, vocabulary=VOCAB,
                     signing_key=keys.signing, model_id="m", task_type="text_embedding", part_size=PART,
                     created_at=FIXED_TIME, travel=Travel(compression="auto"))
    assert (tmp_path / "a" / layout.MANIFEST).read_bytes() == (tmp_path / "b" / layout.MANIFEST).read_bytes()


# --- a decompression bomb where the signed manifest names another part ------------------------------------------

_RLE_BLOCK = 128 << 10  # what one RLE block (a 3-byte header and one byte) stands for, at most


def zstd_bomb(stored_size: int) -> bytes:
    """One well-formed zstd frame of exactly `stored_size` bytes that declares its content size and expands to
    about 32,000 times that: a header (magic, descriptor: 8-byte content size, a 128 KiB window), RLE blocks of
    128 KiB of zeros each, and a last raw block that pads the frame to the size wanted."""
    room = stored_size - 14 - 3  # header, then the last block's header
    blocks, padding = divmod(room, 4)
    content = blocks * _RLE_BLOCK + padding
    frame = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0xC0, 7 << 3]) + content.to_bytes(8, "little"))
    rle = (_RLE_BLOCK << 3 | 1 << 1).to_bytes(3, "little") + b"\x00"
    frame += rle * blocks
    frame += (padding << 3 | 1).to_bytes(3, "little") + bytes(padding)  # raw block, the last
    assert len(frame) == stored_size
    return bytes(frame)


def test_the_crafted_frame_is_a_real_bomb() -> None:
    small = zstd_bomb(14 + 3 + 4 * 5 + 2)
    assert zstandard.ZstdDecompressor().decompress(small) == bytes(5 * _RLE_BLOCK + 2)
    big = zstd_bomb(64 << 10)
    declared = zstandard.frame_content_size(big)
    assert declared > 1 << 30  # 2 GiB from 64 KiB
    assert frame_problem(big, declared) is None  # one frame, declaring its size, nothing after it
    out = zstandard.ZstdDecompressor().decompressobj().decompress(big[:400])
    assert len(out) >= 90 * _RLE_BLOCK  # it really expands, block by block


_VERIFY_IN_A_CHILD = """
import json, resource, sys
from pathlib import Path
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.errors import IntegrityError

keys = load_trusted_keys([Path(sys.argv[2])])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    verify_bundle(Path(sys.argv[1]), keys, progress=False)
    problems = []
except IntegrityError as exc:
    problems = [[p.path, p.check] for p in exc.problems]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"problems": problems, "peak_growth_kib": grew}))
"""


def test_a_bomb_in_place_of_a_compressed_part_is_refused_at_its_stored_sha256_never_expanded(
        tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    symbols = random.Random(3).choices(b"abcdefghijklmnop", k=8 * PART)  # compresses to about half
    definition = tmp_path / "m.pt"
    definition.write_bytes(bytes(symbols))
    bundle = tmp_path / "b"
    write_bundle(bundle, definition=definition, config=EMBEDDING_CONFIG, vocabulary=VOCAB, signing_key=keys.signing,
                 model_id="m", task_type="text_embedding", part_size=PART, expires_in_days=None,
                 travel=Travel(compression="auto"))
    target = manifest_of(bundle).parts()[3]
    assert target.compression == "zstd" and target.stored_size > 20_000
    bomb = zstd_bomb(target.stored_size)  # same size on the medium: the sizes check passes, the hash decides
    assert zstandard.frame_content_size(bomb) > 1 << 30
    (bundle / target.path).write_bytes(bomb)

    # In a child, to measure the peak: expanded, the bomb would need a GiB and more.
    child = subprocess.run([sys.executable, "-c", _VERIFY_IN_A_CHILD, str(bundle), str(keys.pub)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    outcome = json.loads(child.stdout)
    # Refused at the stored sha256, the check that comes before any frame is read or decompressed.
    assert outcome["problems"] == [[target.path, "stored sha256"]]
    assert outcome["peak_growth_kib"] < 64 << 10, outcome

    result = run_cli("verify", bundle, "--trusted-key", keys.pub)
    assert result.exit_code == INTEGRITY
    assert f"{target.path}: stored sha256: the bytes on the medium differ from the signed manifest" in result.stderr
    assert "decompress" not in result.stderr


def test_every_other_part_still_checks_out_beside_the_bomb(tmp_path: Path, keys: Keys) -> None:
    """The refusal names the bomb only: the parts around it were read, hashed and decompressed as usual."""
    definition = tmp_path / "m.pt"
    definition.write_bytes(bytes(random.Random(4).choices(b"0123456789abcdef", k=6 * PART)))
    bundle = tmp_path / "b"
    write_bundle(bundle, definition=definition, config=EMBEDDING_CONFIG, vocabulary=VOCAB, signing_key=keys.signing,
                 model_id="m", task_type="text_embedding", part_size=PART, expires_in_days=None,
                 travel=Travel(compression="zstd"))
    parts = manifest_of(bundle).parts()
    for entry in (parts[1], parts[4]):
        (bundle / entry.path).write_bytes(zstd_bomb(entry.stored_size))
    with pytest.raises(IntegrityError) as caught:
        verify_bundle(bundle, load_trusted_keys([keys.pub]), progress=False)
    assert [(p.path, p.check) for p in caught.value.problems] == [(parts[1].path, "stored sha256"),
                                                                  (parts[4].path, "stored sha256")]
