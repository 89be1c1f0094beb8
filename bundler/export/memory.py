"""The memory guard: before a model is loaded, what its export will need at its peak, what this machine (or the
container around it) has, and a refusal with both figures when the first is larger.

The need comes from the model's files without loading a weight: the safetensors headers (or the storage entries of
a PyTorch zip archive) give the parameter count and the bytes of every tensor, which is what the loaded model
holds (transformers keeps the stored dtype, mapped from the file); config.json gives the shapes that size one
full-length forward pass. The export holds one copy of the weights at a time (the original until the archive is
saved, then the archive reloaded for the check; pipeline.py), so

    need = BASE + copies x weight bytes + activations(max_length) + output logits(max_length)

with BASE the interpreter, torch, transformers and the tokenizer, and `copies` 1 (a sparse encoder loads its
masked-LM twice: 2; --quantize adds the int8 copy and what making it takes: 1.5). BASE is calibrated on measured
peaks (below, and README "Benchmarks"), and the sum taken with a margin.

What is available is the smallest of: the cgroup v2 `memory.max` minus `memory.current`, the cgroup v1
`memory.limit_in_bytes` minus `memory.usage_in_bytes` (each for this process's group and every ancestor, the
reclaimable inactive file cache not counted as used), and /proc/meminfo's MemAvailable; plus what this process
already holds, which the need counts too. The estimate and the reading of limits are pure functions of text;
`read_budget` and `model_weights` are the edges that read files.
"""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from loader.errors import ModelError

GIB = 1 << 30
MIB = 1 << 20
# Calibration: peak RSS of exports measured on this project's machine (torch 2.13, transformers 5.24, 2 cores):
# a tiny BERT 419 MiB; all-MiniLM-L6-v2 (sentence-transformers, 87 MiB of weights, 256 tokens) 585 MiB;
# BERT-base-sized (418 MiB, 512 tokens) 910 MiB, 1055 MiB with --quantize; BERT-large-sized (1278 MiB, 512
# tokens) 1822 MiB. What is not the weights: 419-544 MiB, growing with the activations. With BASE at 576 MiB the
# estimate is 1.15-1.5x every measured peak (BERT-large 2.05 GiB, BERT-base 1.11 GiB, all-MiniLM-L6-v2 0.72 GiB).
BASE_BYTES = 576 * MIB
MARGIN = 1.10  # on top of the sum: allocator slack and the figures' spread between runs
ACTIVATION_FACTOR = 4  # live float32 copies of a layer's token states and feed-forward during one forward pass
# Tasks whose output is one row of logits per token over the vocabulary (pooled inside the module for SPLADE).
VOCABULARY_OUTPUT_TASKS = ("fill_mask", "text_expansion")
NO_CGROUP_LIMIT = 1 << 62  # cgroup v1 writes "no limit" as a page-rounded LONG_MAX


@dataclass(frozen=True)
class Weights:
    """What the model's weight files hold, read from their headers."""

    parameters: int
    bytes: int
    dtypes: tuple[str, ...]  # as the files name them, most bytes first
    read_from: str  # "safetensors headers", "PyTorch archive entries", or "file sizes"

    def describe(self) -> str:
        return f"{self.parameters / 1e6:.1f}M {'/'.join(self.dtypes) or 'unknown-dtype'} parameters"


@dataclass(frozen=True)
class Shape:
    """The widths one forward pass allocates by (config.json; conservative where a config does not say)."""

    hidden: int
    heads: int
    intermediate: int
    vocabulary: int


@dataclass(frozen=True)
class Need:
    total: int
    weights: int  # copies x weight bytes
    copies: float
    working: int  # everything else: BASE, activations, logits, margin
    max_length: int


@dataclass(frozen=True)
class Budget:
    available: int  # more than what this process already holds
    held: int  # what this process holds now (resident), which the need includes
    origin: str  # where the tightest figure comes from, with its numbers

    @property
    def total(self) -> int:
        return self.available + self.held


# ---- the need (pure) ----

def safetensors_sizes(header: Mapping[str, Any]) -> tuple[int, int, dict[str, int]]:
    """(parameters, bytes, bytes per dtype) of one safetensors header; the data offsets give the bytes."""
    parameters, total, per_dtype = 0, 0, {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in entry["shape"]:
            count *= int(dim)
        start, end = entry["data_offsets"]
        size = int(end) - int(start)
        parameters += count
        total += size
        per_dtype[str(entry["dtype"])] = per_dtype.get(str(entry["dtype"]), 0) + size
    return parameters, total, per_dtype


def _first_int(config: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def shape_of(config: Mapping[str, Any]) -> Shape:
    """The widths from a transformers config (BERT, DistilBERT, BART/T5-style names); unknown ones guessed high."""
    hidden = _first_int(config, "hidden_size", "d_model", "dim", "n_embd") or 1024
    heads = _first_int(config, "num_attention_heads", "n_heads", "encoder_attention_heads", "n_head") or 16
    intermediate = _first_int(config, "intermediate_size", "hidden_dim", "encoder_ffn_dim", "d_ff") or 4 * hidden
    vocabulary = _first_int(config, "vocab_size") or 32000
    return Shape(hidden=hidden, heads=heads, intermediate=intermediate, vocabulary=vocabulary)


def activation_bytes(shape: Shape, max_length: int, task: str) -> int:
    """One full-length input through the widest layer: token states, the feed-forward, the attention scores of
    every head; and for masked-LM outputs the logits over the vocabulary (with SPLADE's pooled copies)."""
    length = max_length
    per_layer = 4 * (ACTIVATION_FACTOR * length * (shape.hidden + shape.intermediate) + shape.heads * length * length)
    logits = 4 * 3 * length * shape.vocabulary if task in VOCABULARY_OUTPUT_TASKS else 0
    return per_layer + logits


def copies_for(*, quantize: bool, sparse_encoder: bool) -> float:
    """Copies of the weights held at the peak: the original only (the reloaded archive replaces it), twice for a
    sparse encoder (its masked-LM is loaded as a transformers model and inside the SparseEncoder), and the int8
    Linear weights beside the original while quantizing (BERT-base-sized measured at 1.47)."""
    if sparse_encoder:
        return 2.0
    return 1.5 if quantize else 1.0


def estimate(weights: Weights, shape: Shape, *, max_length: int, task: str, copies: float) -> Need:
    """The export's peak: BASE + copies x weights + one full-length forward pass, with the margin."""
    held_weights = int(copies * weights.bytes)
    raw = BASE_BYTES + held_weights + activation_bytes(shape, max_length, task)
    total = int(raw * MARGIN)
    return Need(total=total, weights=held_weights, copies=copies, working=total - held_weights, max_length=max_length)


# ---- what is available (pure) ----

def meminfo_available(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _stat_value(stat_text: str, key: str) -> int:
    for line in stat_text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def cgroup_v2_available(max_text: str, current_text: str, stat_text: str) -> tuple[int, int, int] | None:
    """(available, limit, in use) of one cgroup v2 group, or None without a limit. The inactive file cache is
    reclaimed before the limit bites, so it is not counted as used."""
    if max_text.strip() == "max":
        return None
    limit = int(max_text)
    used = max(0, int(current_text) - _stat_value(stat_text, "inactive_file"))
    return max(0, limit - used), limit, used


def cgroup_v1_available(limit_text: str, usage_text: str, stat_text: str) -> tuple[int, int, int] | None:
    """The same for a cgroup v1 memory group (`memory.limit_in_bytes`, `memory.usage_in_bytes`)."""
    limit = int(limit_text)
    if limit >= NO_CGROUP_LIMIT:
        return None
    used = max(0, int(usage_text) - _stat_value(stat_text, "total_inactive_file"))
    return max(0, limit - used), limit, used


@dataclass(frozen=True)
class CgroupDir:
    version: int
    path: Path


def own_cgroup_dirs(proc_cgroup: str, mountinfo: str) -> list[CgroupDir]:
    """This process's memory cgroup directories, leaf first then every ancestor up to the mount's root, for the
    v2 hierarchy and the v1 memory controller (from /proc/self/cgroup and /proc/self/mountinfo)."""
    mounts: dict[str, tuple[str, str]] = {}  # "v2" or "v1" -> (root inside the hierarchy, mount point)
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 10:
            continue
        after = line.split(" - ", 1)[1].split()
        fstype, options = after[0], after[2] if len(after) > 2 else ""
        if fstype == "cgroup2":
            mounts.setdefault("v2", (fields[3], fields[4]))
        elif fstype == "cgroup" and "memory" in options.split(","):
            mounts.setdefault("v1", (fields[3], fields[4]))
    found: list[CgroupDir] = []
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        key = "v2" if hierarchy == "0" and controllers == "" else "v1" if "memory" in controllers.split(",") else ""
        if key not in mounts:
            continue
        root, mount_point = mounts[key]
        relative = PurePosixPath(path)
        if root != "/" and (relative == PurePosixPath(root) or PurePosixPath(root) in relative.parents):
            relative = relative.relative_to(root)
        here = Path(mount_point) / str(relative).lstrip("/")
        version = 2 if key == "v2" else 1
        while True:
            found.append(CgroupDir(version, here))
            if here == Path(mount_point) or here.parent == here:
                break
            here = here.parent
    return found


def tightest(candidates: Iterable[tuple[int, str]], held: int) -> Budget:
    """The smallest available figure among (bytes, where it comes from)."""
    available, origin = min(candidates, key=lambda c: c[0])
    return Budget(available=available, held=held, origin=origin)


# ---- the guard (pure) ----

@dataclass(frozen=True)
class Lower:
    """An export option that lowers the need, and the need with it."""

    option: str
    need: Need
    consequence: str


def lowering(weights: Weights, shape: Shape, *, max_length: int, task: str, copies: float,
             unquantized_copies: float | None) -> list[Lower]:
    """The options that lower the need, each with what it would then be: without --quantize (its int8 copy is
    made beside the original), and a shorter max input length (one input's activations, and the logits of a
    masked-LM output, grow with it). `unquantized_copies`: the copies without --quantize, None when not given."""
    options = []
    if unquantized_copies is not None:
        options.append(Lower("without --quantize", estimate(weights, shape, max_length=max_length, task=task,
                                                            copies=unquantized_copies),
                             "float32 weights in the cluster"))
    shorter = max_length // 4
    if shorter >= 64:
        options.append(Lower(f"--max-model-input-length {shorter}",
                             estimate(weights, shape, max_length=shorter, task=task, copies=copies),
                             f"the cluster then truncates inputs at {shorter} tokens instead of {max_length}"))
    return options


def refusal(need: Need, budget: Budget, weights: Weights, lower: Sequence[Lower] = ()) -> ModelError | None:
    """The error to raise when the need exceeds what this process holds plus what is available; else None."""
    if need.total <= budget.total:
        return None
    copies = "held once" if need.copies == 1 else f"x{need.copies:g} held at the peak"
    options = [f"{o.option} needs about {gib(o.need.total)} ({o.consequence}"
               + (", and fits)" if o.need.total <= budget.total else ", still too much)") for o in lower]
    hint = (f"run it where at least {gib(need.total)} are free (raise the container's memory limit or stop other "
            "programs)")
    if options:
        hint += "; " + "; ".join(options)
    else:
        hint += "; no export option lowers the weights' share (the original and its traced copy are never held "
        hint += "together)"
    return ModelError(
        f"not enough memory to export this model: it needs about {gib(need.total)} at its peak "
        f"({weights.describe()}, {gib(weights.bytes)} of weights {copies}, + {gib(need.working)} for torch, "
        f"tracing and the check at {need.max_length} tokens); {gib(budget.total)} can be had: this process holds "
        f"{gib(budget.held)} and {gib(budget.available)} more is available ({budget.origin})",
        hint=hint, outcome="nothing was loaded or written")


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


# ---- the edges (I/O) ----

def _safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 0 < size <= 100 * MIB:
            raise ModelError(f"{path}: not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(handle.read(size))
        except ValueError as exc:
            raise ModelError(f"{path}: not a safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (its header is not an object)")
    return header


def _archive_storage_bytes(path: Path) -> int | None:
    """A PyTorch zip archive (torch.save since 1.6) keeps each storage as one `<name>/data/<key>` entry."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist() if "/data/" in info.filename)


def model_weights(root: Path, files: Sequence[str]) -> Weights:
    """The weights among `files` (POSIX paths relative to `root`, the files the export uses), from headers only.
    Safetensors when there are any (transformers prefers them), else PyTorch archives; no weights read."""
    safetensors = [root / f for f in files if f.endswith(".safetensors")]
    if safetensors:
        parameters, total, per_dtype = 0, 0, {}
        for path in safetensors:
            try:
                count, size, dtypes = safetensors_sizes(_safetensors_header(path))
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{path}: malformed safetensors header ({exc})") from None
            parameters, total = parameters + count, total + size
            for dtype, n in dtypes.items():
                per_dtype[dtype] = per_dtype.get(dtype, 0) + n
        order = tuple(sorted(per_dtype, key=lambda d: -per_dtype[d]))
        return Weights(parameters=parameters, bytes=total, dtypes=order, read_from="safetensors headers")
    pickles = [root / f for f in files if f.endswith((".bin", ".pt", ".pth"))]
    total, exact = 0, True
    for path in pickles:
        size = _archive_storage_bytes(path)
        exact = exact and size is not None
        total += size if size is not None else path.stat().st_size
    # Element sizes are not in the entry names: float32 assumed for the count (the bytes are exact).
    return Weights(parameters=total // 4, bytes=total, dtypes=(),
                   read_from="PyTorch archive entries" if exact else "file sizes")


def read_config(model_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def resident_bytes() -> int:
    """What this process holds now (VmRSS)."""
    text = _read(Path("/proc/self/statm"))
    return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE") if text else 0


def release() -> None:
    """Return freed memory to the system now: collect cycles (a module graph holds some), and ask glibc to give
    back the free pages inside its heaps, where the weights of a freed model would otherwise stay resident and
    count against the next copy."""
    import gc

    from loader.allocation import return_freed_memory

    gc.collect()
    return_freed_memory()


def read_budget() -> Budget | None:
    """The tightest of the cgroup limits around this process and MemAvailable; None where none can be read (not
    Linux): the guard then has nothing to compare with and lets the export run."""
    candidates: list[tuple[int, str]] = []
    meminfo = _read(Path("/proc/meminfo"))
    if meminfo and (available := meminfo_available(meminfo)) is not None:
        candidates.append((available, f"MemAvailable in /proc/meminfo: {gib(available)}"))
    cgroup, mountinfo = _read(Path("/proc/self/cgroup")), _read(Path("/proc/self/mountinfo"))
    for group in own_cgroup_dirs(cgroup or "", mountinfo or ""):
        if group.version == 2:
            texts = [_read(group.path / n) for n in ("memory.max", "memory.current", "memory.stat")]
            reader, limit_file = cgroup_v2_available, "memory.max"
        else:
            texts = [_read(group.path / n) for n in ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat")]
            reader, limit_file = cgroup_v1_available, "memory.limit_in_bytes"
        if texts[0] is None or texts[1] is None:
            continue
        found = reader(texts[0], texts[1], texts[2] or "")
        if found is not None:
            available, limit, used = found
            candidates.append((available, f"cgroup v{group.version} limit {group.path / limit_file}: {gib(limit)}, "
                                          f"{gib(used)} of it in use"))
    if not candidates:
        return None
    return tightest(candidates, resident_bytes())
