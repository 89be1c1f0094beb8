"""Task types: which one a model is for (`auto`), and whether a requested one fits the model's architecture.

Pure functions over the model's `config.json` (read as plain JSON, so this runs before anything heavy is
loaded): a task that does not fit is refused here, not discovered after a long trace. The detection rules follow
the reference importer (eland); where it would silently load a randomly initialised head (e.g. `ner` on a
sequence classifier), we refuse instead.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loader.errors import ModelError, UsageError

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
    sparse_encoder: bool = False  # a sentence-transformers sparse encoder (MLMTransformer + SpladePooling)

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


def read_model_facts(path: Path, *, sentence_transformer: bool, sparse_encoder: bool = False) -> ModelFacts:
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
    return facts_from_config(config, sentence_transformer=sentence_transformer, sparse_encoder=sparse_encoder)


def facts_from_config(config: dict[str, Any], *, sentence_transformer: bool, sparse_encoder: bool = False) \
        -> ModelFacts:
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
                      max_position_embeddings=int(positions) if isinstance(positions, int) else None,
                      sparse_encoder=sparse_encoder)


def _heads(facts: ModelFacts) -> set[str]:
    return {head for arch in facts.architectures for head in set(HEAD_FOR_TASK.values()) if arch.endswith(head)}


def detect_task(facts: ModelFacts) -> str:
    """The `auto` task type: from the architecture, as the reference importer decides (a sentence-transformers
    sparse encoder answers token weights: text_expansion)."""
    if facts.sparse_encoder:
        return "text_expansion"
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
    if facts.sparse_encoder and task != "text_expansion":
        raise ModelError(f"task {task} does not fit a sentence-transformers sparse encoder (MLMTransformer + "
                         "SpladePooling): it answers one weight per vocabulary token, which is task text_expansion",
                         hint="export it with --task-type text_expansion (or auto)")
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
    """Refuse what the cluster's tokenizer of this family can never answer as the model would, or a task
    configuration the cluster refuses for the family."""
    if task == "text_expansion" and family != "bert":
        # TextExpansionConfig accepts only the BERT tokenization.
        raise ModelError(f"task text_expansion with the {family} tokenization: Elasticsearch refuses it (text "
                         f"expansion models must be configured with BERT tokenizer, [{family}] given)",
                         hint="text_expansion needs a model with a BERT WordPiece tokenizer")
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
class PoolingSettings:
    """How a plain transformers encoder's text_embedding is made from its token states (pooling.EmbeddingPooling):
    `mean` of the real tokens, the first token (`cls`) or the element-wise `max` of the real tokens, then
    L2-normalised if `normalize`."""

    mode: str = "mean"  # SentenceTransformer(<plain model>) builds mean pooling, without normalisation
    normalize: bool = False
    chosen: str = "default"  # "default" (as sentence-transformers builds a plain model) or "options"

    def describe(self) -> str:
        return f"{self.mode}{', L2-normalized' if self.normalize else ', not normalized'}"

    def record(self) -> dict[str, Any]:
        return {"mode": self.mode, "normalize": self.normalize, "chosen": self.chosen}


def embedding_pooling(task: str, facts: ModelFacts, st_layout: SentenceTransformerLayout | None,
                      mode: str | None, normalize: bool | None) -> PoolingSettings | None:
    """The pooling of a plain encoder's text_embedding (None where the model or task defines its own output);
    `--pooling` and `--normalize` refused where they cannot apply."""
    given = [name for name, value in (("--pooling", mode), ("--normalize/--no-normalize", normalize))
             if value is not None]
    if given and task != "text_embedding":
        raise UsageError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to text_embedding "
                         f"only; the task is {task}")
    if given and st_layout is not None:
        raise UsageError(f"{' and '.join(given)}: a sentence-transformers model pools as its own configuration "
                         f"says (modules.json: {', '.join(st_layout.modules)}); the flags are for a plain "
                         "transformers model", hint="leave them out, or export the plain transformers folder")
    if given and facts.dpr_encoder:
        raise UsageError(f"{' and '.join(given)}: a DPR encoder's embedding is its own pooled output (the "
                         "[CLS] state, projected), not a pooling of its token states", hint="leave them out")
    if task != "text_embedding" or st_layout is not None or facts.dpr_encoder:
        return None
    return PoolingSettings(mode=mode or "mean", normalize=bool(normalize), chosen="options" if given else "default")


@dataclass(frozen=True)
class SpladeSettings:
    """A sparse encoder's SpladePooling (its config.json; the defaults are SpladePooling's own)."""

    pooling_strategy: str = "max"  # max | sum, over positions
    activation_function: str = "relu"  # relu: log1p(relu(x)); log1p_relu: log1p(log1p(relu(x)))


@dataclass(frozen=True)
class SentenceTransformerLayout:
    """A sentence-transformers folder: where its transformers model lives and how it truncates and cases text."""

    transformer_dir: Path
    max_seq_length: int | None
    do_lower_case: bool
    modules: tuple[str, ...]
    splade: SpladeSettings | None = None  # a sparse encoder: masked-LM then SpladePooling


FIRST_MODULES = ("Transformer", "MLMTransformer")  # modules fed token ids, as the cluster feeds the model
SPARSE_MODULES = ("SpladePooling",)
SPLADE_POOLING_STRATEGIES = ("max", "sum")  # SpladePooling.SPLADE_POOLING_MODES
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")  # SpladePooling.SPLADE_ACTIVATION


def read_sentence_transformer(root: Path) -> SentenceTransformerLayout | None:
    """None for a plain transformers folder. Only pipelines that start with a transformers model can be traced
    for the cluster (which feeds token ids); static-embedding or CLIP-style first modules are refused. A sparse
    encoder is accepted only as a masked-LM followed by SpladePooling."""
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        return None
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        paths = tuple(str(m.get("path") or "") for m in modules)
        kinds = tuple(str(m["type"]).rsplit(".", 1)[-1] for m in modules)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{modules_path}: not a sentence-transformers module list ({exc})") from None
    if not kinds:
        raise ModelError(f"{modules_path}: not a sentence-transformers module list (no modules)")
    if kinds[0] not in FIRST_MODULES:
        raise ModelError(f"{root}: sentence-transformers pipeline starts with {kinds[0]}, not a Transformer; "
                         "Elasticsearch can only run pipelines fed with token ids")
    transformer_dir = root / paths[0]
    settings = _module_settings(transformer_dir, ("sentence_bert_config.json", "sentence_transformers_config.json"))
    max_len = settings.get("max_seq_length")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise ModelError(f"{transformer_dir}: max_seq_length {max_len!r} is not a positive integer")
    return SentenceTransformerLayout(transformer_dir=transformer_dir, max_seq_length=max_len or None,
                                     do_lower_case=bool(settings.get("do_lower_case")), modules=kinds,
                                     splade=_splade(root, kinds, paths, settings))


def _module_settings(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    """The first of `names` in `folder`, as a JSON object ({} when there is none)."""
    for name in names:
        path = folder / name
        if path.is_file():
            try:
                settings = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ModelError(f"{path}: not valid JSON ({exc})") from None
            return settings if isinstance(settings, dict) else {}
    return {}


def _splade(root: Path, kinds: tuple[str, ...], paths: tuple[str, ...],
            settings: dict[str, Any]) -> SpladeSettings | None:
    """The SpladePooling of a sparse encoder (None for a dense pipeline); any other sparse pipeline refused."""
    if not any(kind in SPARSE_MODULES for kind in kinds) and kinds[0] != "MLMTransformer":
        return None
    masked_lm = kinds[0] == "MLMTransformer" or settings.get("transformer_task") == "fill-mask"
    if kinds[1:] != ("SpladePooling",) or not masked_lm:
        raise ModelError(f"{root}: sparse-encoder pipeline {' -> '.join(kinds)}; only a masked-LM (MLMTransformer, "
                         "or Transformer with transformer_task fill-mask) followed by SpladePooling can be traced "
                         "for Elasticsearch's text_expansion")
    config = _module_settings(root / paths[1], ("config.json",))
    splade = SpladeSettings(pooling_strategy=str(config.get("pooling_strategy", "max")),
                            activation_function=str(config.get("activation_function", "relu")))
    if splade.pooling_strategy not in SPLADE_POOLING_STRATEGIES or splade.activation_function not in SPLADE_ACTIVATIONS:
        raise ModelError(f"{root / paths[1]}: SpladePooling {splade.pooling_strategy!r} with activation "
                         f"{splade.activation_function!r}; only max or sum with relu or log1p_relu are known")
    return splade
