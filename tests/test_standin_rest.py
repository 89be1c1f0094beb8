"""The stand-in answers the deployment, alias, stats, stop, cache and built-in-model facts of Elasticsearch's own
YAML REST tests (ml/3rd_party_deployment.yml, ml/update_trained_model_deployment.yml, and the alias and
pre-packaged-model facts of ml/inference_crud.yml), with the statuses, error types and reasons of
Elasticsearch's transport actions (see tests/standin/README.md, "Sources"). tests/test_standin_yaml.py maps every
test of those YAML files to the test that asserts its facts (several are here) and covers the rest.

Driven with the official client (raw HTTP only where the client cannot send the request) against real stand-in
processes running tiny TorchScript modules. Most tests share one stand-in and use model ids of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import elasticsearch
import pytest

from tests.standin.fixture import StandIn, start_standin
from tests.standin.testkit import VOCAB, bert_config, error_of, scripted, upload

NOT_DEPLOYED = "Model [{}] must be deployed to use. Please deploy with the start trained model deployment API."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("rest") / "data")
    yield shared
    shared.kill()


@pytest.fixture(scope="module")
def client(server: StandIn) -> Any:
    return server.client()


@pytest.fixture(scope="module")
def definition() -> bytes:
    return scripted("pass_through")


def model(client: Any, model_id: str, definition: bytes, field: str = "text_field") -> None:
    """A pass_through model with its vocabulary and every part, ready to start."""
    config = bert_config("pass_through")
    config["input"] = {"field_names": [field]}
    upload(client, model_id, definition, config=config, vocabulary=VOCAB)


def deployed(client: Any, model_id: str, definition: bytes, **start: Any) -> dict[str, Any]:
    model(client, model_id, definition)
    return client.ml.start_trained_model_deployment(model_id=model_id, wait_for="started", **start)["assignment"]


def infer(client: Any, model_id: str, text: str) -> Any:
    return client.ml.infer_trained_model(model_id=model_id, docs=[{"text_field": text}])


def node_stats(client: Any, model_id: str) -> dict[str, Any]:
    (entry,) = client.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"]
    return entry["deployment_stats"]["nodes"][0]


# --- deployment update ----------------------------------------------------------------------------

def test_update_sets_number_of_allocations_and_answers_the_assignment(client: Any, definition: bytes) -> None:
    deployed(client, "upd-a", definition, deployment_id="upd-a-dep")
    assignment = client.ml.update_trained_model_deployment(model_id="upd-a-dep", number_of_allocations=2)["assignment"]
    assert assignment["task_parameters"]["model_id"] == "upd-a"
    assert assignment["task_parameters"]["deployment_id"] == "upd-a-dep"
    assert assignment["task_parameters"]["number_of_allocations"] == 2
    assert assignment["assignment_state"] == "started"
    (entry,) = client.ml.get_trained_models_stats(model_id="upd-a")["trained_model_stats"]
    assert entry["deployment_stats"]["number_of_allocations"] == 2


def test_update_of_an_unknown_deployment_is_404(client: Any) -> None:
    with pytest.raises(elasticsearch.NotFoundError) as missing:
        client.ml.update_trained_model_deployment(model_id="missing-model", number_of_allocations=4)
    assert error_of(missing) == (404, "resource_not_found_exception",
                                 "No known model deployment with id [missing-model]")


def test_update_addresses_deployment_ids_not_model_ids(client: Any, definition: bytes) -> None:
    deployed(client, "upd-b", definition, deployment_id="upd-b-dep")
    with pytest.raises(elasticsearch.NotFoundError) as by_model:
        client.ml.update_trained_model_deployment(model_id="upd-b", number_of_allocations=1)
    assert error_of(by_model) == (404, "resource_not_found_exception", "No known model deployment with id [upd-b]")


def test_update_to_zero_allocations_is_a_validation_error(client: Any) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as zero:
        client.ml.update_trained_model_deployment(model_id="any-deployment", number_of_allocations=0)
    assert error_of(zero) == (400, "action_request_validation_exception",
                              "Validation Failed: 1: [number_of_allocations] must be a positive integer;")


def test_update_with_another_model_id_in_the_body_is_refused(server: StandIn) -> None:
    refused = server.http("POST", "/_ml/trained_models/upd-c/deployment/_update",
                          body={"model_id": "other", "number_of_allocations": 1})
    assert refused.status == 400
    assert refused.json()["error"]["type"] == "status_exception"
    assert refused.json()["error"]["reason"] == (
        "Inconsistent model_id; 'other' specified in the body differs from 'upd-c' specified as a URL argument")


def test_update_refuses_allocations_with_adaptive_allocations_enabled(client: Any) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as both:
        client.ml.update_trained_model_deployment(model_id="any-deployment", number_of_allocations=2,
                                                  adaptive_allocations={"enabled": True})
    assert error_of(both) == (400, "action_request_validation_exception", "Validation Failed: 1: "
                              "[number_of_allocations] cannot be set if adaptive allocations is enabled;")


def test_update_sets_adaptive_allocations(client: Any, definition: bytes) -> None:
    deployed(client, "upd-d", definition)
    assignment = client.ml.update_trained_model_deployment(
        model_id="upd-d", adaptive_allocations={"enabled": True, "min_number_of_allocations": 1})["assignment"]
    assert assignment["adaptive_allocations"] == {"enabled": True, "min_number_of_allocations": 1}
    with pytest.raises(elasticsearch.BadRequestError) as bounds:
        client.ml.update_trained_model_deployment(
            model_id="upd-d", adaptive_allocations={"min_number_of_allocations": 3, "max_number_of_allocations": 2})
    assert error_of(bounds) == (400, "action_request_validation_exception", "Validation Failed: 1: "
                                "[min_number_of_allocations] must not be larger than [max_number_of_allocations];")


# --- model aliases -----------------------------------------------------------------------------------

def test_alias_resolves_get_to_its_model_and_shows_in_metadata(client: Any, definition: bytes) -> None:
    model(client, "al-a", definition)
    assert client.ml.put_trained_model_alias(model_id="al-a", model_alias="al-a-beta")["acknowledged"]
    assert client.ml.put_trained_model_alias(model_id="al-a", model_alias="al-a-alpha")["acknowledged"]
    got = client.ml.get_trained_models(model_id="al-a-beta")
    assert got["count"] == 1
    assert [c["model_id"] for c in got["trained_model_configs"]] == ["al-a"]
    assert got["trained_model_configs"][0]["metadata"]["model_aliases"] == ["al-a-alpha", "al-a-beta"]


def test_alias_already_in_use_needs_reassign(client: Any, definition: bytes) -> None:
    model(client, "al-b1", definition)
    model(client, "al-b2", definition)
    client.ml.put_trained_model_alias(model_id="al-b1", model_alias="al-b")
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model_alias(model_id="al-b2", model_alias="al-b")
    assert error_of(refused) == (400, "status_exception",
                                 "cannot assign model_alias [al-b] to model_id [al-b2] as model_alias already refers "
                                 "to [al-b1]. Set parameter [reassign] to [true] if model_alias should be reassigned.")
    client.ml.put_trained_model_alias(model_id="al-b2", model_alias="al-b", reassign=True)
    assert [c["model_id"] for c in client.ml.get_trained_models(model_id="al-b")["trained_model_configs"]] == ["al-b2"]


def test_alias_of_a_deployed_model_cannot_move_to_an_undeployed_one(client: Any, definition: bytes) -> None:
    deployed(client, "al-c1", definition)
    model(client, "al-c2", definition)
    client.ml.put_trained_model_alias(model_id="al-c1", model_alias="al-c")
    infer(client, "al-c", "hello world")
    assert node_stats(client, "al-c1")["inference_count"] == 1
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model_alias(model_id="al-c2", model_alias="al-c", reassign=True)
    assert error_of(refused) == (400, "status_exception", "cannot reassign model_alias [al-c] to model [al-c2] from "
                                                          "model [al-c1] as it is not yet deployed")


def test_alias_equal_to_its_model_id_and_ending_in_digits_is_invalid(client: Any) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model_alias(model_id="regression-model-123123", model_alias="regression-model-123123")
    assert error_of(refused) == (
        400, "action_request_validation_exception",
        "Validation Failed: 1: model_alias [regression-model-123123] cannot equal model_id [regression-model-123123];"
        "2: Invalid model_alias; 'regression-model-123123' can contain lowercase alphanumeric (a-z and 0-9), hyphens "
        "or underscores; must start with alphanumeric and cannot end with numbers;")


def test_alias_equal_to_another_model_id_is_refused(client: Any, definition: bytes) -> None:
    model(client, "al-da", definition)
    model(client, "al-db", definition)
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model_alias(model_id="al-da", model_alias="al-db")
    assert error_of(refused) == (400, "status_exception",
                                 "model_alias cannot be the same as an existing trained model_id")


def test_alias_on_a_missing_model_is_404(client: Any) -> None:
    with pytest.raises(elasticsearch.NotFoundError) as missing:
        client.ml.put_trained_model_alias(model_id="missing-model", model_alias="regression-model")
    assert error_of(missing) == (404, "resource_not_found_exception",
                                 "No known trained model with model_id [missing-model]")


def test_alias_reassigned_to_a_model_with_other_inputs_warns(server: StandIn, client: Any, definition: bytes) -> None:
    model(client, "al-e1", definition)
    model(client, "al-e2", definition, field="body")
    client.ml.put_trained_model_alias(model_id="al-e1", model_alias="al-e")
    moved = server.http("PUT", "/_ml/trained_models/al-e2/model_aliases/al-e?reassign=true")
    assert moved.status == 200 and moved.json() == {"acknowledged": True}
    assert moved.headers["Warning"] == (
        '299 Elasticsearch-9.2.0-' + "0" * 40 + ' "The input fields for new model [al-e2] and for old model [al-e1] '
        'differ significantly, model results may change drastically."')


def test_delete_alias_and_its_refusals(client: Any, definition: bytes) -> None:
    model(client, "al-f", definition)
    client.ml.put_trained_model_alias(model_id="al-f", model_alias="al-f-current")
    with pytest.raises(elasticsearch.ConflictError) as other:
        client.ml.delete_trained_model_alias(model_id="al-a", model_alias="al-f-current")
    assert error_of(other) == (409, "status_exception",
                               "model_alias [al-f-current] does not refer to provided model_id [al-a]")
    assert client.ml.delete_trained_model_alias(model_id="al-f", model_alias="al-f-current")["acknowledged"]
    with pytest.raises(elasticsearch.NotFoundError) as gone:
        client.ml.delete_trained_model_alias(model_id="al-f", model_alias="al-f-current")
    assert error_of(gone) == (404, "status_exception", "model_alias [al-f-current] could not be found")
    with pytest.raises(elasticsearch.NotFoundError):
        client.ml.get_trained_models(model_id="al-f-current")


def test_put_model_with_an_alias_as_id_is_refused(client: Any, definition: bytes) -> None:
    model(client, "al-g", definition)
    client.ml.put_trained_model_alias(model_id="al-g", model_alias="al-g-alias")
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model(model_id="al-g-alias", **bert_config())
    assert error_of(refused) == (400, "status_exception", "requested model_id [al-g-alias] is the same as an existing "
                                                          "model_alias. Model model_aliases and ids must be unique")


def test_deleting_a_model_deletes_its_aliases(client: Any, definition: bytes) -> None:
    model(client, "al-h", definition)
    client.ml.put_trained_model_alias(model_id="al-h", model_alias="al-h-alias")
    client.ml.delete_trained_model(model_id="al-h")
    with pytest.raises(elasticsearch.NotFoundError):
        client.ml.delete_trained_model_alias(model_id="al-h", model_alias="al-h-alias")


def test_start_infer_and_stats_through_an_alias(client: Any, definition: bytes) -> None:
    model(client, "al-i", definition)
    client.ml.put_trained_model_alias(model_id="al-i", model_alias="al-i-alias")
    with pytest.raises(elasticsearch.ConflictError) as undeployed:
        infer(client, "al-i-alias", "hello")
    assert error_of(undeployed) == (409, "status_exception", NOT_DEPLOYED.format("al-i-alias"))
    stats = client.ml.get_trained_models_stats(model_id="al-i-alias")
    assert stats["count"] == 1 and [s["model_id"] for s in stats["trained_model_stats"]] == ["al-i"]
    assignment = client.ml.start_trained_model_deployment(model_id="al-i-alias", wait_for="started")["assignment"]
    assert assignment["task_parameters"]["model_id"] == "al-i"
    assert infer(client, "al-i-alias", "hello")["inference_results"][0]["predicted_value"]


def test_aliases_survive_a_restart(standin: Any, definition: bytes) -> None:
    first = standin()
    model(first.client(), "kept", definition)
    first.client().ml.put_trained_model_alias(model_id="kept", model_alias="kept-alias")
    first.kill()
    first.restart()
    got = first.client().ml.get_trained_models(model_id="kept-alias")["trained_model_configs"]
    assert [c["model_id"] for c in got] == ["kept"] and got[0]["metadata"]["model_aliases"] == ["kept-alias"]


# --- inference cache ---------------------------------------------------------------------------------

def test_cache_counts_a_repeated_input_as_a_hit(client: Any, definition: bytes) -> None:
    assignment = deployed(client, "cache-a", definition, cache_size="10kb")
    assert assignment["task_parameters"]["cache_size"] == "10kb"
    for text in ("hello world", "the fox", "hello world"):
        infer(client, "cache-a", text)
    stats = client.ml.get_trained_models_stats(model_id="cache-a")
    assert stats["count"] == 1
    node = stats["trained_model_stats"][0]["deployment_stats"]["nodes"][0]
    assert (node["inference_count"], node["inference_cache_hit_count"]) == (3, 1)


def test_clearing_the_cache_makes_a_later_repeat_a_miss(client: Any, definition: bytes) -> None:
    deployed(client, "cache-b", definition, deployment_id="cache-b-dep", cache_size="10kb")
    for text in ("hello world", "the fox", "hello world"):
        infer(client, "cache-b", text)
    assert client.ml.clear_trained_model_deployment_cache(model_id="cache-b-dep") == {"cleared": True}
    infer(client, "cache-b", "hello world")
    node = node_stats(client, "cache-b")
    assert (node["inference_count"], node["inference_cache_hit_count"]) == (4, 1)


def test_cache_size_zero_turns_the_cache_off(client: Any, definition: bytes) -> None:
    assignment = deployed(client, "cache-c", definition, cache_size=0)
    assert assignment["task_parameters"]["cache_size"] == "0"
    for _ in range(3):
        infer(client, "cache-c", "hello world")
    node = node_stats(client, "cache-c")
    assert (node["inference_count"], node["inference_cache_hit_count"]) == (3, 0)


def test_cache_defaults_to_the_model_size(client: Any, definition: bytes) -> None:
    assignment = deployed(client, "cache-d", definition)
    assert assignment["task_parameters"]["cache_size"] == f"{len(definition)}b"
    infer(client, "cache-d", "hello world")
    infer(client, "cache-d", "hello world")
    assert node_stats(client, "cache-d")["inference_cache_hit_count"] == 1


def test_clearing_the_cache_of_an_unknown_deployment_is_404(client: Any, definition: bytes) -> None:
    model(client, "cache-e", definition)
    with pytest.raises(elasticsearch.NotFoundError) as missing:
        client.ml.clear_trained_model_deployment_cache(model_id="cache-e")
    assert error_of(missing) == (404, "resource_not_found_exception", "No known model deployment with id [cache-e]")


# --- stats shape -------------------------------------------------------------------------------------

def test_stats_count_models_with_one_entry_per_deployment_by_deployment_id(client: Any, definition: bytes) -> None:
    model(client, "multi", definition)
    for deployment_id in ("multi-for-search", "multi-for-ingest"):
        started = client.ml.start_trained_model_deployment(model_id="multi", deployment_id=deployment_id,
                                                           priority="low", wait_for="started")["assignment"]
        assert started["task_parameters"]["deployment_id"] == deployment_id
        infer(client, deployment_id, "hello")
    stats = client.ml.get_trained_models_stats(model_id="multi")
    assert stats["count"] == 1
    assert [(s["model_id"], s["deployment_stats"]["deployment_id"]) for s in stats["trained_model_stats"]] == [
        ("multi", "multi-for-ingest"), ("multi", "multi-for-search")]
    by_deployment = client.ml.get_trained_models_stats(model_id="multi-for-search")
    assert by_deployment["count"] == 1
    assert [s["deployment_stats"]["deployment_id"] for s in by_deployment["trained_model_stats"]] == [
        "multi-for-search"]


def test_stats_of_a_started_deployment_carry_the_node_counters(client: Any, definition: bytes) -> None:
    deployed(client, "counters", definition)
    infer(client, "counters", "hello world")
    (entry,) = client.ml.get_trained_models_stats(model_id="counters")["trained_model_stats"]
    deployment = entry["deployment_stats"]
    assert entry["inference_stats"]["inference_count"] == 1 and deployment["inference_count"] == 1
    assert (deployment["state"], deployment["priority"], deployment["allocation_status"]["state"]) == (
        "started", "normal", "fully_allocated")
    node = deployment["nodes"][0]
    assert node["routing_state"] == {"routing_state": "started"}
    assert {"inference_count", "average_inference_time_ms", "average_inference_time_ms_excluding_cache_hits",
            "inference_cache_hit_count", "last_access", "number_of_pending_requests", "start_time",
            "threads_per_allocation", "number_of_allocations", "peak_throughput_per_minute", "throughput_last_minute",
            "inference_cache_hit_count_last_minute"} <= set(node)
    assert (node["number_of_pending_requests"], node["throughput_last_minute"]) == (0, 1)


def test_stats_of_an_undeployed_model_have_no_inference_stats(client: Any, definition: bytes) -> None:
    model(client, "idle", definition)
    (entry,) = client.ml.get_trained_models_stats(model_id="idle")["trained_model_stats"]
    assert entry == {"model_id": "idle", "pipeline_count": 0, "model_size_stats": {
        "model_size_bytes": len(definition), "required_native_memory_bytes": 2 * len(definition)}}


def test_a_starting_deployment_has_no_counters_and_cannot_infer(standin: Any, definition: bytes) -> None:
    held = standin(fail="pause-start=slow")
    client = held.client()
    model(client, "slow", definition)
    client.ml.start_trained_model_deployment(model_id="slow", deployment_id="slow-dep", wait_for="starting")
    held.wait_for_pause("start", model_id="slow")
    node = node_stats(client, "slow")
    assert node["routing_state"] == {"routing_state": "starting"} and "inference_count" not in node
    with pytest.raises(elasticsearch.ConflictError) as starting:
        infer(client, "slow", "hello")
    assert error_of(starting) == (409, "status_exception",
                                  "Trained model deployment [slow] is not allocated to any nodes")
    held.release("start")


# --- stop --------------------------------------------------------------------------------------------

def test_stop_of_an_unknown_id_answers_stopped_unless_allow_no_match_is_false(client: Any) -> None:
    assert client.ml.stop_trained_model_deployment(model_id="nothing-at-all") == {"stopped": True}
    assert client.ml.stop_trained_model_deployment(model_id="nothing-at-all", allow_no_match=True) == {"stopped": True}
    with pytest.raises(elasticsearch.NotFoundError) as missing:
        client.ml.stop_trained_model_deployment(model_id="nothing-at-all", allow_no_match=False)
    assert error_of(missing) == (404, "resource_not_found_exception",
                                 "No known model deployment with id [nothing-at-all]")


def test_stop_by_model_id_leaves_a_deployment_with_another_id(client: Any, definition: bytes) -> None:
    deployed(client, "stop-a", definition, deployment_id="stop-a-dep")
    assert client.ml.stop_trained_model_deployment(model_id="stop-a") == {"stopped": True}
    assert node_stats(client, "stop-a")["routing_state"] == {"routing_state": "started"}
    with pytest.raises(elasticsearch.NotFoundError) as by_model:
        client.ml.stop_trained_model_deployment(model_id="stop-a", allow_no_match=False)
    assert error_of(by_model)[2] == "No known model deployment with id [stop-a]"
    assert client.ml.stop_trained_model_deployment(model_id="stop-a-dep") == {"stopped": True}
    (entry,) = client.ml.get_trained_models_stats(model_id="stop-a")["trained_model_stats"]
    assert "deployment_stats" not in entry


def test_stop_with_another_id_in_the_body_is_refused(server: StandIn) -> None:
    refused = server.http("POST", "/_ml/trained_models/stop-b/deployment/_stop", body={"model_id": "other"})
    assert refused.status == 400
    assert (refused.json()["error"]["type"], refused.json()["error"]["reason"]) == (
        "illegal_argument_exception",
        "Inconsistent model_id; 'other' specified in the body differs from 'stop-b' specified as a URL argument")


# --- start and put against deployment ids -------------------------------------------------------------

def test_start_with_another_models_id_as_deployment_id_is_refused(client: Any, definition: bytes) -> None:
    model(client, "dep-a", definition)
    model(client, "dep-a-other", definition)
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.start_trained_model_deployment(model_id="dep-a", deployment_id="dep-a-other")
    assert error_of(refused) == (
        400, "status_exception", "Deployment id [dep-a-other] is the same as an another model which is not the model "
        "being deployed. Deployment id can be the same as the model being deployed but cannot match a different model")


def test_start_of_a_taken_deployment_id_is_refused(client: Any, definition: bytes) -> None:
    deployed(client, "dep-b", definition, deployment_id="dep-b-dep")
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.start_trained_model_deployment(model_id="dep-b", deployment_id="dep-b-dep", wait_for="started")
    assert error_of(refused) == (400, "status_exception", "Could not start model deployment because an existing "
                                                          "deployment with the same id [dep-b-dep] exist")


def test_put_model_with_a_current_deployment_id_is_refused(client: Any, definition: bytes) -> None:
    deployed(client, "dep-c", definition, deployment_id="dep-c-dep")
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model(model_id="dep-c-dep", **bert_config("ner"))
    assert error_of(refused) == (400, "status_exception",
                                 "Cannot create model [dep-c-dep] the id is the same as an current model deployment")


def test_start_without_a_definition_is_404(client: Any) -> None:
    client.ml.put_trained_model(model_id="distilbert-finetuned-sst", **bert_config("ner"))
    with pytest.raises(elasticsearch.NotFoundError) as missing:
        client.ml.start_trained_model_deployment(model_id="distilbert-finetuned-sst")
    assert error_of(missing) == (404, "resource_not_found_exception",
                                 "Could not find trained model definition [distilbert-finetuned-sst]")


# --- the built-in lang_ident_model_1 -------------------------------------------------------------------

def test_every_cluster_lists_lang_ident_model_1(standin: Any) -> None:
    client = standin().client()
    for expression in ("_all", "*", "lang*"):
        listed = client.ml.get_trained_models(model_id=expression)
        assert listed["count"] == 1 and listed["trained_model_configs"][0]["model_id"] == "lang_ident_model_1"
    assert client.ml.get_trained_models()["count"] == 1
    assert client.ml.get_trained_models(model_id="lang_ident_model_1", allow_no_match=False)["count"] == 1
    stats = client.ml.get_trained_models_stats()
    assert stats["count"] == 1 and stats["trained_model_stats"] == [{
        "model_id": "lang_ident_model_1", "pipeline_count": 0,
        "model_size_stats": {"model_size_bytes": 1053992, "required_native_memory_bytes": 0}}]


def test_lang_ident_model_1_config(client: Any) -> None:
    (config,) = client.ml.get_trained_models(model_id="lang_ident_model_1")["trained_model_configs"]
    assert config["model_type"] == "lang_ident" and config["license_level"] == "basic"
    assert (config["created_by"], config["version"], config["create_time"]) == ("_xpack", "7.6.0", 1575548914594)
    assert config["description"] == "Model used for identifying language from arbitrary input text."
    assert config["tags"] == ["lang_ident", "prepackaged"] and config["input"] == {"field_names": ["text"]}
    assert config["inference_config"]["classification"]["num_top_classes"] == 0
    assert "location" not in config


def test_wildcards_sort_lang_ident_model_1_among_uploaded_models(client: Any) -> None:
    for model_id in ("k-sorted", "y-sorted"):
        client.ml.put_trained_model(model_id=model_id, **bert_config())
    ids = [c["model_id"] for c in client.ml.get_trained_models(model_id="k-sorted,lang*,y-sorted")[
        "trained_model_configs"]]
    assert ids == ["k-sorted", "lang_ident_model_1", "y-sorted"]


def test_deleting_lang_ident_model_1_is_refused(client: Any) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.delete_trained_model(model_id="lang_ident_model_1")
    assert error_of(refused) == (400, "status_exception",
                                 "Unable to delete model [lang_ident_model_1] as it is required by machine learning")


def test_starting_lang_ident_model_1_is_refused(client: Any) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.start_trained_model_deployment(model_id="lang_ident_model_1")
    assert error_of(refused) == (400, "status_exception", "model [lang_ident_model_1] of type [lang_ident] cannot be "
                                                          "deployed. Only PyTorch models can be deployed")


def test_putting_lang_ident_model_1_finds_it_existing(client: Any) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model(model_id="lang_ident_model_1", **bert_config())
    assert error_of(refused) == (400, "resource_already_exists_exception",
                                 "Trained machine learning model [lang_ident_model_1] already exists")


# --- the input field of a document -------------------------------------------------------------------

def test_the_input_field_is_read_by_dotted_path_across_objects_or_dotted_keys(client: Any, definition: bytes) -> None:
    config = bert_config("pass_through")
    config["input"] = {"field_names": ["body.text"]}
    upload(client, "input-dotted", definition, config=config, vocabulary=VOCAB)
    client.ml.start_trained_model_deployment(model_id="input-dotted", wait_for="started")
    nested = client.ml.infer_trained_model(model_id="input-dotted", docs=[{"body": {"text": "hello world"}}])
    flat = client.ml.infer_trained_model(model_id="input-dotted", docs=[{"body.text": "hello world"}])
    assert nested["inference_results"] == flat["inference_results"]
    assert nested["inference_results"][0]["predicted_value"]


@pytest.fixture(scope="module")
def plain_input(client: Any, definition: bytes) -> str:
    deployed(client, "input-plain", definition)
    return "input-plain"


@pytest.mark.parametrize(("doc", "reason"), [
    ({"other": "hello"}, "Input field [text_field] does not exist in the source document"),
    ({"text_field": None}, "Input field [text_field] does not exist in the source document"),
    ({"text_field": 42}, "Input value [42] for field [text_field] must be a string"),
    ({"text_field": ["a", True]}, "Input value [[a, true]] for field [text_field] must be a string"),
])
def test_a_document_without_a_string_input_is_refused(client: Any, plain_input: str, doc: dict[str, Any],
                                                      reason: str) -> None:
    with pytest.raises(elasticsearch.ApiError) as refused:
        client.ml.infer_trained_model(model_id=plain_input, docs=[doc])
    assert error_of(refused) == (400, "status_exception", reason)


# --- fill_mask: the mask in the text and in the tokenization --------------------------------------------

@pytest.fixture(scope="module")
def fill_mask_model(client: Any) -> str:
    upload(client, "mask-a", scripted("fill_mask"), config=bert_config("fill_mask"), vocabulary=VOCAB)
    client.ml.start_trained_model_deployment(model_id="mask-a", wait_for="started")
    return "mask-a"


@pytest.mark.parametrize(("text", "answer"), [
    # FillMaskProcessor.validateInputs reads the text: none is a ValidationException, two a bad request.
    ("hello world",
     (400, "validation_exception", "Validation Failed: 1: no [MASK] token could be found in the input;")),
    ("[MASK] and [MASK]", (400, "status_exception", "only one [MASK] token should exist in the input")),
])
def test_fill_mask_refuses_a_text_without_exactly_one_mask(client: Any, fill_mask_model: str, text: str,
                                                           answer: tuple[int, str, str]) -> None:
    with pytest.raises(elasticsearch.ApiError) as refused:
        client.ml.infer_trained_model(model_id=fill_mask_model, docs=[{"text_field": text}])
    assert error_of(refused) == answer


def test_fill_mask_whose_tokenization_loses_the_mask_fails_inside(client: Any) -> None:
    """processResult looks for the mask's id after tokenization: bert_ja's Kuromoji has cut `[MASK]` into `[`,
    `MASK`, `]`, so the id is missing and the cluster answers a 500."""
    config = bert_config("fill_mask")
    settings = config["inference_config"]["fill_mask"]
    settings["tokenization"] = {"bert_ja": settings["tokenization"]["bert"]}
    upload(client, "mask-ja", scripted("fill_mask"), config=config, vocabulary=VOCAB)
    client.ml.start_trained_model_deployment(model_id="mask-ja", wait_for="started")
    with pytest.raises(elasticsearch.ApiError) as refused:
        client.ml.infer_trained_model(model_id="mask-ja", docs=[{"text_field": "hello [MASK] world"}])
    assert error_of(refused) == (500, "status_exception", f"mask token id [{VOCAB.index('[MASK]')}] not found in "
                                 "the tokenization")


def test_fill_mask_with_its_mask_answers(client: Any, fill_mask_model: str) -> None:
    (result,) = client.ml.infer_trained_model(model_id=fill_mask_model,
                                              docs=[{"text_field": "hello [MASK] world"}])["inference_results"]
    assert result["top_classes"] and "[MASK]" not in result["predicted_value"]


# --- what the stand-in does not emulate ---------------------------------------------------------------

def test_inference_with_lang_ident_model_1_is_not_emulated(client: Any) -> None:
    with pytest.raises(elasticsearch.ApiError) as refused:
        client.ml.infer_trained_model(model_id="lang_ident_model_1", docs=[{"text": "bonjour"}])
    status, error_type, reason = error_of(refused)
    assert (status, error_type) == (501, "standin_not_emulated")
    assert reason.startswith("the Elasticsearch stand-in does not emulate inference with [lang_ident_model_1]")


@pytest.mark.parametrize(("model_id", "body"), [
    ("a-regression-model-0", {"input": {"field_names": ["field1"]}, "inference_config": {"regression": {}},
                              "definition": {"preprocessors": [], "trained_model": {"tree": {}}}}),
])
def test_tree_models_are_not_emulated(server: StandIn, model_id: str, body: dict[str, Any]) -> None:
    refused = server.http("PUT", f"/_ml/trained_models/{model_id}", body=json.dumps(body).encode())
    assert refused.status == 501 and refused.json()["error"]["type"] == "standin_not_emulated"


def test_packaged_models_come_from_the_model_repository(server: StandIn) -> None:
    # Packaged ids are fetched from xpack.ml.model_repository (tests/test_standin_repository.py); the default,
    # https://ml-models.elastic.co, is out of reach of an air-gapped cluster.
    body = {"input": {"field_names": ["text_field"]}}
    refused = server.http("PUT", "/_ml/trained_models/.elser_model_2", body=json.dumps(body).encode())
    assert refused.status == 400
    assert refused.json()["error"]["reason"] == "Failed to load package metadata"


def test_unknown_urls_keep_no_handler_found(server: StandIn) -> None:
    assert server.http("PUT", "/_ingest/pipeline/p", body={"processors": []}).json() == {
        "error": "no handler found for uri [/_ingest/pipeline/p] and method [PUT]", "status": 400}
