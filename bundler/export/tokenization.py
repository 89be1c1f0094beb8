"""Tokenizer families: which of Elasticsearch's tokenizers reproduces the model's, its options, and the vocabulary.

The cluster tokenizes text itself, so the family decides everything downstream: which positional inputs the
traced module takes, which options the config carries, which vocabulary fields are needed. A tokenizer that no
family reproduces is refused by name here, before the model is loaded.

transformers 5 has mostly dropped the slow (Python) tokenizers the reference importer read the vocabulary from;
the fast tokenizer's own model (`backend_tokenizer`, the tokenizer.json document) carries the same facts: the
vocabulary with ids, BPE merges by rank, SentencePiece (Unigram) scores. Every id is checked against the
tokenizer's own id-to-token mapping, because a vocabulary off by one gives plausible, wrong answers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from loader.errors import ModelError

# Tokenizer class (and its bases, so subclasses count) -> Elasticsearch tokenization.
FAMILY_BY_CLASS = {
    "BertTokenizer": "bert",
    "DistilBertTokenizer": "bert",
    "ElectraTokenizer": "bert",
    "MobileBertTokenizer": "bert",
    "SqueezeBertTokenizer": "bert",
    "RetriBertTokenizer": "bert",
    "DPRContextEncoderTokenizer": "bert",
    "DPRQuestionEncoderTokenizer": "bert",
    "BertJapaneseTokenizer": "bert_ja",
    "MPNetTokenizer": "mpnet",
    "RobertaTokenizer": "roberta",
    "BartTokenizer": "roberta",
    "XLMRobertaTokenizer": "xlm_roberta",
    "DebertaV2Tokenizer": "deberta_v2",
}
# The positional inputs the native process passes to forward, per tokenization (tracing-conventions.md).
INPUTS_BY_FAMILY = {
    "bert": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "bert_ja": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "mpnet": ("input_ids", "attention_mask"),
    "roberta": ("input_ids", "attention_mask"),
    "xlm_roberta": ("input_ids", "attention_mask"),
    "deberta_v2": ("input_ids", "attention_mask", "token_type_ids"),
}
# The special tokens Elasticsearch's tokenizer of each family inserts by name: they must be in the vocabulary
# and be the ones the model's tokenizer uses, or the cluster feeds the model different ids.
SPECIAL_TOKENS = {
    "bert": {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
    "mpnet": {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "unk_token": "[UNK]"},
    "roberta": {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "xlm_roberta": {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "deberta_v2": {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
}
SPECIAL_TOKENS["bert_ja"] = SPECIAL_TOKENS["bert"]
# The tokenizers-library model each family's Elasticsearch tokenizer implements.
BACKEND_MODEL = {"bert": "WordPiece", "bert_ja": "WordPiece", "mpnet": "WordPiece", "roberta": "BPE",
                 "xlm_roberta": "Unigram", "deberta_v2": "Unigram"}
JAPANESE_WORD_TOKENIZERS = ("mecab",)


@dataclass(frozen=True)
class Family:
    name: str  # the Elasticsearch tokenization kind
    tokenizer_class: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return INPUTS_BY_FAMILY[self.name]


def family_of(tokenizer: Any) -> Family:
    """The Elasticsearch tokenization for a loaded tokenizer, or a refusal naming its class."""
    cls_name = type(tokenizer).__name__
    for klass in type(tokenizer).__mro__:
        family = FAMILY_BY_CLASS.get(klass.__name__.removesuffix("Fast"))
        if family is None:
            continue
        if family == "bert_ja":
            if getattr(tokenizer, "subword_tokenizer_type", "wordpiece") != "wordpiece":
                raise ModelError(f"tokenizer {cls_name} with subword tokenizer "
                                 f"{tokenizer.subword_tokenizer_type!r}: Elasticsearch's bert_ja uses WordPiece")
            # Like the reference importer: only morphological word splitting is bert_ja; `basic` is plain BERT.
            if getattr(tokenizer, "word_tokenizer_type", None) not in JAPANESE_WORD_TOKENIZERS:
                family = "bert"
        return Family(family, cls_name)
    supported = ", ".join(sorted(FAMILY_BY_CLASS))
    raise ModelError(f"tokenizer {cls_name} is not supported: Elasticsearch has no tokenizer that reproduces it",
                     hint=f"supported tokenizer classes: {supported}")


def backend_json(tokenizer: Any) -> dict[str, Any] | None:
    """The fast tokenizer's full definition (tokenizer.json), or None for a slow (Python) tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return json.loads(backend.to_str())


def _find(node: Any, type_name: str) -> dict[str, Any] | None:
    """First component of a given type in a normalizer / pre-tokenizer tree (Sequence nests them)."""
    if isinstance(node, dict):
        if node.get("type") == type_name:
            return node
        for child in node.get("normalizers") or node.get("pretokenizers") or ():
            found = _find(child, type_name)
            if found:
                return found
    return None


def lowercases(tokenizer: Any, spec: dict[str, Any] | None) -> bool:
    """Whether the tokenizer lowercases: its normalizer is the truth; the attribute only for slow tokenizers."""
    if spec is not None:
        normalizer = spec.get("normalizer")
        bert = _find(normalizer, "BertNormalizer")
        if bert is not None:
            return bool(bert.get("lowercase"))
        return _find(normalizer, "Lowercase") is not None
    return bool(getattr(tokenizer, "do_lower_case", getattr(tokenizer, "lower_case", False)))


def strips_accents(tokenizer: Any, spec: dict[str, Any] | None) -> bool:
    """Whether the tokenizer strips accents: BertNormalizer's `strip_accents` (unset: as `lowercase`) or a
    StripAccents normalizer; for slow tokenizers their basic (word) tokenizer's setting (MeCab never strips)."""
    if spec is not None:
        normalizer = spec.get("normalizer")
        bert = _find(normalizer, "BertNormalizer")
        if bert is not None and bert.get("strip_accents") is not None:
            return bool(bert["strip_accents"])
        return bool(bert and bert.get("lowercase")) or _find(normalizer, "StripAccents") is not None
    for holder in (getattr(tokenizer, "basic_tokenizer", None), getattr(tokenizer, "word_tokenizer", None)):
        if holder is not None and hasattr(holder, "strip_accents"):
            strip = holder.strip_accents
            return bool(getattr(holder, "do_lower_case", False)) if strip is None else bool(strip)
    return False


def adds_prefix_space(tokenizer: Any, spec: dict[str, Any] | None) -> bool:
    if hasattr(tokenizer, "add_prefix_space"):
        return bool(tokenizer.add_prefix_space)
    byte_level = _find((spec or {}).get("pre_tokenizer"), "ByteLevel")
    return bool(byte_level and byte_level.get("add_prefix_space"))


def tokenization_options(family: Family, tokenizer: Any, *, st_lowercase: bool = False) -> dict[str, Any]:
    """The per-family options of the config's tokenization (max_sequence_length and truncation are added later)."""
    spec = backend_json(tokenizer)
    if family.name in ("bert", "bert_ja", "mpnet"):
        # sentence-transformers may lowercase the text itself before the tokenizer sees it.
        return {"do_lower_case": lowercases(tokenizer, spec) or st_lowercase}
    lower = lowercases(tokenizer, spec) or st_lowercase
    if family.name == "deberta_v2":
        return {"do_lower_case": lower}
    if lower:  # Elasticsearch's roberta and xlm_roberta tokenizers have no lower-casing option
        raise ModelError(f"the model lower-cases its input, which Elasticsearch's {family.name} tokenization "
                         "cannot do: the cluster's answers would differ from the model's")
    if family.name == "roberta":
        return {"add_prefix_space": adds_prefix_space(tokenizer, spec)}
    return {}


def _merge_text(merge: Any) -> str:
    return " ".join(merge) if isinstance(merge, list) else str(merge)


def vocabulary_document(family: Family, tokenizer: Any) -> dict[str, Any]:
    """`{"vocabulary": [...by id], "merges": [...by rank] (BPE), "scores": [...by id] (SentencePiece)}`."""
    spec = backend_json(tokenizer)
    if spec is None:
        document = _slow_vocabulary(tokenizer)
        _check_special_tokens(family, tokenizer, document["vocabulary"])
        return document
    model = spec["model"]
    expected = BACKEND_MODEL[family.name]
    if model.get("type") != expected:
        raise ModelError(f"tokenizer {family.tokenizer_class}: its model is {model.get('type')}, but Elasticsearch's "
                         f"{family.name} tokenizer implements {expected}")
    by_id: dict[int, str] = {}
    scores: dict[int, float] = {}
    if expected == "Unigram":
        for index, (token, score) in enumerate(model["vocab"]):
            by_id[index] = token
            scores[index] = float(score)
    else:
        by_id = {int(i): token for token, i in model["vocab"].items()}
    for added in spec.get("added_tokens") or ():
        by_id.setdefault(int(added["id"]), added["content"])
    tokens = _contiguous(by_id, family.tokenizer_class)
    _check_ids(tokenizer, tokens, family.tokenizer_class)
    document: dict[str, Any] = {"vocabulary": tokens}
    if expected == "BPE":
        document["merges"] = [_merge_text(m) for m in model.get("merges") or ()]
    if expected == "Unigram":
        # Added tokens beyond the SentencePiece model (e.g. <mask>) score 0.0, as the reference importer writes.
        document["scores"] = [scores.get(i, 0.0) for i in range(len(tokens))]
    _check_special_tokens(family, tokenizer, tokens)
    return document


def _slow_vocabulary(tokenizer: Any) -> dict[str, Any]:
    """Slow tokenizers (BertJapaneseTokenizer): the vocabulary as the reference importer reads it."""
    by_id = {int(i): token for token, i in tokenizer.get_vocab().items()}
    tokens = _contiguous(by_id, type(tokenizer).__name__)
    document: dict[str, Any] = {"vocabulary": tokens}
    ranks = getattr(tokenizer, "bpe_ranks", None) or {}
    if ranks:
        document["merges"] = [" ".join(m) for m, _ in sorted(ranks.items(), key=lambda kv: kv[1])]
    return document


def _contiguous(by_id: dict[int, str], cls_name: str) -> list[str]:
    size = max(by_id) + 1 if by_id else 0
    missing = [i for i in range(size) if i not in by_id]
    if not by_id or missing:
        raise ModelError(f"tokenizer {cls_name}: vocabulary ids are not contiguous (no token for ids "
                         f"{missing[:5]}{'...' if len(missing) > 5 else ''}); Elasticsearch maps tokens by position")
    return [by_id[i] for i in range(size)]


def _check_ids(tokenizer: Any, tokens: list[str], cls_name: str) -> None:
    """Each position must be the id the tokenizer itself gives that token."""
    found = tokenizer.convert_ids_to_tokens(list(range(len(tokens))))
    wrong = [i for i, (a, b) in enumerate(zip(found, tokens, strict=True)) if a != b]
    if wrong:
        i = wrong[0]
        raise ModelError(f"tokenizer {cls_name}: {len(wrong)} vocabulary ids disagree with the tokenizer "
                         f"(id {i}: tokenizer says {found[i]!r}, vocabulary file {tokens[i]!r})")


def _check_special_tokens(family: Family, tokenizer: Any, tokens: list[str]) -> None:
    vocab = set(tokens)
    for attribute, name in SPECIAL_TOKENS[family.name].items():
        own = getattr(tokenizer, attribute, None)
        if name not in vocab or (own is not None and str(own) != name):
            raise ModelError(f"tokenizer {family.tokenizer_class}: Elasticsearch's {family.name} tokenizer uses "
                             f"{name} as its {attribute.removesuffix('_token')} token, but the model's is "
                             f"{own!r}{'' if name in vocab else f' and {name} is not in the vocabulary'}")
