"""`esbundle load --inference-id`: refusals that must come before anything is sent (the stand-in holds no model
afterwards), as a user meets them on the command line."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Keys, MakeBundle, RunCli
from tests.standin.fixture import StandIn
from tests.test_load import load, models

NER_CONFIG: dict[str, Any] = {
    "model_type": "pytorch",
    "inference_config": {"ner": {"classification_labels": ["O", "B_PER", "I_PER"],
                                 "tokenization": {"bert": {"do_lower_case": True, "max_sequence_length": 128}}}},
    "input": {"field_names": ["text_field"]},
}


def test_a_ner_bundle_cannot_back_an_endpoint(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                              standin: Callable[..., StandIn]) -> None:
    bundle = make_bundle(config=NER_CONFIG, task_type="ner")
    server = standin()
    result = load(run_cli, bundle, keys, server, "--inference-id", "people")
    assert result.exit_code == 2, result.output
    assert "--inference-id people: a ner model cannot back an inference endpoint" in result.stderr
    assert "text_embedding, text_expansion, text_similarity" in result.stderr
    assert models(server) == []


@pytest.mark.parametrize(("inference_id", "reason"), [
    ("My-Endpoint", "inference id 'My-Endpoint' can contain lowercase alphanumeric"),
    ("-minilm", "must start and end with alphanumeric"),
    ("x" * 65, "cannot contain more than 64 characters"),
])
def test_an_id_elasticsearch_would_refuse_is_refused_first(inference_id: str, reason: str, make_bundle: MakeBundle,
                                                           keys: Keys, run_cli: RunCli,
                                                           standin: Callable[..., StandIn]) -> None:
    bundle = make_bundle()
    server = standin()
    result = load(run_cli, bundle, keys, server, "--inference-id", inference_id)
    assert result.exit_code == 2, result.output
    assert reason in result.stderr
    assert models(server) == []


@pytest.mark.parametrize(("args", "reason"), [
    (("--inference-id", "minilm", "--adaptive-allocations", "4"), "expected MIN:MAX"),
    (("--inference-id", "minilm", "--adaptive-allocations", "3:1"), "MIN must not exceed MAX"),
    (("--adaptive-allocations", "0:2"), "give --inference-id too"),
])
def test_adaptive_allocations_are_checked(args: tuple[str, ...], reason: str, make_bundle: MakeBundle, keys: Keys,
                                          run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    bundle = make_bundle()
    server = standin()
    result = load(run_cli, bundle, keys, server, *args)
    assert result.exit_code == 2, result.output
    assert reason in result.stderr
    assert models(server) == []


@pytest.mark.parametrize(("version", "task", "since"), [
    ("8.12.2", "text_embedding", "8.13.0"),
    ("8.15.3", "text_expansion", "8.16.0"),
    ("8.14.3", "text_similarity", "8.15.0"),
])
def test_an_older_cluster_is_refused_in_preflight(version: str, task: str, since: str, make_bundle: MakeBundle,
                                                  keys: Keys, run_cli: RunCli,
                                                  standin: Callable[..., StandIn]) -> None:
    config = {**NER_CONFIG, "inference_config": {task: {"tokenization": NER_CONFIG["inference_config"]["ner"][
        "tokenization"]}}}
    bundle = make_bundle(config=config, task_type=task)
    server = standin(es_version=version)
    result = load(run_cli, bundle, keys, server, "--inference-id", "endpoint")
    assert result.exit_code == 7, result.output
    assert f"Elasticsearch {version} cannot serve an imported model" in result.stderr
    assert f"(from {since})" in result.stderr
    assert models(server) == []
