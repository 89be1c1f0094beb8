"""Pooling of a plain transformers encoder's token states into one text_embedding vector, traced inside the module
so the cluster reads `[batch, hidden]` as it does from a sentence-transformers model.

`mean`: the mean of the real tokens (padding masked out), as sentence-transformers' Pooling computes it;
`cls`: the first token (the cluster pads on the right, so it is always the first real token);
`max`: the element-wise maximum of the real tokens, padding excluded by filling it with the lowest float first;
then, if asked, L2 normalisation (`torch.nn.functional.normalize`, as sentence-transformers' Normalize).

Every operation here is one Elasticsearch's graph check allows (loader/data/es_model_ops.json): mul, sum, div,
clamp, unsqueeze, to, select, slice, eq, masked_fill, max, linalg_vector_norm, clamp_min, expand_as. No argmax
(refused) and no logical_not (not allowed). The export measures the traced graph and refuses what a target
release would.
Imports torch at module level: import this module only inside export functions.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from bundler.export.options import POOLING_CHOICES


class EmbeddingPooling(nn.Module):
    """`[batch, seq, hidden]` token states and the `[batch, seq]` attention mask to `[batch, hidden]`."""

    def __init__(self, mode: str, normalize: bool) -> None:
        super().__init__()
        if mode not in POOLING_CHOICES:
            raise ValueError(f"pooling {mode!r} is not one of {', '.join(POOLING_CHOICES)}")
        self.mode = mode
        self.normalize = normalize

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        if self.mode == "cls":
            pooled = hidden[:, 0]
        elif self.mode == "max":
            padding = attention_mask.unsqueeze(-1) == 0
            pooled = hidden.masked_fill(padding, torch.finfo(hidden.dtype).min).max(dim=1).values
        else:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2.0, dim=-1)
        return pooled

    def describe(self) -> str:
        return f"{self.mode}{', L2-normalized' if self.normalize else ''}"
