"""The stand-in's `_inference` API for the `elasticsearch` service over imported models, against Elasticsearch's
facts (tests/standin/README.md, "Inference endpoints"): creation starts a deployment named after the endpoint and
validates it, the answers' shapes per task type, and the refusals in Elasticsearch's words. Driven with the
official client against real stand-in processes running tiny TorchScript modules."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import pytest

from tests.standin.fixture import StandIn, start_standin
from tests.standin.testkit import VOCAB, bert_config, error_of, scripted, upload

SETTINGS = {"num_threads": 1, "num_allocations": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("inference") / "data", es_version="9.2.0")
    yield shared
    shared.kill()


@pytest.fixture(scope="module")
def client(server: StandIn) -> Any:
    client = server.client()
    upload(client, "emb", scripted("embedding"), config=bert_config("text_embedding"), vocabulary=VOCAB)
    upload(client, "tagger", scripted("tokens"), config=bert_config(
        "ner", classification_labels=["O", "B_PER", "I_PER"]), vocabulary=VOCAB)
    return client


def put(client: Any, inference_id: str, task_type: str = "text_embedding", **config: Any) -> Any:
    body = {"service": "elasticsearch", "service_settings": {"model_id": "emb", **SETTINGS}, **config}
    return client.inference.put(task_type=task_type, inference_id=inference_id, inference_config=body)


def test_creating_an_endpoint_starts_its_deployment_and_measures_the_dimensions(client: Any) -> None:
    created = put(client, "emb-endpoint")
    assert created["inference_id"] == "emb-endpoint" and created["task_type"] == "text_embedding"
    assert created["service"] == "elasticsearch"
    assert created["service_settings"] == {"model_id": "emb", "num_threads": 1, "num_allocations": 1,
                                           "similarity": "cosine", "element_type": "float", "dimensions": 8}
    assert created["chunking_settings"] == {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}
    (stats,) = client.ml.get_trained_models_stats(model_id="emb")["trained_model_stats"]
    assert stats["deployment_stats"]["deployment_id"] == "emb-endpoint"
    listed = client.inference.get(inference_id="emb-endpoint")["endpoints"]
    assert listed == [created.body]


def test_an_embedding_endpoint_answers_one_vector_per_input(client: Any) -> None:
    put(client, "emb-answers")
    answer = client.inference.inference(task_type="text_embedding", inference_id="emb-answers",
                                        input=["hello world", "the fox"])
    vectors = [entry["embedding"] for entry in answer["text_embedding"]]
    direct = client.ml.infer_trained_model(model_id="emb-answers", docs=[{"text_field": "hello world"},
                                                                         {"text_field": "the fox"}])
    assert vectors == [r["predicted_value"] for r in direct["inference_results"]]


@pytest.mark.parametrize(("inference_id", "task_type", "body", "answer"), [
    ("no-service", "text_embedding", {"service_settings": {}},
     (400, "status_exception", "Inference endpoint configuration is missing the [service] setting")),
    ("other-service", "text_embedding", {"service": "openai2", "service_settings": {}},
     (400, "status_exception", "Unknown service [openai2]")),
    ("Bad-Id", "text_embedding", {"service": "elasticsearch"},
     (400, "action_request_validation_exception", "Validation Failed: 1: Invalid inference_id; 'Bad-Id' can contain "
      "lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;")),
    ("no-model", "text_embedding", {"service": "elasticsearch", "service_settings": {"model_id": "nothing",
                                                                                    **SETTINGS}},
     (404, "resource_not_found_exception", "Could not find trained model [nothing]")),
    ("wrong-task", "rerank", {"service": "elasticsearch", "service_settings": {"model_id": "emb", **SETTINGS}},
     (400, "status_exception", "Deployed model [emb] with type [text_embedding] does not match the requested task "
                               "type [rerank]")),
    ("ner-endpoint", "text_embedding", {"service": "elasticsearch", "service_settings": {"model_id": "tagger",
                                                                                        **SETTINGS}},
     (400, "status_exception", "Deployed model [tagger] has type [ner] which does not map to any supported task "
                               "types")),
])
def test_creation_is_refused_in_elasticsearchs_words(client: Any, inference_id: str, task_type: str,
                                                     body: dict[str, Any], answer: tuple[int, str, str]) -> None:
    with pytest.raises(elasticsearch.ApiError) as refused:
        client.inference.put(task_type=task_type, inference_id=inference_id, inference_config=body)
    assert error_of(refused) == answer
    assert client.ml.get_trained_models_stats(model_id="tagger")["trained_model_stats"][0].get(
        "deployment_stats") is None


def test_an_id_taken_by_a_deployment_or_an_endpoint_is_refused(client: Any) -> None:
    client.ml.start_trained_model_deployment(model_id="emb", deployment_id="emb-direct", wait_for="started")
    with pytest.raises(elasticsearch.ApiError) as taken:
        put(client, "emb-direct")
    assert error_of(taken) == (400, "status_exception", "Inference endpoint IDs must be unique. Requested inference "
                               "endpoint ID [emb-direct] matches existing trained model ID(s) but must not.")


def test_post_checks_its_body(client: Any) -> None:
    put(client, "emb-body")
    with pytest.raises(elasticsearch.ApiError) as query:
        client.inference.inference(inference_id="emb-body", input=["x"], query="q")
    assert error_of(query)[2] == "Validation Failed: 1: Field [query] cannot be specified for task type " \
                                 "[text_embedding];"
    with pytest.raises(elasticsearch.NotFoundError) as unknown:
        client.inference.inference(inference_id="never-made", input=["x"])
    assert error_of(unknown) == (404, "resource_not_found_exception", "Inference endpoint not found [never-made]")


def test_a_model_behind_an_endpoint_cannot_be_deleted_without_force_and_delete_stops_the_deployment(
        client: Any) -> None:
    upload(client, "emb-2", scripted("embedding"), config=bert_config("text_embedding"), vocabulary=VOCAB)
    body = {"service": "elasticsearch", "service_settings": {"model_id": "emb-2", **SETTINGS}}
    client.inference.put(task_type="text_embedding", inference_id="emb-2-endpoint", inference_config=body)
    with pytest.raises(elasticsearch.ApiError) as deployed:
        client.ml.delete_trained_model(model_id="emb-2")
    assert error_of(deployed) == (409, "status_exception", "Cannot delete model [emb-2] as it is currently deployed; "
                                  "use force to delete the model")
    assert client.inference.delete(inference_id="emb-2-endpoint") == {"acknowledged": True, "pipelines": [],
                                                                      "indexes": []}
    assert client.ml.get_trained_models_stats(model_id="emb-2")["trained_model_stats"][0].get(
        "deployment_stats") is None
    assert client.ml.delete_trained_model(model_id="emb-2") == {"acknowledged": True}


def test_before_8_15_the_id_is_model_id_and_the_list_is_models(tmp_path: Path,
                                                               standin: Callable[..., StandIn]) -> None:
    old = standin(es_version="8.14.3")
    client = old.client()
    upload(client, "emb", scripted("embedding"), config=bert_config("text_embedding"), vocabulary=VOCAB)
    created = put(client, "old-endpoint")
    assert created["model_id"] == "old-endpoint" and "inference_id" not in created
    assert "chunking_settings" not in created
    assert [e["model_id"] for e in client.inference.get()["models"]] == ["old-endpoint"]
