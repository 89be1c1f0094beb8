"""Property-based fuzzing of everything that reads a bundle: a real bundle is mutated (manifest fields, re-signed by
the publisher's key so the mutation reaches past the signature; the envelope; the file tree; the config) and
`verify` and `inspect` must each end in a class exit code (never 1), print only printable lines, and stay within a
memory bound. Each property runs twice: with a fixed seed (the same examples every run) and with a random one
(new examples every run; Hypothesis prints the seed to reproduce a failure)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from bundler.cli.esbundle import cli
from bundler.keys import generate_keypair, load_signing_key
from bundler.sign import sign_manifest
from bundler.writer.bundle import write_bundle
from bundler.writer.travel import Travel
from loader.format import layout
from loader.format.canonical import canonical_bytes, strict_loads
from tests.conftest import EMBEDDING_CONFIG, TINY_VOCAB

CLASS_CODES = {0, 2, 3, 4, 5, 6, 8}
MEMORY_BOUND = 64 << 20  # a small bundle's checks allocate a few MB; a bomb would take hundreds
FIXED_SEED = 20261202
# A hang guard, not a speed target: one example verifies a 300 kB bundle in milliseconds.
PER_EXAMPLE = settings(max_examples=300, deadline=timedelta(seconds=20), database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from([
    "../escape", "/etc/passwd", "C:x", "definition/part-00000.zst", "loader/x.whl", "Config.json", "con",
    "\x1b[2J\rok    signature  valid", "a\u202eb", "\x85", "x" * 300, "a/" * 90, "",
])
SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(
    allow_nan=False, allow_infinity=False) | HOSTILE_TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner,
                                                                                             max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fuzz")
    pair = generate_keypair(root / "keys", "publisher")
    key = load_signing_key(pair.private_path)
    definition = root / "model.pt"
    definition.write_bytes(os.urandom(200_000))
    wheel = root / "tiny.whl"
    wheel.write_bytes(b"PK wheel")
    bundles = {}
    for name, travel in (("plain", Travel(extra_files=(("loader/wheels/tiny.whl", wheel),))),
                         ("volumes", Travel(volume_size=160 << 10))):
        bundles[name] = root / name
        write_bundle(bundles[name], definition=definition, config=EMBEDDING_CONFIG, vocabulary=TINY_VOCAB,
                     signing_key=key, model_id="tiny-model", task_type="text_embedding", part_size=64 << 10,
                     expires_in_days=None, travel=travel,
                     created_at=datetime.now(timezone.utc) - timedelta(days=1),
                     samples=[{"input": {"text": "hello"}, "expected": {"dimensions": 2, "prefix": [0.1, 0.2],
                                                                        "norm": 1.0, "atol": 0.001}}],
                     provenance={"source": {"kind": "hub", "hub_model_id": "org/tiny"}})
    return pair, key, bundles


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="esbundle-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], env={"ESBUNDLE_NO_PROGRESS": "1"},
                              catch_exceptions=True)


def assert_well_behaved(result: Any) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in CLASS_CODES, result.output
    for line in (result.stdout + result.stderr).splitlines():
        assert line.isprintable(), repr(line)


def check_everything(bundle: Path, pub: Path) -> None:
    """verify (with the publisher's key) and inspect (without a key), within the memory bound."""
    tracemalloc.start()
    try:
        for args in (("verify", bundle, "--trusted-key", pub), ("verify", bundle, "--trusted-key", pub, "--json"),
                     ("inspect", bundle), ("inspect", bundle, "--json")):
            assert_well_behaved(run(*args))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, peak


def copy_of(bundle: Path, workdir: Path) -> Path:
    target = workdir / "bundle"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target, symlinks=True)
    return target


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, as a path of keys and indexes."""
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += _paths(value, (*prefix, index))
    return found


def mutate(obj: Any, data: st.DataObject) -> Any:
    """Replace, delete or add one value somewhere in a JSON document."""
    path = data.draw(st.sampled_from(_paths(obj)))
    if not path:
        return data.draw(VALUES)
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace" or (action == "delete" and isinstance(parent, list)):
        parent[path[-1]] = data.draw(VALUES)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(HOSTILE_TEXT)] = data.draw(VALUES)
    else:
        parent.append(data.draw(VALUES))
    return obj


def resign(bundle: Path, key: Any, change: Callable[[Any], Any]) -> None:
    for directory in [bundle, *sorted(bundle.glob("vol*"))]:
        if (directory / layout.MANIFEST).exists():
            raw = canonical_bytes(change(strict_loads((directory / layout.MANIFEST).read_bytes())))
            (directory / layout.MANIFEST).write_bytes(raw)
            (directory / layout.ENVELOPE).write_bytes(sign_manifest(raw, key))


def manifest_property(publisher: Any, workdir: Path, data: st.DataObject) -> None:
    pair, key, bundles = publisher
    bundle = copy_of(bundles[data.draw(st.sampled_from(sorted(bundles)))], workdir)
    document = strict_loads(next(bundle.rglob(layout.MANIFEST)).read_bytes())
    mutated = mutate(document, data)
    resign(bundle, key, lambda _: mutated)
    check_everything(bundle, pair.public_path)


def envelope_property(publisher: Any, workdir: Path, data: st.DataObject) -> None:
    pair, _, bundles = publisher
    bundle = copy_of(bundles["plain"], workdir)
    path = bundle / layout.ENVELOPE
    if data.draw(st.booleans()):
        path.write_bytes(canonical_bytes(mutate(json.loads(path.read_bytes()), data)))
    else:
        raw = bytearray(path.read_bytes())
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at:at + data.draw(st.integers(0, 8))] = data.draw(st.binary(max_size=8))
        path.write_bytes(bytes(raw))
    check_everything(bundle, pair.public_path)


def tree_property(publisher: Any, workdir: Path, data: st.DataObject) -> None:
    pair, _, bundles = publisher
    bundle = copy_of(bundles[data.draw(st.sampled_from(sorted(bundles)))], workdir)
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    victim = data.draw(st.sampled_from(files))
    action = data.draw(st.sampled_from(["delete", "truncate", "flip", "directory", "link", "fifo", "extra"]))
    if action == "delete":
        victim.unlink()
    elif action == "truncate":
        victim.write_bytes(victim.read_bytes()[: data.draw(st.integers(0, 64))])
    elif action == "flip":
        raw = bytearray(victim.read_bytes() or b"\0")
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        victim.write_bytes(bytes(raw))
    elif action == "directory":
        victim.unlink()
        victim.mkdir()
    elif action == "link":
        victim.unlink()
        victim.symlink_to(workdir)
    elif action == "fifo":
        victim.unlink()
        os.mkfifo(victim)
    else:
        (victim.parent / data.draw(st.sampled_from(["extra", "part-99999.zst", ".hidden", "Config.json"]))
         ).write_bytes(b"x")
    check_everything(bundle, pair.public_path)


def config_property(publisher: Any, workdir: Path, data: st.DataObject) -> None:
    """The config changed and re-hashed into a re-signed manifest: only Elasticsearch's rules stand in the way."""
    import hashlib

    pair, key, bundles = publisher
    bundle = copy_of(bundles["plain"], workdir)
    raw = (json.dumps(mutate(json.loads((bundle / layout.CONFIG).read_bytes()), data)) + "\n").encode()
    (bundle / layout.CONFIG).write_bytes(raw)

    def rehash(obj: dict[str, Any]) -> dict[str, Any]:
        entry = next(f for f in obj["files"] if f["path"] == layout.CONFIG)
        digest = hashlib.sha256(raw).hexdigest()
        entry.update(size=len(raw), stored_size=len(raw), sha256=digest, stored_sha256=digest)
        return obj

    resign(bundle, key, rehash)
    check_everything(bundle, pair.public_path)


def copy_property(publisher: Any, workdir: Path, data: st.DataObject) -> None:
    """A mutated source (manifest re-signed, or files changed, or links planted) copied with and without the key:
    a class exit code, and nothing written anywhere but DEST."""
    pair, key, bundles = publisher
    bundle = copy_of(bundles["plain"], workdir)
    if data.draw(st.booleans()):
        mutated = mutate(strict_loads((bundle / layout.MANIFEST).read_bytes()), data)
        resign(bundle, key, lambda _: mutated)
    else:
        victim = data.draw(st.sampled_from(sorted(p for p in bundle.rglob("*") if p.is_file())))
        victim.unlink()
        victim.symlink_to(workdir / "host" / "precious") if data.draw(st.booleans()) else victim.mkdir()
    host = workdir / "host"
    host.mkdir(exist_ok=True)
    (host / "precious").write_bytes(b"precious")
    before = sorted(p.name for p in workdir.iterdir())
    for trust in ((), ("--trusted-key", pair.public_path)):
        dest = workdir / "dest"
        shutil.rmtree(dest, ignore_errors=True)
        assert_well_behaved(run("copy", bundle, dest, *trust))
        assert sorted(p.name for p in workdir.iterdir() if p.name != "dest") == [n for n in before if n != "dest"]
        assert (host / "precious").read_bytes() == b"precious" and [p.name for p in host.iterdir()] == ["precious"]


PROPERTIES = [manifest_property, envelope_property, tree_property, config_property, copy_property]


# Copying writes and syncs a medium twice per example: fewer of them.
EXAMPLES = {copy_property: 150}


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.__name__)
def test_fixed_seed(prop: Callable[..., None], publisher: Any, workdir: Path) -> None:
    @seed(FIXED_SEED)
    @settings(PER_EXAMPLE, max_examples=EXAMPLES.get(prop, PER_EXAMPLE.max_examples))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        prop(publisher, workdir, data)

    check()


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.__name__)
def test_random_seed(prop: Callable[..., None], publisher: Any, workdir: Path) -> None:
    @settings(PER_EXAMPLE, max_examples=EXAMPLES.get(prop, PER_EXAMPLE.max_examples))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        prop(publisher, workdir, data)

    check()
