"""The config rules from Elasticsearch's parsers (loader/format/model_config.py), one rule class at a time.

Every config esbundle's own export writes passes; every config the cluster would refuse is reported, one problem per
violation, naming the field; the writer refuses such a config, and `verify` refuses a signed bundle carrying one.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from bundler.export import es_config
from bundler.writer.bundle import write_bundle
from loader.errors import ModelError
from loader.format import layout
from loader.format.model_config import TASK_TYPES, TASKS, TOKENIZATIONS, TOKENIZERS, config_problems
from tests.conftest import EMBEDDING_CONFIG, TINY_VOCAB, Keys, MakeBundle, RunCli, random_file
from tests.test_verify import LAYOUT, entry, resign

LABELS = {"ner": ["O", "B_PER", "I_PER", "B_LOC", "I_LOC"], "text_classification": ["NEGATIVE", "POSITIVE"],
          "zero_shot_classification": ["contradiction", "neutral", "entailment"]}
# What bundler/export/tokenization.py tokenization_options writes per family (max length and truncation come later).
EXPORT_OPTIONS: dict[str, list[dict[str, Any]]] = {
    "bert": [{"do_lower_case": True}, {"do_lower_case": False}],
    "bert_ja": [{"do_lower_case": False}],
    "mpnet": [{"do_lower_case": True}],
    "roberta": [{"add_prefix_space": False}, {"add_prefix_space": True}],
    "xlm_roberta": [{}],
    "deberta_v2": [{"do_lower_case": False}, {"do_lower_case": True}],
}


def exported(task: str, family: str, options: dict[str, Any], max_length: int, prefixes: bool = False) -> Any:
    return es_config.build_config(
        task=task, family=family, tokenization_options=options, max_length=max_length,
        labels=LABELS.get(task, []), embedding_size=384 if task == "text_embedding" else None,
        ingest_prefix="passage: " if prefixes else None, search_prefix="query: " if prefixes else None,
        description=f"Model x for task type '{task}'", per_deployment_memory_bytes=1 << 20,
        per_allocation_memory_bytes=1 << 19)


def config_for(task: str = "text_embedding", kind: str = "bert", tokenization: dict[str, Any] | None = None,
               **task_options: Any) -> dict[str, Any]:
    options = {"tokenization": {kind: {"max_sequence_length": 128, **(tokenization or {})}}, **task_options}
    if task == "text_classification":
        options.setdefault("classification_labels", ["a", "b"])
    if task == "zero_shot_classification":
        options.setdefault("classification_labels", ["entailment", "neutral", "contradiction"])
    return {**copy.deepcopy(EMBEDDING_CONFIG), "inference_config": {task: options}}


def problems_of(task: str = "text_embedding", kind: str = "bert", tokenization: dict[str, Any] | None = None,
                **task_options: Any) -> list[str]:
    return config_problems(config_for(task, kind, tokenization, **task_options), task)


def only(problems: list[str], *needles: str) -> str:
    """The single problem reported, which must contain every needle."""
    assert len(problems) == 1, problems
    for needle in needles:
        assert needle in problems[0], problems[0]
    return problems[0]


# ---- Every config esbundle's export writes passes


@pytest.mark.parametrize("task", TASK_TYPES)
@pytest.mark.parametrize("family", TOKENIZATIONS)
def test_every_config_export_writes_passes(task: str, family: str) -> None:
    for options in EXPORT_OPTIONS[family]:
        for max_length in (512, 386, 256, 128, 64, 8, 2, 1):
            for prefixes in (False, True):
                config = exported(task, family, dict(options), max_length, prefixes)
                assert config_problems(config, task) == [], (config, config_problems(config, task))


def test_the_tables_cover_every_task_and_tokenizer_the_export_knows() -> None:
    assert set(TASKS) == set(TASK_TYPES) and set(TOKENIZERS) == set(TOKENIZATIONS) == set(EXPORT_OPTIONS)


# ---- Tokenization.java: types and ranges of the common fields, for every tokenizer kind


@pytest.mark.parametrize("kind", TOKENIZATIONS)
@pytest.mark.parametrize(("value", "says"), [
    (0, "[max_sequence_length] must be positive"),
    (-5, "[max_sequence_length] must be positive"),
    ("0", "[max_sequence_length] must be positive"),  # coerced from the string, then out of range
    (True, "max_sequence_length doesn't support values of type: VALUE_BOOLEAN"),
    (None, "max_sequence_length doesn't support values of type: VALUE_NULL"),
    ([128], "max_sequence_length doesn't support values of type: START_ARRAY"),
    ({"n": 1}, "max_sequence_length doesn't support values of type: START_OBJECT"),
    ("12x", "failed to parse field [max_sequence_length]"),
    ("NaN", "failed to parse field [max_sequence_length]"),
    (2**31, "failed to parse field [max_sequence_length]"),
])
def test_max_sequence_length_must_be_a_positive_integer(kind: str, value: Any, says: str) -> None:
    only(problems_of(kind=kind, tokenization={"max_sequence_length": value}),
         f"inference_config.text_embedding.tokenization.{kind}.max_sequence_length must be a positive integer", says)


@pytest.mark.parametrize("value", ["128", " 128 ", "1.28e2", 128.0, 128.9])
def test_lengths_are_read_as_elasticsearch_coerces_them(value: Any) -> None:
    # AbstractXContentParser.intValue (coercion on): numeric strings are parsed, fractions truncated.
    assert problems_of(tokenization={"max_sequence_length": value}) == []


@pytest.mark.parametrize(("name", "value", "says"), [
    ("do_lower_case", 1, "do_lower_case doesn't support values of type: VALUE_NUMBER"),
    ("do_lower_case", "yes", "failed to parse field [do_lower_case]"),
    ("with_special_tokens", None, "with_special_tokens doesn't support values of type: VALUE_NULL"),
    ("truncate", 1, "truncate doesn't support values of type: VALUE_NUMBER"),
    ("span", True, "span doesn't support values of type: VALUE_BOOLEAN"),
    ("span", "wide", "failed to parse field [span]"),
])
def test_common_fields_have_elasticsearchs_types(name: str, value: Any, says: str) -> None:
    only(problems_of("question_answering", tokenization={name: value, "truncate": "none"} if name == "span"
                     else {name: value}), f"inference_config.question_answering.tokenization.bert.{name} must be",
         "[bert_tokenization]", says)


@pytest.mark.parametrize("value", ["true", "false", True, False])
def test_booleans_take_true_false_and_their_strings(value: Any) -> None:
    assert problems_of(tokenization={"do_lower_case": value, "with_special_tokens": value}) == []


@pytest.mark.parametrize(("kind", "parser"), [
    ("bert", "bert_tokenization"), ("bert_ja", "bert_japanese_tokenization"), ("mpnet", "mpnet_tokenization"),
    ("roberta", "roberta_tokenization"), ("xlm_roberta", "xlm_roberta_tokenization"), ("deberta_v2", "deberta_v2"),
])
def test_unknown_tokenization_options_are_refused(kind: str, parser: str) -> None:
    only(problems_of(kind=kind, tokenization={"stride": 16}),
         f"inference_config.text_embedding.tokenization.{kind}.stride is not a field",
         f"[{parser}] unknown field [stride]")


@pytest.mark.parametrize("kind", [k for k in TOKENIZATIONS if k != "roberta"])
def test_add_prefix_space_is_roberta_only(kind: str) -> None:
    only(problems_of(kind=kind, tokenization={"add_prefix_space": True}), "add_prefix_space is not a field")
    assert problems_of(kind="roberta", tokenization={"add_prefix_space": True}) == []


@pytest.mark.parametrize(("kind", "name"), [("roberta", "roberta"), ("xlm_roberta", "XLMRoberta")])
def test_roberta_tokenizers_cannot_lower_case(kind: str, name: str) -> None:
    only(problems_of(kind=kind, tokenization={"do_lower_case": True}),
         f"tokenization.{kind}.do_lower_case must be false",
         f"unable to set [do_lower_case] to [true] for {name} tokenizer")
    assert problems_of(kind=kind, tokenization={"do_lower_case": False}) == []


def test_truncate_takes_elasticsearchs_enumeration_in_any_case() -> None:
    only(problems_of(tokenization={"truncate": "sideways"}),
         "tokenization.bert.truncate must be one of first, second, none, balanced",
         "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.Tokenization.Truncate.SIDEWAYS")
    for value in ("first", "second", "none", "balanced", "NONE", "Second"):
        assert problems_of(tokenization={"truncate": value}) == [], value


# ---- Tokenization.java: span against truncate and max_sequence_length; the tasks that may not window


def test_span_range() -> None:
    only(problems_of("question_answering", tokenization={"span": -2, "truncate": "none"}),
         "question_answering.tokenization.bert.span must be -1 or a non-negative integer",
         "[span] must be non-negative to indicate span length or [-1] to indicate no windowing should occur")
    for span in (-1, 0, 64):
        assert problems_of("question_answering", tokenization={"span": span, "truncate": "none"}) == []


@pytest.mark.parametrize("truncate", [None, "first", "second", "balanced", "FIRST"])
def test_span_needs_truncate_none(truncate: str | None) -> None:
    tokenization: dict[str, Any] = {"span": 32} | ({"truncate": truncate} if truncate else {})
    shown = (truncate or "first").lower()  # the default is first
    only(problems_of("question_answering", tokenization=tokenization),
         "question_answering.tokenization.bert.span must not be set unless truncate is none",
         f"[span] must not be provided when [truncate] is [{shown}]")
    assert problems_of("question_answering", tokenization={"span": -1, "truncate": shown}) == []


def test_span_against_max_sequence_length() -> None:
    assert problems_of("question_answering", tokenization={"span": 129, "truncate": "none"}) == [
        "[span] provided [129] must not be greater than [max_sequence_length] provided [128]"]  # the existing words
    # max_sequence_length defaults to 512
    config = config_for("question_answering", tokenization={"span": 600, "truncate": "none"})
    del config["inference_config"]["question_answering"]["tokenization"]["bert"]["max_sequence_length"]
    only(config_problems(config, "question_answering"), "[span] provided [600] must not be greater than "
         "[max_sequence_length] provided [512]")
    # esbundle's own rule, kept: equal to the length is accepted at creation but can never advance a window
    only(problems_of("question_answering", tokenization={"span": 128, "truncate": "none"}),
         "span must be less than max_sequence_length 128")


@pytest.mark.parametrize("task", TASK_TYPES)
def test_only_windowing_tasks_take_a_span(task: str) -> None:
    problems = problems_of(task, tokenization={"span": 16, "truncate": "none"})
    if task in ("question_answering", "text_classification", "text_expansion", "text_similarity"):
        assert problems == []
    else:
        only(problems, f"inference_config.{task}.tokenization.bert.span must be -1",
             f"[{task}] does not support windowing long text sequences; configured span [16]")


# ---- The task configs: each task's own fields, types and ranges


@pytest.mark.parametrize("task", TASK_TYPES)
def test_unknown_task_options_are_refused(task: str) -> None:
    only(problems_of(task, top_k=3), f"inference_config.{task}.top_k is not a field",
         f"[{task}] unknown field [top_k]")


@pytest.mark.parametrize(("task", "name"), [("question_answering", "question"), ("text_similarity", "text")])
def test_inference_only_options_are_refused_at_creation(task: str, name: str) -> None:
    only(problems_of(task, **{name: "what?"}), f"[{task}] unknown field [{name}]")


@pytest.mark.parametrize("task", TASK_TYPES)
def test_results_field_and_vocabulary(task: str) -> None:
    assert problems_of(task, results_field="my_result") == []
    only(problems_of(task, results_field=1), f"inference_config.{task}.results_field must be a string",
         "results_field doesn't support values of type: VALUE_NUMBER")
    only(problems_of(task, vocabulary={"index": "x"}), f"inference_config.{task}.vocabulary must not be set",
         "illegal setting [vocabulary] on inference model creation")


@pytest.mark.parametrize(("value", "says"), [
    (0, "[embedding_size] must be a number greater than 0; configured size [0]"),
    (-384, "configured size [-384]"),
    (True, "embedding_size doesn't support values of type: VALUE_BOOLEAN"),
    ("wide", "failed to parse field [embedding_size]"),
])
def test_embedding_size_must_be_positive(value: Any, says: str) -> None:
    only(problems_of(embedding_size=value), "inference_config.text_embedding.embedding_size must be a positive "
         "integer", says)


@pytest.mark.parametrize("task", ["text_classification", "fill_mask", "question_answering"])
@pytest.mark.parametrize(("value", "says"), [
    ("three", "failed to parse field [num_top_classes]"),
    (True, "num_top_classes doesn't support values of type: VALUE_BOOLEAN"),
    ([3], "num_top_classes doesn't support values of type: START_ARRAY"),
])
def test_num_top_classes_wrongly_typed(task: str, value: Any, says: str) -> None:
    only(problems_of(task, num_top_classes=value), f"inference_config.{task}.num_top_classes must be", says)


def test_num_top_classes_ranges_per_task() -> None:
    assert problems_of("text_classification", num_top_classes=-1) == []  # -1: all classes
    assert problems_of("fill_mask", num_top_classes=-1) == []
    only(problems_of("question_answering", num_top_classes=-1),
         "question_answering.num_top_classes must be a non-negative integer",
         "[num_top_classes] must be greater than or equal to [0]; provided [-1]")
    only(problems_of("question_answering", max_answer_length=0),
         "question_answering.max_answer_length must be a positive integer",
         "[max_answer_length] must be greater than [0]; provided [0]")
    assert problems_of("question_answering", num_top_classes=0, max_answer_length=15) == []


def test_text_similarity_span_score_function() -> None:
    only(problems_of("text_similarity", span_score_combination_function="median"),
         "text_similarity.span_score_combination_function must be max or mean",
         "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.TextSimilarityConfig."
         "SpanScoreFunction.MEDIAN")
    for value in ("max", "mean", "MEAN"):
        assert problems_of("text_similarity", span_score_combination_function=value) == []


@pytest.mark.parametrize(("kind", "token"), [
    ("bert", "[MASK]"), ("bert_ja", "[MASK]"), ("mpnet", "<mask>"), ("roberta", "<mask>"), ("xlm_roberta", "<mask>"),
    ("deberta_v2", "[MASK]"),
])
def test_fill_mask_token_is_the_tokenizers(kind: str, token: str) -> None:
    assert problems_of("fill_mask", kind, mask_token=token) == []
    other = "<mask>" if token == "[MASK]" else "[MASK]"
    only(problems_of("fill_mask", kind, mask_token=other), f"inference_config.fill_mask.mask_token must be {token}",
         f"Mask token requested was [{other}] but must be [{token}] for this model")


def test_text_classification_labels() -> None:
    for labels in (["only"], [], "only"):  # a single string is read as a one-element list
        only(problems_of("text_classification", classification_labels=labels),
             "text_classification needs at least 2 classification_labels")
    only(problems_of("text_classification", classification_labels=[["a"], "b"]),
         "failed to parse field [classification_labels]")
    config = config_for("text_classification")
    del config["inference_config"]["text_classification"]["classification_labels"]
    only(config_problems(config, "text_classification"), "text_classification needs at least 2")


def test_ner_labels_are_iob_with_an_outside_label() -> None:
    assert problems_of("ner", classification_labels=["O", "B-PER", "I-PER", "b_loc", "i_loc"]) == []
    assert problems_of("ner") == []  # no labels: the cluster's defaults
    only(problems_of("ner", classification_labels=["O", "PER", "LOC"]), "ner.classification_labels must be IOB tags",
         "[ner] only allows IOB tokenization tagging for classification labels; provided [PER, LOC]")
    only(problems_of("ner", classification_labels=["B_PER", "I_PER"]),
         "ner.classification_labels must include the outside label O", "missing outside label [O]")


def test_zero_shot_labels() -> None:
    assert problems_of("zero_shot_classification", classification_labels=["ENTAILMENT", "Neutral", "contradiction"],
                       hypothesis_template="It is about {}.", multi_label=True, labels=["sport"]) == []
    only(problems_of("zero_shot_classification", classification_labels=["entailment", "not_entailment"]),
         "zero_shot_classification.classification_labels must be the three labels",
         "[classification_labels] must contain exactly the three values [contradiction, entailment, neutral]")
    only(problems_of("zero_shot_classification", classification_labels=["entailment", "neutral", "other"]),
         "Invalid labels [other]")
    config = config_for("zero_shot_classification")
    del config["inference_config"]["zero_shot_classification"]["classification_labels"]
    only(config_problems(config, "zero_shot_classification"), "Required [classification_labels]")
    only(problems_of("zero_shot_classification", labels=[]), "zero_shot_classification.labels must be a non-empty",
         "[labels] must not be empty")
    only(problems_of("zero_shot_classification", multi_label="yes"), "zero_shot_classification.multi_label must be "
         "a boolean")


# ---- TrainedModelConfig.java: the top level, prefix_strings and input


def test_top_level_fields_and_types() -> None:
    fine = {**EMBEDDING_CONFIG, "description": "d", "tags": ["nlp", "e5-small"], "metadata": {"a": 1},
            "model_size_bytes": 1000, "estimated_operations": 0, "platform_architecture": "linux-x86_64",
            "doc_type": "trained_model_config", "default_field_map": {}, "prefix_strings": {"ingest": "p: "}}
    assert config_problems(fine, "text_embedding") == []
    problems = config_problems({**fine, "description": 5, "tags": ["Bad Tag"], "model_size_bytes": -1,
                                "estimated_operations": "many", "prefix_strings": {"query": "q: ", "search": 1},
                                "metadata": {"model_aliases": ["x"]}}, "text_embedding")
    expected = ["description must be a string", "tags must be a list of tags", "[model_size_bytes] must be greater "
                "than or equal to 0", "estimated_operations must be a non-negative integer",
                "[trained_model_config_prefix_strings] unknown field [query]", "prefix_strings.search must be a "
                "string", "illegal to set [metadata.model_aliases] at inference model creation"]
    assert len(problems) == len(expected), problems
    for needle in expected:
        assert any(needle in p for p in problems), (needle, problems)


def test_fields_esbundle_does_not_pass_on() -> None:
    only(config_problems({**EMBEDDING_CONFIG, "model_id": "x"}, "text_embedding"), "sets [model_id], which esbundle")
    only(config_problems({**EMBEDDING_CONFIG, "compressed_definition": "x"}, "text_embedding"),
         "sets [compressed_definition], which esbundle does not pass on")


def test_input_field_names() -> None:
    for value in (None, {}, {"field_names": []}, {"field_names": "text_field"}, {"field_names": [1]}):
        only(config_problems({**EMBEDDING_CONFIG, "input": value}, "text_embedding"),
             "input.field_names must be a non-empty list of strings")
    only(config_problems({**EMBEDDING_CONFIG, "input": {"field_names": ["a..b"]}}, "text_embedding"),
         "[input.field_names] must only contain valid dot delimited field names")
    only(config_problems({**EMBEDDING_CONFIG, "input": {"field_names": ["t"], "x": 1}}, "text_embedding"),
         "[trained_model_config_input] unknown field [x]")
    assert config_problems({**EMBEDDING_CONFIG, "input": {"field_names": ["body.text"]}}, "text_embedding") == []


def test_the_existing_problems_keep_their_words() -> None:
    assert config_problems([], "text_embedding") == ["must be a JSON object"]
    assert config_problems({**EMBEDDING_CONFIG, "location": {}, "foo": 1, "model_type": "tree_ensemble"},
                           "text_embedding") == [
        "sets [location], which only the server may set", "has field(s) Elasticsearch does not accept: foo",
        "model_type must be 'pytorch'"]
    assert "inference_config must hold exactly one task" in config_problems(
        {**EMBEDDING_CONFIG, "inference_config": {}}, "text_embedding")
    assert config_problems(config_for("ner"), "text_embedding") == [
        "inference_config is for 'ner' but the manifest says 'text_embedding'"]
    assert config_problems(config_for(kind="gpt2"), "text_embedding") == [
        "tokenization 'gpt2' is not one of bert, bert_ja, mpnet, roberta, xlm_roberta, deberta_v2"]
    assert config_problems(config_for(tokenization={"vocabulary": {}}), "text_embedding") == [
        "tokenization must not carry the vocabulary (it is uploaded separately)"]


def test_every_violation_is_reported_once_naming_its_field() -> None:
    config = config_for("text_embedding", tokenization={"max_sequence_length": True, "truncate": "sideways",
                                                        "stride": 1, "do_lower_case": "maybe"}, embedding_size=0,
                        top_k=1)
    config["prefix_strings"] = {"ingest": 1}
    problems = config_problems(config, "text_embedding")
    base = "inference_config.text_embedding"
    assert sorted(p.split(" ", 1)[0] for p in problems) == sorted([
        f"{base}.tokenization.bert.max_sequence_length", f"{base}.tokenization.bert.truncate",
        f"{base}.tokenization.bert.stride", f"{base}.tokenization.bert.do_lower_case", f"{base}.embedding_size",
        f"{base}.top_k", "prefix_strings.ingest"]), problems


# ---- Both sides: the writer refuses such a config, and verify refuses a signed bundle carrying one


def test_the_writer_refuses_a_config_the_cluster_would(tmp_path: Path, keys: Keys) -> None:
    with pytest.raises(ModelError, match=r"tokenization\.bert\.max_sequence_length must be a positive integer"):
        write_bundle(tmp_path / "b", definition=random_file(tmp_path / "m.pt", 1000),
                     config=config_for(tokenization={"max_sequence_length": 0}), vocabulary=TINY_VOCAB,
                     signing_key=keys.signing, model_id="m", task_type="text_embedding")
    assert not (tmp_path / "b").exists()


def test_verify_refuses_a_signed_bundle_whose_config_the_cluster_would_refuse(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()
    raw = json.dumps(config_for(tokenization={"max_sequence_length": True, "truncate": "sideways"}),
                     sort_keys=True, indent=2).encode() + b"\n"
    (bundle / layout.CONFIG).write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()

    def point_at_new_config(manifest: dict[str, Any]) -> None:  # a publisher signing what it should not
        entry(manifest, layout.CONFIG).update(size=len(raw), sha256=digest, stored_size=len(raw),
                                              stored_sha256=digest)

    resign(bundle, keys, point_at_new_config)
    result = run_cli("verify", bundle, "--trusted-key", keys.pub)
    assert result.exit_code == LAYOUT == 5, result.output
    for name in ("inference_config.text_embedding.tokenization.bert.max_sequence_length",
                 "inference_config.text_embedding.tokenization.bert.truncate", "VALUE_BOOLEAN",
                 "Truncate.SIDEWAYS", layout.CONFIG):
        assert name in result.stderr, result.stderr
    assert "VERIFIED" not in result.stdout
