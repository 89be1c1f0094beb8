"""`esbundle copy` against hostile media: a crafted source manifest, links planted on either side, entries of the
wrong type on the destination. Each attempt must end in a clean refusal with its class's exit code, before anything
is written, with nothing written outside DEST and no file elsewhere on the host changed, in content or mode.

Bundles are real (written by the writer, signed with real keys) and so are the files and links; where a case needs
a validly signed yet hostile manifest, it is re-signed with the trusted key, as an insider would. Where an attack
needs the source or DEST to change in the middle of a copy, the test acts at a fixed point of the copy: the first
progress line it draws, while the first file (the manifest) is written and before any other file is begun.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bundler.writer.travel import Travel
from loader.bundle.copy import copy_bundle
from loader.bundle.trust import load_trusted_keys
from loader.errors import EsbundleError, IntegrityError, LayoutError, UsageError
from loader.format import layout
from loader.format.canonical import canonical_bytes, strict_loads
from tests.conftest import Keys, MakeBundle, RunCli
from tests.test_verify import resign

USAGE, SIGNATURE, LAYOUT = 2, 3, 5
HOST_BYTES = b"host data: never to be copied, rewritten or re-moded\n"

Snapshot = dict[str, tuple[int, int, bytes]]


def snapshot(path: Path) -> Snapshot:
    """Every entry under `path` (or `path` itself, a file): its type and permission bits, owner, and bytes."""
    entries = [path] if path.is_file() else sorted(path.rglob("*"))
    return {str(p): (os.lstat(p).st_mode, os.lstat(p).st_uid, p.read_bytes() if p.is_file() else b"")
            for p in entries}


def host_file(path: Path, data: bytes = HOST_BYTES, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def host_dir(path: Path) -> Path:
    """A host directory holding files named like a bundle's parts (what a linked folder would expose)."""
    for index in range(16):
        host_file(path / f"part-{index:05d}.zst", HOST_BYTES + bytes([index]), 0o640)
    return path


def edit_manifest(bundle: Path, mutate: Callable[[dict[str, Any]], None]) -> None:
    """An unsigned edit: the manifest changes, the envelope still holds what was signed."""
    obj = strict_loads((bundle / layout.MANIFEST).read_bytes())
    mutate(obj)
    (bundle / layout.MANIFEST).write_bytes(canonical_bytes(obj))


def point_config_at(path: str, data: bytes) -> Callable[[dict[str, Any]], None]:
    """The config entry moved to `path`, describing `data` exactly (as an insider who signs it would)."""
    digest = hashlib.sha256(data).hexdigest()

    def mutate(obj: dict[str, Any]) -> None:
        entry = next(f for f in obj["files"] if f["role"] == "config")
        entry.update(path=path, size=len(data), stored_size=len(data), sha256=digest, stored_sha256=digest)

    return mutate


def holds_host_bytes(tree: Path) -> bool:
    return tree.exists() and any(HOST_BYTES in p.read_bytes() for p in tree.rglob("*") if p.is_file())


def copy_of_manifest(bundle: Path, dest: Path) -> None:
    """What an interrupted copy leaves: DEST marked as this bundle's, so copy resumes into it."""
    dest.mkdir(parents=True)
    shutil.copyfile(bundle / layout.MANIFEST, dest / layout.MANIFEST)


def key_args(keys: Keys, with_key: bool) -> list[Any]:
    return ["--trusted-key", keys.pub] if with_key else []


@pytest.mark.parametrize("escape", ["relative", "absolute"])
@pytest.mark.parametrize("signed", ["unsigned edit", "re-signed by an insider"])
@pytest.mark.parametrize("with_key", [True, False], ids=["trusted key", "no key"])
def test_a_manifest_path_out_of_the_bundle_is_refused_before_anything_is_written(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, tmp_path: Path, escape: str, signed: str,
        with_key: bool) -> None:
    bundle, dest = make_bundle(), tmp_path / "out" / "stick"
    # Relative: '../host/victim.txt' reads the medium's own file beside the bundle and lands beside DEST, on the
    # host's file. Absolute: source and target are both the host's file, which a copy would rewrite in place.
    victim = host_file(tmp_path / "out" / "host" / "victim.txt")
    if escape == "relative":
        payload = host_file(tmp_path / "host" / "victim.txt", b"the attacker's bytes\n", 0o666).read_bytes()
        path = "../host/victim.txt"
    else:
        payload, path = b"anything but the host's own bytes\n", str(victim)
    before = snapshot(tmp_path / "out")
    if signed == "unsigned edit":
        edit_manifest(bundle, point_config_at(path, payload))
    else:
        resign(bundle, keys, point_config_at(path, payload))
    result = run_cli("copy", bundle, dest, *key_args(keys, with_key))
    assert snapshot(tmp_path / "out") == before, result.output  # the host's file: same bytes, mode and owner
    assert not dest.exists()  # refused before the first write
    expected = SIGNATURE if with_key and signed == "unsigned edit" else LAYOUT
    assert result.exit_code == expected, result.output
    assert "nothing was copied" in result.stderr
    if expected == LAYOUT:
        assert f"{path}: safe path" in result.stderr


@pytest.mark.parametrize("link_at", ["definition", "loader/wheels"])
@pytest.mark.parametrize("with_key", [True, False], ids=["trusted key", "no key"])
def test_a_linked_directory_planted_in_the_destination_is_never_written_through(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, tmp_path: Path, link_at: str, with_key: bool) -> None:
    wheel = host_file(tmp_path / "tool-1.0-py3-none-any.whl", b"a wheel", 0o644)
    bundle = make_bundle(travel=Travel(extra_files=[("loader/wheels/tool-1.0-py3-none-any.whl", wheel)]))
    target = host_dir(tmp_path / "host")
    before = snapshot(target)
    dest = tmp_path / "stick"
    copy_of_manifest(bundle, dest)
    (dest / link_at).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, dest / link_at)
    result = run_cli("copy", bundle, dest, *key_args(keys, with_key))
    assert snapshot(target) == before, result.output
    assert result.exit_code == USAGE, result.output
    assert f"{dest / link_at}: is a symbolic link" in result.stderr
    os.unlink(dest / link_at)
    done = run_cli("copy", bundle, dest, *key_args(keys, with_key))  # the same DEST, cleaned: a normal copy
    assert done.exit_code == 0, done.output
    assert (dest / "loader/wheels/tool-1.0-py3-none-any.whl").read_bytes() == b"a wheel"


def test_a_destination_directory_swapped_for_a_link_during_the_copy_is_not_written_through(
        make_bundle: MakeBundle, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, dest = make_bundle(), tmp_path / "stick"
    target = host_dir(tmp_path / "host")
    before = snapshot(target)
    planted = at_first_progress_line(monkeypatch, lambda: os.symlink(target, dest / layout.DEFINITION_DIR))
    with pytest.raises(EsbundleError) as refused:
        copy_bundle(bundle, dest, load_trusted_keys([keys.pub]), print, progress=True)
    assert planted
    assert snapshot(target) == before
    assert isinstance(refused.value, UsageError)
    assert "definition: is a symbolic link, not a directory" in str(refused.value)


@pytest.mark.parametrize("with_key", [True, False], ids=["trusted key", "no key"])
def test_a_linked_source_folder_is_refused_and_nothing_is_copied(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, tmp_path: Path, with_key: bool) -> None:
    bundle, dest = make_bundle(), tmp_path / "stick"
    target = host_dir(tmp_path / "host")
    before = snapshot(target)
    shutil.rmtree(bundle / layout.DEFINITION_DIR)
    os.symlink(target, bundle / layout.DEFINITION_DIR)
    result = run_cli("copy", bundle, dest, *key_args(keys, with_key))
    assert not holds_host_bytes(dest), result.output
    assert snapshot(target) == before
    assert not dest.exists()  # refused before the first write
    assert result.exit_code == LAYOUT, result.output
    assert "definition: file type: is a symbolic link" in result.stderr and "nothing was copied" in result.stderr


def test_a_source_folder_swapped_for_a_link_during_the_copy_is_not_read_through(
        make_bundle: MakeBundle, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, dest = make_bundle(), tmp_path / "stick"
    target = host_dir(tmp_path / "host")

    def swap() -> None:
        (bundle / layout.DEFINITION_DIR).rename(tmp_path / "moved-definition")
        os.symlink(target, bundle / layout.DEFINITION_DIR)

    planted = at_first_progress_line(monkeypatch, swap)
    with pytest.raises(EsbundleError) as refused:
        copy_bundle(bundle, dest, load_trusted_keys([keys.pub]), print, progress=True)
    assert planted
    assert not holds_host_bytes(dest)
    assert isinstance(refused.value, LayoutError)
    assert "definition: is a symbolic link, not a directory" in str(refused.value)


def test_a_source_file_changed_during_the_copy_never_gets_its_name_on_the_destination(
        make_bundle: MakeBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, dest = make_bundle(), tmp_path / "stick"
    part = bundle / layout.part_path(2)
    planted = at_first_progress_line(monkeypatch, lambda: part.write_bytes(bytes(part.stat().st_size)))
    with pytest.raises(EsbundleError) as refused:
        copy_bundle(bundle, dest, None, print, progress=True)
    assert planted
    assert not (dest / layout.part_path(2)).exists()
    assert not list((dest / layout.DEFINITION_DIR).glob(".*.partial"))
    assert isinstance(refused.value, IntegrityError)
    assert "part-00002.zst: stored sha256: changed on the source" in str(refused.value)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_bytes(b"kept")


def _file(path: Path) -> None:
    path.write_bytes(b"not a directory")


@pytest.mark.parametrize(("where", "plant", "what"), [
    (layout.part_path(3), _directory, "is a directory where a file of the bundle must go"),
    (layout.CONFIG, _directory, "is a directory where a file of the bundle must go"),
    (layout.CONFIG, _fifo, "is a special file (device, pipe or socket) where a file of the bundle must go"),
    ("definition/.part-00003.zst.partial", _directory, "is a directory where copy keeps its temporary file"),
    (layout.DEFINITION_DIR, _file, "is a regular file, not a directory"),
], ids=["directory for a part", "directory for the config", "pipe for the config", "directory for a temporary",
        "file for the definition folder"])
@pytest.mark.parametrize("with_key", [True, False], ids=["trusted key", "no key"])
def test_a_destination_entry_of_the_wrong_type_is_a_clean_refusal(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, tmp_path: Path, where: str,
        plant: Callable[[Path], None], what: str, with_key: bool) -> None:
    bundle, dest = make_bundle(), tmp_path / "stick"
    copy_of_manifest(bundle, dest)
    (dest / where).parent.mkdir(parents=True, exist_ok=True)
    plant(dest / where)
    before = snapshot(dest)
    result = run_cli("copy", bundle, dest, *key_args(keys, with_key))
    assert result.exit_code == USAGE, result.output
    assert f"{dest / where}: {what}" in result.stderr
    assert snapshot(dest) == before  # refused before the first write


def test_a_hard_link_on_the_destination_is_replaced_not_written_through(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, tmp_path: Path) -> None:
    bundle, dest = make_bundle(), tmp_path / "stick"
    victim = host_file(tmp_path / "host" / "victim.txt")
    before = snapshot(victim)
    copy_of_manifest(bundle, dest)
    os.link(victim, dest / layout.CONFIG)
    result = run_cli("copy", bundle, dest, "--trusted-key", keys.pub)
    assert result.exit_code == 0, result.output
    assert "rewrote 1 that were wrong" in result.stdout
    assert snapshot(victim) == before
    assert (dest / layout.CONFIG).read_bytes() == (bundle / layout.CONFIG).read_bytes()


@pytest.mark.parametrize("with_key", [True, False], ids=["trusted key", "no key"])
def test_one_volume_of_a_bundle_is_a_valid_copy_source(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                       tmp_path: Path, with_key: bool) -> None:
    spanning = make_bundle(5 * 65536, name="spanning", travel=Travel(volume_size=180 << 10))
    for volume in ("vol001", "vol002"):
        result = run_cli("copy", spanning / volume, tmp_path / "sticks" / volume, *key_args(keys, with_key))
        assert result.exit_code == 0, result.output
        copied = {p.relative_to(tmp_path / "sticks" / volume) for p in (tmp_path / "sticks" / volume).rglob("*")}
        assert copied == {p.relative_to(spanning / volume) for p in (spanning / volume).rglob("*")}
    partial = run_cli("verify", tmp_path / "sticks" / "vol001", tmp_path / "sticks" / "vol002",
                      "--trusted-key", keys.pub)
    assert partial.exit_code == 8 and "missing: vol003" in partial.stdout


def test_a_volume_with_a_forged_label_is_refused_without_a_key(make_bundle: MakeBundle, run_cli: RunCli,
                                                                tmp_path: Path) -> None:
    spanning = make_bundle(5 * 65536, name="spanning", travel=Travel(volume_size=180 << 10))
    label = spanning / "vol002" / layout.VOLUME_LABEL
    label.write_bytes(label.read_bytes().replace(b'"volume":2', b'"volume":3'))
    result = run_cli("copy", spanning / "vol002", tmp_path / "stick")
    assert result.exit_code == LAYOUT, result.output
    assert "vol003/definition/part-00004.zst: file set: missing" in result.stderr
    assert not (tmp_path / "stick").exists()


class _Planter:
    """Stands in for stderr: the first progress line the copy draws runs `act` once, then output goes on."""

    def __init__(self, act: Callable[[], None], stream: Any) -> None:
        self.act, self.stream, self.done = act, stream, False

    def write(self, text: str) -> int:
        if not self.done:
            self.done = True
            self.act()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __bool__(self) -> bool:
        return self.done


def at_first_progress_line(monkeypatch: pytest.MonkeyPatch, act: Callable[[], None]) -> _Planter:
    planter = _Planter(act, sys.stderr)
    monkeypatch.setattr(sys, "stderr", planter)
    return planter

