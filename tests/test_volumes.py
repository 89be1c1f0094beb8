"""Bundles that span several media, and the checked copy onto a medium."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bundler.writer.travel import Travel
from bundler.writer.volumes import filesystem_problems
from loader.format import layout
from loader.format.manifest import FileEntry
from tests.conftest import Keys, MakeBundle, RunCli, random_file
from tests.standin.fixture import StandIn

VOLUME = 180 << 10  # with 64 KiB parts of a 320 KiB definition: 3 volumes


def on_medium(size: int, cluster: int) -> int:
    """What a file of `size` bytes takes on a medium: whole clusters (README: a volume counts every file rounded
    up to the medium's cluster size, 4 KiB unless the filesystem or --cluster-size says more)."""
    return (size + cluster - 1) // cluster * cluster


def volumes_of(bundle: Path) -> list[Path]:
    return sorted(bundle.glob("vol*"))


@pytest.fixture
def spanning(make_bundle: MakeBundle) -> Path:
    return make_bundle(5 * 65536, name="spanning", travel=Travel(volume_size=VOLUME))


def test_on_medium_rounds_up_to_whole_clusters() -> None:
    assert [on_medium(n, 4096) for n in (0, 1, 4096, 4097)] == [0, 4096, 4096, 8192]
    assert on_medium(65 << 10, 128 << 10) == 128 << 10


def test_a_bundle_spans_three_self_describing_volumes(spanning: Path, keys: Keys, run_cli: RunCli) -> None:
    vols = volumes_of(spanning)
    assert [v.name for v in vols] == ["vol001", "vol002", "vol003"]
    for number, vol in enumerate(vols, start=1):
        label = json.loads((vol / layout.VOLUME_LABEL).read_text())
        assert label["volume"] == number and label["volumes"] == 3
        assert (vol / layout.MANIFEST).read_bytes() == (vols[0] / layout.MANIFEST).read_bytes()
        assert sum(on_medium(p.stat().st_size, 4096) for p in vol.rglob("*") if p.is_file()) <= VOLUME
    assert (vols[0] / layout.CONFIG).exists() and (vols[0] / layout.VOCABULARY).exists()
    result = run_cli("verify", *vols, "--trusted-key", keys.pub)
    assert result.exit_code == 0, result.output
    assert "3 of 3 given" in result.stdout
    assert run_cli("verify", spanning, "--trusted-key", keys.pub).exit_code == 0  # the folder of volumes


def test_each_medium_checked_as_it_arrives(spanning: Path, keys: Keys, run_cli: RunCli) -> None:
    vol1, _, vol3 = volumes_of(spanning)
    result = run_cli("verify", vol1, vol3, "--trusted-key", keys.pub)
    assert result.exit_code == 8, result.output
    assert "2 of 3 given" in result.stdout and "missing: vol002" in result.stdout
    assert "vol002" in result.stderr and "REJECTED" not in result.stderr
    alone = run_cli("verify", vol3, "--trusted-key", keys.pub)
    assert alone.exit_code == 8 and "config and vocabulary are on vol001, not given" in alone.stdout


def test_a_volume_from_another_bundle_is_refused(spanning: Path, make_bundle: MakeBundle, keys: Keys,
                                                 run_cli: RunCli) -> None:
    other = make_bundle(5 * 65536, name="other", travel=Travel(volume_size=VOLUME))
    vol1, vol2, _ = volumes_of(spanning)
    result = run_cli("verify", vol1, vol2, volumes_of(other)[2], "--trusted-key", keys.pub)
    assert result.exit_code == 5, result.output
    assert "vol003" in result.stderr and "belongs to another bundle" in result.stderr


def test_a_corrupted_file_is_named_with_its_volume(spanning: Path, keys: Keys, run_cli: RunCli) -> None:
    vol2 = volumes_of(spanning)[1]
    part = sorted((vol2 / "definition").iterdir())[0]
    data = bytearray(part.read_bytes())
    data[1000] ^= 1
    part.write_bytes(bytes(data))
    result = run_cli("verify", *volumes_of(spanning), "--trusted-key", keys.pub)
    assert result.exit_code == 4 and f"vol002/definition/{part.name}: stored sha256" in result.stderr


def test_load_from_volumes_and_refusal_when_one_is_missing(spanning: Path, keys: Keys, run_cli: RunCli,
                                                           standin: Callable[..., StandIn]) -> None:
    server = standin()
    vol1, vol2, vol3 = volumes_of(spanning)
    missing = run_cli("load", vol1, vol3, "--trusted-key", keys.pub, "--url", server.url)
    assert missing.exit_code == 8 and "nothing was uploaded" in missing.stderr
    assert server.http("GET", "/_ml/trained_models/tiny-model").status == 404
    loaded = run_cli("load", vol1, vol2, vol3, "--trusted-key", keys.pub, "--url", server.url)
    assert loaded.exit_code == 0, loaded.output
    manifest = json.loads((vol1 / layout.MANIFEST).read_text())
    import hashlib

    stored = server.http("GET", "/_standin/trained_models/tiny-model/definition").body
    assert hashlib.sha256(stored).hexdigest() == manifest["definition"]["sha256"]


def test_volume_size_too_small_and_filesystem_caps_are_refused_with_numbers(
        tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    definition = random_file(tmp_path / "m.pt", 200_000)
    (tmp_path / "c.json").write_text(json.dumps({"model_type": "pytorch", "input": {"field_names": ["t"]},
                                                 "inference_config": {"text_embedding": {"tokenization": {
                                                     "bert": {}}}}}))
    (tmp_path / "v.json").write_text(json.dumps({"vocabulary": ["[PAD]", "[UNK]"]}))
    result = run_cli("pack", "--definition", definition, "--config", tmp_path / "c.json", "--vocab",
                     tmp_path / "v.json", "--signing-key", keys.pair.private_path, "--out", tmp_path / "b",
                     "--part-size", "64K", "--volume-size", "40K")
    assert result.exit_code == 2, result.output
    assert "--volume-size 40960 bytes leaves" in result.stderr and "definition/part-00000.zst alone needs" in \
        result.stderr
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.partial*"))
    huge = FileEntry(path="definition/part-00000.zst", role="definition_part", compression="zstd",
                     stored_size=5 << 30, stored_sha256="0" * 64, size=5 << 30, sha256="0" * 64, part=0)
    assert filesystem_problems([huge], "fat32") == [
        "definition/part-00000.zst is 5368709120 bytes; fat32 holds at most 4294967295 bytes in one file"]
    assert filesystem_problems([huge], "exfat") == []


def test_copy_verifies_the_medium_and_resumes(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                              tmp_path: Path) -> None:
    bundle = make_bundle(3_000_000)
    stick = tmp_path / "stick" / "bundle"
    first = run_cli("copy", bundle, stick, "--trusted-key", keys.pub)
    assert first.exit_code == 0, first.output
    assert "signature and every byte verified" in first.stdout
    assert run_cli("verify", stick, "--trusted-key", keys.pub).exit_code == 0

    # A bit flipped on the medium: the next copy reads every file back, finds it and writes it again.
    part = stick / layout.part_path(7)
    data = bytearray(part.read_bytes())
    data[10] ^= 1
    part.write_bytes(bytes(data))
    again = run_cli("copy", bundle, stick)
    assert again.exit_code == 0, again.output
    assert "rewrote 1 that were wrong" in again.stdout and "signature NOT checked" in again.stdout
    assert run_cli("verify", stick, "--trusted-key", keys.pub).exit_code == 0

    other = make_bundle(1000, name="other")
    refused = run_cli("copy", other, stick)
    assert refused.exit_code == 2 and "holds another bundle" in refused.stderr


def test_an_interrupted_copy_resumes(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, tmp_path: Path) -> None:
    bundle = make_bundle(60 << 16, part_size=1 << 16)
    stick = tmp_path / "stick"
    assert run_cli("copy", bundle, stick).exit_code == 0
    # What a copy killed at part 10 leaves: parts 0-9 in place, part 10 torn under its temporary name, no more.
    for index in range(10, 60):
        (stick / layout.part_path(index)).unlink()
    torn = stick / "definition" / ".part-00010.zst.partial"
    torn.write_bytes((bundle / layout.part_path(10)).read_bytes()[:1000])
    resumed = run_cli("copy", bundle, stick, "--trusted-key", keys.pub)
    assert resumed.exit_code == 0, resumed.output
    assert "copied 50 files" in resumed.stdout and "kept 14 already correct" in resumed.stdout  # 10 parts + 4
    assert not torn.exists()
    assert run_cli("verify", stick, "--trusted-key", keys.pub).exit_code == 0



def test_volumes_count_files_by_the_filesystems_cluster(make_bundle: MakeBundle, keys: Keys,
                                                        run_cli: RunCli) -> None:
    """On exfat (128 KiB clusters by default) a 65 KiB part takes 128 KiB: fewer parts fit a volume."""
    size = 1 << 20
    plain = make_bundle(5 * 65536, name="plain", travel=Travel(volume_size=size))
    exfat = make_bundle(5 * 65536, name="exfat", travel=Travel(volume_size=size, filesystem="exfat"))
    assert len(volumes_of(plain)) == 1 and len(volumes_of(exfat)) == 2
    for vol in volumes_of(exfat):
        used = sum(on_medium(p.stat().st_size, 128 << 10) for p in vol.rglob("*") if p.is_file())
        assert used <= size
    assert run_cli("verify", exfat, "--trusted-key", keys.pub).exit_code == 0
