"""Writing bundles: round trip, determinism, atomicity, and `esbundle pack` / `esbundle keygen` as users run them."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bundler.writer.bundle import write_bundle
from loader.bundle.content import read_verified
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.errors import UsageError
from loader.format import layout
from tests.conftest import EMBEDDING_CONFIG, FIXED_TIME, TINY_VOCAB, Keys, RunCli, random_file


def files_of(bundle: Path) -> dict[str, bytes]:
    return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def test_round_trip_reassembles_the_exact_definition(tmp_path: Path, keys: Keys) -> None:
    definition = random_file(tmp_path / "m.pt", 1_000_003)
    write_bundle(
        tmp_path / "b",
        definition=definition,
        config=EMBEDDING_CONFIG,
        vocabulary=TINY_VOCAB,
        signing_key=keys.signing,
        model_id="m",
        task_type="text_embedding",
        part_size=100_000,
    )
    verified = verify_bundle(tmp_path / "b", load_trusted_keys([keys.pub]), progress=False)
    parts = verified.manifest.parts()
    assert len(parts) == 11 and parts[-1].size == 3
    assert b"".join(read_verified(tmp_path / "b", p) for p in parts) == definition.read_bytes()
    names = files_of(tmp_path / "b")
    assert all(n == n.lower() and not set(n) & set(':*?"<>|') for n in names)


def test_same_inputs_same_time_same_key_give_identical_bytes(tmp_path: Path, keys: Keys) -> None:
    definition = random_file(tmp_path / "m.pt", 500_000)
    for name in ("a", "b"):
        write_bundle(
            tmp_path / name,
            definition=definition,
            config=EMBEDDING_CONFIG,
            vocabulary=TINY_VOCAB,
            signing_key=keys.signing,
            model_id="m",
            task_type="text_embedding",
            created_at=FIXED_TIME,
        )
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")


def test_source_date_epoch_sets_the_creation_time(tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767322800")
    manifest = write_bundle(
        tmp_path / "b",
        definition=random_file(tmp_path / "m.pt", 10_000),
        config=EMBEDDING_CONFIG,
        vocabulary=TINY_VOCAB,
        signing_key=keys.signing,
        model_id="m",
        task_type="text_embedding",
    )
    assert manifest.created_at == "2026-01-02T03:00:00Z"


def test_a_failure_mid_write_leaves_nothing_behind(tmp_path: Path, keys: Keys) -> None:
    # NaN cannot be encoded canonically: the writer fails after the parts are already written.
    vocabulary = {"vocabulary": ["a", "b"], "scores": [0.0, float("nan")]}
    with pytest.raises(ValueError):
        write_bundle(
            tmp_path / "b",
            definition=random_file(tmp_path / "m.pt", 300_000),
            config=EMBEDDING_CONFIG,
            vocabulary=vocabulary,
            signing_key=keys.signing,
            model_id="m",
            task_type="text_embedding",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "m.pt"]


# Runs `esbundle pack` with an audit hook: when the writer opens PART inside its hidden staging directory (every earlier
# part is then written, in order, and the bundle is far from renamed into place), it makes the directory MARK and
# blocks there for good. The test waits for MARK, not for a timing window, then kills it.
_PAUSED_WRITER = """
import os, sys, threading
PART, MARK, paused = {part!r}, {mark!r}, threading.Event()

def hold(event, args):
    if event != "open" or paused.is_set() or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(args[0])
    writing = isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR)
    if writing and os.path.basename(path) == PART and ".partial-" in path:
        paused.set()
        os.mkdir(MARK)
        threading.Event().wait()

sys.addaudithook(hold)
from bundler.cli.esbundle import main
main()
"""


def test_a_killed_writer_never_leaves_a_complete_looking_bundle(tmp_path: Path, keys: Keys) -> None:
    definition = random_file(tmp_path / "big.pt", 12 << 20)  # 12 parts of 1 MiB
    config = tmp_path / "config.json"
    config.write_text(json.dumps(EMBEDDING_CONFIG))
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps(TINY_VOCAB))
    mark = tmp_path / "writer-paused"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _PAUSED_WRITER.format(part="part-00005.zst", mark=str(mark)),
            "pack",
            "--definition",
            str(definition),
            "--config",
            str(config),
            "--vocab",
            str(vocab),
            "--signing-key",
            str(keys.pair.private_path),
            "--out",
            str(tmp_path / "b"),
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60  # only turns a hang into a failure
        while not mark.exists():
            assert proc.poll() is None, f"the writer exited ({proc.returncode}) before reaching part 5"
            assert time.monotonic() < deadline, "the writer did not reach part 5 within 60 s"
            time.sleep(0.01)
        staged = list(tmp_path.glob(".b.partial-*"))
        assert len(staged) == 1 and not (tmp_path / "b").exists()
        written = sorted(p.name for p in (staged[0] / "definition").iterdir())
        assert written == [f"part-{i:05d}.zst" for i in range(5)]  # the writer is half way, provably
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert list(tmp_path.glob(".b.partial-*")), "the writer was expected to be killed half way"
    assert not (tmp_path / "b").exists()


def test_pack_command_and_errors(tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    definition = random_file(tmp_path / "My-Model.pt", 70_000)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(EMBEDDING_CONFIG))
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps(TINY_VOCAB))
    args = [
        "pack",
        "--definition",
        definition,
        "--config",
        config,
        "--vocab",
        vocab,
        "--signing-key",
        keys.pair.private_path,
        "--part-size",
        "16K",
    ]
    result = run_cli(*args, "--out", tmp_path / "b", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model_id"] == "my-model" and summary["parts"] == 5
    assert run_cli("verify", tmp_path / "b", "--trusted-key", keys.pub).exit_code == 0

    again = run_cli(*args, "--out", tmp_path / "b")
    assert again.exit_code == 2 and "already exists" in again.stderr

    bad_id = run_cli(*args, "--out", tmp_path / "c", "--es-model-id", "Bad Id")
    assert bad_id.exit_code == 2 and "can contain lowercase alphanumeric" in bad_id.stderr

    config.write_text(json.dumps({**EMBEDDING_CONFIG, "location": {"index": {}}}))
    refused = run_cli(*args, "--out", tmp_path / "d")
    assert refused.exit_code == 9 and "sets [location]" in refused.stderr

    config.write_text('{"inference_config": {}, "inference_config": {}}')
    dup = run_cli(*args, "--out", tmp_path / "e")
    assert dup.exit_code == 9 and "duplicate key" in dup.stderr
    assert not any((tmp_path / name).exists() for name in ("c", "d", "e"))
    assert not list(tmp_path.glob(".*partial*"))


def test_roberta_bundle_needs_merges(tmp_path: Path, keys: Keys) -> None:
    config = {**EMBEDDING_CONFIG, "inference_config": {"text_embedding": {"tokenization": {"roberta": {}}}}}
    with pytest.raises(Exception, match=r"requires \[merges\]"):
        write_bundle(
            tmp_path / "b",
            definition=random_file(tmp_path / "m.pt", 1000),
            config=config,
            vocabulary=TINY_VOCAB,
            signing_key=keys.signing,
            model_id="m",
            task_type="text_embedding",
        )


def test_keygen_with_passphrase_from_environment(tmp_path: Path, run_cli: RunCli) -> None:
    result = run_cli("keygen", "--out", tmp_path / "k", "--name", "pub1", env={"ESBUNDLE_KEY_PASSPHRASE": "s3cret"})
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "k" / "pub1.key", tmp_path / "k" / "pub1.pub"
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600 and stat.S_IMODE(os.stat(public).st_mode) == 0o644
    assert b"ENCRYPTED PRIVATE KEY" in private.read_bytes()
    assert "s3cret" not in result.output
    key_id = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("key id"))
    assert key_id in load_trusted_keys([public])

    definition = random_file(tmp_path / "m.pt", 5000)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(EMBEDDING_CONFIG))
    vocab = tmp_path / "v.json"
    vocab.write_text(json.dumps(TINY_VOCAB))
    args = ["pack", "--definition", definition, "--config", config, "--vocab", vocab, "--signing-key", private]
    wrong = run_cli(*args, "--out", tmp_path / "b", env={"ESBUNDLE_KEY_PASSPHRASE": "wrong"})
    assert wrong.exit_code == 10 and "wrong passphrase" in wrong.stderr and not (tmp_path / "b").exists()
    right = run_cli(*args, "--out", tmp_path / "b", env={"ESBUNDLE_KEY_PASSPHRASE": "s3cret"})
    assert right.exit_code == 0, right.output

    clash = run_cli("keygen", "--out", tmp_path / "k", "--name", "pub1", "--no-passphrase")
    assert clash.exit_code == 2 and "refusing to overwrite" in clash.stderr


def test_keygen_refuses_without_passphrase_source(tmp_path: Path, run_cli: RunCli) -> None:
    result = run_cli("keygen", "--out", tmp_path / "k")
    assert result.exit_code == 2 and "ESBUNDLE_KEY_PASSPHRASE" in result.stderr
    assert not (tmp_path / "k" / "esbundle.key").exists()


def test_unreadable_signing_key(tmp_path: Path, run_cli: RunCli) -> None:
    not_a_key = tmp_path / "k.key"
    not_a_key.write_text("hello")
    definition = random_file(tmp_path / "m.pt", 5000)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(EMBEDDING_CONFIG))
    vocab = tmp_path / "v.json"
    vocab.write_text(json.dumps(TINY_VOCAB))
    result = run_cli(
        "pack",
        "--definition",
        definition,
        "--config",
        config,
        "--vocab",
        vocab,
        "--signing-key",
        not_a_key,
        "--out",
        tmp_path / "b",
    )
    assert result.exit_code == 10 and "not a PEM private key" in result.stderr


def test_part_limit_is_enforced_before_writing(tmp_path: Path, keys: Keys) -> None:
    with pytest.raises(Exception, match="exceed Elasticsearch's 10000"):
        write_bundle(
            tmp_path / "b",
            definition=random_file(tmp_path / "m.pt", layout.MIN_PART_SIZE * 10_001),
            config=EMBEDDING_CONFIG,
            vocabulary=TINY_VOCAB,
            signing_key=keys.signing,
            model_id="m",
            task_type="text_embedding",
            part_size=layout.MIN_PART_SIZE,
        )
    assert not (tmp_path / "b").exists()


def test_the_final_rename_never_replaces_what_appeared_meanwhile(tmp_path: Path) -> None:
    from loader.bundle.durable import rename_no_replace

    (tmp_path / "written").mkdir()
    (tmp_path / "someone-elses").mkdir()  # an empty directory: a plain rename would silently replace it
    with pytest.raises(UsageError, match="appeared while the bundle was written"):
        rename_no_replace(tmp_path / "written", tmp_path / "someone-elses")
    rename_no_replace(tmp_path / "written", tmp_path / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "someone-elses"]


@pytest.mark.parametrize(("given", "expires_at"), [("never", None), ("0", None), ("30", "2026-02-01T03:04:05Z")])
def test_pack_takes_the_expiry_export_takes(tmp_path: Path, keys: Keys, run_cli: RunCli, given: str,
                                            expires_at: str | None) -> None:
    """export and pack share one option check: `never` and 0 mean no expiry on both, and the bounds are the same."""
    definition = random_file(tmp_path / "model.pt", 20_000)
    (tmp_path / "config.json").write_text(json.dumps(EMBEDDING_CONFIG))
    (tmp_path / "vocab.json").write_text(json.dumps(TINY_VOCAB))
    args = ["pack", "--definition", definition, "--config", tmp_path / "config.json", "--vocab",
            tmp_path / "vocab.json", "--signing-key", keys.pair.private_path]
    env = {"SOURCE_DATE_EPOCH": str(int(FIXED_TIME.timestamp()))}
    result = run_cli(*args, "--out", tmp_path / "b", "--expires-in", given, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / layout.MANIFEST).read_bytes())["expires_at"] == expires_at
    for wrong in ("-1", "36501", "soon"):
        refused = run_cli(*args, "--out", tmp_path / "c", "--expires-in", wrong, env=env)
        assert refused.exit_code == 2 and "--expires-in" in refused.stderr, refused.output
    assert not (tmp_path / "c").exists()
