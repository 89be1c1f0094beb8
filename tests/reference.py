"""An independent reference for the export tests, written from the published conventions
(../shared/reference/tracing-conventions.md, docs/FORMAT.md) and not from the exporter: the definition read
back from a bundle's parts with zstandard, the positional inputs Elasticsearch's native process passes, and what
the original Hugging Face model answers, with the pooling written out here.

Nothing here imports the product (bundler/, loader/): a test that compares the exporter with this compares it
with something it did not compute itself.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import zstandard
from torch import Tensor

# What the native process passes to forward, positionally, per tokenization family (tracing-conventions.md).
CLUSTER_INPUTS = {
    "bert": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "bert_ja": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "mpnet": ("input_ids", "attention_mask"),
    "roberta": ("input_ids", "attention_mask"),
    "xlm_roberta": ("input_ids", "attention_mask"),
    "deberta_v2": ("input_ids", "attention_mask", "token_type_ids"),
}
# Outputs with one row per token: a padded row is compared on its real tokens only.
TOKEN_LEVEL = {"fill_mask", "ner", "pass_through"}

MIN_COSINE = 0.9999  # fp32: the trace is the same arithmetic, only reordered
MAX_ABS_DIFF = 1e-4


def raw_bytes(path: Path, entry: dict[str, Any]) -> bytes:
    """A bundle file's bytes as they were before storing: decompressed when its entry says `zstd`, else as stored."""
    stored = path.read_bytes()
    if entry["compression"] == "zstd":
        return zstandard.ZstdDecompressor().decompress(stored, max_output_size=entry["size"])
    assert entry["compression"] == "none"
    return stored


def definition_bytes(bundle: Path) -> bytes:
    """The TorchScript file as the cluster receives it: the manifest's definition parts, numbered 0..n-1 at
    definition/part-NNNNN.zst, each decompressed where its entry says zstd, concatenated in part order; checked
    against the manifest's whole-definition sha256, length and part count."""
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    parts = sorted((f for f in manifest["files"] if f["role"] == "definition_part"), key=lambda f: f["part"])
    assert [f["path"] for f in parts] == [f"definition/part-{i:05d}.zst" for i in range(len(parts))]
    data = b"".join(raw_bytes(bundle / f["path"], f) for f in parts)
    definition = manifest["definition"]
    assert len(parts) == definition["part_count"]
    assert len(data) == definition["total_length"]
    assert hashlib.sha256(data).hexdigest() == definition["sha256"]
    return data


def cluster_inputs(tokenizer: Any, family: str, firsts: Sequence[str], seconds: Sequence[str] | None, *,
                   max_length: int, truncation: bool | str) -> tuple[tuple[Tensor, ...], list[int]]:
    """The positional int64 inputs for one request: documents padded (right, with the pad id and a zero mask) to
    the longest, token type 0 everywhere (Elasticsearch's TokenizationResult.writeTokenTypeIds writes 0 for both
    sequences of a pair), position ids 0..n-1 in every row; and the real length of each row."""
    enc = tokenizer(list(firsts), list(seconds) if seconds is not None else None, padding=True,
                    truncation=truncation, max_length=max_length, return_tensors="pt", return_token_type_ids=True)
    ids = enc["input_ids"]
    columns = {"input_ids": ids, "attention_mask": enc["attention_mask"], "token_type_ids": torch.zeros_like(ids),
               "position_ids": torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids).contiguous()}
    args = tuple(columns[name].to(torch.int64) for name in CLUSTER_INPUTS[family])
    return args, [int(n) for n in enc["attention_mask"].sum(dim=1)]


def traced_rows(output: Tensor, task: str, lengths: Sequence[int]) -> list[Tensor]:
    """Each request's answer out of the module's batch output: question answering is [2 (start, end), batch, seq];
    token outputs are cut to the row's real tokens."""
    if task == "question_answering":
        return [output[:, i, :n] for i, n in enumerate(lengths)]
    if task in TOKEN_LEVEL:
        return [output[i, :n] for i, n in enumerate(lengths)]
    return [output[i] for i in range(len(lengths))]


_MODELS: dict[tuple[Path, str], Any] = {}


def original(model_dir: Path, head: str) -> Any:
    """The original model, loaded by transformers itself (cached per folder and head class)."""
    import transformers

    key = (model_dir, head)
    if key not in _MODELS:
        _MODELS[key] = getattr(transformers, head).from_pretrained(str(model_dir)).eval()
    return _MODELS[key]


def mean_pooling(hidden: Tensor, mask: Tensor) -> Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def sentence_transformers_dense(model_dir: Path, folder: str, vector: Tensor) -> Tensor:
    """A sentence-transformers Dense module: its saved linear layer, then tanh (Dense's default activation)."""
    from safetensors.torch import load_file

    weights = load_file(str(model_dir / folder / "model.safetensors"))
    return torch.tanh(vector @ weights["linear.weight"].T + weights["linear.bias"])


def assert_close(got: Tensor, want: Tensor, what: str) -> None:
    assert got.shape == want.shape, (what, list(got.shape), list(want.shape))
    got64, want64 = got.double().flatten(), want.double().flatten()
    cosine = float(torch.nn.functional.cosine_similarity(got64, want64, dim=0))
    diff = float((got64 - want64).abs().max())
    assert cosine >= MIN_COSINE and diff <= MAX_ABS_DIFF, f"{what}: cosine {cosine:.8f}, max |diff| {diff:.2e}"
