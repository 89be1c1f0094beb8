"""The tamper suite: every way the media can lie is refused with the right class, naming the file.

Bundles are real (written by the writer, signed with real keys); tampering edits real files on disk; the verdict
comes from the real CLI. Where a case needs a manifest that is validly signed yet hostile, the test re-signs it
with the trusted key, as a compromised or careless publisher would.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import zstandard

from bundler.sign import sign_manifest
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.format import layout
from loader.format.canonical import canonical_bytes, strict_loads
from tests.conftest import Keys, MakeBundle, RunCli

SIGNATURE, INTEGRITY, LAYOUT, POLICY = 3, 4, 5, 6


def flip_bit(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def resign(
    bundle: Path, keys: Any, mutate: Callable[[dict[str, Any]], None] | None = None, raw: bytes | None = None
) -> None:
    """Rewrite the manifest (mutated, or given raw bytes) and sign it validly with the trusted key."""
    if raw is None:
        obj = strict_loads((bundle / layout.MANIFEST).read_bytes())
        if mutate:
            mutate(obj)
        raw = canonical_bytes(obj)
    (bundle / layout.MANIFEST).write_bytes(raw)
    (bundle / layout.ENVELOPE).write_bytes(sign_manifest(raw, keys.signing))


def entry(obj: dict[str, Any], path: str) -> dict[str, Any]:
    return next(f for f in obj["files"] if f["path"] == path)


PART1 = "definition/part-00001.zst"


def expect(result: Any, code: int, *names: str) -> None:
    assert result.exit_code == code, result.output
    for name in names:
        assert name in result.stderr, result.stderr
    assert "nothing was uploaded" in result.stderr


def test_valid_bundle_passes_every_check(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    result = run_cli("verify", make_bundle(), "--trusted-key", keys.pub)
    assert result.exit_code == 0, result.output
    checks = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok")]
    assert checks == ["signature", "manifest", "volumes", "expiry", "paths", "file", "sizes", "sha256", "content"]
    assert "VERIFIED" in result.stdout


@pytest.mark.parametrize(
    "target,code",
    [
        (layout.MANIFEST, SIGNATURE),
        (layout.ENVELOPE, SIGNATURE),
        (PART1, INTEGRITY),
        (layout.VOCABULARY, INTEGRITY),
        (layout.CONFIG, INTEGRITY),
    ],
)
def test_one_flipped_bit_is_refused(
    make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, target: str, code: int
) -> None:
    bundle = make_bundle()
    flip_bit(bundle / target)
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), code, target)


def test_truncated_part(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    part = bundle / PART1
    part.write_bytes(part.read_bytes()[:-10])
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), INTEGRITY, PART1, "stored size")


def test_missing_part(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    (bundle / PART1).unlink()
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, PART1, "missing")


def test_extra_file(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    (bundle / "definition" / "payload.sh").write_text("#!/bin/sh\n")
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, "definition/payload.sh", "extra file")


def test_renamed_part(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    (bundle / PART1).rename(bundle / "definition" / "part-00099.zst")
    result = run_cli("verify", bundle, "--trusted-key", keys.pub)
    expect(result, LAYOUT, f"{PART1}: file set: missing", "definition/part-00099.zst: file set: extra file")


def test_symlink_in_place_of_a_part(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    target = bundle.parent / "elsewhere.zst"
    (bundle / PART1).rename(target)
    os.symlink(target, bundle / PART1)
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, PART1, "symbolic link")


@pytest.mark.parametrize(
    "bad_path,why",
    [
        ("../escape", "'..'"),
        ("/etc/passwd", "is absolute"),
        ("Config.json", "portable set"),
    ],
)
def test_signed_manifest_with_hostile_path(
    make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, bad_path: str, why: str
) -> None:
    bundle = make_bundle()

    def add(obj: dict[str, Any]) -> None:
        obj["files"].append({**entry(obj, layout.CONFIG), "path": bad_path})

    resign(bundle, keys, add)
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, bad_path, why)
    assert not (bundle.parent / "escape").exists()


def test_duplicate_json_keys_in_signed_manifest(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    raw = (bundle / layout.MANIFEST).read_bytes()
    resign(bundle, keys, raw=raw.replace(b'{"bundle_id"', b'{"model_id":"evil","bundle_id"', 1))
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, "duplicate key 'model_id'")


def test_unknown_schema_version(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    resign(bundle, keys, lambda obj: obj.update(schema="esbundle.manifest.v2"))
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, "unknown schema version")


def test_untrusted_key(make_bundle: MakeBundle, other_keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    result = run_cli("verify", bundle, "--trusted-key", other_keys.pub)
    expect(result, SIGNATURE, layout.ENVELOPE, "not among the 1 trusted key")
    # The verifier knows no flags; the command line says which one pins the publisher's key.
    assert result.stderr.splitlines()[0].startswith(f"signature check failed: {bundle}: ")
    assert result.stderr.splitlines()[-1] == ("hint: pin the publisher's public key with --trusted-key, after "
                                              "checking its key id out of band")
    as_json = json.loads(run_cli("verify", bundle, "--trusted-key", other_keys.pub, "--json").stdout)
    assert as_json["verified"] is False and as_json["exit_code"] == SIGNATURE
    assert as_json["error"].startswith(f"{bundle}: ") and as_json["error"].endswith(
        ". Bundle REJECTED; nothing was uploaded")


def test_no_trusted_key_at_all(make_bundle: MakeBundle, run_cli: RunCli) -> None:
    expect(run_cli("verify", make_bundle()), SIGNATURE, "no trusted public key")


def test_trusted_keys_from_environment_directory(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    result = run_cli("verify", make_bundle(), env={"ESBUNDLE_TRUSTED_KEYS": str(keys.pub.parent)})
    assert result.exit_code == 0, result.output


def test_no_envelope(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    (bundle / layout.ENVELOPE).unlink()
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), SIGNATURE, layout.ENVELOPE, "not signed")


def test_expired_bundle(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle(created_at=datetime(2020, 1, 1, tzinfo=timezone.utc), expires_in_days=30)
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), POLICY, "expired at 2020-01-31T00:00:00Z")


def test_zstd_stream_expanding_past_declared_size(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    # 64 MiB of zeros in a stream that does not declare its size: tiny on disk, huge when expanded.
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(64 << 20))
    (bundle / PART1).write_bytes(bomb)

    def point_at_bomb(obj: dict[str, Any]) -> None:
        import hashlib

        entry(obj, PART1).update(stored_size=len(bomb), stored_sha256=hashlib.sha256(bomb).hexdigest())

    resign(bundle, keys, point_at_bomb)
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), INTEGRITY, PART1,
           "does not declare its content size as 65536 bytes")


def test_a_part_of_two_frames_is_refused_before_decompression(make_bundle: MakeBundle, keys: Keys,
                                                              run_cli: RunCli) -> None:
    """The first frame is the genuine part; a second frame (empty, or more data) follows. Both verify and load
    must see one frame per file, so it is refused, signed or not."""
    import hashlib

    bundle = make_bundle()
    for trailer in (zstandard.ZstdCompressor().compress(b""), zstandard.ZstdCompressor().compress(b"more")):
        stored = (bundle / PART1).read_bytes().split(trailer)[0] + trailer

        def point_at(obj: dict[str, Any], data: bytes = stored) -> None:
            entry(obj, PART1).update(stored_size=len(data), stored_sha256=hashlib.sha256(data).hexdigest())

        (bundle / PART1).write_bytes(stored)
        resign(bundle, keys, point_at)
        expect(run_cli("verify", bundle, "--trusted-key", keys.pub), INTEGRITY, PART1,
               "bytes follow the frame; a file is one zstd frame")


def test_oversize_manifest(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    with open(bundle / layout.MANIFEST, "ab") as handle:  # the file on the medium, past its cap
        handle.write(b" " * layout.MAX_MANIFEST_BYTES)
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, "byte limit")
    # Signed that large, it is refused at the envelope, before any signature is computed.
    resign(bundle, keys, lambda obj: obj["provenance"].update(padding="x" * (layout.MAX_MANIFEST_BYTES + 10)))
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), SIGNATURE, "payload must be base64 of at most")


def test_signed_parts_that_do_not_add_up(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    resign(bundle, keys, lambda obj: obj["definition"].update(total_length=obj["definition"]["total_length"] + 1))
    expect(run_cli("verify", bundle, "--trusted-key", keys.pub), LAYOUT, "definition length")


def test_every_problem_is_listed_not_just_the_first(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    flip_bit(bundle / PART1)
    flip_bit(bundle / "definition/part-00003.zst")
    result = run_cli("verify", bundle, "--trusted-key", keys.pub)
    expect(result, INTEGRITY, PART1, "definition/part-00003.zst")


def test_verify_never_touches_the_network(make_bundle: MakeBundle, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_bundle()

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("verify tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    verified = verify_bundle(bundle, load_trusted_keys([keys.pub]), progress=False)
    assert verified.manifest.model_id == "tiny-model"


def test_verify_json_output(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    ok = json.loads(run_cli("verify", bundle, "--trusted-key", keys.pub, "--json").stdout)
    assert ok["verified"] is True and ok["signer_key_id"] == keys.signing.key_id
    flip_bit(bundle / PART1)
    bad = run_cli("verify", bundle, "--trusted-key", keys.pub, "--json")
    report = json.loads(bad.stdout)
    assert bad.exit_code == INTEGRITY and report["exit_code"] == INTEGRITY
    assert report["problems"] == [f"{PART1}: stored sha256: the bytes on the medium differ from the signed manifest"]


def test_inspect_says_whether_the_signature_was_checked(
    make_bundle: MakeBundle, keys: Keys, other_keys: Keys, run_cli: RunCli
) -> None:
    bundle = make_bundle()
    unchecked = run_cli("inspect", bundle)
    assert unchecked.exit_code == 0 and "NOT checked" in unchecked.stdout and "tiny-model" in unchecked.stdout
    checked = json.loads(run_cli("inspect", bundle, "--trusted-key", keys.pub, "--json").stdout)
    assert checked["signature_checked"] is True and checked["part_count"] == 5
    assert run_cli("inspect", bundle, "--trusted-key", other_keys.pub).exit_code == SIGNATURE
