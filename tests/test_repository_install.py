"""`esbundle repository install`: the files of verified package bundles written into a model repository directory
under the names the cluster asks for, and `--check`.

Packages are made here (tests/packages.py), published by a local model server and exported by the real export
(tests/package_bundles.py). Every expectation about a written file compares it with the file the test published,
never with anything the bundle or the product computed. The stand-in imports the installed package over its file
route (`file://` below its config directory) and its read-back must equal the published `.pt`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from bundler.keys import KeyPair
from loader.bundle.trust import load_trusted_keys
from loader.errors import IntegrityError
from loader.repository.bundles import verify_packages
from loader.repository.install import install as repository_install
from tests.conftest import Keys, MakeBundle, RunCli
from tests.package_bundles import PackageBundle, export_package, publisher_keys
from tests.standin.fixture import start_standin

USAGE, SIGNATURE, INTEGRITY, INCOMPLETE = 2, 3, 4, 8
NAME = "tiny-e5"
FILES = (f"{NAME}.metadata.json", f"{NAME}.vocab.json", f"{NAME}.pt")


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return publisher_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, publisher: KeyPair) -> PackageBundle:
    # 64 KiB parts: the .pt (about 175 KB) is written from several parts, each re-checked.
    return export_package(tmp_path_factory.mktemp("small"), NAME, publisher, part_size=64 << 10)


@pytest.fixture(scope="module")
def spanning(tmp_path_factory: pytest.TempPathFactory, publisher: KeyPair) -> PackageBundle:
    return export_package(tmp_path_factory.mktemp("spanning"), "other-e5", publisher, part_size=64 << 10,
                          volume_size=128 << 10)


def install(run_cli: RunCli, publisher: KeyPair, *args: object):
    return run_cli("repository", "install", *args, "--trusted-key", publisher.public_path)


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_three_files_are_written_byte_for_byte_and_nothing_else_is_touched(
        small: PackageBundle, publisher: KeyPair, run_cli: RunCli, tmp_path: Path) -> None:
    repo = tmp_path / "config" / "models"
    repo.mkdir(parents=True)
    others = {"elser_model_2.pt": b"another model", "elser_model_2.metadata.json": b"{}", "notes.txt": b"mine"}
    for name, data in others.items():
        (repo / name).write_bytes(data)
    before = {name: os.stat(repo / name).st_mtime_ns for name in others}
    result = install(run_cli, publisher, small.bundle, "--to", repo)
    assert result.exit_code == 0, result.output
    assert contents(repo) == {**others, **small.files}  # no temporary file left either
    assert {name: os.stat(repo / name).st_mtime_ns for name in others} == before
    wrote = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("wrote")]
    assert sorted(wrote) == sorted(FILES) and wrote[-1] == f"{NAME}.metadata.json"  # the metadata last
    assert f"xpack.ml.model_repository: file://{repo}/" in result.stdout.splitlines()
    assert "ES_PATH_CONF" in result.stdout and "every master-eligible node" in result.stdout
    assert 'PUT _cluster/settings {"persistent":{"xpack.ml.model_repository":"file://' in result.stdout
    assert f"PUT _ml/trained_models/.{NAME}?wait_for_completion=true" in result.stdout


def test_installing_again_keeps_the_identical_files(small: PackageBundle, publisher: KeyPair, run_cli: RunCli,
                                                    tmp_path: Path) -> None:
    repo = tmp_path / "models"
    assert install(run_cli, publisher, small.bundle, "--to", repo).exit_code == 0
    first = {name: os.stat(repo / name) for name in FILES}
    again = install(run_cli, publisher, small.bundle, "--to", repo)
    assert again.exit_code == 0, again.output
    assert again.stdout.count("already there and identical, left as is") == 3
    assert "0 file(s) written" in again.stdout
    assert {name: (s.st_ino, s.st_mtime_ns) for name, s in first.items()} == {
        name: (os.stat(repo / name).st_ino, os.stat(repo / name).st_mtime_ns) for name in FILES}
    assert contents(repo) == small.files


def test_a_different_file_of_the_same_name_is_refused_unless_replace(small: PackageBundle, publisher: KeyPair,
                                                                     run_cli: RunCli, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    (repo / f"{NAME}.pt").write_bytes(b"not the model")
    refused = install(run_cli, publisher, small.bundle, "--to", repo)
    assert refused.exit_code == USAGE, refused.output
    assert f"{repo / NAME}.pt: existing file: sha256 {sha(b'not the model')} (13 bytes); the bundle's is " \
           f"{sha(small.files[NAME + '.pt'])}" in refused.stderr
    assert "nothing was written" in refused.stderr and "--replace" in refused.stderr
    assert contents(repo) == {f"{NAME}.pt": b"not the model"}  # not even the other two files
    replaced = install(run_cli, publisher, small.bundle, "--to", repo, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert f"replaced  {NAME}.pt" in replaced.stdout
    assert contents(repo) == small.files


def test_a_link_under_a_file_name_is_never_written_through(small: PackageBundle, publisher: KeyPair,
                                                           run_cli: RunCli, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_bytes(b"precious")
    repo = tmp_path / "models"
    repo.mkdir()
    (repo / f"{NAME}.vocab.json").symlink_to(outside)
    refused = install(run_cli, publisher, small.bundle, "--to", repo, "--replace")
    assert refused.exit_code == USAGE, refused.output
    assert f"{repo / NAME}.vocab.json: is a symbolic link" in refused.stderr
    assert outside.read_bytes() == b"precious"
    assert [p.name for p in repo.iterdir()] == [f"{NAME}.vocab.json"]


def test_the_files_are_readable_by_elasticsearch_whatever_the_umask(small: PackageBundle, publisher: KeyPair,
                                                                    run_cli: RunCli, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    previous = os.umask(0o077)
    try:
        result = install(run_cli, publisher, small.bundle, "--to", repo)
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(repo.stat().st_mode) == 0o755
    assert {name: stat.S_IMODE((repo / name).stat().st_mode) for name in FILES} == dict.fromkeys(FILES, 0o644)


def test_a_part_changed_after_verification_stops_the_install(small: PackageBundle, publisher: KeyPair,
                                                             tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(small.bundle, bundle)
    found = verify_packages([bundle], load_trusted_keys([publisher.public_path]))
    part = bundle / "definition" / "part-00001.zst"  # changed between verification and the write
    stored = bytearray(part.read_bytes())
    stored[len(stored) // 2] ^= 0xFF
    part.write_bytes(bytes(stored))
    repo = tmp_path / "models"
    with pytest.raises(IntegrityError) as refused:
        repository_install(found, repo)
    assert "definition/part-00001.zst: stored sha256" in "\n".join(refused.value.lines())
    assert f"written before it: {NAME}.vocab.json" in refused.value.statement
    # The .pt never got its name and no temporary file is left; the metadata (written last) was not written.
    assert contents(repo) == {f"{NAME}.vocab.json": small.files[f"{NAME}.vocab.json"]}


def test_check_compares_the_directory_and_writes_nothing(small: PackageBundle, publisher: KeyPair, run_cli: RunCli,
                                                         tmp_path: Path) -> None:
    repo = tmp_path / "models"
    assert install(run_cli, publisher, small.bundle, "--to", repo).exit_code == 0
    good = install(run_cli, publisher, small.bundle, "--to", repo, "--check")
    assert good.exit_code == 0, good.output
    assert f"CHECKED   {repo} holds .{NAME} exactly as signed" in good.stdout
    assert sum(line.startswith("ok ") for line in good.stdout.splitlines()) == 3
    report = json.loads(install(run_cli, publisher, small.bundle, "--to", repo, "--check", "--json").stdout)
    assert report["checked"] is True and {f["action"] for f in report["files"]} == {"matches"}
    vocabulary = bytearray(small.files[f"{NAME}.vocab.json"])
    vocabulary[10] ^= 1  # same size, another sha256
    (repo / f"{NAME}.vocab.json").write_bytes(bytes(vocabulary))
    (repo / f"{NAME}.metadata.json").unlink()
    (repo / f"{NAME}.pt").write_bytes(small.files[f"{NAME}.pt"][:-1])
    before = contents(repo)
    bad = install(run_cli, publisher, small.bundle, "--to", repo, "--check")
    assert bad.exit_code == INTEGRITY, bad.output
    assert f"{repo}: 3 repository file(s) differ from the signed bundle" in bad.stderr
    assert f"{repo / NAME}.metadata.json: present: missing" in bad.stderr
    assert f"{repo / NAME}.vocab.json: sha256: {sha(bytes(vocabulary))}; the signed manifest says " \
           f"{sha(small.files[NAME + '.vocab.json'])}" in bad.stderr
    assert f"{repo / NAME}.pt: size: {len(small.files[NAME + '.pt']) - 1} bytes" in bad.stderr
    assert contents(repo) == before
    checked = json.loads(install(run_cli, publisher, small.bundle, "--to", repo, "--check", "--json").stdout)
    assert checked["checked"] is False and len(checked["problems"]) == 3
    missing = install(run_cli, publisher, small.bundle, "--to", tmp_path / "nowhere", "--check")
    assert missing.exit_code == INTEGRITY and missing.stderr.count("missing (the directory does not exist)") == 3
    assert not (tmp_path / "nowhere").exists()
    both = install(run_cli, publisher, small.bundle, "--to", repo, "--check", "--replace")
    assert both.exit_code == USAGE and "--check writes nothing" in both.stderr


def test_json_reports_each_file_and_the_setting(small: PackageBundle, publisher: KeyPair, run_cli: RunCli,
                                                tmp_path: Path) -> None:
    repo = tmp_path / "models"
    result = install(run_cli, publisher, small.bundle, "--to", repo, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["installed"] is True and report["model_ids"] == [f".{NAME}"]
    assert report["setting"] == f"xpack.ml.model_repository: file://{repo}/"
    assert {f["name"]: (f["size"], f["sha256"], f["action"]) for f in report["files"]} == {
        name: (len(data), sha(data), "written") for name, data in small.files.items()}


def test_a_bundle_of_another_model_is_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                              tmp_path: Path) -> None:
    bundle = make_bundle()
    result = run_cli("repository", "install", bundle, "--to", tmp_path / "models", "--trusted-key", keys.pub)
    assert result.exit_code == USAGE, result.output
    assert "carries tiny-model, not one of Elastic's packaged models" in result.stderr
    assert "nothing was written" in result.stderr
    assert not (tmp_path / "models").exists()


def test_a_tampered_or_untrusted_bundle_is_refused_before_anything_is_written(
        small: PackageBundle, publisher: KeyPair, other_keys: Keys, run_cli: RunCli, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(small.bundle, bundle)
    part = bundle / "definition" / "part-00001.zst"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    tampered = install(run_cli, publisher, bundle, "--to", tmp_path / "models")
    assert tampered.exit_code == INTEGRITY, tampered.output
    assert "definition/part-00001.zst: stored sha256" in tampered.stderr
    untrusted = run_cli("repository", "install", small.bundle, "--to", tmp_path / "models", "--trusted-key",
                        other_keys.pub)
    assert untrusted.exit_code == SIGNATURE, untrusted.output
    assert not (tmp_path / "models").exists()


def test_several_bundles_and_volumes_given_one_by_one(small: PackageBundle, spanning: PackageBundle,
                                                      publisher: KeyPair, run_cli: RunCli, tmp_path: Path) -> None:
    volumes = sorted(spanning.bundle.glob("vol*"))
    assert len(volumes) >= 2
    repo = tmp_path / "models"
    incomplete = install(run_cli, publisher, small.bundle, volumes[0], "--to", repo)
    assert incomplete.exit_code == INCOMPLETE, incomplete.output
    assert not repo.exists()
    result = install(run_cli, publisher, small.bundle, *volumes, "--to", repo)
    assert result.exit_code == 0, result.output
    assert contents(repo) == {**small.files, **spanning.files}
    assert f"INSTALLED .{NAME}, .other-e5 in {repo}: 6 file(s) written" in result.stdout
    folder = install(run_cli, publisher, spanning.bundle, "--to", repo, "--check")  # the folder of volumes
    assert folder.exit_code == 0, folder.output


def test_the_stand_in_imports_the_installed_package_over_the_file_route(small: PackageBundle, publisher: KeyPair,
                                                                        run_cli: RunCli, tmp_path: Path) -> None:
    config = tmp_path / "config"
    repo = config / "models"
    result = install(run_cli, publisher, small.bundle, "--to", repo)
    assert result.exit_code == 0, result.output
    setting = next(line for line in result.stdout.splitlines() if line.startswith("xpack.ml.model_repository: "))
    server = start_standin(tmp_path / "data", config_dir=config, model_repository=setting.split(": ", 1)[1])
    try:
        stored = server.http("PUT", f"/_ml/trained_models/.{NAME}?wait_for_completion=true",
                             body={"input": {"field_names": ["text_field"]}}, timeout=120)
        assert stored.status == 200, stored.body[:500]
        assert stored.json()["model_package"]["model_repository"].startswith("file:")
        read_back = server.http("GET", f"/_standin/trained_models/.{NAME}/definition")
        assert read_back.status == 200, read_back.body[:300]
        assert read_back.body == small.files[f"{NAME}.pt"]
    finally:
        server.kill()
