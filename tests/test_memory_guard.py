"""The memory guard (bundler/export/memory.py): the real export, run as a process inside a memory cgroup made
here, refuses a model it cannot fit, clearly, with exit code 9 and nothing written, before the OOM killer would
have ended it; a tiny model's measured peak stays under its estimate, and its export runs within a limit just
above that estimate. And the pure parts: safetensors headers, cgroup v1 and v2 files, MemAvailable, the message.

The cgroup is a child of this process's own memory cgroup (v2 `memory.max`, or the v1 memory controller's
`memory.limit_in_bytes`), removed afterwards. Tests run as root on this project's machines.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bundler.export import memory
from bundler.export.source import used_files
from bundler.keys import KeyPair, generate_keypair
from loader.errors import ModelError
from tests import models

MIB = 1 << 20

# The command's own peak RSS, free of this (large) process's: a small interpreter spawns it and reads its rusage.
TIMER = """
import json, os, sys
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss * 1024}))
"""


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


def _child_dir() -> tuple[memory.CgroupDir, str]:
    """This process's memory cgroup and the file that limits a child of it."""
    groups = memory.own_cgroup_dirs(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    for group in groups:  # the leaf of each hierarchy comes first
        limit_file = "memory.max" if group.version == 2 else "memory.limit_in_bytes"
        if (group.path / limit_file).exists() or group.version == 2:
            return group, limit_file
    raise AssertionError(f"no memory cgroup found for this process ({groups})")


@contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A child memory cgroup of this process's own, limited to `limit` bytes; removed on exit."""
    group, limit_file = _child_dir()
    path = Path(tempfile.mkdtemp(prefix="esbundle-test-", dir=group.path))
    try:
        if not (path / limit_file).exists():
            raise AssertionError(f"{path}: no {limit_file} (the memory controller is not enabled for children here)")
        (path / limit_file).write_text(str(limit))
        yield path
    finally:
        path.rmdir()


def _in_cgroup(group: Path, command: list[str]) -> list[str]:
    """`command` run inside `group`: a shell moves itself in, then becomes the command."""
    return ["sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec "$@"', "sh", *command]


def _oom_kills(group: Path) -> int:
    """OOM kills inside the group (v2 memory.events, v1 memory.oom_control)."""
    for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
        if (group / name).exists():
            for line in (group / name).read_text().splitlines():
                if line.startswith(key + " "):
                    return int(line.split()[1])
    return 0


def _export(model_dir: Path, out: Path, key: Path) -> list[str]:
    return [sys.executable, "-m", "bundler", "export", "--model-dir", str(model_dir), "--task-type",
            "text_embedding", "--signing-key", str(key), "--out", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "ESBUNDLE_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _large_model(out: Path) -> Path:
    """A BERT whose 100,000 x 1024 embedding alone is 410 MB of float32 weights, with the test tokenizer."""
    import torch
    import transformers

    models.bert(out, head="AutoModel")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100_000, hidden_size=1024, num_hidden_layers=1,
                                     num_attention_heads=4, intermediate_size=1024, max_position_embeddings=128,
                                     architectures=["BertModel"])
    transformers.BertModel(config).save_pretrained(out)
    return out


def test_export_refuses_a_model_its_memory_limit_cannot_hold(tmp_path: Path, publisher: KeyPair) -> None:
    """410 MB of weights under a 640 MiB limit (the interpreter with torch already takes ~300 MB): refused with the
    numbers, where they come from and exit code 9, before loading a weight; no OOM kill, nothing written."""
    model_dir = _large_model(tmp_path / "large")
    out = tmp_path / "out" / "bundle"
    out.parent.mkdir()
    with memory_cgroup(640 * MIB) as group:
        done = subprocess.run(_in_cgroup(group, _export(model_dir, out, publisher.private_path)),
                              capture_output=True, text=True, env=_env(), timeout=600)
        oom_kills = _oom_kills(group)
    assert done.returncode == ModelError.exit_code == 9, done.stderr
    assert oom_kills == 0
    refusal = next(line for line in done.stderr.splitlines() if line.startswith("model error:"))
    assert "not enough memory to export this model: it needs about" in refusal
    assert "109.9M F32 parameters" in refusal and "0.41 GiB of weights held once" in refusal
    assert f"cgroup v{_child_dir()[0].version} limit {group}/" in refusal and ": 0.62 GiB" in refusal
    assert refusal.endswith("nothing was loaded or written")
    assert ("hint: run it where at least " in done.stderr
            and "no export option lowers the weights' share" in done.stderr)
    assert "[2/5] load" not in done.stderr  # refused before the model was loaded
    assert not out.exists() and os.listdir(out.parent) == []


def _tiny_model(tmp_path: Path) -> Path:
    return models.bert(tmp_path / "tiny", head="AutoModel")


def _tiny_estimate(model_dir: Path) -> memory.Need:
    weights = memory.model_weights(model_dir, used_files(model_dir))
    return memory.estimate(weights, memory.shape_of(memory.read_config(model_dir)), max_length=models.MAX_LEN,
                           task="text_embedding", copies=1.0)


def test_a_tiny_models_measured_peak_is_under_its_estimate(tmp_path: Path, publisher: KeyPair) -> None:
    model_dir = _tiny_model(tmp_path)
    done = subprocess.run(["python3", "-c", TIMER, *_export(model_dir, tmp_path / "bundle", publisher.private_path)],
                          capture_output=True, text=True, env=_env(), timeout=600)
    measured = json.loads(done.stdout.splitlines()[-1])
    assert measured["code"] == 0, done.stderr
    estimate = _tiny_estimate(model_dir)
    assert measured["maxrss"] < estimate.total, (measured, estimate)
    assert (tmp_path / "bundle" / "manifest.json").exists()


def test_a_tiny_model_exports_within_a_limit_just_above_its_estimate(tmp_path: Path, publisher: KeyPair) -> None:
    """The estimate is enough under a real limit: the whole export (trace, check, write) runs in it."""
    model_dir = _tiny_model(tmp_path)
    out = tmp_path / "bundle"
    with memory_cgroup(_tiny_estimate(model_dir).total + 128 * MIB) as group:
        done = subprocess.run(_in_cgroup(group, _export(model_dir, out, publisher.private_path)),
                              capture_output=True, text=True, env=_env(), timeout=600)
        oom_kills = _oom_kills(group)
    assert done.returncode == 0, done.stderr
    assert oom_kills == 0
    assert "memory: about" in done.stderr and f"cgroup v{_child_dir()[0].version} limit {group}/" in done.stderr
    assert (out / "manifest.json").exists()


# ---- the pure parts ----

def test_safetensors_headers_give_parameters_and_bytes(tmp_path: Path) -> None:
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
              "b": {"dtype": "F16", "shape": [10], "data_offsets": [48, 68]}}
    blob = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(len(blob).to_bytes(8, "little") + blob + bytes(68))
    (tmp_path / "pytorch_model.bin").write_bytes(b"ignored beside safetensors")
    weights = memory.model_weights(tmp_path, ["model.safetensors", "pytorch_model.bin"])
    assert weights == memory.Weights(parameters=22, bytes=68, dtypes=("F32", "F16"), read_from="safetensors headers")
    (tmp_path / "bad.safetensors").write_bytes((1 << 40).to_bytes(8, "little"))
    with pytest.raises(ModelError, match="not a safetensors file"):
        memory.model_weights(tmp_path, ["bad.safetensors"])


def test_pytorch_archives_are_sized_by_their_storage_entries(tmp_path: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(1000), "b": torch.zeros(24)}, tmp_path / "pytorch_model.bin")
    weights = memory.model_weights(tmp_path, ["pytorch_model.bin"])
    assert (weights.bytes, weights.read_from) == (4096, "PyTorch archive entries")


def test_the_estimate_grows_with_the_weights_and_the_length() -> None:
    shape = memory.shape_of({"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096,
                             "vocab_size": 30522})
    large = memory.Weights(parameters=335_000_000, bytes=1_340_000_000, dtypes=("F32",), read_from="test")
    need = memory.estimate(large, shape, max_length=512, task="text_embedding", copies=1.0)
    assert need.weights == large.bytes
    assert need.total == int((memory.BASE_BYTES + large.bytes + memory.activation_bytes(shape, 512, "text_embedding"))
                             * memory.MARGIN)
    assert memory.estimate(large, shape, max_length=128, task="text_embedding", copies=1.0).total < need.total
    assert memory.estimate(large, shape, max_length=512, task="fill_mask", copies=1.0).total > need.total
    assert memory.copies_for(quantize=False, sparse_encoder=True) == 2.0
    assert memory.shape_of({}) == memory.Shape(hidden=1024, heads=16, intermediate=4096, vocabulary=32000)


def test_limits_are_read_from_cgroup_v1_and_v2_files_and_meminfo() -> None:
    assert memory.meminfo_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n") == 2 * MIB
    assert memory.cgroup_v2_available("max\n", "5\n", "") is None
    assert memory.cgroup_v2_available(f"{GI}\n", f"{300 * MIB}\n", f"anon 1\ninactive_file {100 * MIB}\n") == \
        (GI - 200 * MIB, GI, 200 * MIB)
    assert memory.cgroup_v1_available("9223372036854771712\n", "5\n", "") is None
    assert memory.cgroup_v1_available(f"{GI}\n", f"{300 * MIB}\n", f"total_inactive_file {50 * MIB}\n") == \
        (GI - 250 * MIB, GI, 250 * MIB)
    budget = memory.tightest([(5 * GI, "MemAvailable"), (GI, "cgroup")], held=300 * MIB)
    assert (budget.available, budget.origin, budget.total) == (GI, "cgroup", GI + 300 * MIB)


GI = 1 << 30
MOUNTINFO = """\
22 1 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs rw
30 22 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 22 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 22 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
"""


def test_own_cgroup_directories_leaf_first_up_to_the_mount() -> None:
    cgroup = "4:memory:/jobs/one\n3:cpu:/\n0::/user.slice/session\n"
    dirs = memory.own_cgroup_dirs(cgroup, MOUNTINFO)
    assert dirs == [memory.CgroupDir(1, Path("/sys/fs/cgroup/memory/jobs/one")),
                    memory.CgroupDir(1, Path("/sys/fs/cgroup/memory/jobs")),
                    memory.CgroupDir(1, Path("/sys/fs/cgroup/memory")),
                    memory.CgroupDir(2, Path("/sys/fs/cgroup/unified/user.slice/session")),
                    memory.CgroupDir(2, Path("/sys/fs/cgroup/unified/user.slice")),
                    memory.CgroupDir(2, Path("/sys/fs/cgroup/unified"))]
    # A container's cgroup namespace mounts its own subtree: paths are relative to the mount's root.
    nested = "29 22 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert memory.own_cgroup_dirs("0::/docker/abc/app\n", nested) == [
        memory.CgroupDir(2, Path("/sys/fs/cgroup/app")), memory.CgroupDir(2, Path("/sys/fs/cgroup"))]


def test_the_refusal_names_need_availability_origin_and_outcome() -> None:
    weights = memory.Weights(parameters=335_100_000, bytes=1_340_400_000, dtypes=("F32",), read_from="test")
    need = memory.Need(total=2 * GI, weights=weights.bytes, copies=1.0, working=2 * GI - weights.bytes,
                       max_length=512)
    fits = memory.Budget(available=2 * GI, held=300 * MIB, origin="MemAvailable in /proc/meminfo: 2.00 GiB")
    assert memory.refusal(need, fits, weights) is None
    short = memory.Budget(available=GI, held=256 * MIB, origin="cgroup v2 limit /g/memory.max: 1.25 GiB, ...")
    error = memory.refusal(need, short, weights)
    assert error is not None and error.exit_code == 9
    assert error.lines() == [
        "model error: not enough memory to export this model: it needs about 2.00 GiB at its peak (335.1M F32 "
        "parameters, 1.25 GiB of weights held once, + 0.75 GiB for torch, tracing and the check at 512 tokens); "
        "1.25 GiB can be had: this process holds 0.25 GiB and 1.00 GiB more is available (cgroup v2 limit "
        "/g/memory.max: 1.25 GiB, ...); nothing was loaded or written",
        "hint: run it where at least 2.00 GiB are free (raise the container's memory limit or stop other programs); "
        "no export option lowers the weights' share (the original and its traced copy are never held together)"]


def test_the_refusal_names_each_option_that_lowers_the_need_with_its_figure() -> None:
    """--quantize adds a copy and a long max length adds activations (a masked-LM's logits over the vocabulary
    most): the hint gives the need without each, and whether it would then fit."""
    weights = memory.Weights(parameters=110_000_000, bytes=440_000_000, dtypes=("F32",), read_from="test")
    shape = memory.Shape(hidden=768, heads=12, intermediate=3072, vocabulary=30522)
    need = memory.estimate(weights, shape, max_length=512, task="text_expansion", copies=1.5)
    lower = memory.lowering(weights, shape, max_length=512, task="text_expansion", copies=1.5,
                            unquantized_copies=1.0)
    assert [o.option for o in lower] == ["without --quantize", "--max-model-input-length 128"]
    unquantized, shorter = (o.need.total for o in lower)
    assert abs((need.total - unquantized) - 0.5 * weights.bytes * memory.MARGIN) <= 2  # half a copy less
    assert shorter < need.total
    budget = memory.Budget(available=unquantized - 100 * MIB, held=100 * MIB, origin="test")
    error = memory.refusal(need, budget, weights, lower)
    assert error is not None
    hint = error.lines()[1]
    assert f"without --quantize needs about {memory.gib(unquantized)} (float32 weights in the cluster, and fits)" \
        in hint
    assert (f"--max-model-input-length 128 needs about {memory.gib(shorter)} (the cluster then truncates inputs at "
            "128 tokens instead of 512, still too much)") in hint
    # Nothing to offer for a short max length without --quantize.
    assert memory.lowering(weights, shape, max_length=128, task="text_embedding", copies=1.0,
                           unquantized_copies=None) == []
