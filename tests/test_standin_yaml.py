"""Elasticsearch's own YAML REST tests for PyTorch trained models, carried over to the stand-in.

Read from elastic/elasticsearch, x-pack/plugin/src/yamlRestTest/resources/rest-api-spec/test/ml/ (versions stored in
the public index: 3rd_party_deployment.yml @0794409, update_trained_model_deployment.yml @6d85dcd,
inference_crud.yml @05ce9b4, get_trained_model_stats.yml @26661978, byte_level_bpe_inference_config.yml @88736d3,
trained_model_cat_apis.yml @98ff2a9). The facts carry over, not the YAML: each test below drives real stand-in
processes with the official client (raw HTTP where the client cannot send the request) and tiny TorchScript modules
from `scripted(...)`, in place of the YAML's base64 model and six-word vocabulary. inference_crud.yml and
get_trained_model_stats.yml set up boosted-tree models; where a test's facts do not depend on the model type they are
asserted here on PyTorch models (the stand-in does not emulate trees). Texts are Elasticsearch's, from the sources
named in tests/standin/README.md ("Sources").

In scope (YAML test -> the test that asserts its facts):

  3rd_party_deployment.yml
    Test getting and putting Fill Mask with two mask tokens, ...    test_standin_config.py::
                                                test_fill_mask_refuses_a_mask_token_its_tokenization_does_not_use,
                                                test_fill_mask_shows_its_tokenization_mask_token
    Test start deployment fails with missing model definition
                                                test_standin_rest.py::test_start_without_a_definition_is_404
    Test start and stop deployment with no cache                    test_start_and_stop_with_no_cache
    Test start and stop deployment with cache                       test_start_and_stop_with_cache
    Test start and stop deployment with low priority                test_start_and_stop_with_low_priority
    Test start deployment with low priority and multiple allocations
                                                test_standin_api.py::test_start_parameter_rules
    Test start deployment with low priority and multiple threads per allocation
                                                test_start_parameters_are_validated_in_elasticsearchs_order
    Test update deployment                                          test_update_deployment_by_model_and_deployment_id
    Test clear deployment cache                 test_standin_rest.py::
                                                test_clearing_the_cache_makes_a_later_repeat_a_miss
    Test put model alias on pytorch model       test_standin_rest.py::test_alias_already_in_use_needs_reassign,
                                                test_alias_resolves_get_to_its_model_and_shows_in_metadata
    Test update model alias on pytorch model to undeployed model
                                                test_standin_rest.py::
                                                test_alias_of_a_deployed_model_cannot_move_to_an_undeployed_one
    Test include model definition status        test_standin_api.py::test_definition_status_and_start_part_checks
    Test stop deployments with allow_no_match                       test_stop_deployments_with_allow_no_match
    Test start and stop multiple deployments    test_standin_rest.py::
                                                test_stats_count_models_with_one_entry_per_deployment_by_deployment_id
    Test cannot start 2 deployments with the same Id
                                                test_standin_rest.py::test_start_of_a_taken_deployment_id_is_refused
    Test cannot start when deployment Id matches a different model
                                                test_standin_rest.py::
                                                test_start_with_another_models_id_as_deployment_id_is_refused
    Test start deployment with default Id                           test_start_with_the_default_deployment_id
    Test cannot create model with a deployment Id
                                                test_standin_rest.py::test_put_model_with_a_current_deployment_id_is_refused
    Test put model config with Japanese tokenizer
                                                test_standin_config.py::test_bert_ja_tokenization_as_the_yaml_test_puts_it
    Test put model config with prefix strings   test_standin_config.py::
                                                test_prefix_strings_are_stored_and_shown_as_given
    (its `ml.infer_trained_model` may take the deprecated deployment/_infer route: test_the_deprecated_infer_route)
  update_trained_model_deployment.yml
    Test with unknown model id                  test_standin_rest.py::test_update_of_an_unknown_deployment_is_404
  inference_crud.yml (facts carried over to PyTorch models)
    Test get given missing trained model                            test_get_of_missing_models
    Test get given expression without matches and allow_no_match is false   test_get_of_missing_models
    Test get given expression without matches and allow_no_match is true    test_get_of_missing_models
    Test get models                                                 test_get_models_pages_around_the_built_in_model
    Test get models with tags                                       test_get_models_with_tags
    Test delete given unused trained model      test_standin_api.py::test_delete_and_stop_without_deployment
    Test delete with missing model              test_standin_api.py::test_delete_and_stop_without_deployment
    Test get pre-packaged trained models        test_standin_rest.py::test_every_cluster_lists_lang_ident_model_1
    Test put model with empty input.field_names                     test_put_model_with_empty_input_field_names
    Test put model model aliases                                    test_aliases_in_get_expressions_and_metadata
    Test update model alias with model id referring to missing model
                                                test_standin_rest.py::test_alias_on_a_missing_model_is_404
    Test update model alias with bad alias      test_standin_rest.py::
                                                test_alias_equal_to_its_model_id_and_ending_in_digits_is_invalid,
                                                test_alias_equal_to_its_own_model_id_is_invalid
    Test update model alias where alias exists but old model id is different inference type
                                                test_alias_cannot_move_to_a_model_of_another_task
    Test update model alias where alias exists but reassign is false
                                                test_standin_rest.py::test_alias_already_in_use_needs_reassign
    Test delete model alias                     test_standin_rest.py::test_delete_alias_and_its_refusals
    Test delete model alias with missing alias  test_standin_rest.py::test_delete_alias_and_its_refusals
    Test delete model alias where alias points to different model
                                                test_standin_rest.py::test_delete_alias_and_its_refusals
    Test put nlp model config with vocabulary set
                                                test_standin_config.py::test_vocabulary_is_refused_while_the_task_is_parsed
    Test include model definition status                            test_definition_status_of_one_pytorch_model_only
    Test include model platform architecture                        test_platform_architecture_is_stored_and_shown
  get_trained_model_stats.yml (facts carried over to PyTorch models)
    Test get stats given missing trained model                      test_stats_of_missing_models
    Test get stats given expression without matches and allow_no_match is false  test_stats_of_missing_models
    Test get stats given expression without matches and allow_no_match is true   test_stats_of_missing_models
    Test get stats given trained models                             test_stats_count_page_and_follow_aliases
  byte_level_bpe_inference_config.yml
    Put and get trained model with byte_level_bpe text embedding tokenization
                                                test_byte_level_bpe_tokenization_from_9_5

Out of scope (YAML test: reason):

  3rd_party_deployment.yml
    Test start deployment fails while model download in progress: a packaged model (.elser_model_2) downloaded from
      Elastic's model repository; the stand-in answers 501 standin_not_emulated
  inference_crud.yml
    Test delete given model referenced by pipeline, Test force delete given model referenced by pipeline,
    Test delete given model with alias referenced by pipeline, Test force delete given model with alias referenced by
    pipeline, Test delete already-deleted model returns 404 not 409: ingest pipelines (the second delete's 404, with
      and without force, is asserted by test_a_second_delete_is_404_with_or_without_force)
    Test put ensemble with single node and empty feature_names, Test put ensemble with empty models, Test put ensemble
    with tree where tree has out of bounds feature_names index, Test put model, Test PUT model where target type and
    inference config mismatch, Test put with defer_definition_decompression with invalid compressed definition,
    Test put with defer_definition_decompression with invalid compression definition and no memory estimate,
    Test put with defer_definition_decompression with invalid definition and no memory estimate: tree models
    Test exclude_generated flag: a tree model's compressed definition (`exclude_generated` itself is asserted on a
      PyTorch model by test_exclude_generated_drops_what_the_cluster_generated)
  trained_model_cat_apis.yml
    Test cat trained models: `_cat/ml/trained_models` (not emulated: no handler found), tree models, data frame
      analytics
  Indices and search (their PyTorch models are set up with the emulated APIs; what they test is search):
    text_embedding_search.yml: Test text embedding search
    text_expansion_search.yml: Test text expansion search, ... with pruning config, Test named, boosted text expansion
      search with pruning config, ... with default pruning config, ... with weighted tokens rescoring only pruned
      tokens, Test weighted tokens search (and its default-pruning, only-pruned and frequency variants), Test
      text-expansion that displays error for invalid queried field type
    text_expansion_search_rank_features.yml, text_expansion_search_sparse_vector.yml: Test text expansion search
    sparse_vector_search.yml: its 16 tests (sparse_vector queries, pruning, query vectors, field types, dotted fields)
    semantic_search.yml: Test semantic search, Knn field is not a vector, Text embedding has the wrong number of
      dimensions, Model not deployed, Unknown model, missing query string, missing knn
    search_knn_query_vector_builder.yml: Test vector search with query_vector_builder, nested kNN search with
      inner_hits size
  Read, no PyTorch trained model: get_memory_stats.yml, ml_info.yml, set_upgrade_mode.yml, inference_processor.yml,
    pipeline_inference.yml, inference_rescore.yml, search_knn_embedding_query_vector_builder.yml.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import elasticsearch
import pytest

from tests.standin.fixture import StandIn, start_standin
from tests.standin.testkit import VOCAB, bert_config, error_of, scripted, upload

TASK_PARAMETERS = ["model_id", "deployment_id", "model_bytes", "threads_per_allocation", "number_of_allocations",
                   "queue_capacity", "cache_size", "priority", "per_deployment_memory_bytes",
                   "per_allocation_memory_bytes"]
DEPRECATED_INFER = ("[POST /_ml/trained_models/{model_id}/deployment/_infer] is deprecated! Use "
                    "[POST /_ml/trained_models/{model_id}/_infer] instead.")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("yaml") / "data")
    yield shared
    shared.kill()


@pytest.fixture(scope="module")
def client(server: StandIn) -> Any:
    return server.client()


@pytest.fixture(scope="module")
def definition() -> bytes:
    return scripted("pass_through")


def yaml_model(client: Any, model_id: str, definition: bytes) -> None:
    """As the YAML setup puts `test_model`: pass_through, bert without special tokens, no `input` (so documents
    carry the default field `input`), its vocabulary and its one definition part."""
    config = {"description": "simple model for testing", "model_type": "pytorch",
              "inference_config": {"pass_through": {"tokenization": {"bert": {"with_special_tokens": False}}}}}
    upload(client, model_id, definition, config=config, vocabulary=VOCAB)


def infer(client: Any, model_id: str, text: str) -> Any:
    return client.ml.infer_trained_model(model_id=model_id, docs=[{"input": text}])


def stats_entry(client: Any, model_id: str) -> dict[str, Any]:
    stats = client.ml.get_trained_models_stats(model_id=model_id)
    assert stats["count"] == 1
    return dict(stats["trained_model_stats"][0])


# --- 3rd_party_deployment.yml -------------------------------------------------------------------------------------

def test_start_and_stop_with_no_cache(client: Any, definition: bytes) -> None:
    yaml_model(client, "tp-no-cache", definition)
    assignment = client.ml.start_trained_model_deployment(model_id="tp-no-cache", cache_size=0,
                                                          wait_for="started")["assignment"]
    assert assignment["assignment_state"] == "started"
    assert (assignment["task_parameters"]["model_id"], assignment["task_parameters"]["cache_size"]) == (
        "tp-no-cache", "0")  # ByteSizeValue.getStringRep
    # AssignmentStats writes the ByteSizeValue itself (toString): the same nothing reads `0b` there.
    assert stats_entry(client, "tp-no-cache")["deployment_stats"]["cache_size"] == "0b"
    assert client.ml.stop_trained_model_deployment(model_id="tp-no-cache") == {"stopped": True}


def test_start_and_stop_with_cache(client: Any, definition: bytes) -> None:
    yaml_model(client, "tp-cache", definition)
    assignment = client.ml.start_trained_model_deployment(model_id="tp-cache", cache_size="10kb",
                                                          wait_for="started")["assignment"]
    assert assignment["assignment_state"] == "started"
    assert (assignment["task_parameters"]["model_id"], assignment["task_parameters"]["cache_size"]) == (
        "tp-cache", "10kb")
    for text in ("fox", "the", "fox"):
        infer(client, "tp-cache", text)
    entry = stats_entry(client, "tp-cache")
    node = entry["deployment_stats"]["nodes"][0]
    assert (node["inference_count"], node["inference_cache_hit_count"]) == (3, 1)
    assert entry["deployment_stats"]["cache_size"] == "10kb"
    assert client.ml.stop_trained_model_deployment(model_id="tp-cache") == {"stopped": True}


def test_start_and_stop_with_low_priority(client: Any, definition: bytes) -> None:
    yaml_model(client, "tp-low", definition)
    assignment = client.ml.start_trained_model_deployment(model_id="tp-low", priority="low",
                                                          wait_for="started")["assignment"]
    assert assignment["assignment_state"] == "started"
    parameters = assignment["task_parameters"]
    assert (parameters["model_id"], parameters["priority"]) == ("tp-low", "low")
    assert (parameters["number_of_allocations"], parameters["threads_per_allocation"]) == (1, 1)
    assert client.ml.stop_trained_model_deployment(model_id="tp-low") == {"stopped": True}


@pytest.mark.parametrize(("params", "problems"), [
    ({"priority": "low", "threads_per_allocation": 4}, ["[threads_per_allocation] must be 1 when [priority] is low"]),
    # Request.validate checks the power of 2 whatever the sign: a 0 fails both rules.
    ({"threads_per_allocation": 0}, ["[threads_per_allocation] must be a positive integer",
                                     "[threads_per_allocation] must be a power of 2 less than or equal to 32"]),
    ({"queue_capacity": 100_001}, ["[queue_capacity] must be less than 100000"]),
    ({"number_of_allocations": 0, "priority": "LOW", "threads_per_allocation": 2},
     ["[number_of_allocations] must be a positive integer",
      "[threads_per_allocation] must be 1 when [priority] is low"]),
])
def test_start_parameters_are_validated_in_elasticsearchs_order(client: Any, params: dict[str, Any],
                                                                 problems: list[str]) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.start_trained_model_deployment(model_id="tp-any", **params)
    reason = "Validation Failed: " + "".join(f"{n}: {p};" for n, p in enumerate(problems, start=1))
    assert error_of(refused) == (400, "action_request_validation_exception", reason)


def test_an_unknown_priority_is_an_enum_refusal(server: StandIn) -> None:
    refused = server.http("POST", "/_ml/trained_models/tp-any/deployment/_start?priority=urgent")
    assert (refused.status, refused.json()["error"]["type"], refused.json()["error"]["reason"]) == (
        400, "illegal_argument_exception",
        "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.Priority.URGENT")


def test_update_deployment_by_model_and_deployment_id(client: Any, definition: bytes) -> None:
    yaml_model(client, "tp-update", definition)
    started = client.ml.start_trained_model_deployment(model_id="tp-update", wait_for="started")["assignment"]
    assert started["task_parameters"]["number_of_allocations"] == 1
    updated = client.ml.update_trained_model_deployment(model_id="tp-update", number_of_allocations=1)["assignment"]
    assert (updated["task_parameters"]["model_id"], updated["task_parameters"]["number_of_allocations"]) == (
        "tp-update", 1)
    assert client.ml.stop_trained_model_deployment(model_id="tp-update") == {"stopped": True}
    client.ml.start_trained_model_deployment(model_id="tp-update", deployment_id="tp-update-deployment",
                                             wait_for="started")
    updated = client.ml.update_trained_model_deployment(model_id="tp-update-deployment",
                                                        number_of_allocations=1)["assignment"]
    assert (updated["task_parameters"]["model_id"], updated["task_parameters"]["number_of_allocations"]) == (
        "tp-update", 1)


def test_stop_deployments_with_allow_no_match(client: Any, definition: bytes) -> None:
    yaml_model(client, "tp-stop", definition)
    started = client.ml.start_trained_model_deployment(model_id="tp-stop", deployment_id="tp-stop-for-search",
                                                       wait_for="started")
    assert started["assignment"]["assignment_state"] == "started"
    assert client.ml.stop_trained_model_deployment(model_id="tp-stop-for-search") == {"stopped": True}
    with pytest.raises(elasticsearch.NotFoundError) as missing:
        client.ml.stop_trained_model_deployment(model_id="tp-stop-for-search", allow_no_match=False)
    assert error_of(missing) == (404, "resource_not_found_exception",
                                 "No known model deployment with id [tp-stop-for-search]")
    assert client.ml.stop_trained_model_deployment(model_id="tp-stop-for-search", allow_no_match=True) == {
        "stopped": True}


def test_start_with_the_default_deployment_id(client: Any, definition: bytes) -> None:
    yaml_model(client, "tp-default", definition)
    assignment = client.ml.start_trained_model_deployment(model_id="tp-default", wait_for="started")["assignment"]
    assert assignment["assignment_state"] == "started"
    parameters = assignment["task_parameters"]
    assert (parameters["model_id"], parameters["deployment_id"]) == ("tp-default", "tp-default")
    # TaskParams.toXContent's order; a 9.x cluster's defaults (queue_capacity 10000 since 8.17; the cache as large
    # as the model); TrainedModelAssignment writes adaptive_allocations even when unset (null, since 8.15).
    assert list(parameters) == TASK_PARAMETERS
    assert (parameters["model_bytes"], parameters["cache_size"]) == (len(definition), f"{len(definition)}b")
    assert (parameters["queue_capacity"], parameters["priority"]) == (10_000, "normal")
    assert list(assignment) == ["task_parameters", "routing_table", "assignment_state", "start_time",
                                "max_assigned_allocations", "adaptive_allocations"]
    assert assignment["adaptive_allocations"] is None


def test_deployment_defaults_of_an_8_14_cluster(standin: Any, definition: bytes) -> None:
    """Before Elasticsearch PR #115041 (8.17) the queue held 1024 requests and might hold 1M; before adaptive
    allocations (8.15) an assignment had no such field."""
    old = standin(es_version="8.14.3").client()
    yaml_model(old, "tp-old", definition)
    assignment = old.ml.start_trained_model_deployment(model_id="tp-old", wait_for="starting")["assignment"]
    assert assignment["task_parameters"]["queue_capacity"] == 1024 and "adaptive_allocations" not in assignment
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        old.ml.start_trained_model_deployment(model_id="tp-old", queue_capacity=1_000_001)
    assert error_of(refused)[2] == "Validation Failed: 1: [queue_capacity] must be less than 1000000;"


def test_the_deprecated_infer_route(server: StandIn, client: Any, definition: bytes) -> None:
    """RestInferTrainedModelDeploymentAction: deprecated (its warning on every answer), one document, the result
    flat (InferTrainedModelDeploymentAction.Response writes results.get(0) as the object)."""
    yaml_model(client, "tp-deprecated", definition)
    client.ml.start_trained_model_deployment(model_id="tp-deprecated", wait_for="started")
    path = "/_ml/trained_models/tp-deprecated/deployment/_infer"
    warning = f'299 Elasticsearch-9.2.0-{"0" * 40} "{DEPRECATED_INFER}"'
    answered = server.http("POST", path, body={"docs": [{"input": "the fox"}]})
    assert (answered.status, answered.headers["Warning"]) == (200, warning)
    assert answered.json() == infer(client, "tp-deprecated", "the fox")["inference_results"][0]
    two = server.http("POST", path, body={"docs": [{"input": "the"}, {"input": "fox"}]})
    assert (two.status, two.headers["Warning"], two.json()["error"]["type"], two.json()["error"]["reason"]) == (
        400, warning, "validation_exception", "Validation Failed: 1: multiple documents are not supported;")
    empty = server.http("POST", path)
    assert (empty.status, empty.json()["error"]["type"], empty.json()["error"]["reason"]) == (
        400, "status_exception", "requires body")


# --- inference_crud.yml, on PyTorch models --------------------------------------------------------------------------

# The YAML's fifteen models, as PyTorch configs: two `text` models (its regression models) and thirteen `ner` models
# (its classification models), tagged alike. With lang_ident_model_1 the cluster has sixteen.
CRUD_MODELS = {"a-text-model-0": ("text_embedding", ["text", "tag1"]), "a-text-model-1": ("text_embedding",
               ["text", "tag2"]), **{f"{c}-ner-model": ("ner", ["ner", "tag2"]) for c in "abcdefghijk"},
               "y-ner-model": ("ner", ["ner", "tag3"]), "z-ner-model": ("ner", ["ner", "tag3"])}


@pytest.fixture(scope="module")
def crud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    fresh = start_standin(tmp_path_factory.mktemp("yaml-crud") / "data")
    client = fresh.client()
    for model_id, (task, tags) in CRUD_MODELS.items():
        client.ml.put_trained_model(model_id=model_id, tags=tags, description="empty model for tests",
                                    **bert_config(task))
    yield client
    fresh.kill()


def ids(listed: Any) -> list[str]:
    return [config["model_id"] for config in listed["trained_model_configs"]]


def test_get_of_missing_models(crud: Any) -> None:
    # Status and type only: the stand-in's GET reason differs from expandIds' (see README, "Not yet matched").
    for expression, allow_no_match in (("missing-trained-model", True), ("missing-trained-model*", False)):
        with pytest.raises(elasticsearch.NotFoundError) as missing:
            crud.ml.get_trained_models(model_id=expression, allow_no_match=allow_no_match)
        assert error_of(missing)[:2] == (404, "resource_not_found_exception")
    nothing = crud.ml.get_trained_models(model_id="missing-trained-model*", allow_no_match=True)
    assert (nothing["count"], nothing["trained_model_configs"]) == (0, [])


@pytest.mark.parametrize(("expression", "start", "size", "count", "expected"), [
    ("*", None, 10, 16, [*CRUD_MODELS][:10]),
    ("*", None, 100, 16, [*[*CRUD_MODELS][:13], "lang_ident_model_1", "y-ner-model", "z-ner-model"]),
    ("a-text*", None, None, 2, ["a-text-model-0", "a-text-model-1"]),
    ("*", 0, 2, 16, ["a-ner-model", "a-text-model-0"]),
    ("*", 1, 1, 16, ["a-text-model-0"]),
    ("*", 2, 2, 16, ["a-text-model-1", "b-ner-model"]),
    ("*", 13, 1, 16, ["lang_ident_model_1"]),
    ("*", 13, 2, 16, ["lang_ident_model_1", "y-ner-model"]),
    ("*", 14, 2, 16, ["y-ner-model", "z-ner-model"]),
    ("a-*,lang*,z*", 3, 1, 5, ["lang_ident_model_1"]),
    ("a-*,lang*,z*", 4, 1, 5, ["z-ner-model"]),
    ("a-*,lang*,z*", 4, 100, 5, ["z-ner-model"]),
])
def test_get_models_pages_around_the_built_in_model(crud: Any, expression: str, start: int | None, size: int | None,
                                                    count: int, expected: list[str]) -> None:
    paging = {k: v for k, v in (("from_", start), ("size", size)) if v is not None}
    listed = crud.ml.get_trained_models(model_id=expression, **paging)
    assert (listed["count"], ids(listed)) == (count, sorted(expected))


def test_get_models_with_tags(crud: Any) -> None:
    """Every tag must be carried (one term filter per tag); the built-in model takes part by its own tags."""
    both = crud.ml.get_trained_models(model_id="*", tags="text,tag1")
    assert (both["count"], ids(both)) == (1, ["a-text-model-0"])
    narrowed = crud.ml.get_trained_models(model_id="a-text*", tags="tag1")
    assert (narrowed["count"], ids(narrowed)) == (1, ["a-text-model-0"])
    tag2 = crud.ml.get_trained_models(model_id="*", tags="tag2")
    assert tag2["count"] == 12 and ids(tag2)[:2] == ["a-ner-model", "a-text-model-1"]
    paged = crud.ml.get_trained_models(model_id="*", tags="tag2", from_=1, size=1)
    assert (paged["count"], ids(paged)) == (12, ["a-text-model-1"])
    built_in = crud.ml.get_trained_models(model_id="lang*", tags="prepackaged")
    assert (built_in["count"], ids(built_in)) == (1, ["lang_ident_model_1"])
    with pytest.raises(elasticsearch.NotFoundError):  # an explicit id without the tags is not matched
        crud.ml.get_trained_models(model_id="a-text-model-1", tags="tag1")


def test_put_model_with_empty_input_field_names(client: Any) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model(model_id="crud-no-fields", body={**bert_config(), "input": {"field_names": []}})
    assert error_of(refused) == (400, "action_request_validation_exception",
                                 "Validation Failed: 1: [input.field_names] must not be empty;")


def test_aliases_in_get_expressions_and_metadata(client: Any) -> None:
    for model_id in ("crud-text-0", "crud-text-1", "crud-ner"):
        client.ml.put_trained_model(model_id=model_id, **bert_config("ner" if "ner" in model_id else "text_embedding"))
    client.ml.put_trained_model_alias(model_alias="crud-text", model_id="crud-text-1")
    listed = client.ml.get_trained_models(model_id="crud-text,crud-ner")
    assert (listed["count"], ids(listed)) == (2, ["crud-ner", "crud-text-1"])
    client.ml.put_trained_model_alias(model_alias="crud-text", model_id="crud-text-0", reassign=True)
    listed = client.ml.get_trained_models(model_id="crud-text,crud-ner")
    assert (listed["count"], ids(listed)) == (2, ["crud-ner", "crud-text-0"])
    client.ml.put_trained_model_alias(model_alias="crud-text-again", model_id="crud-text-0")
    first = client.ml.get_trained_models(model_id="crud-text-*", size=1)["trained_model_configs"]
    assert [c["model_id"] for c in first] == ["crud-text-0"]
    assert first[0]["metadata"]["model_aliases"] == ["crud-text", "crud-text-again"]


def test_alias_equal_to_its_own_model_id_is_invalid(client: Any) -> None:
    client.ml.put_trained_model(model_id="crud-z", **bert_config("ner"))
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model_alias(model_alias="crud-z", model_id="crud-z")
    assert error_of(refused) == (400, "action_request_validation_exception",
                                 "Validation Failed: 1: model_alias [crud-z] cannot equal model_id [crud-z];")


def test_alias_cannot_move_to_a_model_of_another_task(client: Any) -> None:
    client.ml.put_trained_model(model_id="crud-task-text", **bert_config("text_embedding"))
    client.ml.put_trained_model(model_id="crud-task-ner", **bert_config("ner"))
    client.ml.put_trained_model_alias(model_alias="crud-task", model_id="crud-task-text")
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model_alias(model_alias="crud-task", model_id="crud-task-ner", reassign=True)
    assert error_of(refused) == (
        400, "status_exception", "cannot reassign model_alias [crud-task] to model [crud-task-ner] with inference "
        "config type [ner] from model [crud-task-text] with type [text_embedding]")


def test_definition_status_of_one_pytorch_model_only(client: Any) -> None:
    client.ml.put_trained_model(model_id="crud-without-definition", model_type="pytorch",
                                inference_config={"ner": {}})
    status = client.ml.get_trained_models(model_id="crud-without-definition", include="definition_status")
    assert (status["count"], status["trained_model_configs"][0]["fully_defined"]) == (1, False)
    plain = client.ml.get_trained_models(model_id="crud-without-definition")
    assert "fully_defined" not in plain["trained_model_configs"][0]
    with pytest.raises(elasticsearch.BadRequestError) as several:
        client.ml.get_trained_models(model_id="_all", include="definition_status")
    assert error_of(several)[2] == "Getting the model download status is not supported when getting more than one model"
    # The check is on the page of ids: one model per page is allowed.
    assert client.ml.get_trained_models(model_id="crud-*", include="definition_status", size=1)["count"] > 1
    with pytest.raises(elasticsearch.BadRequestError) as not_pytorch:  # the YAML's regression model; here lang_ident
        client.ml.get_trained_models(model_id="lang_ident_model_1", include="definition_status")
    assert error_of(not_pytorch) == (400, "status_exception",
                                     "Definition status is only relevant to PyTorch model types")


def test_platform_architecture_is_stored_and_shown(client: Any) -> None:
    client.ml.put_trained_model(model_id="crud-platform", model_type="pytorch", inference_config={"ner": {}},
                                platform_architecture="windows-x86_64")
    status = client.ml.get_trained_models(model_id="crud-platform", include="definition_status")
    assert (status["count"], status["trained_model_configs"][0]["fully_defined"]) == (1, False)
    (config,) = client.ml.get_trained_models(model_id="crud-platform")["trained_model_configs"]
    assert config["platform_architecture"] == "windows-x86_64"
    assert list(config)[:3] == ["model_id", "model_type", "platform_architecture"]


def test_exclude_generated_drops_what_the_cluster_generated(client: Any) -> None:
    client.ml.put_trained_model(model_id="crud-export", description="empty model for tests", tags=["export"],
                                **bert_config("ner"))
    (full,) = client.ml.get_trained_models(model_id="crud-export")["trained_model_configs"]
    (export,) = client.ml.get_trained_models(model_id="crud-export", exclude_generated=True)["trained_model_configs"]
    generated = ["created_by", "version", "create_time", "model_size_bytes", "estimated_operations", "license_level"]
    assert all(name in full for name in generated) and not any(name in export for name in generated)
    assert export == {k: v for k, v in full.items() if k not in generated}
    assert export["description"] == "empty model for tests" and export["tags"] == ["export"]
    assert export["input"] and export["inference_config"]


def test_a_second_delete_is_404_with_or_without_force(client: Any) -> None:
    client.ml.put_trained_model(model_id="crud-deleted", **bert_config("ner"))
    assert client.ml.delete_trained_model(model_id="crud-deleted", force=True) == {"acknowledged": True}
    for force in (False, True):
        with pytest.raises(elasticsearch.NotFoundError) as again:
            client.ml.delete_trained_model(model_id="crud-deleted", force=force)
        assert error_of(again) == (404, "resource_not_found_exception", "Could not find trained model [crud-deleted]")


# --- get_trained_model_stats.yml, on PyTorch models -------------------------------------------------------------------

@pytest.fixture(scope="module")
def stats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    fresh = start_standin(tmp_path_factory.mktemp("yaml-stats") / "data")
    client = fresh.client()
    for model_id in ("a-unused-text-model1", "a-unused-text-model", "another-text-model"):
        client.ml.put_trained_model(model_id=model_id, tags=["text", "tag1"], **bert_config())
    client.ml.put_trained_model_alias(model_alias="my-text", model_id="a-unused-text-model1")
    yield client
    fresh.kill()


def stats_ids(stats: Any) -> list[str]:
    return [entry["model_id"] for entry in stats["trained_model_stats"]]


def test_stats_of_missing_models(stats_cluster: Any) -> None:
    """TransportGetTrainedModelsStatsAction expands ids with TrainedModelProvider.expandIds: an unmatched id or
    pattern is ExceptionsHelper.missingTrainedModel."""
    for expression, allow_no_match in (("missing-trained-model", True), ("missing-trained-model*", False)):
        with pytest.raises(elasticsearch.NotFoundError) as missing:
            stats_cluster.ml.get_trained_models_stats(model_id=expression, allow_no_match=allow_no_match)
        assert error_of(missing) == (404, "resource_not_found_exception",
                                     f"No known trained model with model_id [{expression}]")
    nothing = stats_cluster.ml.get_trained_models_stats(model_id="missing-trained-model*", allow_no_match=True)
    assert (nothing["count"], nothing["trained_model_stats"]) == (0, [])


def test_stats_count_page_and_follow_aliases(stats_cluster: Any) -> None:
    assert stats_cluster.ml.get_trained_models_stats(model_id="a-unused-text-model")["count"] == 1
    for expression in ("_all", "*"):
        every = stats_cluster.ml.get_trained_models_stats(model_id=expression)
        assert every["count"] == 4
        assert stats_ids(every) == ["a-unused-text-model", "a-unused-text-model1", "another-text-model",
                                    "lang_ident_model_1"]
        assert all(e["pipeline_count"] == 0 and "ingest" not in e for e in every["trained_model_stats"])
    pattern = stats_cluster.ml.get_trained_models_stats(model_id="a-unused-text-model*")
    assert (pattern["count"], stats_ids(pattern)) == (2, ["a-unused-text-model", "a-unused-text-model1"])
    first = stats_cluster.ml.get_trained_models_stats(model_id="a-unused-text-model*", size=1)
    assert (first["count"], stats_ids(first)) == (2, ["a-unused-text-model"])
    second = stats_cluster.ml.get_trained_models_stats(model_id="a-unused-text-model*", from_=1, size=1)
    assert (second["count"], stats_ids(second)) == (2, ["a-unused-text-model1"])
    aliased = stats_cluster.ml.get_trained_models_stats(model_id="my-text")
    assert (aliased["count"], stats_ids(aliased)) == (1, ["a-unused-text-model1"])
    mixed = stats_cluster.ml.get_trained_models_stats(model_id="my-text,another-text-model")
    assert (mixed["count"], stats_ids(mixed)) == (2, ["a-unused-text-model1", "another-text-model"])


def test_start_of_a_missing_model_is_expand_ids_404(client: Any) -> None:
    """_start asks GetTrainedModelsAction for the model: nothing found is expandIds' refusal."""
    with pytest.raises(elasticsearch.NotFoundError) as missing:
        client.ml.start_trained_model_deployment(model_id="crud-never-put")
    assert error_of(missing) == (404, "resource_not_found_exception",
                                 "No known trained model with model_id [crud-never-put]")


# --- byte_level_bpe_inference_config.yml ------------------------------------------------------------------------------

BPE = {"with_special_tokens": False, "add_prefix_space": True, "max_sequence_length": 256, "truncate": "first",
       "unk_token": "<unk>", "pad_token": "<pad>"}


def test_byte_level_bpe_tokenization_from_9_5(standin: Any, definition: bytes) -> None:
    """ByteLevelBpeTokenization (transport version ml_byte_level_bpe_tokenization, first in 9.5): every option
    shown, unset special tokens at their defaults, do_lower_case always false."""
    client = standin(es_version="9.5.0").client()
    client.ml.put_trained_model(model_id="byte_level_bpe_rest_config_model", model_type="pytorch",
                                description="byte_level_bpe tokenization XContent REST coverage",
                                inference_config={"text_embedding": {"tokenization": {"byte_level_bpe": BPE}}})
    (config,) = client.ml.get_trained_models(model_id="byte_level_bpe_rest_config_model")["trained_model_configs"]
    assert config["model_id"] == "byte_level_bpe_rest_config_model"
    assert config["inference_config"]["text_embedding"]["tokenization"] == {"byte_level_bpe": {
        "do_lower_case": False, "with_special_tokens": False, "max_sequence_length": 256, "truncate": "first",
        "span": -1, "add_prefix_space": True, "unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>",
        "eos_token": "</s>", "mask_token": "<mask>"}}
    with pytest.raises(elasticsearch.BadRequestError) as no_merges:
        client.ml.put_trained_model_vocabulary(model_id="byte_level_bpe_rest_config_model", vocabulary=VOCAB)
    assert error_of(no_merges)[2] == ("cannot put vocabulary for model [byte_level_bpe_rest_config_model] as "
                                      "tokenizer type [byte_level_bpe] requires [merges] to be provided and non-empty")
    masked = client.ml.put_trained_model(model_id="bpe-fill-mask", model_type="pytorch", inference_config={
        "fill_mask": {"tokenization": {"byte_level_bpe": {"mask_token": "[M]", "bos_token": " "}}}})
    assert masked["inference_config"]["fill_mask"]["mask_token"] == "[M]"
    assert masked["inference_config"]["fill_mask"]["tokenization"]["byte_level_bpe"]["bos_token"] == "<s>"
    client.ml.put_trained_model(model_id="bpe-start", model_type="pytorch",
                                inference_config={"pass_through": {"tokenization": {"byte_level_bpe": {}}}})
    client.ml.put_trained_model_vocabulary(model_id="bpe-start", vocabulary=VOCAB, merges=["t h"])
    client.ml.put_trained_model_definition_part(model_id="bpe-start", part=0, total_parts=1,
                                                definition=base64.b64encode(definition).decode(),
                                                total_definition_length=len(definition))
    with pytest.raises(elasticsearch.ApiError) as start:  # would start on 9.5; the stand-in cannot tokenize for it
        client.ml.start_trained_model_deployment(model_id="bpe-start")
    assert error_of(start)[:2] == (501, "standin_not_emulated")


def test_byte_level_bpe_is_unknown_before_9_5(server: StandIn) -> None:
    refused = server.http("PUT", "/_ml/trained_models/bpe-old", body={
        "model_type": "pytorch", "inference_config": {"text_embedding": {"tokenization": {"byte_level_bpe": {}}}}})
    assert refused.status == 400
    assert refused.json()["error"]["root_cause"][0]["type"] == "named_object_not_found_exception"


def test_byte_level_bpe_refuses_lower_casing(standin: Any) -> None:
    refused = standin(es_version="9.5.0").http("PUT", "/_ml/trained_models/bpe-lower", body={
        "model_type": "pytorch",
        "inference_config": {"text_embedding": {"tokenization": {"byte_level_bpe": {"do_lower_case": True}}}}})
    error = refused.json()["error"]
    assert (refused.status, error["root_cause"][0]["reason"]) == (
        400, "Failed to build [byte_level_bpe_tokenization] after last required field arrived")
    while "caused_by" in error:
        error = error["caused_by"]
    assert (error["type"], error["reason"]) == (
        "illegal_argument_exception", "unable to set [do_lower_case] to [true] for byte_level_bpe tokenizer")
