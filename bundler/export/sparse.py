"""Sparse expansion (`text_expansion`): one weight per vocabulary entry, pooled inside the traced module.

Elasticsearch's TextExpansionProcessor reads only `r[0][0]` of the native result, keeps the weights above 0 and
names each by its vocabulary entry. So the module must answer `[batch, vocab]` already pooled, as SPLADE models
compute it (sentence-transformers' SpladePooling, read from its source): the masked-LM logits multiplied by the
attention mask, `relu`, `log1p` (`log1p_relu`: a second `log1p`), then the maximum (or the sum) over positions.

The cluster refuses graphs with operations outside its allowlist, `aten::log1p` among them; `log1p` is therefore
computed from allowed operations (add, sub, log, mul, div, eq, where). For max pooling the positions are pooled
first: relu and log1p never decrease, so the maximum of the transformed logits is the transformed maximum, computed
on `[batch, vocab]` instead of `[batch, seq, vocab]`.
Imports torch at module level: import this module only inside export functions.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bundler.export.tasks import SPLADE_ACTIVATIONS, SPLADE_POOLING_STRATEGIES
from loader.errors import ModelError

EXPANSION_TOP = 10  # weights a sample records: enough to recognise an expansion, small enough for the manifest


def log1p(x: Tensor) -> Tensor:
    """log(1 + x) with only operations Elasticsearch allows, accurate where `torch.log(1 + x)` is not: for x below
    float32's epsilon `1 + x` rounds to 1 and the naive form answers 0, dropping a token the model weighs. With
    u = 1 + x rounded, log(u) * x / (u - 1) is within two ulps of log1p (Goldberg 1991, theorem 4); where u - 1 is
    0, log1p(x) rounds to x. (The other branch is NaN there and never selected.)"""
    u = x + 1
    shifted = u - 1
    return torch.where(shifted == 0, x, torch.log(u) * (x / shifted))


class SparsePooling(nn.Module):
    """Masked-LM logits `[batch, seq, vocab]` and the attention mask to SPLADE weights `[batch, vocab]`."""

    def __init__(self, pooling_strategy: str = "max", activation_function: str = "relu") -> None:
        super().__init__()
        if pooling_strategy not in SPLADE_POOLING_STRATEGIES or activation_function not in SPLADE_ACTIVATIONS:
            raise ModelError(f"SPLADE pooling {pooling_strategy!r} with activation {activation_function!r}: only "
                             f"{'/'.join(SPLADE_POOLING_STRATEGIES)} with {'/'.join(SPLADE_ACTIVATIONS)} can be traced")
        self.pooling_strategy = pooling_strategy
        self.activation_function = activation_function

    def activate(self, values: Tensor) -> Tensor:
        weights = log1p(torch.relu(values))
        return log1p(weights) if self.activation_function == "log1p_relu" else weights

    def forward(self, logits: Tensor, attention_mask: Tensor) -> Tensor:
        # As SpladePooling: padding positions are multiplied by 0 (their weight becomes log1p(relu(0)) = 0), not
        # left out, so a position's zero takes part in the maximum exactly as there.
        masked = logits * attention_mask.unsqueeze(-1).to(logits.dtype)
        if self.pooling_strategy == "max":
            return self.activate(torch.max(masked, dim=1).values)
        return torch.sum(self.activate(masked), dim=1)

    def describe(self) -> str:
        inner = "log(1 + log(1 + relu(x)))" if self.activation_function == "log1p_relu" else "log(1 + relu(x))"
        return f"{self.pooling_strategy} over positions of {inner}, x = logits x attention mask"


def reference_weights(logits: Tensor, attention_mask: Tensor, pooling_strategy: str = "max",
                      activation_function: str = "relu") -> Tensor:
    """The same weights computed as SpladePooling does, in its order and with torch.log1p: the check's reference
    for a plain masked-LM (not traced, so any operation will do)."""
    weights = torch.log1p(torch.relu(logits * attention_mask.unsqueeze(-1).to(logits.dtype)))
    if activation_function == "log1p_relu":
        weights = torch.log1p(weights)
    return weights.max(dim=1).values if pooling_strategy == "max" else weights.sum(dim=1)


def es_token(entry: str) -> str:
    """How Elasticsearch names a vocabulary entry in an expansion: every `.` written `__` (a field name)."""
    return entry.replace(".", "__")


def expansion_expectation(row: Sequence[float] | Tensor, vocabulary: Sequence[str],
                          top: int = EXPANSION_TOP) -> dict[str, Any]:
    """What the cluster answers for one `[vocab]` output row, cut to its `top` weights: `{"expansion": {token:
    weight}}`, weights above 0 only, highest first (ties in vocabulary order, as Elasticsearch's stable sort
    leaves them), tokens named as Elasticsearch names them. Refuses a row longer than the vocabulary: the
    cluster names every weight by its vocabulary entry and fails on an id it has none for."""
    values = [float(v) for v in (row.tolist() if isinstance(row, Tensor) else row)]
    if len(values) > len(vocabulary):
        raise ModelError(f"text_expansion: the model answers {len(values)} weights per text but the vocabulary has "
                         f"{len(vocabulary)} entries; Elasticsearch names each weight by its vocabulary entry",
                         hint="the masked-LM's vocab_size must equal its tokenizer's vocabulary")
    ranked = sorted((i for i, weight in enumerate(values) if weight > 0.0), key=lambda i: (-values[i], i))
    expansion: dict[str, float] = {}
    for i in ranked[:max(top, 0)]:
        expansion.setdefault(es_token(vocabulary[i]), values[i])
    return {"expansion": expansion}
