"""The accent record: what the cluster's tokenizer and the model's own do with accents, and, where they differ,
how far the cluster's answers (the traced module fed the cluster's tokens) are from the model's own on accented
texts. Like the check, in two halves: the original's side before tracing, the archive's after."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from bundler.export.accents import ACCENTED_TEXTS, EXAMPLE, AccentRule
from bundler.export.check import STRICT, Case, measure, paired, reference_outputs, traced_outputs
from bundler.export.wrappers import LoadedModel


def _tokens(tokenizer: Any, text: str) -> list[str]:
    return list(tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"]))


@dataclass(frozen=True)
class AccentExpected:
    """The original's side of the accent record: each tokenizer's view of the example, and where they differ the
    model's own answers (its own tokenizer) to the accented texts."""

    rule: AccentRule
    example: dict[str, Any]
    cases: tuple[Case, ...] = ()
    own: tuple[Tensor, ...] = ()


def expected_answers(rule: AccentRule, *, loaded: LoadedModel, own_tokenizer: Any, tokenizer: Any, task: str,
                     max_length: int) -> AccentExpected:
    example = {"text": EXAMPLE, "cluster_tokens": _tokens(tokenizer, EXAMPLE),
               "model_tokens": _tokens(own_tokenizer, EXAMPLE)}
    if not rule.differs:
        return AccentExpected(rule, example)
    cases = paired(task, [Case(f"accented {i + 1}", text) for i, text in enumerate(ACCENTED_TEXTS)])
    own = reference_outputs(loaded, own_tokenizer, task, cases, max_length)
    return AccentExpected(rule, example, tuple(cases), tuple(own))


def judge(expected: AccentExpected, *, traced: Any, tokenizer: Any, inputs: Sequence[str], task: str,
          max_length: int) -> dict[str, Any]:
    """What each side does with accents, how both tokenize the example, and, where they differ, how far the
    cluster's answers (the traced module fed the cluster's tokens) are from the model's own (its own tokenizer)
    on accented texts. Token outputs of other lengths are counted, not compared."""
    record: dict[str, Any] = {**expected.rule.record(), "example": expected.example}
    if not expected.rule.differs:
        return record
    cluster, _ = traced_outputs(traced, tokenizer, inputs, task, expected.cases, max_length, batched=False)
    measured = [measure(task, ref, got, STRICT) for ref, got in zip(expected.own, cluster, strict=True)
                if ref.shape == got.shape]
    record["difference"] = {
        "texts": len(expected.cases), "other_token_count": len(expected.cases) - len(measured),
        "worst_cosine": round(min((m.cosine for m in measured), default=1.0), 8),
        "max_abs_diff": float(f"{max((m.max_abs_diff for m in measured), default=0.0):.3e}"),
        "argmax_mismatches": sum(m.argmax_mismatches for m in measured)}
    return record
