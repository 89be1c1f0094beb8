"""The bundle format's building blocks: PAE, canonical JSON, strict parsing, path rules, manifest round trip."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bundler.cli.sizes import parse_size
from bundler.keys import SigningKey
from bundler.sign import sign_manifest
from loader.errors import LayoutError, SignatureError
from loader.format import layout
from loader.format.canonical import JsonProblem, canonical_bytes, strict_loads
from loader.format.dsse import Envelope, pae, verify_envelope
from loader.format.keys import key_id
from loader.format.manifest import PAYLOAD_TYPE, Manifest
from tests.conftest import Keys, MakeBundle


def test_pae_known_vector() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_canonical_json_is_sorted_compact_and_stable() -> None:
    assert canonical_bytes({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_bytes({"x": float("nan")})


@pytest.mark.parametrize(
    "text,why",
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "non-standard number NaN"),
        (b"\xff{}", "not UTF-8"),
        (b'{"a": ', "not valid JSON"),
    ],
)
def test_strict_parse_refuses(text: bytes, why: str) -> None:
    with pytest.raises(JsonProblem, match=why):
        strict_loads(text)


@pytest.mark.parametrize(
    "path",
    [
        "../escape",
        "/etc/passwd",
        "C:/x",
        "a/../b",
        "a//b",
        "part:1",
        "what?",
        "a\\b",
        "nul.txt",
        "x\x00y",
        "trailing.",
        "dir/COM1",
        "",
    ],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    assert layout.path_problem(path) is not None


def test_portable_paths_pass_and_case_clashes_are_caught() -> None:
    assert layout.path_problem("definition/part-00001.zst") is None
    problems = layout.path_problems(["config.json", "Config.json"])
    assert len(problems) == 1 and "case-insensitive" in problems[0].detail


def test_part_paths_round_trip() -> None:
    assert layout.part_index(layout.part_path(9999)) == 9999
    assert layout.part_index("definition/part-1.zst") is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1M", 1 << 20),
        ("512K", 512 << 10),
        ("4.7G", int(4.7 * (1 << 30))),
        ("700MB", 700_000_000),
        ("1048576", 1 << 20),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_manifest_round_trip_and_signature(make_bundle: MakeBundle, keys: Keys) -> None:
    bundle = make_bundle()
    data = (bundle / layout.MANIFEST).read_bytes()
    manifest = Manifest.from_bytes(data)
    assert manifest.to_bytes() == data  # the writer wrote canonical bytes
    envelope = Envelope.from_bytes((bundle / layout.ENVELOPE).read_bytes())
    assert envelope.payload == data
    assert (
        verify_envelope(envelope, PAYLOAD_TYPE, {keys.signing.key_id: keys.signing.private_key.public_key()})
        == keys.signing.key_id
    )


def test_key_id_is_a_hint_not_trust() -> None:
    signer = Ed25519PrivateKey.generate()
    trusted = Ed25519PrivateKey.generate().public_key()
    # The envelope claims the trusted key's id, but the signature is by another key.
    forged = sign_manifest(b"{}", SigningKey(signer, key_id(trusted)))
    with pytest.raises(SignatureError, match="does not match"):
        verify_envelope(Envelope.from_bytes(forged), PAYLOAD_TYPE, {key_id(trusted): trusted})


def test_unknown_manifest_field_and_schema_refused(make_bundle: MakeBundle) -> None:
    obj = strict_loads((make_bundle() / layout.MANIFEST).read_bytes())
    with pytest.raises(LayoutError, match="unknown field"):
        Manifest.from_bytes(canonical_bytes({**obj, "surprise": 1}))
    with pytest.raises(LayoutError, match=r"unknown schema version .esbundle\.manifest\.v9."):
        Manifest.from_bytes(canonical_bytes({**obj, "schema": "esbundle.manifest.v9"}))
    with pytest.raises(LayoutError, match=r"files\[0\].stored_sha256"):
        Manifest.from_bytes(canonical_bytes({**obj, "files": [{**obj["files"][0], "stored_sha256": "zz"}]}))
