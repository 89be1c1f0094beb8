"""Sample texts and the answers the cluster should give for them, recorded in the signed manifest so the offline
side can prove, after deployment, that the cluster answers like the model that was checked here.

Expected answers come from the saved archive itself (reloaded), fed as the cluster feeds it: that is exactly
what the cluster runs, and the trace check has already tied it to the original model. A quantized model's
samples are therefore its own quantized answers.

Input shapes per task (what the loader passes to `_infer`):
- every task: `{"text": document}`;
- text_similarity: `text_pair` is the query (`inference_config.text_similarity.text`); the model sees (query, text);
- question_answering: `text_pair` is the question; the model sees (question, text);
- zero_shot_classification: `labels` are the candidate labels; the model sees (text, hypothesis of labels[0]).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bundler.export.check import row_of
from bundler.export.cluster_inputs import encode
from bundler.export.es_config import ZERO_SHOT_TEMPLATE

TEXTS = (
    "The weather in Paris is sunny today.",
    "Search engines index millions of documents.",
    "My cat sleeps on the warm laptop keyboard.",
)
# Elasticsearch's fill_mask refuses input without exactly one mask token: {mask} is replaced by the model's.
FILL_MASK_TEXTS = (
    "The weather in Paris is {mask} today.",
    "Search engines index millions of {mask}.",
    "My {mask} sleeps on the warm laptop keyboard.",
)
QUESTION = "What does the search engine index?"
# bert_ja: Elasticsearch splits words with Kuromoji, which keeps whitespace as words of their own (unknown to the
# vocabulary) and decompounds long words; the model's own tokenizer (MeCab) drops whitespace and keeps long words.
# Japanese samples without whitespace or long words are split alike by both.
JAPANESE_TEXTS = ("今日は良い天気です。", "猫が寝ている。", "東京タワーは高い。")
JAPANESE_FILL_MASK_TEXTS = ("今日は{mask}天気です。", "猫が{mask}ている。", "東京タワーは{mask}。")
JAPANESE_QUESTION = "東京タワーはどこですか。"
ZERO_SHOT_LABELS = ("weather", "technology")
PREFIX = 8  # floats of each vector kept: enough to recognise an answer, small enough for the manifest


def _atol(quantized: bool) -> float:
    # The cluster's tokenizer and libtorch (other thread counts, other kernels) are not bit-identical to ours.
    return 1e-2 if quantized else 1e-3


def sample_inputs(task: str, mask_token: str | None, family: str = "bert") -> list[dict[str, Any]]:
    japanese = family == "bert_ja"
    texts = list(JAPANESE_TEXTS if japanese else TEXTS)
    if task == "fill_mask" and mask_token:
        texts = [t.format(mask=mask_token) for t in (JAPANESE_FILL_MASK_TEXTS if japanese else FILL_MASK_TEXTS)]
    if task in ("text_similarity", "question_answering"):
        return [{"text": t, "text_pair": JAPANESE_QUESTION if japanese else QUESTION} for t in texts]
    if task == "zero_shot_classification":
        return [{"text": t, "labels": list(ZERO_SHOT_LABELS)} for t in texts]
    return [{"text": t} for t in texts]


def _model_pair(task: str, sample: dict[str, Any]) -> tuple[str, str | None]:
    if task in ("text_similarity", "question_answering"):
        return sample["text_pair"], sample["text"]
    if task == "zero_shot_classification":
        return sample["text"], ZERO_SHOT_TEMPLATE.format(sample["labels"][0])
    return sample["text"], None


def _floats(values: torch.Tensor) -> list[float]:
    return [float(f"{v:.6g}") for v in values.flatten()[:PREFIX].tolist()]


def build_samples(*, traced: Any, tokenizer: Any, inputs: Sequence[str], task: str, max_length: int,
                  labels: Sequence[str], quantized: bool, family: str = "bert") -> list[dict[str, Any]]:
    samples = []
    for sample in sample_inputs(task, getattr(tokenizer, "mask_token", None), family):
        first, second = _model_pair(task, sample)
        batch = encode(tokenizer, inputs, [first], [second] if second is not None else None,
                       max_length=max_length, task=task)
        with torch.no_grad():
            output = row_of(traced(*batch.args), task, 0, batch.lengths[0]).float()
        samples.append({"input": sample, "expected": _expected(task, output, labels, quantized)})
    return samples


def _expected(task: str, output: torch.Tensor, labels: Sequence[str], quantized: bool) -> dict[str, Any]:
    atol = _atol(quantized)
    if task == "text_embedding":
        return {"dimensions": int(output.shape[-1]), "prefix": _floats(output),
                "norm": float(f"{float(output.norm()):.6g}"), "atol": atol}
    if task == "text_classification":
        probabilities = torch.softmax(output, dim=-1)
        ranked = sorted(zip(labels, probabilities.tolist(), strict=True), key=lambda kv: -kv[1])
        return {"predicted_value": ranked[0][0],
                "top_classes": [{"class_name": name, "class_score": float(f"{score:.6g}")} for name, score in ranked],
                "atol": atol}
    if task == "text_similarity":
        # Elasticsearch answers a similarity with the model's score (the first logit), not a label.
        return {"predicted_value": float(f"{float(output.flatten()[0]):.6g}"), "atol": atol}
    return {"output_prefix": _floats(output), "shape": list(output.shape), "atol": atol}
