"""Accents: whether the cluster's tokenizer strips them as the model's own does, and the refusal when not.

Elasticsearch's bert, bert_ja and mpnet tokenizers strip accents whenever the config says do_lower_case: the
`doStripAccents` of BertTokenizer.Builder, BertJapaneseTokenizer.JapaneseBuilder and MPNetTokenizer.Builder
defaults to doLowerCase, and no config field sets it (StripAccentTokenFilter: NFD, non-spacing marks dropped).
A Hugging Face tokenizer may lower-case and keep accents (BertTokenizer `strip_accents=False`, a BertNormalizer
with `strip_accents: false`, MeCab's lower-casing), or strip them without lower-casing. On accented text the
cluster then feeds the model other tokens than its own tokenizer does, and answers differently.

Pure facts and refusals over the tokenizer, nothing heavy: decided in the resolve stage, before any weight loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bundler.export import tokenization
from loader.errors import ModelError

STRIPPING_FAMILIES = ("bert", "bert_ja", "mpnet")  # Elasticsearch strips accents exactly when do_lower_case
EXAMPLE = "Café"
# Accented texts on which the difference is measured when the override lets a model through.
ACCENTED_TEXTS = (
    "Café crème brûlée à Paris.",
    "Größenwahn im Café: naïve façade.",
    "São Paulo é uma cidade incrível.",
    "Ångström, Dvořák and Łódź.",
)
FLAG = "--allow-accent-difference"


@dataclass(frozen=True)
class AccentRule:
    """What each side does with accents, for a tokenization Elasticsearch may strip them in."""

    family: str
    cluster_strips: bool  # the config's do_lower_case
    model_strips: bool  # the model's own tokenizer
    tokenizer_lowercases: bool  # the model's tokenizer lowercases (else only sentence-transformers' do_lower_case)
    allowed: bool  # --allow-accent-difference

    @property
    def differs(self) -> bool:
        return self.cluster_strips != self.model_strips

    @property
    def strip_for_cluster(self) -> bool:
        """The check and the samples must strip the accents the model's tokenizer keeps (as the cluster will)."""
        return self.cluster_strips and not self.model_strips

    def record(self) -> dict[str, Any]:
        return {"cluster_strips_accents": self.cluster_strips, "model_strips_accents": self.model_strips,
                "allow_accent_difference": self.allowed}


def accent_rule(family: str, tokenizer: Any, *, do_lower_case: bool, allowed: bool) -> AccentRule | None:
    """The rule for a bert, bert_ja or mpnet tokenization (None for the others: Elasticsearch does not strip)."""
    if family not in STRIPPING_FAMILIES:
        return None
    spec = tokenization.backend_json(tokenizer)
    return AccentRule(family=family, cluster_strips=do_lower_case,
                      model_strips=tokenization.strips_accents(tokenizer, spec),
                      tokenizer_lowercases=tokenization.lowercases(tokenizer, spec), allowed=allowed)


def check_accent_rule(rule: AccentRule | None, allowed: bool) -> list[str]:
    """Refuse a model the cluster would tokenize differently on accented text (unless allowed); the warnings."""
    if rule is None or not rule.differs:
        return [f"{FLAG}: the cluster strips accents exactly as the model does; nothing to allow"] if allowed else []
    cluster = f"Elasticsearch's {rule.family} tokenization"
    if rule.model_strips:
        raise ModelError(f"the model's tokenizer strips accents without lower-casing, but {cluster} strips them only "
                         f"with do_lower_case: on accented text ({EXAMPLE!r}) the cluster would feed the model other "
                         "tokens and answer differently, and no export can check it with the cluster's tokens",
                         hint="choose a model whose tokenizer strips accents only when it lower-cases")
    who = "the model's tokenizer" if rule.tokenizer_lowercases else "sentence-transformers (do_lower_case)"
    if not allowed:
        raise ModelError(f"{who} lower-cases without stripping accents, but {cluster} strips accents "
                         f"whenever do_lower_case is on: on accented text ({EXAMPLE!r}) the cluster would feed the "
                         "model other tokens and answer differently from the model",
                         hint=f"pass {FLAG} to export it anyway (the check measures the difference on accented "
                         "texts and the manifest records the override)")
    return [f"{FLAG}: {who} keeps accents that {cluster} strips; the trace is checked with the "
            "cluster's tokens and the difference on accented texts is measured and recorded"]
