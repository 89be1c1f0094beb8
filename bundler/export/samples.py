"""Sample texts and the answers the cluster should give for them, recorded in the signed manifest so the offline
side can prove, after deployment, that the cluster answers like the model that was checked here.

Expected answers come from the saved archive itself (reloaded), fed as the cluster feeds it: that is exactly
what the cluster runs, and the trace check has already tied it to the original model. Its raw output is turned
into the answer the way Elasticsearch's result processors do (answers.py): labels and scores, entities, answer
text and offsets, tokens, expansions. A quantized model's samples are therefore its own quantized answers.

Input shapes per task (what the loader passes to `_infer`):
- every task: `{"text": document}`;
- text_similarity: `text_pair` is the query (`inference_config.text_similarity.text`); the model sees (query, text);
- question_answering: `text_pair` is the question; the model sees (question, text);
- zero_shot_classification: `labels` are the candidate labels; the model sees (text, hypothesis) once per label.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bundler.export import answers, sparse
from bundler.export.check import row_of
from bundler.export.cluster_inputs import PAIR_TRUNCATION, encode
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


def _rounded(value: Any) -> Any:
    """Six significant digits everywhere in an answer: the manifest stays small and readable."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


@dataclass(frozen=True)
class Runner:
    """The saved archive fed as the cluster feeds it, with what the answers need besides its output."""

    traced: Any
    tokenizer: Any
    inputs: Sequence[str]
    task: str
    max_length: int
    labels: Sequence[str]  # the config's classification_labels
    vocabulary: Sequence[str]
    family: str = "bert"
    lower_case: bool = False  # the config's do_lower_case

    def rows(self, firsts: Sequence[str], seconds: Sequence[str] | None) -> list[torch.Tensor]:
        batch = encode(self.tokenizer, self.inputs, firsts, seconds, max_length=self.max_length, task=self.task,
                       es_padding=True)
        with torch.no_grad():
            output = self.traced(*batch.args)
        return [row_of(output, self.task, i, n).float() for i, n in enumerate(batch.lengths)]

    def words(self, first: str, second: str | None) -> answers.Words | None:
        """Word of each token and span of each word, from a fast tokenizer's offsets (None without one)."""
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        truncation: bool | str = PAIR_TRUNCATION.get(self.task, True) if second is not None else True
        encoded = self.tokenizer(first, second, truncation=truncation, max_length=self.max_length,
                                 return_offsets_mapping=True)
        wanted = 1 if second is not None else 0
        sequences, word_ids = encoded.sequence_ids(), encoded.word_ids()
        word_of_token = [w if s == wanted else None for s, w in zip(sequences, word_ids, strict=True)]
        spans: dict[int, tuple[int, int]] = {}
        for word, (start, end) in zip(word_of_token, encoded["offset_mapping"], strict=True):
            if word is not None:
                old = spans.get(word, (start, end))
                spans[word] = (min(old[0], start), max(old[1], end))
        second_start = sequences.index(1) if wanted else 0
        return answers.Words(word_of_token, spans, second_start, len(word_ids))


def build_samples(*, traced: Any, tokenizer: Any, inputs: Sequence[str], task: str, max_length: int,
                  labels: Sequence[str], quantized: bool, family: str = "bert",
                  vocabulary: Sequence[str] = (), lower_case: bool = False) -> list[dict[str, Any]]:
    runner = Runner(traced, tokenizer, inputs, task, max_length, labels, vocabulary, family, lower_case)
    samples = []
    for sample in sample_inputs(task, getattr(tokenizer, "mask_token", None), family):
        expected = _rounded(_expected(runner, sample))
        samples.append({"input": sample, "expected": {**expected, "atol": _atol(quantized)}})
    return samples


def _expected(runner: Runner, sample: dict[str, Any]) -> dict[str, Any]:
    task, text = runner.task, sample["text"]
    if task == "zero_shot_classification":
        hypotheses = [ZERO_SHOT_TEMPLATE.format(label) for label in sample["labels"]]
        rows = runner.rows([text] * len(hypotheses), hypotheses)
        return answers.zero_shot([r.tolist() for r in rows], sample["labels"], runner.labels)
    first, second = _model_pair(task, sample)
    (output,) = runner.rows([first], [second] if second is not None else None)
    if task == "text_embedding":
        return {"dimensions": int(output.shape[-1]), "prefix": _floats(output), "norm": float(output.norm())}
    if task == "text_classification":
        return answers.classification(output.tolist(), runner.labels)
    if task == "text_similarity":
        # Elasticsearch answers a similarity with the model's score (the first logit), not a label.
        return {"predicted_value": float(output.flatten()[0])}
    if task == "text_expansion":
        return sparse.expansion_expectation(output, runner.vocabulary)
    return _token_level(runner, sample, output, first, second)


def _token_level(runner: Runner, sample: dict[str, Any], output: torch.Tensor, first: str,
                 second: str | None) -> dict[str, Any]:
    task, text = runner.task, sample["text"]
    raw = {"output_prefix": _floats(output), "shape": list(output.shape)}
    if task == "fill_mask":
        mask = runner.tokenizer.mask_token
        ids = runner.tokenizer(first, truncation=True, max_length=runner.max_length)["input_ids"]
        position = ids.index(runner.tokenizer.convert_tokens_to_ids(mask))
        return answers.fill_mask(output[position].tolist(), runner.vocabulary, text, mask, runner.family)
    if task not in ("ner", "question_answering"):
        return raw
    words = runner.words(first, second)
    if words is None:  # a slow tokenizer gives no offsets: the smoke test then checks only that it answers
        return {"shape": raw["shape"]}
    if task == "ner":
        return answers.ner(output.tolist(), words, text, runner.labels, runner.lower_case)
    return answers.question_answering(output[0].tolist(), output[1].tolist(), words, text)
