"""The stand-in parses `PUT _ml/trained_models/<id>` bodies as Elasticsearch's strict parsers do.

Each test is one fact from Elasticsearch's sources (TrainedModelConfig, the task configs, the tokenizations,
ObjectParser/ConstructingObjectParser wrapping, ElasticsearchException.guessRootCauses), checked against real
stand-in processes through raw HTTP and the official client. Bodies are written line by line so that the
`[line:column]` of every wrapped failure can be read off the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.standin.fixture import RawResponse, StandIn, start_standin

XC = "x_content_parse_exception"
IAE = "illegal_argument_exception"
STATUS = "status_exception"
NOT_FOUND = "named_object_not_found_exception"
NATIVE = {"index": ".ml-inference-native-000002"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("config") / "data")
    yield shared
    shared.kill()


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("config-8.5") / "data", es_version="8.5.0")
    yield shared
    shared.kill()


def put(server: StandIn, model_id: str, *lines: str) -> RawResponse:
    return server.http("PUT", f"/_ml/trained_models/{model_id}", body="\n".join(lines).encode())


def chain(response: RawResponse) -> list[tuple[str, str]]:
    """(type, reason) from the outer error down its caused_by chain."""
    error: dict[str, Any] | None = response.json()["error"]
    found = []
    while error is not None:
        found.append((error["type"], error["reason"]))
        error = error.get("caused_by")
    return found


def root(response: RawResponse) -> tuple[str, str]:
    [cause] = response.json()["error"]["root_cause"]
    return cause["type"], cause["reason"]


def stored_task(server: StandIn, model_id: str) -> dict[str, Any]:
    config = server.client().ml.get_trained_models(model_id=model_id)["trained_model_configs"][0]
    return dict(config["inference_config"])


def pass_through_with(kind: str, options: str) -> tuple[str, ...]:
    return ('{"model_type": "pytorch",',
            f' "inference_config": {{"pass_through": {{"tokenization": {{"{kind}": {{',
            f"  {options}",
            " }}}}}")


def outer(at: str, task: str) -> list[tuple[str, str]]:
    return [(XC, f"[{at}] [trained_model_config] failed to parse field [inference_config]"),
            (XC, f"[{at}] [inference_config] failed to parse field [{task}]")]


# --- fill_mask: the mask token ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "requested", "required"), [("bert", "<mask>", "[MASK]"),
                                                             ("roberta", "[MASK]", "<mask>")])
def test_fill_mask_refuses_a_mask_token_its_tokenization_does_not_use(server: StandIn, kind: str, requested: str,
                                                                      required: str) -> None:
    # FillMaskConfig.Builder.build() runs after the object is read: located at the fill_mask object's `}`.
    # (The YAML test's "IllegalArgumentException." comes from the stack traces its runner asks for.)
    refused = put(server, f"mask-wrong-{kind}",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"fill_mask": {',
                  f'  "tokenization": {{"{kind}": {{"with_special_tokens": false}}}},',
                  f'  "mask_token": "{requested}"',
                  " }}}")
    assert refused.status == 400
    assert chain(refused) == [*outer("5:2", "fill_mask"),
                              (IAE, f"Mask token requested was [{requested}] but must be [{required}] for this model")]
    assert root(refused) == (XC, "[5:2] [inference_config] failed to parse field [fill_mask]")


@pytest.mark.parametrize(("kind", "mask"), [("bert", "[MASK]"), ("bert_ja", "[MASK]"), ("mpnet", "<mask>"),
                                            ("roberta", "<mask>"), ("xlm_roberta", "<mask>"),
                                            ("deberta_v2", "[MASK]")])
@pytest.mark.parametrize("given", [False, True])
def test_fill_mask_shows_its_tokenization_mask_token(server: StandIn, kind: str, mask: str, given: bool) -> None:
    model_id = f"mask-{kind.replace('_', '-')}-{given}".lower()
    settings: dict[str, Any] = {"tokenization": {kind: {}}} | ({"mask_token": mask} if given else {})
    server.client().ml.put_trained_model(model_id=model_id, model_type="pytorch",
                                         inference_config={"fill_mask": settings})
    task = stored_task(server, model_id)["fill_mask"]
    assert task["mask_token"] == mask
    assert task["num_top_classes"] == 5 and "results_field" not in task


# --- input ---------------------------------------------------------------------------------------------------------

def test_pytorch_model_without_input_reads_the_input_field(server: StandIn) -> None:
    # TrainedModelType.PYTORCH's default input; _infer then reads each doc's `input` field.
    stored = server.client().ml.put_trained_model(model_id="no-input", model_type="pytorch",
                                                  inference_config={"pass_through": {}})
    assert stored["input"] == {"field_names": ["input"]}
    got = server.client().ml.get_trained_models(model_id="no-input")["trained_model_configs"][0]
    assert got["input"] == {"field_names": ["input"]}


def test_model_without_input_or_inference_config_fails_to_build(server: StandIn) -> None:
    # Without an id in the body the config is built before validation, and from 8.12 the default input comes
    # from the inference config.
    refused = put(server, "no-config", '{"model_type": "pytorch"}')
    assert (refused.status, chain(refused), root(refused)) == (400, [(IAE, "[input] must not be null.")],
                                                               (IAE, "[input] must not be null."))


def test_model_without_inference_config_on_8_5_fails_validation(old: StandIn) -> None:
    refused = put(old, "no-config", '{"model_type": "pytorch"}')
    assert refused.status == 400
    assert chain(refused) == [("action_request_validation_exception",
                               "Validation Failed: 1: [inference_config] must not be null.;")]


def test_body_with_the_model_id_is_validated_before_it_is_built(server: StandIn) -> None:
    refused = put(server, "with-id", '{"model_id": "with-id", "model_type": "pytorch"}')
    assert chain(refused) == [("action_request_validation_exception",
                               "Validation Failed: 1: [inference_config] must not be null.;")]


def test_input_field_names_must_be_dot_delimited_names(server: StandIn) -> None:
    refused = put(server, "dots", '{"model_type": "pytorch", "input": {"field_names": ["a..b"]},',
                  ' "inference_config": {"pass_through": {}}}')
    assert chain(refused) == [("action_request_validation_exception", "Validation Failed: 1: [input.field_names] "
                               "must only contain valid dot delimited field names;")]


def test_input_requires_field_names(server: StandIn) -> None:
    refused = put(server, "no-names",
                  '{"model_type": "pytorch",',
                  ' "input": {',
                  " },",
                  ' "inference_config": {"pass_through": {}}}')
    assert chain(refused) == [(XC, "[3:2] [trained_model_config] failed to parse field [input]"),
                              (IAE, "Required [field_names]")]
    assert root(refused) == (XC, "[3:2] [trained_model_config] failed to parse field [input]")


# --- prefix_strings ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefixes", [{"search": "query: ", "ingest": "passage: "}, {"search": "query: "},
                                      {"ingest": "passage: "}])
def test_prefix_strings_are_stored_and_shown_as_given(server: StandIn, prefixes: dict[str, str]) -> None:
    model_id = "prefix-" + "-".join(sorted(prefixes))
    client = server.client()
    stored = client.ml.put_trained_model(model_id=model_id, model_type="pytorch",
                                         inference_config={"text_embedding": {}}, prefix_strings=prefixes)
    assert stored["prefix_strings"] == prefixes
    got = client.ml.get_trained_models(model_id=model_id)["trained_model_configs"][0]
    assert got["prefix_strings"] == prefixes


def test_prefix_strings_take_only_search_and_ingest(server: StandIn) -> None:
    refused = put(server, "prefix-query",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"text_embedding": {}},',
                  ' "prefix_strings": {"query": "q"}}')
    assert chain(refused) == [(XC, "[3:30] [trained_model_config] failed to parse field [prefix_strings]"),
                              (XC, "[3:21] [trained_model_config_prefix_strings] unknown field [query]")]
    assert root(refused) == (XC, "[3:21] [trained_model_config_prefix_strings] unknown field [query]")


def test_prefix_strings_are_unknown_before_8_12(old: StandIn) -> None:
    refused = put(old, "prefix-old",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"text_embedding": {}},',
                  ' "prefix_strings": {"search": "q"}}')
    assert chain(refused) == [(XC, "[3:2] [trained_model_config] unknown field [prefix_strings]")]


# --- tokenizations -------------------------------------------------------------------------------------------------

def test_bert_ja_tokenization_as_the_yaml_test_puts_it(server: StandIn) -> None:
    server.client().ml.put_trained_model(
        model_id="j-bert", model_type="pytorch", description="model config with Japanese tokenizer",
        inference_config={"pass_through": {"tokenization": {"bert_ja": {
            "with_special_tokens": False, "max_sequence_length": 512, "truncate": "first", "span": -1}}}})
    assert stored_task(server, "j-bert") == {"pass_through": {"vocabulary": NATIVE, "tokenization": {"bert_ja": {
        "do_lower_case": False, "with_special_tokens": False, "max_sequence_length": 512, "truncate": "first",
        "span": -1}}}}


@pytest.mark.parametrize(("kind", "extra"), [("bert", {}), ("mpnet", {}), ("xlm_roberta", {}), ("deberta_v2", {}),
                                             ("roberta", {"add_prefix_space": False})])
def test_every_tokenization_shows_all_its_options(server: StandIn, kind: str, extra: dict[str, Any]) -> None:
    model_id = f"tok-{kind.replace('_', '-')}"
    server.client().ml.put_trained_model(model_id=model_id, model_type="pytorch",
                                         inference_config={"text_embedding": {"tokenization": {kind: {}}}})
    assert stored_task(server, model_id)["text_embedding"]["tokenization"] == {kind: {
        "do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512, "truncate": "first",
        "span": -1, **extra}}


@pytest.mark.parametrize(("kind", "options", "parser", "reason"), [
    ("bert", '"max_sequence_length": 0', "bert_tokenization", "[max_sequence_length] must be positive"),
    ("bert", '"truncate": "none", "span": -2', "bert_tokenization",
     "[span] must be non-negative to indicate span length or [-1] to indicate no windowing should occur"),
    ("bert", '"max_sequence_length": 16, "truncate": "none", "span": 32', "bert_tokenization",
     "[span] provided [32] must not be greater than [max_sequence_length] provided [16]"),
    ("bert", '"span": 8', "bert_tokenization", "[span] must not be provided when [truncate] is [first]"),
    ("mpnet", '"truncate": "middle"', "mpnet_tokenization",
     "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.Tokenization.Truncate.MIDDLE"),
    ("roberta", '"do_lower_case": true', "roberta_tokenization",
     "unable to set [do_lower_case] to [true] for roberta tokenizer"),
    ("xlm_roberta", '"do_lower_case": true', "xlm_roberta_tokenization",
     "unable to set [do_lower_case] to [true] for XLMRoberta tokenizer"),
])
def test_tokenization_constructor_refusals(server: StandIn, kind: str, options: str, parser: str,
                                           reason: str) -> None:
    # A ConstructingObjectParser with optional arguments builds once the object is closed (its `}`).
    refused = put(server, "tok-refused", *pass_through_with(kind, options))
    assert refused.status == 400
    assert chain(refused) == [*outer("4:2", "pass_through"),
                              (XC, "[4:2] [pass_through] failed to parse field [tokenization]"),
                              (XC, f"[4:2] [tokenization] failed to parse field [{kind}]"),
                              (XC, f"Failed to build [{parser}] after last required field arrived"),
                              (IAE, reason)]
    assert root(refused) == (XC, f"Failed to build [{parser}] after last required field arrived")


def test_tokenization_with_every_option_fails_inside_the_last_one(server: StandIn) -> None:
    # With every constructor argument given, the object is built as the last one arrives.
    refused = put(server, "tok-all",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"pass_through": {"tokenization": {"bert": {',
                  '  "do_lower_case": true, "with_special_tokens": true, "max_sequence_length": 16,',
                  '  "span": 8, "truncate": "first"',
                  " }}}}}")
    assert chain(refused) == [*outer("4:26", "pass_through"),
                              (XC, "[4:26] [pass_through] failed to parse field [tokenization]"),
                              (XC, "[4:26] [tokenization] failed to parse field [bert]"),
                              (XC, "[4:26] [bert_tokenization] failed to parse field [truncate]"),
                              (XC, "Failed to build [bert_tokenization] after last required field arrived"),
                              (IAE, "[span] must not be provided when [truncate] is [first]")]


@pytest.mark.parametrize(("kind", "options", "value_at", "message"), [
    ("bert", '"do_lowercase": true', "3:19",
     "[3:3] [bert_tokenization] unknown field [do_lowercase] did you mean [do_lower_case]?"),
    ("deberta_v2", '"foo": 1', "3:10", "[3:3] [deberta_v2] unknown field [foo]"),
])
def test_unknown_tokenization_option_names_the_tokenization_parser(server: StandIn, kind: str, options: str,
                                                                  value_at: str, message: str) -> None:
    refused = put(server, "tok-unknown", *pass_through_with(kind, options))
    assert chain(refused) == [*outer(value_at, "pass_through"),
                              (XC, f"[{value_at}] [pass_through] failed to parse field [tokenization]"),
                              (XC, f"[{value_at}] [tokenization] failed to parse field [{kind}]"),
                              (XC, message)]
    assert root(refused) == (XC, message)


def test_unknown_tokenization_is_a_named_object_not_found(server: StandIn) -> None:
    refused = put(server, "tok-gpt2",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"pass_through": {"tokenization": {',
                  '  "gpt2": {}',
                  " }}}}")
    assert chain(refused) == [*outer("3:3", "pass_through"),
                              (XC, "[3:3] [pass_through] failed to parse field [tokenization]"),
                              (XC, "[3:3] [tokenization] failed to parse field [gpt2]"),
                              (NOT_FOUND, "[3:3] unknown field [gpt2]")]
    assert root(refused) == (NOT_FOUND, "[3:3] unknown field [gpt2]")


def test_empty_tokenization_asks_for_the_enclosing_field_name(server: StandIn) -> None:
    # At the empty object's `}` the JSON parser reports the enclosing field's name.
    refused = put(server, "tok-empty",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"pass_through": {"tokenization": {',
                  " }}}}")
    assert chain(refused) == [*outer("3:2", "pass_through"),
                              (XC, "[3:2] [pass_through] failed to parse field [tokenization]"),
                              (XC, "[3:2] [tokenization] failed to parse field [tokenization]"),
                              (NOT_FOUND, "[3:2] unknown field [tokenization]")]


def test_two_tokenizations_fail_after_the_first_is_read(server: StandIn) -> None:
    # ObjectParser.parseSub finds no END_OBJECT after the named object: outside the task parser's field wrapper.
    refused = put(server, "tok-two",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"pass_through": {"tokenization": {',
                  '  "bert": {},',
                  '  "mpnet": {}',
                  " }}}}")
    assert refused.status == 400
    assert chain(refused) == [*outer("4:3", "pass_through"),
                              ("illegal_state_exception", "parser for [tokenization] did not end on END_OBJECT")]
    assert root(refused) == (XC, "[4:3] [inference_config] failed to parse field [pass_through]")


@pytest.mark.parametrize(("options", "value_at", "field", "cause"), [
    ('"max_sequence_length": "abc"', "3:26", "max_sequence_length",
     ("number_format_exception", 'For input string: "abc"')),
    ('"do_lower_case": "yes"', "3:20", "do_lower_case",
     (IAE, "Failed to parse value [yes] as only [true] or [false] are allowed.")),
])
def test_tokenization_values_that_do_not_parse(server: StandIn, options: str, value_at: str, field: str,
                                               cause: tuple[str, str]) -> None:
    refused = put(server, "tok-value", *pass_through_with("bert", options))
    field_failure = (XC, f"[{value_at}] [bert_tokenization] failed to parse field [{field}]")
    assert chain(refused) == [*outer(value_at, "pass_through"),
                              (XC, f"[{value_at}] [pass_through] failed to parse field [tokenization]"),
                              (XC, f"[{value_at}] [tokenization] failed to parse field [bert]"),
                              field_failure, cause]
    assert root(refused) == field_failure


def test_numbers_and_booleans_given_as_strings_are_coerced(server: StandIn) -> None:
    server.client().ml.put_trained_model(model_id="tok-strings", model_type="pytorch", inference_config={
        "pass_through": {"tokenization": {"bert": {"max_sequence_length": "16", "do_lower_case": "true"}}}})
    options = stored_task(server, "tok-strings")["pass_through"]["tokenization"]["bert"]
    assert (options["max_sequence_length"], options["do_lower_case"]) == (16, True)


# --- inference_config as a named object ---------------------------------------------------------------------------

def test_two_inference_configs_are_a_server_error(server: StandIn) -> None:
    # At the top level nothing wraps parseSub's IllegalStateException: Elasticsearch answers 500.
    refused = put(server, "two-tasks", '{"model_type": "pytorch", "inference_config": {"ner": {}, "pass_through": {}}}')
    assert refused.status == 500
    assert chain(refused) == [("illegal_state_exception", "parser for [inference_config] did not end on END_OBJECT")]


def test_empty_inference_config_is_a_named_object_not_found(server: StandIn) -> None:
    refused = put(server, "no-task",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {',
                  " }}")
    assert chain(refused) == [(XC, "[3:2] [trained_model_config] failed to parse field [inference_config]"),
                              (XC, "[3:2] [inference_config] failed to parse field [inference_config]"),
                              (NOT_FOUND, "[3:2] unknown field [inference_config]")]


def test_task_unknown_to_the_release_is_a_named_object_not_found(old: StandIn) -> None:
    # TextExpansionConfig's minimal version is 8.7.0.
    refused = put(old, "expansion-old",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {',
                  '  "text_expansion": {}',
                  " }}")
    assert chain(refused) == [(XC, "[3:3] [trained_model_config] failed to parse field [inference_config]"),
                              (XC, "[3:3] [inference_config] failed to parse field [text_expansion]"),
                              (NOT_FOUND, "[3:3] unknown field [text_expansion]")]


def test_vocabulary_is_refused_while_the_task_is_parsed(server: StandIn) -> None:
    refused = put(server, "with-vocabulary",
                  '{"model_type": "pytorch",',
                  ' "inference_config": {"ner": {',
                  '  "vocabulary": {"index": "x"}',
                  " }}}")
    assert chain(refused) == [*outer("3:17", "ner"), (XC, "[3:17] [ner] failed to parse field [vocabulary]"),
                              (STATUS, "illegal setting [vocabulary] on inference model creation")]
    assert root(refused) == (STATUS, "illegal setting [vocabulary] on inference model creation")


@pytest.mark.parametrize(("task", "field", "value_at"), [("question_answering", "question", "3:15"),
                                                          ("text_similarity", "text", "3:11")])
def test_inference_time_fields_are_unknown_at_put(server: StandIn, task: str, field: str, value_at: str) -> None:
    # `question` and `text` belong to the update parsers used by _infer, not to the stored config's parser.
    refused = put(server, "update-field",
                  '{"model_type": "pytorch",',
                  f' "inference_config": {{"{task}": {{',
                  f'  "{field}": "who?"',
                  " }}}")
    unknown = (XC, f"[3:3] [{task}] unknown field [{field}]")
    assert chain(refused) == [*outer(value_at, task), unknown]
    assert root(refused) == unknown


def test_results_field_is_stored_only_when_given(server: StandIn) -> None:
    client = server.client()
    client.ml.put_trained_model(model_id="results-none", model_type="pytorch", inference_config={"ner": {}})
    client.ml.put_trained_model(model_id="results-set", model_type="pytorch",
                                inference_config={"ner": {"results_field": "entities_out"}})
    assert stored_task(server, "results-none") == {"ner": {"vocabulary": NATIVE, "tokenization": {"bert": {
        "do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512, "truncate": "first",
        "span": -1}}}}
    assert stored_task(server, "results-set")["ner"]["results_field"] == "entities_out"


# --- each task's constructor ---------------------------------------------------------------------------------------

def task_refusal(server: StandIn, task: str, line: str) -> RawResponse:
    return put(server, "task-refused", '{"model_type": "pytorch",', f' "inference_config": {{"{task}": {{',
               f"  {line}", " }}}")


@pytest.mark.parametrize(("task", "line", "reason"), [
    ("zero_shot_classification", '"classification_labels": ["entailment", "neutral"]',
     "[classification_labels] must contain exactly the three values [contradiction, entailment, neutral]"),
    ("zero_shot_classification", '"classification_labels": ["entailment", "neutral", "maybe"]',
     "[classification_labels] must contain exactly the three values [contradiction, entailment, neutral]. "
     "Invalid labels [maybe]"),
    ("zero_shot_classification", '"classification_labels": ["Entailment", "neutral", "contradiction"], "labels": []',
     "[labels] must not be empty"),
    ("ner", '"classification_labels": ["O", "PER"]',
     "[ner] only allows IOB tokenization tagging for classification labels; provided [PER]"),
    ("ner", '"classification_labels": ["B-PER", "I-PER"]',
     "[ner] only allows IOB tokenization tagging for classification labels; missing outside label [O]"),
    ("question_answering", '"num_top_classes": -1',
     "[num_top_classes] must be greater than or equal to [0]; provided [-1]"),
    ("question_answering", '"max_answer_length": 0', "[max_answer_length] must be greater than [0]; provided [0]"),
    ("text_embedding", '"embedding_size": 0', "[embedding_size] must be a number greater than 0; configured size [0]"),
    ("text_expansion", '"tokenization": {"mpnet": {}}',
     "text expansion models must be configured with BERT tokenizer, [mpnet] given"),
])
def test_task_constructor_refusals(server: StandIn, task: str, line: str, reason: str) -> None:
    # ConstructingObjectParser tasks: the constructor runs once the task object is closed (its `}`).
    refused = task_refusal(server, task, line)
    assert refused.status == 400
    assert chain(refused) == [*outer("4:2", task),
                              (XC, f"Failed to build [{task}] after last required field arrived"), (STATUS, reason)]
    assert root(refused) == (STATUS, reason)


def test_text_similarity_refuses_an_unknown_span_score_function(server: StandIn) -> None:
    refused = task_refusal(server, "text_similarity", '"span_score_combination_function": "sum"')
    assert chain(refused) == [*outer("4:2", "text_similarity"),
                              (XC, "Failed to build [text_similarity] after last required field arrived"),
                              (IAE, "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel."
                                    "TextSimilarityConfig.SpanScoreFunction.SUM")]


@pytest.mark.parametrize(("line", "reason"), [
    ('"classification_labels": ["a"]', "[text_classification] requires at least 2 [classification_labels]; "
                                       "provided [a]"),
    ('"num_top_classes": 2', "[text_classification] requires at least 2 [classification_labels]; provided null"),
])
def test_text_classification_needs_two_labels(server: StandIn, line: str, reason: str) -> None:
    # An ObjectParser plus build(): no "Failed to build" wrapper.
    refused = task_refusal(server, "text_classification", line)
    assert chain(refused) == [*outer("4:2", "text_classification"), (STATUS, reason)]
    assert root(refused) == (STATUS, reason)


def test_zero_shot_requires_classification_labels(server: StandIn) -> None:
    refused = task_refusal(server, "zero_shot_classification", '"multi_label": true')
    assert chain(refused) == [*outer("4:2", "zero_shot_classification"), (IAE, "Required [classification_labels]")]
    assert root(refused) == (XC, "[4:2] [inference_config] failed to parse field [zero_shot_classification]")


@pytest.mark.parametrize(("task", "extra"), [
    ("fill_mask", ""), ("ner", ""), ("pass_through", ""), ("text_embedding", ""),
    ("zero_shot_classification", '"classification_labels": ["entailment", "neutral", "contradiction"], '),
])
def test_tasks_that_refuse_windowing(server: StandIn, task: str, extra: str) -> None:
    refused = task_refusal(server, task, extra + '"tokenization": {"bert": {"truncate": "none", "span": 128}}')
    reason = f"[{task}] does not support windowing long text sequences; configured span [128]"
    built = [] if task == "fill_mask" else [(XC, f"Failed to build [{task}] after last required field arrived")]
    assert chain(refused) == [*outer("4:2", task), *built, (STATUS, reason)]


@pytest.mark.parametrize(("task", "extra"), [
    ("question_answering", ""), ("text_similarity", ""), ("text_expansion", ""),
    ("text_classification", '"classification_labels": ["a", "b"], '),
])
def test_tasks_that_window_long_text_keep_the_span(server: StandIn, task: str, extra: str) -> None:
    model_id = f"window-{task.replace('_', '-')}"
    response = put(server, model_id, '{"model_type": "pytorch", "inference_config": {"' + task + '": {' + extra +
                   '"tokenization": {"bert": {"truncate": "none", "span": 128}}}}}')
    assert response.status == 200
    assert response.json()["inference_config"][task]["tokenization"]["bert"]["span"] == 128


@pytest.mark.parametrize(("task", "settings", "shown"), [
    ("question_answering", {}, {"num_top_classes": 0, "max_answer_length": 15}),
    ("text_classification", {"classification_labels": ["neg", "pos"]},
     {"classification_labels": ["neg", "pos"], "num_top_classes": 0}),
    ("text_similarity", {}, {"span_score_combination_function": "max"}),
    ("text_similarity", {"span_score_combination_function": "MEAN"}, {"span_score_combination_function": "mean"}),
    ("text_embedding", {"embedding_size": 384}, {"embedding_size": 384}),
    ("zero_shot_classification", {"classification_labels": ["Entailment", "neutral", "contradiction"]},
     {"classification_labels": ["Entailment", "neutral", "contradiction"], "multi_label": False,
      "hypothesis_template": "This example is {}."}),
    ("zero_shot_classification", {"classification_labels": ["entailment", "neutral", "contradiction"],
                                  "labels": ["sport"], "multi_label": True, "hypothesis_template": "About {}."},
     {"classification_labels": ["entailment", "neutral", "contradiction"], "multi_label": True,
      "hypothesis_template": "About {}.", "labels": ["sport"]}),
])
def test_task_defaults_shown_by_get(server: StandIn, task: str, settings: dict[str, Any],
                                    shown: dict[str, Any]) -> None:
    model_id = f"defaults-{task.replace('_', '-')}-{len(settings)}"
    server.client().ml.put_trained_model(model_id=model_id, model_type="pytorch", inference_config={task: settings})
    stored = stored_task(server, model_id)[task]
    assert {k: v for k, v in stored.items() if k not in ("vocabulary", "tokenization")} == shown
    assert stored["vocabulary"] == NATIVE


def test_embedding_size_is_unknown_before_8_8(old: StandIn) -> None:
    refused = task_refusal(old, "text_embedding", '"embedding_size": 384')
    assert chain(refused) == [*outer("3:21", "text_embedding"),
                              (XC, "[3:3] [text_embedding] unknown field [embedding_size]")]


# --- top-level fields, building, and what the stand-in does not emulate --------------------------------------------

def test_model_type_is_read_as_an_enum(server: StandIn) -> None:
    accepted = put(server, "mixed-case", '{"model_type": " PyTorch ", "inference_config": {"pass_through": {}}}')
    assert accepted.status == 200 and accepted.json()["model_type"] == "pytorch"
    refused = put(server, "onnx", '{"model_type": "onnx",', ' "inference_config": {"pass_through": {}}}')
    assert chain(refused) == [(XC, "[1:16] [trained_model_config] failed to parse field [model_type]"),
                              (IAE, "No enum constant org.elasticsearch.xpack.core.ml.inference.TrainedModelType.ONNX")]
    assert root(refused) == (XC, "[1:16] [trained_model_config] failed to parse field [model_type]")


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("model_size_bytes", "-1", "[model_size_bytes] must be greater than or equal to 0"),
    ("estimated_operations", "-1", "[estimated_operations] must be greater than or equal to 0"),
    ("license_level", '"gold-ish"', "unrecognised license operating mode [ gold-ish], supported modes are "
                                    "[missing,trial,basic,standard,gold,platinum,enterprise]"),
])
def test_constructor_refusals_of_the_model_config(server: StandIn, field: str, value: str, reason: str) -> None:
    refused = put(server, "build-refused",
                  f'{{"model_type": "pytorch", "{field}": {value}, "inference_config": {{"pass_through": {{}}}}}}')
    assert (refused.status, chain(refused), root(refused)) == (400, [(IAE, reason)], (IAE, reason))


@pytest.mark.parametrize("body", [
    '{"model_type": "tree_ensemble", "input": {"field_names": ["f"]}, "inference_config": {"pass_through": {}}}',
    '{"model_type": " Lang_Ident ", "input": {"field_names": ["f"]}, "inference_config": {"pass_through": {}}}',
    '{"inference_config": {"regression": {}}}',
    '{"model_type": "tree_ensemble", "input": {"field_names": ["f"]}, "inference_config": {"learning_to_rank": {}}}',
    '{"definition": {"trained_model": {}}, "inference_config": {"classification": {}}}',
    '{"model_type": "pytorch", "compressed_definition": "H4sIAAAAAAAAAA==", "inference_config": {"ner": {}}}',
])
def test_tree_models_are_not_emulated(server: StandIn, body: str) -> None:
    # Elasticsearch stores a tree model without a definition (with an index location); the stand-in does not.
    refused = put(server, "tree", body)
    assert (refused.status, chain(refused)) == (501, [(
        "standin_not_emulated", "the Elasticsearch stand-in does not emulate tree ensemble and other non-PyTorch "
                                "trained models")])
    assert server.http("GET", "/_ml/trained_models/tree").status == 404


def test_packaged_model_ids_fetch_their_package_from_the_default_repository(server: StandIn) -> None:
    # Without xpack.ml.model_repository the cluster asks https://ml-models.elastic.co, which an air-gapped cluster
    # cannot reach: TransportGetTrainedModelPackageConfigAction wraps the connection error.
    refused = put(server, ".elser_model_2", '{"input": {"field_names": ["text_field"]}}')
    assert (refused.status, chain(refused)) == (400, [
        (IAE, "Failed to load package metadata"),
        ("unchecked_i_o_exception", "java.net.UnknownHostException: ml-models.elastic.co"),
        ("unknown_host_exception", "ml-models.elastic.co")])
    assert server.http("GET", "/_ml/trained_models/.elser_model_2").status == 404
