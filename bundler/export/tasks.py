"""Task types: which one a model is for (`auto`), and whether a requested one fits the model's architecture.

Pure functions over the model's `config.json` (read as plain JSON, so this runs before anything heavy is
loaded): a task that does not fit is refused here, not discovered after a long trace. The detection rules follow
the reference importer (eland); where it would silently load a randomly initialised head (e.g. `ner` on a
sequence classifier), we refuse instead.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loader.errors import ModelError

# The head each task needs, by the suffix of the architecture name transformers records in config.json.
HEAD_FOR_TASK = {
    "fill_mask": "ForMaskedLM",
    "text_expansion": "ForMaskedLM",
    "ner": "ForTokenClassification",
    "text_classification": "ForSequenceClassification",
    "zero_shot_classification": "ForSequenceClassification",
    "text_similarity": "ForSequenceClassification",
    "question_answering": "ForQuestionAnswering",
}
ZERO_SHOT_LABELS = {"entailment", "neutral", "contradiction"}
DPR_ENCODERS = ("DPRContextEncoder", "DPRQuestionEncoder")
_IOB = re.compile(r"^(O|[BI]_.+)$")


@dataclass(frozen=True)
class ModelFacts:
    """What config.json (and the presence of sentence-transformers files) says about a model folder."""

    architectures: tuple[str, ...]
    model_type: str
    labels: tuple[str, ...]  # id2label ordered by id, as written by the model's authors
    sentence_transformer: bool
    max_position_embeddings: int | None = None

    @property
    def position_limit(self) -> int | None:
        """The longest input the position embeddings cover, for models with absolute learned positions.
        RoBERTa-style models start positions after the padding index (two slots lost)."""
        if not self.max_position_embeddings:
            return None
        if self.model_type in ("roberta", "xlm-roberta", "camembert", "mpnet"):
            return self.max_position_embeddings - 2
        if self.model_type in ("bert", "distilbert", "electra", "mobilebert", "squeezebert", "dpr", "bart"):
            return self.max_position_embeddings
        return None  # relative positions (DeBERTa) or unknown: the check's long input is the proof

    @property
    def dpr_encoder(self) -> bool:
        return self.model_type == "dpr" and len(self.architectures) == 1 and self.architectures[0] in DPR_ENCODERS


def read_model_facts(path: Path, *, sentence_transformer: bool) -> ModelFacts:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{path}: not a Hugging Face model directory (no config.json)",
                         hint="point --model-dir at the folder save_pretrained wrote")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{config_path}: not readable JSON ({exc})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelError(f"{config_path}: not a transformers model config (no model_type)")
    return facts_from_config(config, sentence_transformer=sentence_transformer)


def facts_from_config(config: dict[str, Any], *, sentence_transformer: bool) -> ModelFacts:
    id2label = config.get("id2label") or {}
    try:
        if id2label:
            labels = tuple(str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0])))
        else:  # transformers' default when a config names none
            labels = tuple(f"LABEL_{i}" for i in range(int(config.get("num_labels", 2))))
    except (AttributeError, TypeError, ValueError):
        raise ModelError("config.json: id2label must map integer ids to labels, num_labels must be an integer") \
            from None
    positions = config.get("max_position_embeddings")
    return ModelFacts(architectures=tuple(config.get("architectures") or ()), model_type=str(config["model_type"]),
                      labels=labels, sentence_transformer=sentence_transformer,
                      max_position_embeddings=int(positions) if isinstance(positions, int) else None)


def _heads(facts: ModelFacts) -> set[str]:
    return {head for arch in facts.architectures for head in set(HEAD_FOR_TASK.values()) if arch.endswith(head)}


def detect_task(facts: ModelFacts) -> str:
    """The `auto` task type: from the architecture, as the reference importer decides."""
    if facts.sentence_transformer or facts.dpr_encoder:
        return "text_embedding"
    heads = _heads(facts)
    if "ForSequenceClassification" in heads:
        if len(facts.labels) == 1:
            return "text_similarity"
        if {label.lower() for label in facts.labels} <= ZERO_SHOT_LABELS:
            return "zero_shot_classification"
        return "text_classification"
    for task in ("ner", "question_answering", "fill_mask"):
        if HEAD_FOR_TASK[task] in heads:
            return task
    raise ModelError(f"cannot tell the task from the architecture {', '.join(facts.architectures) or '(none)'}",
                     hint="pass --task-type explicitly")


def check_task_fits(task: str, facts: ModelFacts) -> None:
    """Refuse a task whose head the weights do not contain (transformers would initialise it randomly)."""
    archs = ", ".join(facts.architectures) or "no architecture"
    head = HEAD_FOR_TASK.get(task)
    if head is not None and head not in _heads(facts):
        raise ModelError(f"task {task} needs a model with a *{head} head, but config.json names {archs}",
                         hint="choose the task the model was trained for, or --task-type auto")
    if task == "text_embedding" and not (facts.sentence_transformer or facts.dpr_encoder):
        other = _heads(facts) - {"ForMaskedLM"}
        if other:
            raise ModelError(f"task text_embedding needs a sentence-transformers model or an encoder, but "
                             f"config.json names {archs}", hint="choose the task the model was trained for")
    labels = classification_labels(facts)
    if task == "text_classification" and len(labels) < 2:
        raise ModelError(f"task text_classification needs at least 2 labels; the model has {len(labels)}",
                         hint="a single-output model is a text_similarity model")
    if task == "zero_shot_classification" and "entailment" not in {label.lower() for label in labels}:
        raise ModelError("task zero_shot_classification needs an 'entailment' label; the model's labels are "
                         + ", ".join(labels))
    if task == "ner":
        bad = [label for label in labels if not _IOB.match(label)]
        if bad:
            raise ModelError("task ner needs IOB labels (O, B-X, I-X); not IOB: " + ", ".join(bad),
                             hint="this does not look like a token-classification model for entities")


def check_task_tokenization(task: str, family: str) -> None:
    """Refuse what the cluster's tokenizer of this family can never answer as the model would."""
    if task == "fill_mask" and family == "bert_ja":
        # Elasticsearch's bert_ja splits words with Kuromoji before WordPiece: `[MASK]` becomes the three words
        # `[`, `MASK`, `]`, so its fill_mask never finds the mask token and every request fails.
        raise ModelError("task fill_mask with the bert_ja tokenization: Elasticsearch's Japanese word splitter cuts "
                         "the mask token [MASK] into three words, so the cluster can never find it",
                         hint="export the model with --task-type pass_through, or choose a model with a bert tokenizer")


def classification_labels(facts: ModelFacts) -> list[str]:
    """Labels ordered by id, `-` replaced by `_` (Elasticsearch reads I-PER as the enumeration I_PER)."""
    return [label.replace("-", "_") for label in facts.labels]


def is_pair_task(task: str) -> bool:
    """Tasks whose cluster input is two sequences (query and document, premise and hypothesis)."""
    return task in ("text_similarity", "zero_shot_classification", "question_answering")


@dataclass(frozen=True)
class SentenceTransformerLayout:
    """A sentence-transformers folder: where its transformers model lives and how it truncates and cases text."""

    transformer_dir: Path
    max_seq_length: int | None
    do_lower_case: bool
    modules: tuple[str, ...]


def read_sentence_transformer(root: Path) -> SentenceTransformerLayout | None:
    """None for a plain transformers folder. Only pipelines that start with a transformers model can be traced
    for the cluster (which feeds token ids); static-embedding or CLIP-style first modules are refused."""
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        return None
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        first = modules[0]
        kinds = tuple(str(m["type"]).rsplit(".", 1)[-1] for m in modules)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"{modules_path}: not a sentence-transformers module list ({exc})") from None
    if kinds[0] != "Transformer":
        raise ModelError(f"{root}: sentence-transformers pipeline starts with {kinds[0]}, not a Transformer; "
                         "Elasticsearch can only run pipelines fed with token ids")
    transformer_dir = root / str(first.get("path") or "")
    settings: dict[str, Any] = {}
    for name in ("sentence_bert_config.json", "sentence_transformers_config.json"):
        path = transformer_dir / name
        if path.is_file():
            try:
                settings = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ModelError(f"{path}: not valid JSON ({exc})") from None
            break
    max_len = settings.get("max_seq_length") if isinstance(settings, dict) else None
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise ModelError(f"{transformer_dir}: max_seq_length {max_len!r} is not a positive integer")
    return SentenceTransformerLayout(transformer_dir=transformer_dir, max_seq_length=max_len or None,
                                     do_lower_case=bool(settings.get("do_lower_case")), modules=kinds)
