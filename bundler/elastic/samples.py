"""Samples for a package: its `.pt` run on sample texts tokenized as the cluster will (the metadata's tokenization
and the package's vocabulary), answers recorded for the smoke test after deployment.

The cluster tokenizes with its own reimplementation of each tokenizer from the vocabulary document alone. For
`bert` a WordPiece tokenizer built from that vocabulary list with the same options is the same tokenizer; the other
families need more than the vocabulary list holds (SentencePiece normalisation), so their packages are carried
without samples, and the export says so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REBUILT = ("bert",)
DEFAULT_MAX_LENGTH = 512  # Tokenization.DEFAULT_MAX_SEQUENCE_LENGTH


def tokenization_of(metadata: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    ((_, options),) = metadata["inference_config"].items()
    ((kind, settings),) = options["tokenization"].items()
    return kind, settings


def why_no_samples(metadata: Mapping[str, Any]) -> str | None:
    kind, _ = tokenization_of(metadata)
    if kind not in REBUILT:
        return (f"no samples recorded: esbundle rebuilds the cluster's tokenizer from a package vocabulary for "
                f"{', '.join(REBUILT)} only, not {kind}; load cannot prove the deployed model's answers")
    return None


def package_samples(definition: Path, metadata: Mapping[str, Any], vocabulary: Sequence[str]) -> list[dict[str, Any]]:
    """The `.pt` (loaded with torch) answering the sample texts as the cluster will feed them."""
    import torch
    import transformers

    from bundler.export.samples import build_samples
    from bundler.export.tokenization import INPUTS_BY_FAMILY

    kind, settings = tokenization_of(metadata)
    ((task, options),) = metadata["inference_config"].items()
    lower_case = bool(settings.get("do_lower_case", False))
    max_length = int(settings.get("max_sequence_length", DEFAULT_MAX_LENGTH))
    # Elasticsearch's BertTokenizer: WordPiece over this vocabulary, its special tokens by their usual names,
    # accents stripped exactly when lower-casing (as Hugging Face's BERT normaliser does by default).
    tokenizer = transformers.BertTokenizer(vocab={token: i for i, token in enumerate(vocabulary)},
                                           do_lower_case=lower_case, model_max_length=max_length)
    traced = torch.jit.load(str(definition), map_location="cpu")
    traced.eval()
    return build_samples(traced=traced, tokenizer=tokenizer, inputs=INPUTS_BY_FAMILY[kind], task=task,
                         max_length=max_length, labels=list(options.get("classification_labels") or []),
                         quantized=False, family=kind, vocabulary=list(vocabulary), lower_case=lower_case)
