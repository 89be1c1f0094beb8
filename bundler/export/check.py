"""The proof that the traced module answers like the original model: both run side by side on texts that were
not the tracing input (short, ordinary, past the max length, non-ASCII, pairs for pair tasks), every text one at a
time and the texts below the max length as one padded batch, and the export is refused when they differ beyond
the task's tolerance.

The reference is the original: `SentenceTransformer.encode` for sentence-transformers models,
`SparseEncoder.encode` (dense, every weight kept) for sparse encoders, the transformers model's own forward (with
its own tokenizer's inputs) otherwise; for a plain masked-LM's text_expansion, its logits pooled as SPLADE does
(`sparse.reference_weights`, with torch's own log1p); for a plain encoder's text_embedding, its last hidden state
pooled here row by row (`reference_pooled`). The traced side is the saved archive reloaded, fed the positional
inputs the cluster passes. Both are fed the text as the cluster's tokenizer leaves it (accents stripped where the
model's own tokenizer keeps them); `accent_check` measures, on accented texts, how far that is from the model's
own answers.

The original answers first (`expected_answers`), before tracing; the saved archive is judged
afterwards (`judge`), once the original is freed, so the export never holds both copies. What
the check costs grows with what it proves: one full-length input on each side (the long case, on its own: its run
on the traced side is also where one request's memory is measured), the batch from the short texts only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from bundler.export import sparse
from bundler.export.cluster_inputs import PAIR_TRUNCATION, cluster_text, encode
from bundler.export.tasks import PoolingSettings
from bundler.export.wrappers import LoadedModel, pick_output
from loader.errors import ModelError

# Outputs with one row per token (compared on the real tokens only: padding rows are undefined). text_expansion
# answers one row per text, [batch, vocab], pooled over the real tokens inside the module.
TOKEN_LEVEL = {"fill_mask", "ner", "pass_through"}
ARGMAX_TASKS = {"text_classification", "zero_shot_classification", "ner", "fill_mask"}


@dataclass(frozen=True)
class Tolerance:
    min_cosine: float  # every output, flattened, against the reference
    atol: float | None  # element-wise |traced - reference| <= atol + rtol * |reference| (None: not checked)
    rtol: float
    argmax_margin: float  # argmax may differ only where the reference's top two are closer than this (x peak)

    def describe(self) -> dict[str, Any]:
        return {"min_cosine": self.min_cosine, "atol": self.atol, "rtol": self.rtol,
                "argmax_tie_margin": self.argmax_margin}


STRICT = Tolerance(min_cosine=0.9999, atol=1e-4, rtol=1e-4, argmax_margin=1e-5)
# int8 weights move every value: element-wise bounds make no sense against the original, so only the direction
# of each output and the decisions (argmax, unless the original itself nearly ties) are compared. The floor is
# low because dynamic quantisation really costs that much on small models (all-MiniLM-L6-v2: cosine 0.87-0.97);
# the trace itself is still held to STRICT against the quantized module before tracing.
QUANTIZED = Tolerance(min_cosine=0.8, atol=None, rtol=0.0, argmax_margin=0.1)


@dataclass(frozen=True)
class Case:
    label: str
    first: str
    second: str | None = None


FILLER = "The quick brown fox jumps over the lazy dog near the river bank. "
NON_ASCII = "Größenwahn im Café: naïve façade — 東京タワーは高い。Привет, мир! ½ ≠ 0.5 😀"
LONG = "past max length"


def cases_for(task: str, tokenizer: Any, max_length: int) -> list[Case]:
    """Texts of several lengths, one past the max length (so truncation is exercised), one non-ASCII; for pair
    tasks every case is a pair, with the long text where the cluster truncates (the `truncate` option)."""
    long_text = FILLER
    while len(tokenizer(long_text, add_special_tokens=False)["input_ids"]) <= max_length + 8:
        long_text += FILLER
    mask = str(getattr(tokenizer, "mask_token", "") or "")
    medium = "Elasticsearch stores documents and answers search queries in near real time."
    if task == "fill_mask" and mask:
        medium = f"Elasticsearch stores {mask} and answers search queries in near real time."
    singles = [Case("short", "Hello."), Case("medium", medium), Case(LONG, long_text),
               Case("non-ASCII", NON_ASCII)]
    return paired(task, singles)


def batch_of(cases: Sequence[Case]) -> list[int]:
    """Which cases also run as one padded batch: those below the max length, three rows of different lengths.
    What a batch proves (rows independent of each other, padding ignored, no batch size baked in) needs no
    full-length row, whose cost would be paid once per row of the batch; the long case runs on its own."""
    rows = [i for i, c in enumerate(cases) if c.label != LONG]
    return rows if len(rows) >= 2 else list(range(len(cases)))


def paired(task: str, singles: list[Case]) -> list[Case]:
    """Single texts as the task's cluster input: for pair tasks each made a pair, the text where the cluster
    truncates."""
    if task not in PAIR_TRUNCATION:
        return singles
    other = {"question_answering": "Where does the fox jump?", "text_similarity": "Where does the fox jump?",
             "zero_shot_classification": "This example is about animals."}[task]
    # ES sends (question, context) and (query, document) truncating the second; (premise, hypothesis) the first.
    if PAIR_TRUNCATION[task] == "only_second":
        return [Case(c.label, other, c.first) for c in singles]
    return [Case(c.label, c.first, other) for c in singles]


def row_of(output: Tensor, task: str, row: int, length: int | None) -> Tensor:
    """One input's answer out of a batch output (QA is [2, batch, seq]); token outputs cut to real tokens."""
    if task == "question_answering":
        value = output[:, row]
        return value[:, :length] if length is not None else value
    value = output[row]
    return value[:length] if (length is not None and task in TOKEN_LEVEL) else value


def reference_outputs(loaded: LoadedModel, tokenizer: Any, task: str, cases: Sequence[Case],
                      max_length: int) -> list[Tensor]:
    """The original's answers, one input at a time (nothing padded: a short text never pays for a long one). A
    sentence-transformers model tokenizes by itself: it is given each text as `tokenizer` normalises it (accents
    stripped where the cluster strips them), so both sides see the same tokens."""
    with torch.no_grad():
        texts = [cluster_text(tokenizer, c.first) for c in cases]
        if loaded.output == "sparse_encoder":
            # Dense, and every weight above 0 kept (max_active_dims=None, the encoder's own cleared at load):
            # the cluster keeps them all.
            weights = loaded.original.encode(texts, prompt="", max_active_dims=None, convert_to_tensor=True,
                                             convert_to_sparse_tensor=False, show_progress_bar=False, batch_size=1)
            return [w.detach().cpu().float() for w in weights]
        if loaded.sentence_transformer:
            # prompt="": no default prompt; the cluster adds its own prefix_strings, outside the model.
            embeddings = loaded.original.encode(texts, prompt="", convert_to_tensor=True, show_progress_bar=False,
                                                batch_size=1)
            return [e.detach().cpu().float() for e in embeddings]
        return [_transformers_reference(loaded, tokenizer, task, case, max_length) for case in cases]


def _transformers_reference(loaded: LoadedModel, tokenizer: Any, task: str, case: Case, max_length: int) -> Tensor:
    """The transformers model's own forward on one unpadded input, its output pooled here where the module pools."""
    truncation: bool | str = PAIR_TRUNCATION.get(task, True) if case.second is not None else True
    named = tokenizer(case.first, case.second, truncation=truncation, max_length=max_length, return_tensors="pt")
    kwargs = {k: v for k, v in named.items() if k in loaded.wrapper.core.accepted}
    if "token_type_ids" in kwargs:  # the cluster sends type 0 for both sequences (cluster_inputs.py)
        kwargs["token_type_ids"] = torch.zeros_like(kwargs["token_type_ids"])
    output = pick_output(loaded.original(**kwargs, return_dict=True), loaded.output)
    if task == "text_expansion":
        pooling = loaded.wrapper.core.pooling
        output = sparse.reference_weights(output, named["attention_mask"], pooling.pooling_strategy,
                                          pooling.activation_function)
    if loaded.embedding_pooling is not None:
        output = reference_pooled(output, named["attention_mask"], loaded.embedding_pooling)
    return row_of(output, task, 0, None).float()


def reference_pooled(hidden: Tensor, attention_mask: Tensor, pooling: PoolingSettings) -> Tensor:
    """The pooling written out row by row over the real tokens only (not the traced module's masked arithmetic):
    their mean, the first, or the element-wise maximum; then divided by the L2 norm if asked."""
    rows = []
    for states, mask in zip(hidden, attention_mask, strict=True):
        real = states[mask.bool()]
        if pooling.mode == "cls":
            rows.append(real[0])
        elif pooling.mode == "max":
            rows.append(real.max(dim=0).values)
        else:
            rows.append(real.mean(dim=0))
    pooled = torch.stack(rows)
    return pooled / pooled.norm(dim=-1, keepdim=True) if pooling.normalize else pooled


@dataclass(frozen=True)
class Expected:
    """The original's answers to the check's cases, taken before tracing so that the original can be freed before
    the saved archive is loaded: the export never holds both (and, with --quantize, the quantized module's own)."""

    task: str
    max_length: int
    cases: tuple[Case, ...]
    batch: tuple[int, ...]  # the cases also run as one padded batch (batch_of)
    original: tuple[Tensor, ...]  # one per case
    reference: str  # what answered (for the record)
    token_types: dict[str, Any] | None = None
    quantized: dict[str, tuple[Tensor, ...]] | None = None  # the quantized module's answers per mode

    def mode_cases(self, mode: str) -> list[Case]:
        return list(self.cases) if mode == "single" else [self.cases[i] for i in self.batch]

    def original_for(self, mode: str) -> list[Tensor]:
        return list(self.original) if mode == "single" else [self.original[i] for i in self.batch]


MODES = ("single", "padded batch")


def expected_answers(loaded: LoadedModel, tokenizer: Any, task: str, max_length: int) -> Expected:
    """Everything the check needs from the original model."""
    cases = cases_for(task, tokenizer, max_length)
    batch = batch_of(cases)
    return Expected(task=task, max_length=max_length, cases=tuple(cases), batch=tuple(batch),
                    original=tuple(reference_outputs(loaded, tokenizer, task, cases, max_length)),
                    reference=_reference_name(loaded, task),
                    token_types=token_type_effect(loaded, tokenizer, task, [cases[i] for i in batch], max_length))


def with_quantized(expected: Expected, quantized_module: Any, tokenizer: Any, inputs: Sequence[str]) -> Expected:
    """Add the quantized module's own answers in both modes: dynamic quantisation scales activations per tensor,
    so a padded batch answers slightly differently from its rows alone (in the cluster too)."""
    answers = {mode: tuple(traced_outputs(quantized_module, tokenizer, inputs, expected.task,
                                          expected.mode_cases(mode), expected.max_length,
                                          batched=mode != "single")[0]) for mode in MODES}
    return replace(expected, quantized=answers)


def traced_outputs(traced: Any, tokenizer: Any, inputs: Sequence[str], task: str, cases: Sequence[Case],
                   max_length: int, *, batched: bool, measured: int | None = None,
                   allocation: list[int] | None = None) -> tuple[list[Tensor], list[int]]:
    """Outputs of the traced module, one case at a time or all in one padded batch; and the token counts. The
    single run of case `measured` is also measured (trace.measuring_allocation), into `allocation`."""
    from bundler.export.trace import measuring_allocation

    firsts, seconds = [c.first for c in cases], [c.second for c in cases]
    pairs = seconds if seconds[0] is not None else None
    with torch.no_grad():
        if batched:
            batch = encode(tokenizer, inputs, firsts, pairs, max_length=max_length, task=task)
            out = traced(*batch.args)
            return [row_of(out, task, i, n) for i, n in enumerate(batch.lengths)], batch.lengths
        results, lengths = [], []
        for i in range(len(cases)):
            batch = encode(tokenizer, inputs, [firsts[i]], [pairs[i]] if pairs else None, max_length=max_length,
                           task=task)
            if i == measured and allocation is not None:
                with measuring_allocation(allocation):
                    out = traced(*batch.args)
            else:
                out = traced(*batch.args)
            results.append(row_of(out, task, 0, batch.lengths[0]))
            lengths.append(batch.lengths[0])
        return results, lengths


@dataclass
class Measure:
    cosine: float
    max_abs_diff: float
    within_bounds: bool
    argmax_mismatches: int


def measure(task: str, reference: Tensor, traced: Tensor, tolerance: Tolerance) -> Measure:
    if reference.shape != traced.shape:
        raise ModelError(f"trace check: the traced module answers with shape {list(traced.shape)}, the original "
                         f"with {list(reference.shape)} (a sequence length or batch size baked into the trace?)")
    ref, got = reference.double(), traced.double()
    cosine = float(torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0))
    diff = (ref - got).abs()
    within = tolerance.atol is None or bool((diff <= tolerance.atol + tolerance.rtol * ref.abs()).all())
    mismatches = 0
    if task in ARGMAX_TASKS:
        top2 = ref.topk(2, dim=-1).values if ref.shape[-1] > 1 else None
        flips = ref.argmax(dim=-1) != got.argmax(dim=-1)
        if top2 is not None:
            peak = float(ref.abs().max()) or 1.0
            flips &= (top2[..., 0] - top2[..., 1]) > tolerance.argmax_margin * peak
        mismatches = int(flips.sum())
    return Measure(cosine=cosine, max_abs_diff=float(diff.max()) if diff.numel() else 0.0, within_bounds=within,
                   argmax_mismatches=mismatches)


def _compare(task: str, cases: Sequence[Case], reference: Sequence[Tensor], got: Sequence[Tensor],
             tolerance: Tolerance, what: str, mode: str, summary: dict[str, Any]) -> None:
    """Measure every answer of one mode against its reference, into `summary` (failures listed)."""
    for case, ref, out in zip(cases, reference, got, strict=True):
        m = measure(task, ref, out, tolerance)
        summary["worst_cosine"] = min(summary["worst_cosine"], m.cosine)
        summary["max_abs_diff"] = max(summary["max_abs_diff"], m.max_abs_diff)
        summary["argmax_mismatches"] += m.argmax_mismatches
        problems = []
        if m.cosine < tolerance.min_cosine:
            problems.append(f"cosine {m.cosine:.6f} < {tolerance.min_cosine}")
        if not m.within_bounds:
            problems.append(f"max |diff| {m.max_abs_diff:.2e} > {tolerance.atol} (+{tolerance.rtol} x |ref|)")
        if m.argmax_mismatches:
            problems.append(f"{m.argmax_mismatches} predicted label(s) differ")
        if problems:
            summary["failures"].append(f"{what}, {case.label} ({mode}): " + ", ".join(problems))


def _summary(tolerance: Tolerance) -> dict[str, Any]:
    return {"tolerance": tolerance.describe(), "worst_cosine": 1.0, "max_abs_diff": 0.0, "argmax_mismatches": 0,
            "failures": []}


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    return {**summary, "worst_cosine": round(summary["worst_cosine"], 8),
            "max_abs_diff": float(f"{summary['max_abs_diff']:.3e}")}


def _reference_name(loaded: LoadedModel, task: str) -> str:
    if loaded.output == "sparse_encoder":
        return "SparseEncoder.encode"
    if loaded.sentence_transformer:
        return "SentenceTransformer.encode"
    name = f"transformers {type(loaded.original).__name__}.forward"
    if task == "text_expansion":
        return f"{name}, pooled: {loaded.wrapper.core.pooling.describe()}"
    if loaded.embedding_pooling is not None:
        return f"{name}, last_hidden_state pooled: {loaded.embedding_pooling.describe()}"
    return name


def judge(expected: Expected, traced: Any, tokenizer: Any, inputs: Sequence[str]) -> tuple[dict[str, Any], int]:
    """Run the traced module on every case alone and on the batch; compare; return the record for the manifest and
    the memory one full-length request allocated (measured on the long case's own run), or raise ModelError listing
    every failed comparison.

    Unquantized: traced vs original, strict. Quantized: the trace must still match the quantized module it was
    traced from (strict), and the quantized answers must stay within the relaxed tolerance of the original."""
    quantized = expected.quantized is not None
    against_original, fidelity, token_counts, allocation = _run_modes(expected, traced, tokenizer, inputs)
    failures = against_original.pop("failures")
    record: dict[str, Any] = {
        "reference": expected.reference,
        "traced_inputs": list(inputs),
        "cases": [{"label": c.label, "pair": c.second is not None, "tokens": n}
                  for c, n in zip(expected.cases, token_counts, strict=True)],
        "modes": list(MODES),
        "padded_batch": [expected.cases[i].label for i in expected.batch],
        "max_sequence_length": expected.max_length,
        **_rounded(against_original),
        "quantized": quantized,
    }
    if quantized:
        failures += fidelity.pop("failures")
        record["trace_vs_quantized_module"] = _rounded(fidelity)
        record["relaxed"] = (f"--quantize: against the original, cosine >= {QUANTIZED.min_cosine} instead of "
                             f"{STRICT.min_cosine}, no element-wise bound (was {STRICT.atol}), argmax ties within "
                             f"{QUANTIZED.argmax_margin:.0%} of the peak logit ignored; the trace itself is held to "
                             f"the strict tolerance against the quantized module")
    if expected.token_types is not None:
        record["token_types"] = expected.token_types
    record["passed"] = not failures
    if failures:
        raise ModelError("trace check failed: the traced module does not answer like the original:\n  "
                         + "\n  ".join(failures),
                         hint="this model cannot be traced faithfully as is; report it with the model id")
    return record, allocation[0] if allocation else 0


def _run_modes(expected: Expected, traced: Any, tokenizer: Any,
               inputs: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any], list[int], list[int]]:
    """Both modes run and measured: the summaries against the original and (quantized) against the quantized
    module, the token count of each case, and the long case's allocation."""
    task, max_length, quantized = expected.task, expected.max_length, expected.quantized is not None
    against_original, fidelity = _summary(QUANTIZED if quantized else STRICT), _summary(STRICT)
    longest = next((i for i, c in enumerate(expected.cases) if c.label == LONG), None)
    allocation: list[int] = []
    token_counts: list[int] = []
    for mode in MODES:
        cases = expected.mode_cases(mode)
        try:
            got, lengths = traced_outputs(traced, tokenizer, inputs, task, cases, max_length,
                                          batched=mode != "single", measured=longest, allocation=allocation)
        except RuntimeError as exc:
            raise ModelError(f"trace check: the traced module fails on the {mode} inputs: "
                             f"{str(exc).splitlines()[0]}") from None
        token_counts = token_counts or lengths
        _compare(task, cases, expected.original_for(mode), got, QUANTIZED if quantized else STRICT,
                 "traced vs original", mode, against_original)
        if expected.quantized is not None:
            _compare(task, cases, expected.quantized[mode], got, STRICT, "traced vs quantized module", mode,
                     fidelity)
    return against_original, fidelity, token_counts, allocation


def run_check(*, loaded: LoadedModel, traced: Any, tokenizer: Any, inputs: Sequence[str], task: str,
              max_length: int, quantized_module: Any = None) -> dict[str, Any]:
    """`expected_answers` and `judge` in one call, for a caller that holds the original and the trace together."""
    expected = expected_answers(loaded, tokenizer, task, max_length)
    if quantized_module is not None:
        expected = with_quantized(expected, quantized_module, tokenizer, inputs)
    return judge(expected, traced, tokenizer, inputs)[0]


def token_type_effect(loaded: LoadedModel, tokenizer: Any, task: str, cases: Sequence[Case],
                      max_length: int) -> dict[str, Any] | None:
    """How much the model's answers to pairs move because the cluster sends token type 0 for the second sequence
    (its tokenizer would send 1). None where that cannot matter: single texts, sentence-transformers, models
    without token types."""
    pairs = [c for c in cases if c.second is not None]
    accepted = getattr(getattr(loaded.wrapper, "core", None), "accepted", set())
    if not pairs or loaded.sentence_transformer or "token_type_ids" not in accepted:
        return None
    worst, changed = 0.0, 0
    with torch.no_grad():
        for case in pairs:
            named = tokenizer(case.first, case.second, truncation=PAIR_TRUNCATION.get(task, True),
                              max_length=max_length, return_tensors="pt")
            if "token_type_ids" not in named or not bool(named["token_type_ids"].any()):
                return None
            kwargs = {k: v for k, v in named.items() if k in accepted}
            own = pick_output(loaded.original(**kwargs, return_dict=True), loaded.output).float()
            kwargs["token_type_ids"] = torch.zeros_like(kwargs["token_type_ids"])
            sent = pick_output(loaded.original(**kwargs, return_dict=True), loaded.output).float()
            worst = max(worst, float((own - sent).abs().max()))
            changed += int(bool((own.argmax(dim=-1) != sent.argmax(dim=-1)).any()))
    return {"cluster_sends": "token type 0 for both sequences", "max_abs_diff": float(f"{worst:.3e}"),
            "pairs_whose_decision_changes": changed, "pairs": len(pairs)}
