"""Model inputs built the way the cluster builds them: the family's positional tensors, padded per batch.

Elasticsearch tokenizes each document, pads a batch to its longest member with the pad id and a zero attention
mask, uses token type 0 for the first sequence and 1 for the second, and position ids 0..n-1 in every row.
The tokenizer here is the model's own (Hugging Face) tokenizer, which Elasticsearch's tokenizer reimplements.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# How a pair is cut when it is too long, matching the config's `truncate` per task (ES: first, second, none).
PAIR_TRUNCATION = {
    "text_similarity": "only_second",
    "question_answering": "only_second",
    "zero_shot_classification": "only_first",
}


@dataclass
class Batch:
    args: tuple[Tensor, ...]  # positional, in the order the family's forward takes them
    named: dict[str, Tensor]  # what the Hugging Face tokenizer returned (the reference model's inputs)
    lengths: list[int]  # real (unpadded) tokens per row


def encode(tokenizer: Any, inputs: Sequence[str], texts: Sequence[str], pairs: Sequence[str] | None, *,
           max_length: int, task: str) -> Batch:
    """Tokenize `texts` (with `pairs` as second sequences) into the positional inputs named by `inputs`."""
    truncation: bool | str = PAIR_TRUNCATION.get(task, True) if pairs is not None else True
    encoded = tokenizer(list(texts), list(pairs) if pairs is not None else None, padding=True,
                        truncation=truncation, max_length=max_length, return_tensors="pt",
                        return_token_type_ids=True)
    input_ids = encoded["input_ids"]
    mask = encoded["attention_mask"]
    columns = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": encoded.get("token_type_ids", torch.zeros_like(input_ids)),
        "position_ids": torch.arange(input_ids.shape[1], dtype=torch.long).expand_as(input_ids).contiguous(),
    }
    named = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return Batch(args=tuple(columns[name].to(torch.long) for name in inputs), named=named,
                 lengths=[int(n) for n in mask.sum(dim=1)])


class LowercasingTokenizer:
    """The model's tokenizer behind sentence-transformers' `do_lower_case`: text is lowercased before it is
    tokenized, as sentence-transformers does and as the cluster will (the config says do_lower_case)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def __call__(self, text: Any, text_pair: Any = None, **kwargs: Any) -> Any:
        specials = [t for t in self._tokenizer.all_special_tokens if t.lower() != t]

        def lower_one(value: str) -> str:
            value = value.lower()
            for token in specials:  # special tokens are matched before normalisation, by the cluster too
                value = value.replace(token.lower(), token)
            return value

        def lower(value: Any) -> Any:
            if isinstance(value, str):
                return lower_one(value)
            return [lower_one(v) for v in value] if value is not None else None

        return self._tokenizer(lower(text), lower(text_pair), **kwargs)
