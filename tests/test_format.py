"""The bundle format's building blocks: PAE, canonical JSON, strict parsing, path rules, manifest round trip."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("path", ["definition/part-00001.zst", "config.json", "vocabulary.json.zst",
                                  "loader/wheels/cffi-1.17.1-cp311-cp311-manylinux_2_17_x86_64.whl",
                                  "loader/sha256sums.txt", "a" * layout.MAX_COMPONENT_LEN])
def test_portable_paths_pass(path: str) -> None:
    assert layout.path_problem(path) is None


@pytest.mark.parametrize(("path", "why"), [
    ("Config.json", "portable set"),  # upper case: a case clash on FAT32 and NTFS
    ("ｃonfig.json", "portable set"),  # full-width letter
    ("caf\u00e9.json", "portable set"), ("cafe\u0301.json", "portable set"),  # the NFC and NFD twins
    ("a\x85b", "portable set"), ("a\u202eb", "portable set"), ("a\x1bb", "portable set"),  # C1, bidi, ESC
    ("a\nb", "portable set"), ("a\x00b", "portable set"),
    ("con", "reserved device name"), ("nul.txt", "reserved device name"), ("loader/com1.whl", "reserved device"),
    ("lpt9.zst", "reserved device name"), ("conin$", "portable set"), ("CON", "portable set"),
    ("name.", "portable set"), ("name ", "portable set"), (".hidden", "portable set"),
    ("a" * (layout.MAX_COMPONENT_LEN + 1), "longer than"), ("a/" * 80 + "b", "longer than"),
    ("a/b/c/d/e", "nested deeper"), ("../x", "'..'"), ("a//b", "empty"), ("/etc/passwd", "absolute"),
    ("C:evil", "absolute"), ("\\\\server\\share", "absolute"), ("a\\b", "portable set"),
])
def test_paths_outside_the_portable_set_are_refused(path: str, why: str) -> None:
    problem = layout.path_problem(path)
    assert problem is not None and why in problem, problem


def test_each_role_lives_in_its_own_place() -> None:
    assert layout.role_place_problem("loader", "loader/wheels/x.whl") is None
    assert layout.role_place_problem("loader", "definition/part-99999.zst") is not None
    assert layout.role_place_problem("config", "loader/config.json") is not None
    assert layout.role_place_problem("definition_part", "definition/part-00000.zst") is None


def test_part_paths_round_trip() -> None:
    assert layout.part_path(0) == "definition/part-00000.zst"
    assert layout.part_path(9999) == "definition/part-09999.zst"
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
    # The writer wrote canonical JSON (docs/FORMAT.md): UTF-8, keys sorted, no insignificant whitespace, no NaN.
    canonical = json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False).encode("utf-8")
    assert data == canonical
    manifest = Manifest.from_bytes(data)
    assert manifest.to_bytes() == data  # and the manifest round-trips through the parser unchanged
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
