"""The classes of weakness an outside review found around the verifier, each closed: bounded authentication,
bounded parsing, caps for every role, the format's rules exactly as FORMAT.md states them, no crash on signed but
wrongly typed records, and untrusted text that can never pass for the tool's own lines."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import zstandard

from bundler.sign import sign_manifest
from bundler.writer.travel import Travel
from loader.format import layout
from loader.format.canonical import canonical_bytes, strict_loads
from tests.conftest import Keys, MakeBundle, RunCli
from tests.test_verify import INTEGRITY, LAYOUT, POLICY, SIGNATURE, entry, expect, resign

CONTROLS = "\x1b[2J\x1b[1;1H\r\nok    signature  valid\u202e\x85"


def envelope(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / layout.ENVELOPE).read_bytes())


def write_envelope(bundle: Path, obj: dict[str, Any]) -> None:
    (bundle / layout.ENVELOPE).write_bytes(canonical_bytes(obj))


def verify(run_cli: RunCli, bundle: Path, keys: Keys, *extra: str) -> Any:
    return run_cli("verify", bundle, "--trusted-key", keys.pub, *extra)


# Bounded authentication ---------------------------------------------------------------------------------------

def test_too_many_signatures_are_refused_before_any_is_checked(make_bundle: MakeBundle, keys: Keys,
                                                                run_cli: RunCli) -> None:
    bundle = make_bundle()
    obj = envelope(bundle)
    obj["signatures"] = obj["signatures"] * 9
    write_envelope(bundle, obj)
    expect(verify(run_cli, bundle, keys), SIGNATURE, "9 signatures; at most 8")


def test_only_signatures_naming_a_trusted_key_are_tried(make_bundle: MakeBundle, keys: Keys,
                                                        run_cli: RunCli) -> None:
    """A valid signature under another key id is not tried: the id picks the key, trust comes from the key."""
    bundle = make_bundle()
    obj = envelope(bundle)
    obj["signatures"][0]["keyid"] = "0" * 64
    write_envelope(bundle, obj)
    expect(verify(run_cli, bundle, keys), SIGNATURE, "not among the 1 trusted key")


@pytest.mark.parametrize(("field", "value", "why"), [
    ("keyid", "ABC", "not a key id"),
    ("keyid", 7, "not a key id"),
    ("sig", base64.b64encode(b"x" * 63).decode(), "63 bytes; Ed25519 signatures are 64"),
    ("sig", "x" * 200, "must be base64 of at most 64 bytes"),
])
def test_malformed_signatures_are_refused_before_cryptography(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                              field: str, value: Any, why: str) -> None:
    bundle = make_bundle()
    obj = envelope(bundle)
    obj["signatures"][0][field] = value
    write_envelope(bundle, obj)
    expect(verify(run_cli, bundle, keys), SIGNATURE, why)


# Bounded parsing and caps for every role ----------------------------------------------------------------------

def _replace_file(bundle: Path, keys: Keys, path: str, raw: bytes, compress: bool) -> None:
    stored = zstandard.ZstdCompressor().compress(raw) if compress else raw
    (bundle / path).write_bytes(stored)
    resign(bundle, keys, lambda obj: entry(obj, path).update(
        stored_size=len(stored), stored_sha256=hashlib.sha256(stored).hexdigest(), size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(), compression="zstd" if compress else "none"))


def test_a_signed_vocabulary_of_millions_of_values_is_refused_before_it_is_built(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    _replace_file(bundle, keys, layout.VOCABULARY, b'{"vocabulary": [' + b"[]," * 2_500_000 + b"[]]}", True)
    expect(verify(run_cli, bundle, keys), LAYOUT, layout.VOCABULARY, "more than 2000000 values")


def test_wheelhouse_files_are_stored_raw_capped_and_in_their_folder(make_bundle: MakeBundle, keys: Keys,
                                                                    run_cli: RunCli, tmp_path: Path) -> None:
    wheel = tmp_path / "tiny.whl"
    wheel.write_bytes(b"PK not really a wheel")
    bundle = make_bundle(travel=Travel(extra_files=(("loader/wheels/tiny-1.0-py3-none-any.whl", wheel),)))
    assert verify(run_cli, bundle, keys).exit_code == 0  # a nested wheelhouse path is a normal bundle
    _replace_file(bundle, keys, "loader/wheels/tiny-1.0-py3-none-any.whl", b"x" * 1000, True)
    expect(verify(run_cli, bundle, keys), LAYOUT, "a loader file is stored uncompressed")

    def misplace(obj: dict[str, Any]) -> None:
        entry(obj, "loader/wheels/tiny-1.0-py3-none-any.whl").update(path="definition/extra.whl")
    resign(bundle, keys, misplace)
    expect(verify(run_cli, bundle, keys), LAYOUT, "a loader file must be under loader/")


def test_a_wheelhouse_file_over_its_cap_is_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                   tmp_path: Path) -> None:
    wheel = tmp_path / "tiny.whl"
    wheel.write_bytes(b"PK")
    bundle = make_bundle(travel=Travel(extra_files=(("loader/tiny.whl", wheel),)))
    resign(bundle, keys, lambda obj: entry(obj, "loader/tiny.whl").update(
        size=layout.MAX_LOADER_FILE_BYTES + 1, stored_size=layout.MAX_LOADER_FILE_BYTES + 1))
    expect(verify(run_cli, bundle, keys), LAYOUT, "byte limit for a loader file")


# The format's rules -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mutate", "code", "why"), [
    (lambda o: o.update(bundle_id="not-a-uuid"), LAYOUT, "bundle_id has an invalid value"),
    (lambda o: o.update(model_id="Model\x1b"), LAYOUT, "manifest.model_id"),
    (lambda o: o.update(expires_at=o["created_at"]), LAYOUT, "expires_at is not after created_at"),
    (lambda o: o["files"][0].update(volume=True), LAYOUT, "volume must be an integer"),
    (lambda o: o["compatibility"].update(graph={"node_count": "many"}), LAYOUT, "wrongly typed field(s) graph"),
    (lambda o: o["compatibility"].update(signature="checked"), LAYOUT, "unknown field(s) signature"),
    (lambda o: o["provenance"].update(source={"kind": ["hub"]}), LAYOUT, "wrongly typed field(s) kind"),
    (lambda o: o.update(samples=[{"input": {"text": 3}, "expected": {}}]), LAYOUT, "input must be an object"),
    (lambda o: o.update(samples=[{"input": {"text": "a"}, "expected": {"atol": "x"}}]), LAYOUT, "atol"),
])
def test_signed_manifests_that_break_the_rules_are_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                           mutate: Any, code: int, why: str) -> None:
    bundle = make_bundle()
    resign(bundle, keys, mutate)
    expect(verify(run_cli, bundle, keys), code, why)


def test_a_whole_definition_sha256_its_parts_disagree_with_is_caught_on_request(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    """Every part's signed sha256 right, the signed whole-definition sha256 not theirs: plain `verify` proves every
    byte (and claims nothing of the whole); `verify --definition-sha256` refuses it (load: test_load)."""
    bundle = make_bundle()
    resign(bundle, keys, lambda o: o["definition"].update(sha256="0" * 64))
    plain = verify(run_cli, bundle, keys)
    assert plain.exit_code == 0, plain.stderr
    assert "decompressed sizes and sha256 match\n" in plain.stdout and "joined" not in plain.stdout
    expect(verify(run_cli, bundle, keys, "--definition-sha256"), INTEGRITY, "definition sha256")
    good = verify(run_cli, make_bundle(), keys, "--definition-sha256")
    assert good.exit_code == 0 and "the parts joined match the definition's sha256" in good.stdout


def test_a_creation_date_in_the_future_is_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=30)
    bundle = make_bundle(created_at=later)
    expect(verify(run_cli, bundle, keys), POLICY, "after now")


def test_a_forged_volume_label_number_is_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle(5 * 65536, travel=Travel(volume_size=180 << 10))
    label = bundle / "vol001" / layout.VOLUME_LABEL
    label.write_bytes(canonical_bytes({**strict_loads(label.read_bytes()), "volume": True}))
    result = run_cli("verify", bundle / "vol001", "--trusted-key", keys.pub)
    assert result.exit_code == LAYOUT and "not a valid volume label" in result.stderr


def test_a_very_deep_directory_tree_is_one_refusal(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    fds = [os.open(bundle, os.O_RDONLY)]
    try:
        for _ in range(3000):  # deeper than Python's recursion limit
            os.mkdir("d", dir_fd=fds[-1])
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        expect(verify(run_cli, bundle, keys), LAYOUT, "d: file set: extra directory not listed")
    finally:
        # shutil.rmtree (and so pytest's clean-up of old temporary directories) recurses: remove it bottom up.
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir("d", dir_fd=fds[-1])
        os.close(fds[0])


# Untrusted text -----------------------------------------------------------------------------------------------

def test_inspect_shows_hostile_text_escaped_and_its_trust_line_cannot_be_imitated(
        make_bundle: MakeBundle, run_cli: RunCli) -> None:
    bundle = make_bundle(provenance={"source": {"kind": "hub", "hub_model_id": "org/m" + CONTROLS}},
                         compatibility={"min_es_version": "8.0.0" + CONTROLS})
    result = run_cli("inspect", bundle)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("signature")] == [
        "signature       NOT checked (no trusted key given); nothing below is authenticated"]
    assert not any(ch in result.stdout for ch in "\x1b\r\u202e\x85")
    assert "org/m\\x1b[2J\\x1b[1;1H\\x0d\\x0aok    signature  valid\\u202e\\x85" in result.stdout
    shown = json.loads(run_cli("inspect", bundle, "--json").stdout)
    assert "\x1b" not in shown["source"]["hub_model_id"] and "\\x1b" in shown["source"]["hub_model_id"]


def test_verify_errors_quote_hostile_text_on_one_line(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    resign(bundle, keys, lambda obj: obj.update({"x" + CONTROLS: 1}))
    result = verify(run_cli, bundle, keys)
    assert result.exit_code == LAYOUT
    assert not any(ch in result.stderr for ch in "\x1b\r\u202e\x85")
    assert not any(line.startswith("ok") for line in result.stderr.splitlines())
    assert len(result.stderr.splitlines()) == 2  # the refusal and its hint
    as_json = json.loads(verify(run_cli, bundle, keys, "--json").stdout)
    assert "\x1b" not in as_json["error"] and "\\x1b" in as_json["error"]


def test_an_unsigned_bundle_cannot_print_a_verified_line(make_bundle: MakeBundle, keys: Keys,
                                                         run_cli: RunCli) -> None:
    bundle = make_bundle()
    obj = strict_loads((bundle / layout.MANIFEST).read_bytes())
    obj["model_id"] = "evil\nVERIFIED  other-model (text_embedding)"
    raw = canonical_bytes(obj)
    (bundle / layout.MANIFEST).write_bytes(raw)
    (bundle / layout.ENVELOPE).write_bytes(sign_manifest(raw, keys.signing))
    result = verify(run_cli, bundle, keys)
    assert result.exit_code == LAYOUT
    assert "VERIFIED" not in result.stdout and not any(line.startswith("VERIFIED") for line in
                                                        result.stderr.splitlines())
