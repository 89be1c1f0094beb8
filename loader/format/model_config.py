"""Elasticsearch's rules for a trained-model config and a vocabulary document.

The writer refuses to pack what the cluster would refuse, and the verifier checks again: a bundle that would
only fail at upload, inside the closed network, is caught on the connected side.

The config rules are tables taken from Elasticsearch's own parsers, under x-pack/plugin/core/src/main/java/org/
elasticsearch/xpack/core/ml/inference/ (`TrainedModelConfig.java`, `TrainedModelInput.java`,
`TrainedModelPrefixStrings.java`, and `trainedmodel/`: one file per tokenizer and per task). Those parsers are strict
at model creation (an unknown field is `[bert_tokenization] unknown field [foo]`), so an unknown field is a problem
at every level. A value is read as Elasticsearch's ObjectParser reads it (x-content `ObjectParser.ValueType`,
`AbstractXContentParser` with number coercion on): an integer field also takes a numeric string or a fraction
(truncated), a boolean field also the strings "true" and "false", a string array also one string; no field takes
null, and a JSON boolean is never a number. Each problem names the field by its path and quotes Elasticsearch's
message where the source has one. The vocabulary rules come from PUT .../vocabulary.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MODEL_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?$")
MAX_MODEL_ID_LEN = 64

# ---- How Elasticsearch's ObjectParser reads a declared field (ObjectParser.ValueType and AbstractXContentParser)

_INT, _LONG, _BOOL, _STR, _STRS, _OBJ = "int", "long", "boolean", "string", "string array", "object"
_TOKENS_TAKEN = {  # the JSON tokens each value type accepts; any other is "doesn't support values of type: X"
    _INT: ("VALUE_NUMBER", "VALUE_STRING"), _LONG: ("VALUE_NUMBER", "VALUE_STRING"),
    _BOOL: ("VALUE_BOOLEAN", "VALUE_STRING"), _STR: ("VALUE_STRING",),
    _STRS: ("START_ARRAY", "VALUE_STRING"), _OBJ: ("START_OBJECT",),
}
_INT_BITS = {_INT: 32, _LONG: 64}
# What Java's Double.parseDouble reads in a coerced numeric string, less its hex, NaN, Infinity and d/f suffix forms.
_NUMERIC = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_UNREADABLE = object()


@dataclass(frozen=True)
class FieldRule:
    """A field an Elasticsearch object parser declares: its value type, what the value must be (in words), and the
    check Elasticsearch makes on the value it read, with its message (`{value}` and `{upper}` are filled in)."""

    kind: str
    must_be: str
    accepts: Callable[[Any], bool] | None = None
    refusal: str = ""


def _token(value: Any) -> str:
    """The JSON token Elasticsearch names in a type error."""
    if value is None:
        return "VALUE_NULL"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, int | float):
        return "VALUE_NUMBER"
    if isinstance(value, str):
        return "VALUE_STRING"
    return "START_ARRAY" if isinstance(value, list) else "START_OBJECT"


def _read(kind: str, value: Any) -> Any:
    """The value as Elasticsearch reads a field of this type (its token already accepted), or _UNREADABLE."""
    if kind in _INT_BITS:
        if isinstance(value, str):
            if not _NUMERIC.fullmatch(value):
                return _UNREADABLE
            value = float(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                return _UNREADABLE
            value = int(value)  # Jackson and Java's (int) cast both truncate toward zero
        limit = 1 << (_INT_BITS[kind] - 1)
        return value if -limit <= value < limit else _UNREADABLE
    if kind == _BOOL:
        return value if isinstance(value, bool) else {"true": True, "false": False}.get(value, _UNREADABLE)
    if kind == _STRS:
        if isinstance(value, str):
            return [value]
        if any(item is None or isinstance(item, list | dict) for item in value):
            return _UNREADABLE
        return [str(item).lower() if isinstance(item, bool) else str(item) for item in value]
    return value


def _java(values: Any) -> str:
    """A value as Java's toString writes it in Elasticsearch's messages (lists as `[a, b]`)."""
    return "[" + ", ".join(map(str, values)) + "]" if isinstance(values, list) else str(values)


def _field_problem(where: str, parser: str, name: str, rule: FieldRule, value: Any) -> tuple[str | None, Any]:
    """(problem or None, the value as Elasticsearch reads it)."""
    token = _token(value)
    if token not in _TOKENS_TAKEN[rule.kind]:
        return (f"{where} must be {rule.must_be} (Elasticsearch: [{parser}] {name} doesn't support values of type: "
                f"{token})"), None
    read = _read(rule.kind, value)
    if read is _UNREADABLE:
        return (f"{where} must be {rule.must_be}, not {json.dumps(value)} (Elasticsearch: [{parser}] failed to parse "
                f"field [{name}])"), None
    if rule.accepts is not None and not rule.accepts(read):
        quoted = rule.refusal.format(value=_java(read), upper=str(read).upper())
        return f"{where} must be {rule.must_be}" + (f" (Elasticsearch: {quoted})" if quoted else ""), None
    return None, read


def _object_problems(obj: Mapping[str, Any], path: str, parser: str, rules: Mapping[str, FieldRule],
                     skip: tuple[str, ...] = ()) -> tuple[list[str], dict[str, Any]]:
    """A strict parser's view of an object: unknown fields, and each declared field's type and range. Also returns
    the values Elasticsearch would read, for the checks that combine fields."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, value in obj.items():
        if name in skip:
            continue
        where = f"{path}.{name}" if path else name
        if name not in rules:
            problems.append(f"{where} is not a field Elasticsearch accepts here (Elasticsearch: [{parser}] unknown "
                            f"field [{name}])")
            continue
        problem, read = _field_problem(where, parser, name, rules[name], value)
        if problem:
            problems.append(problem)
        else:
            values[name] = read
    return problems, values


_STRING = FieldRule(_STR, "a string")
_BOOLEAN = FieldRule(_BOOL, "a boolean")
_ANY_INT = FieldRule(_INT, "an integer")
_OBJECT = FieldRule(_OBJ, "an object")

# ---- The whole config: TrainedModelConfig.java, createParser(false) and Builder.validate(true)

# Set by the server; a config that carries one is refused ("illegal to set [x] at inference model creation").
SERVER_FIELDS = ("location", "version", "created_by", "create_time", "license_level", "model_package")
SERVER_METADATA = ("total_feature_importance", "model_aliases")
_CONFIG_RULES = {  # the other fields the strict parser declares, less inference_config, input and model_type
    "description": _STRING,
    "tags": FieldRule(_STRS, "a list of tags, each like a model id (a-z, 0-9, '-', '_', '.'; at most 64)",
                      lambda tags: all(MODEL_ID_RE.match(t) and len(t) <= MAX_MODEL_ID_LEN for t in tags)),
    "metadata": _OBJECT,
    "model_size_bytes": FieldRule(_LONG, "a non-negative integer", lambda v: v >= 0,
                                  "[model_size_bytes] must be greater than or equal to 0"),
    # The deprecated name of model_size_bytes (accepted with a deprecation warning).
    "estimated_heap_memory_usage_bytes": FieldRule(_LONG, "a non-negative integer", lambda v: v >= 0,
                                                   "[model_size_bytes] must be greater than or equal to 0"),
    "estimated_operations": FieldRule(_LONG, "a non-negative integer", lambda v: v >= 0,
                                      "[estimated_operations] must be greater than or equal to 0"),
    "platform_architecture": _STRING,
    "prefix_strings": _OBJECT,
    "doc_type": _STRING,
    "default_field_map": _OBJECT,
}
CONFIG_FIELDS = ("model_type", "inference_config", "input", *_CONFIG_RULES)
# Accepted by Elasticsearch but not passed on by esbundle: the model id is the manifest's (or load's
# --es-model-id), and a PyTorch definition is uploaded in parts.
ESBUNDLE_REFUSED = {"model_id": "the model id is the manifest's or load's --es-model-id",
                    "definition": "the definition is uploaded in parts",
                    "compressed_definition": "the definition is uploaded in parts"}
# TrainedModelPrefixStrings.java (8.12 and later) and TrainedModelInput.java, both strict at creation.
_PREFIX_RULES = {"ingest": _STRING, "search": _STRING}
_INPUT_PARSER, _PREFIX_PARSER = "trained_model_config_input", "trained_model_config_prefix_strings"

# ---- Tokenizers: Tokenization.java (declareCommonFields, the constructor) and one file per kind

_TRUNCATE = ("FIRST", "SECOND", "NONE", "BALANCED")  # Tokenization.Truncate; BALANCED came with deberta_v2 (#111852)
_COMMON_TOKENIZATION = {
    "do_lower_case": _BOOLEAN,
    "with_special_tokens": _BOOLEAN,
    "max_sequence_length": FieldRule(_INT, "a positive integer", lambda v: v > 0,
                                     "[max_sequence_length] must be positive"),
    "truncate": FieldRule(_STR, "one of first, second, none, balanced", lambda v: v.upper() in _TRUNCATE,
                          "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.Tokenization."
                          "Truncate.{upper}"),
    "span": FieldRule(_INT, "-1 or a non-negative integer", lambda v: v >= -1,
                      "[span] must be non-negative to indicate span length or [-1] to indicate no windowing should "
                      "occur"),
}
DEFAULT_MAX_SEQUENCE_LENGTH, UNSET_SPAN = 512, -1  # Tokenization.java; the default truncate is first


@dataclass(frozen=True)
class TokenizerRules:
    """A tokenization kind: its parser's name (in Elasticsearch's messages), its mask token, and its fields."""

    parser: str
    mask_token: str
    extra: Mapping[str, FieldRule] = field(default_factory=dict)

    @property
    def rules(self) -> dict[str, FieldRule]:
        return {**_COMMON_TOKENIZATION, **self.extra}


def _no_lower_case(name: str) -> FieldRule:
    """RobertaTokenization.java and XLMRobertaTokenization.java accept do_lower_case, but only false."""
    return FieldRule(_BOOL, "false (this tokenizer cannot lower-case)", lambda v: v is False,
                     f"unable to set [do_lower_case] to [true] for {name} tokenizer")


TOKENIZERS = {
    "bert": TokenizerRules("bert_tokenization", "[MASK]"),  # BertTokenization.java
    "bert_ja": TokenizerRules("bert_japanese_tokenization", "[MASK]"),  # BertJapaneseTokenization.java
    "mpnet": TokenizerRules("mpnet_tokenization", "<mask>"),  # MPNetTokenization.java
    "roberta": TokenizerRules("roberta_tokenization", "<mask>",  # RobertaTokenization.java
                              {"do_lower_case": _no_lower_case("roberta"), "add_prefix_space": _BOOLEAN}),
    "xlm_roberta": TokenizerRules("xlm_roberta_tokenization", "<mask>",  # XLMRobertaTokenization.java
                                  {"do_lower_case": _no_lower_case("XLMRoberta")}),
    "deberta_v2": TokenizerRules("deberta_v2", "[MASK]"),  # DebertaV2Tokenization.java
}
TOKENIZATIONS = tuple(TOKENIZERS)

# ---- Tasks: one file per task config; every one also declares vocabulary (refused at creation), tokenization
# (checked above) and results_field (NlpConfig.java)


@dataclass(frozen=True)
class TaskRules:
    """A task's own fields, and whether its tokenization may set a span (window long inputs) at creation."""

    fields: Mapping[str, FieldRule]
    windowing: bool

    @property
    def rules(self) -> dict[str, FieldRule]:
        return {"results_field": _STRING, **self.fields}


_LABELS = FieldRule(_STRS, "a list of labels")
TASKS = {
    "fill_mask": TaskRules({"num_top_classes": _ANY_INT, "mask_token": _STRING}, False),  # FillMaskConfig.java
    "ner": TaskRules({"classification_labels": _LABELS}, False),  # NerConfig.java
    "pass_through": TaskRules({}, False),  # PassThroughConfig.java
    "question_answering": TaskRules({  # QuestionAnsweringConfig.java (`question` is for _infer only)
        "num_top_classes": FieldRule(_INT, "a non-negative integer", lambda v: v >= 0,
                                     "[num_top_classes] must be greater than or equal to [0]; provided [{value}]"),
        "max_answer_length": FieldRule(_INT, "a positive integer", lambda v: v > 0,
                                       "[max_answer_length] must be greater than [0]; provided [{value}]"),
    }, True),
    "text_classification": TaskRules(  # TextClassificationConfig.java
        {"classification_labels": _LABELS, "num_top_classes": _ANY_INT}, True),
    "text_embedding": TaskRules({"embedding_size": FieldRule(  # TextEmbeddingConfig.java
        _INT, "a positive integer", lambda v: v > 0,
        "[embedding_size] must be a number greater than 0; configured size [{value}]")}, False),
    "text_expansion": TaskRules({}, True),  # TextExpansionConfig.java
    "text_similarity": TaskRules({"span_score_combination_function": FieldRule(  # TextSimilarityConfig.java
        _STR, "max or mean", lambda v: v.upper() in ("MAX", "MEAN"),  # (`text` is for _infer only)
        "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.TextSimilarityConfig."
        "SpanScoreFunction.{upper}")}, True),
    "zero_shot_classification": TaskRules({  # ZeroShotClassificationConfig.java
        "classification_labels": _LABELS, "hypothesis_template": _STRING, "multi_label": _BOOLEAN,
        "labels": FieldRule(_STRS, "a non-empty list of labels", bool, "[labels] must not be empty"),
    }, False),
}
TASK_TYPES = tuple(TASKS)
ZERO_SHOT_CLASSIFICATION_LABELS = ("contradiction", "entailment", "neutral")  # as Elasticsearch's TreeSet lists them
IOB_PREFIXES = ("I-", "B-", "I_", "B_", "O")  # NerConfig.validIOBTag, on the upper-cased label


def model_id_problem(model_id: str) -> str | None:
    if len(model_id) > MAX_MODEL_ID_LEN:
        return f"model id {model_id!r} cannot contain more than {MAX_MODEL_ID_LEN} characters"
    if model_id == "_all" or not MODEL_ID_RE.match(model_id):
        return (f"model id {model_id!r} can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; "
                "must start and end with alphanumeric")
    return None


def config_problems(config: Any, task_type: str) -> list[str]:
    """Everything Elasticsearch would refuse in this config, plus a task that disagrees with the manifest: one
    string per problem, naming the field."""
    if not isinstance(config, Mapping):
        return ["must be a JSON object"]
    problems = _top_level_problems(config)
    inference = config.get("inference_config")
    if not isinstance(inference, Mapping) or len(inference) != 1:
        problems.append("inference_config must hold exactly one task")
    else:
        problems += _inference_problems(inference, task_type)
    return problems + _input_problems(config.get("input"))


def _top_level_problems(config: Mapping[str, Any]) -> list[str]:
    problems = [f"sets [{name}], which only the server may set" for name in SERVER_FIELDS if name in config]
    problems += [f"sets [{name}], which esbundle does not pass on: {why}" for name, why in ESBUNDLE_REFUSED.items()
                 if name in config]
    unknown = sorted(set(config) - set(CONFIG_FIELDS) - set(SERVER_FIELDS) - set(ESBUNDLE_REFUSED))
    if unknown:
        problems.append("has field(s) Elasticsearch does not accept: " + ", ".join(unknown))
    if "model_type" not in config:
        problems.append("[model_type] must be set if [definition] is not defined (use \"pytorch\")")
    elif config["model_type"] != "pytorch":
        problems.append("model_type must be 'pytorch'")
    known = {name: value for name, value in config.items() if name in _CONFIG_RULES}
    found, values = _object_problems(known, "", "trained_model_config", _CONFIG_RULES)
    problems += found
    metadata = values.get("metadata", {})
    problems += [f"sets [metadata.{name}], which only the server may set (Elasticsearch: illegal to set "
                 f"[metadata.{name}] at inference model creation)" for name in SERVER_METADATA if name in metadata]
    if "prefix_strings" in values:
        problems += _object_problems(values["prefix_strings"], "prefix_strings", _PREFIX_PARSER, _PREFIX_RULES)[0]
    return problems


def _input_problems(value: Any) -> list[str]:
    """TrainedModelInput.java (strict, field_names required) and InferenceConfig.validateTrainedModelInput. esbundle
    also needs the object and a JSON list of names: load's smoke test sends the first name."""
    if not isinstance(value, Mapping):
        return ["input.field_names must be a non-empty list of strings"]
    problems = [f"input.{name} is not a field Elasticsearch accepts here (Elasticsearch: [{_INPUT_PARSER}] unknown "
                f"field [{name}])" for name in value if name != "field_names"]
    names = value.get("field_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return [*problems, "input.field_names must be a non-empty list of strings"]
    if any("" in name.split(".") for name in names if "." in name):
        problems.append("input.field_names must be dot-delimited field names without empty parts (Elasticsearch: "
                        "[input.field_names] must only contain valid dot delimited field names)")
    return problems


def _inference_problems(inference: Mapping[str, Any], task_type: str) -> list[str]:
    ((task, options),) = inference.items()
    problems: list[str] = []
    if task not in TASKS:
        problems.append(f"inference_config has unknown task {task!r}")
    elif task != task_type:
        problems.append(f"inference_config is for {task!r} but the manifest says {task_type!r}")
    if not isinstance(options, Mapping):
        return [*problems, f"inference_config.{task} must be an object"]
    kind, tokenization, found = _tokenization_problems(f"inference_config.{task}", options.get("tokenization"))
    problems += found
    if task in TASKS:
        problems += _task_problems(task, options, kind, tokenization)
    return problems


def _tokenization_problems(path: str, tokenization: Any) -> tuple[str | None, dict[str, Any], list[str]]:
    """(kind, the options as Elasticsearch reads them, problems)."""
    if not isinstance(tokenization, Mapping) or len(tokenization) != 1:
        return None, {}, [f"{path}.tokenization must hold exactly one tokenizer kind"]
    ((kind, options),) = tokenization.items()
    if kind not in TOKENIZERS:
        return None, {}, [f"tokenization {kind!r} is not one of {', '.join(TOKENIZATIONS)}"]
    where = f"{path}.tokenization.{kind}"
    if not isinstance(options, Mapping):
        return kind, {}, [f"{where} must be an object"]
    problems = []
    if "vocabulary" in options:
        problems.append("tokenization must not carry the vocabulary (it is uploaded separately)")
    found, values = _object_problems(options, where, TOKENIZERS[kind].parser, TOKENIZERS[kind].rules,
                                     skip=("vocabulary",))
    return kind, values, [*problems, *found, *_span_problems(where, options, values)]


def _span_problems(where: str, options: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """Tokenization.java: a span against max_sequence_length and truncate (defaults 512 and first). Skipped where
    one of them is already wrong."""
    span = values.get("span", UNSET_SPAN)
    if span == UNSET_SPAN:
        return []
    problems = []
    if "max_sequence_length" in values or "max_sequence_length" not in options:
        length = values.get("max_sequence_length", DEFAULT_MAX_SEQUENCE_LENGTH)
        if span > length:
            # Elasticsearch's words only: tests/test_export_refusals.py matches this text exactly.
            problems.append(f"[span] provided [{span}] must not be greater than [max_sequence_length] provided "
                            f"[{length}]")
        elif span == length:  # esbundle's rule: accepted at creation, but no window could advance
            problems.append(f"{where}.span must be less than max_sequence_length {length}: Elasticsearch accepts "
                            "it at creation, but a window that overlaps the whole previous one cannot advance")
    if "truncate" in values or "truncate" not in options:
        truncate = str(values.get("truncate", "first")).lower()
        if truncate != "none":
            problems.append(f"{where}.span must not be set unless truncate is none (Elasticsearch: [span] must not "
                            f"be provided when [truncate] is [{truncate}])")
    return problems


def _task_problems(task: str, options: Mapping[str, Any], kind: str | None,
                   tokenization: Mapping[str, Any]) -> list[str]:
    path = f"inference_config.{task}"
    problems = []
    if "vocabulary" in options:
        problems.append(f"{path}.vocabulary must not be set (Elasticsearch: illegal setting [vocabulary] on "
                        "inference model creation)")
    found, values = _object_problems(options, path, task, TASKS[task].rules, skip=("tokenization", "vocabulary"))
    problems += found
    span = tokenization.get("span", UNSET_SPAN)
    if not TASKS[task].windowing and span != UNSET_SPAN:
        problems.append(f"{path}.tokenization.{kind}.span must be -1: {task} does not window long inputs "
                        f"(Elasticsearch: [{task}] does not support windowing long text sequences; configured "
                        f"span [{span}])")
    check = _TASK_CHECKS.get(task)
    return problems + (check(path, options, values, kind) if check else [])


def _text_classification_labels(path: str, options: Mapping[str, Any], values: Mapping[str, Any],
                                 kind: str | None) -> list[str]:
    """TextClassificationConfig.java: `[text_classification] requires at least 2 [classification_labels]`."""
    labels = values.get("classification_labels")
    if labels is None and "classification_labels" in options:
        return []  # its type is already reported
    return [] if labels and len(labels) >= 2 else ["text_classification needs at least 2 classification_labels"]


def _ner_labels(path: str, options: Mapping[str, Any], values: Mapping[str, Any], kind: str | None) -> list[str]:
    """NerConfig.java: labels, when given, are IOB tags and include the outside label O."""
    labels = values.get("classification_labels") or []
    bad = [label for label in labels if not label.upper().startswith(IOB_PREFIXES)]
    refusal = "[ner] only allows IOB tokenization tagging for classification labels;"
    if bad:
        return [f"{path}.classification_labels must be IOB tags (O, B-X, I-X, B_X, I_X) (Elasticsearch: {refusal} "
                f"provided {_java(bad)})"]
    if labels and not any(label.upper() == "O" for label in labels):
        return [f"{path}.classification_labels must include the outside label O (Elasticsearch: {refusal} missing "
                "outside label [O])"]
    return []


def _zero_shot_labels(path: str, options: Mapping[str, Any], values: Mapping[str, Any],
                      kind: str | None) -> list[str]:
    """ZeroShotClassificationConfig.java: classification_labels required, three, each (any case) one of the NLI
    labels."""
    where = f"{path}.classification_labels"
    if "classification_labels" not in options:
        return [f"{where} must be set (Elasticsearch: Required [classification_labels])"]
    labels = values.get("classification_labels")
    if labels is None:
        return []  # its type is already reported
    bad = [label.lower() for label in labels if label.lower() not in ZERO_SHOT_CLASSIFICATION_LABELS]
    if len(labels) == 3 and not bad:
        return []
    three = list(ZERO_SHOT_CLASSIFICATION_LABELS)
    invalid = f". Invalid labels {_java(bad)}" if len(labels) == 3 else ""
    return [f"{where} must be the three labels {', '.join(three)} (Elasticsearch: [classification_labels] must "
            f"contain exactly the three values {_java(three)}{invalid})"]


def _fill_mask_token(path: str, options: Mapping[str, Any], values: Mapping[str, Any], kind: str | None) -> list[str]:
    """FillMaskConfig.java: a mask_token, when given, is the tokenizer's own."""
    token, expected = values.get("mask_token"), TOKENIZERS[kind].mask_token if kind in TOKENIZERS else None
    if token is None or expected is None or token == expected:
        return []
    return [f"{path}.mask_token must be {expected} for {kind} (Elasticsearch: Mask token requested was [{token}] but "
            f"must be [{expected}] for this model)"]


_TASK_CHECKS: dict[str, Callable[[str, Mapping[str, Any], Mapping[str, Any], str | None], list[str]]] = {
    "text_classification": _text_classification_labels,
    "ner": _ner_labels,
    "zero_shot_classification": _zero_shot_labels,
    "fill_mask": _fill_mask_token,
}


def tokenization_kind(config: Mapping[str, Any]) -> str | None:
    try:
        (options,) = config["inference_config"].values()
        (kind,) = options["tokenization"]
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    return str(kind)


def vocabulary_problems(vocabulary: Any, tokenization: str | None) -> list[str]:
    if not isinstance(vocabulary, Mapping):
        return ["must be a JSON object"]
    problems: list[str] = []
    unknown = sorted(set(vocabulary) - {"vocabulary", "merges", "scores"})
    if unknown:
        problems.append("has unknown field(s) " + ", ".join(unknown))
    tokens = vocabulary.get("vocabulary")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        problems.append("[vocabulary] must be a non-empty list of strings")
        tokens = []
    merges = vocabulary.get("merges")
    if merges is not None and (not isinstance(merges, list) or not all(isinstance(m, str) for m in merges)):
        problems.append("[merges] must be a list of strings")
    scores = vocabulary.get("scores")
    if scores is not None:
        if not isinstance(scores, list) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores
        ):
            problems.append("[scores] must be a list of numbers")
        elif len(scores) != len(tokens):
            problems.append("[scores] must have same length as [vocabulary]")
    if tokenization == "roberta" and not merges:
        problems.append("tokenizer type [roberta] requires [merges] to be provided and non-empty")
    if tokenization == "xlm_roberta" and not scores:
        problems.append("tokenizer type [xlm_roberta] requires [scores] to be provided and non-empty")
    return problems
