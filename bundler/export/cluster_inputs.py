"""Model inputs built the way the cluster builds them: the family's positional tensors, padded per batch.

Elasticsearch (TokenizationResult.writePaddedTokens, writeAttentionMask, writeTokenTypeIds, writePositionIds)
pads the rows of one request to the longest with the pad id, sends an attention mask of 1 for every real token,
token type 0 everywhere (the second sequence of a pair too) and position ids 0..n-1 in every row. Its attention
mask pads with the pad id as well: 0 for BERT-like vocabularies, but 1 for RoBERTa/BART, where padded positions
are then attended. One request holds one document (pytorch_inference stopped batching in 8.9); only zero-shot
(one row per label) and windowed question answering pad. `es_padding` reproduces that for the samples; the trace
check pads with a zero mask, which tests the module rather than the cluster's padding.
The tokenizer here is the model's own (Hugging Face) tokenizer, which Elasticsearch's tokenizer reimplements, fed
the text as the cluster's normaliser leaves it where the model's own normaliser differs (ClusterTextTokenizer).
"""
from __future__ import annotations

import unicodedata
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
           max_length: int, task: str, es_padding: bool = False) -> Batch:
    """Tokenize `texts` (with `pairs` as second sequences) into the positional inputs named by `inputs`."""
    truncation: bool | str = PAIR_TRUNCATION.get(task, True) if pairs is not None else True
    encoded = tokenizer(list(texts), list(pairs) if pairs is not None else None, padding=True,
                        truncation=truncation, max_length=max_length, return_tensors="pt",
                        return_token_type_ids=True)
    input_ids = encoded["input_ids"]
    mask = encoded["attention_mask"]
    sent_mask = mask
    if es_padding:
        sent_mask = torch.where(mask.bool(), mask, torch.full_like(mask, int(tokenizer.pad_token_id or 0)))
    columns = {
        "input_ids": input_ids,
        "attention_mask": sent_mask,
        "token_type_ids": torch.zeros_like(input_ids),
        "position_ids": torch.arange(input_ids.shape[1], dtype=torch.long).expand_as(input_ids).contiguous(),
    }
    named = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return Batch(args=tuple(columns[name].to(torch.long) for name in inputs), named=named,
                 lengths=[int(n) for n in mask.sum(dim=1)])


def strip_accents(text: str) -> str:
    """Accents removed as Elasticsearch's StripAccentTokenFilter (and Hugging Face's BertNormalizer) removes them:
    canonical decomposition (NFD), then every non-spacing mark dropped."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


class ClusterTextTokenizer:
    """The model's tokenizer fed the text as the cluster's normaliser leaves it where the model's own does not:
    lowercased (sentence-transformers' `do_lower_case`, which the config passes on as do_lower_case), and with
    accents stripped (Elasticsearch's bert, bert_ja and mpnet tokenizers strip them whenever do_lower_case is on,
    and the model's tokenizer may not)."""

    def __init__(self, tokenizer: Any, *, lowercase: bool = False, strip: bool = False) -> None:
        self._tokenizer = tokenizer
        self.lowercase = lowercase
        self.strip = strip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def text(self, value: str) -> str:
        """One text as the model's own tokenizer must see it to answer like the cluster."""
        if self.lowercase:
            specials = [t for t in self._tokenizer.all_special_tokens if t.lower() != t]
            value = value.lower()
            for token in specials:  # special tokens are matched before normalisation, by the cluster too
                value = value.replace(token.lower(), token)
        return strip_accents(value) if self.strip else value

    def __call__(self, text: Any, text_pair: Any = None, **kwargs: Any) -> Any:
        def normalised(value: Any) -> Any:
            if isinstance(value, str):
                return self.text(value)
            return [self.text(v) for v in value] if value is not None else None

        return self._tokenizer(normalised(text), normalised(text_pair), **kwargs)


class LowercasingTokenizer(ClusterTextTokenizer):
    """The model's tokenizer behind sentence-transformers' `do_lower_case`: text is lowercased before it is
    tokenized, as sentence-transformers does (the model's own view of the text, accents kept)."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer, lowercase=True)


def cluster_text(tokenizer: Any, text: str) -> str:
    """The text a reference that tokenizes by itself (sentence-transformers' encode) must be given so that it
    tokenizes as `tokenizer` does (the text unchanged for a plain tokenizer)."""
    return tokenizer.text(text) if isinstance(tokenizer, ClusterTextTokenizer) else text
