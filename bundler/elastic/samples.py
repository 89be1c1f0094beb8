"""Samples for a package: its `.pt` run on sample texts tokenized as the cluster will (the metadata's tokenization
and the package's vocabulary), answers recorded for the smoke test after deployment.

The cluster tokenizes with its own reimplementation of each tokenizer from the vocabulary document alone. For
`bert` a WordPiece tokenizer built from that vocabulary list with the same options is the same tokenizer. For the
SentencePiece families (`xlm_roberta`, `deberta_v2`) the cluster runs a Unigram model over the document's pieces and
scores after its own fixed SentencePiece normaliser; Hugging Face's tokenizer of the family built from the same
pieces and scores splits the sample texts (plain ASCII, which that normaliser leaves as they are) alike. Other
families are carried without samples, and the export says so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REBUILT = ("bert", "xlm_roberta", "deberta_v2")
_UNIGRAM_TOKENIZERS = {"xlm_roberta": "XLMRobertaTokenizer", "deberta_v2": "DebertaV2Tokenizer"}
DEFAULT_MAX_LENGTH = 512  # Tokenization.DEFAULT_MAX_SEQUENCE_LENGTH


def tokenization_of(metadata: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    ((_, options),) = metadata["inference_config"].items()
    ((kind, settings),) = options["tokenization"].items()
    return kind, settings


def why_no_samples(metadata: Mapping[str, Any], vocabulary: Mapping[str, Any]) -> str | None:
    kind, _ = tokenization_of(metadata)
    if kind not in REBUILT:
        return (f"no samples recorded: esbundle rebuilds the cluster's tokenizer from a package vocabulary for "
                f"{', '.join(REBUILT)} only, not {kind}; load cannot prove the deployed model's answers")
    if kind in _UNIGRAM_TOKENIZERS and len(vocabulary.get("scores") or []) != len(vocabulary.get("vocabulary") or []):
        return f"no samples recorded: a {kind} vocabulary needs a score for every piece, and this one has not"
    return None


def cluster_tokenizer(kind: str, vocabulary: Mapping[str, Any], lower_case: bool, max_length: int) -> Any:
    """A Hugging Face tokenizer that splits as the cluster's tokenizer of `kind` does over this vocabulary document."""
    import transformers

    tokens: Sequence[str] = vocabulary["vocabulary"]
    if kind == "bert":
        # Elasticsearch's BertTokenizer: WordPiece over this vocabulary, its special tokens by their usual names,
        # accents stripped exactly when lower-casing (as Hugging Face's BERT normaliser does by default).
        return transformers.BertTokenizer(vocab={token: i for i, token in enumerate(tokens)},
                                          do_lower_case=lower_case, model_max_length=max_length)
    pieces = list(zip(tokens, vocabulary["scores"], strict=True))
    return getattr(transformers, _UNIGRAM_TOKENIZERS[kind])(vocab=pieces, model_max_length=max_length)


def package_samples(definition: Path, metadata: Mapping[str, Any],
                    vocabulary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `.pt` (loaded with torch) answering the sample texts as the cluster will feed them."""
    import torch

    from bundler.export.samples import build_samples
    from bundler.export.tokenization import INPUTS_BY_FAMILY

    kind, settings = tokenization_of(metadata)
    ((task, options),) = metadata["inference_config"].items()
    lower_case = bool(settings.get("do_lower_case", False))
    max_length = int(settings.get("max_sequence_length", DEFAULT_MAX_LENGTH))
    tokenizer = cluster_tokenizer(kind, vocabulary, lower_case, max_length)
    traced = torch.jit.load(str(definition), map_location="cpu")
    traced.eval()
    return build_samples(traced=traced, tokenizer=tokenizer, inputs=INPUTS_BY_FAMILY[kind], task=task,
                         max_length=max_length, labels=list(options.get("classification_labels") or []),
                         quantized=False, family=kind, vocabulary=list(vocabulary["vocabulary"]),
                         lower_case=lower_case)
