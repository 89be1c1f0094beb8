"""The stand-in's `_start` and `_infer` do what the cluster's native inference process does.

Real TorchScript archives, uploaded part by part with the official client: a tiny random BERT
whose `_infer` vector must equal the module's own output on the same token ids, hand-written
modules of each task shape, and modules each emulated release must refuse with Elasticsearch's
node-failure error and the native process's message.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import pytest
import torch

from tests.standin.fixture import StandIn, start_standin
from tests.standin.testkit import MPNET_VOCAB, VOCAB, bert_config, scripted, tiny_bert, upload

NODE_FAILURE = "Could not start trained model deployment, the following nodes failed with errors [{"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("native") / "data")
    yield shared
    shared.kill()


@pytest.fixture(scope="module")
def bert() -> tuple[bytes, Any]:
    return tiny_bert()


def node_failure(excinfo: pytest.ExceptionInfo[elasticsearch.ApiError]) -> str:
    """The native message inside Elasticsearch's `{node_id=reason}` map."""
    assert excinfo.value.meta.status == 500
    reason = excinfo.value.body["error"]["reason"]
    assert reason.startswith(NODE_FAILURE) and reason.endswith("}]")
    return reason[len(NODE_FAILURE):-2].split("=", 1)[1]


def test_infer_tiny_bert_matches_running_the_module(server: StandIn, bert: tuple[bytes, Any],
                                                    tmp_path: Path) -> None:
    from tokenizers import BertWordPieceTokenizer

    definition, module = bert
    client = server.client()
    parts = upload(client, "tiny-bert", definition, part_size=16 * 1024)
    assert parts == -(-len(definition) // (16 * 1024)) > 1
    assert server.http("GET", "/_standin/trained_models/tiny-bert/definition").body == definition
    started = client.ml.start_trained_model_deployment(model_id="tiny-bert", wait_for="started")
    assert started["assignment"]["assignment_state"] == "started"

    text = "The quick brown Fox jumps over the lazy dogs"
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    ids = BertWordPieceTokenizer(str(vocab_file), lowercase=True).encode(text).ids
    assert ids[0] == VOCAB.index("[CLS]") and ids[-1] == VOCAB.index("[SEP]")
    tensor = torch.tensor([ids])
    expected = module(tensor, torch.ones_like(tensor), torch.zeros_like(tensor),
                      torch.arange(len(ids)).unsqueeze(0))[0].tolist()
    result = client.ml.infer_trained_model(model_id="tiny-bert", docs=[{"text_field": text}])
    vector = result["inference_results"][0]["predicted_value"]
    assert vector == pytest.approx(expected, abs=1e-5)

    stats = client.ml.get_trained_models_stats(model_id="tiny-bert")["trained_model_stats"][0]
    assert stats["deployment_stats"]["state"] == "started"
    assert stats["deployment_stats"]["nodes"][0]["routing_state"]["routing_state"] == "started"
    with pytest.raises(elasticsearch.ConflictError) as deployed:
        client.ml.delete_trained_model(model_id="tiny-bert")
    assert deployed.value.body["error"]["reason"] == (
        "Cannot delete model [tiny-bert] as it is currently deployed; use force to delete the model")
    assert client.ml.stop_trained_model_deployment(model_id="tiny-bert")["stopped"]
    with pytest.raises(elasticsearch.ConflictError) as stopped:
        client.ml.infer_trained_model(model_id="tiny-bert", docs=[{"text_field": text}])
    assert stopped.value.body["error"]["reason"] == (
        "Model [tiny-bert] must be deployed to use. Please deploy with the start trained model deployment API.")


def test_mpnet_tokenization_and_two_inputs(server: StandIn) -> None:
    from transformers import MPNetTokenizerFast

    definition = scripted("embedding")
    client = server.client()
    config = {"model_type": "pytorch", "input": {"field_names": ["text"]},
              "inference_config": {"text_embedding": {"tokenization": {"mpnet": {"do_lower_case": True}}}}}
    upload(client, "mpnet", definition, config=config, vocabulary=MPNET_VOCAB)
    client.ml.start_trained_model_deployment(model_id="mpnet")
    vocab = {token: i for i, token in enumerate(MPNET_VOCAB)}
    ids = MPNetTokenizerFast(vocab=vocab, do_lower_case=True)("Hello Elastic world")["input_ids"]
    assert ids[0] == MPNET_VOCAB.index("<s>") and ids[-1] == MPNET_VOCAB.index("</s>")
    module = torch.jit.load(io.BytesIO(definition))
    tensor = torch.tensor([ids])
    expected = module(tensor, torch.ones_like(tensor))[0].tolist()
    result = client.ml.infer_trained_model(model_id="mpnet", docs=[{"text": "Hello Elastic world"}])
    assert result["inference_results"][0]["predicted_value"] == pytest.approx(expected, abs=1e-6)


def test_long_input_is_truncated_to_max_sequence_length(server: StandIn) -> None:
    client = server.client()
    upload(client, "trunc", scripted("embedding"))
    client.ml.start_trained_model_deployment(model_id="trunc")
    long_text = " ".join(["hello world"] * 40)
    result = client.ml.infer_trained_model(model_id="trunc", docs=[{"text_field": long_text}])
    assert result["inference_results"][0]["is_truncated"] is True
    config = bert_config()
    config["inference_config"]["text_embedding"]["tokenization"]["bert"]["truncate"] = "none"
    upload(client, "no-trunc", scripted("embedding"), config=config)
    client.ml.start_trained_model_deployment(model_id="no-trunc")
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.infer_trained_model(model_id="no-trunc", docs=[{"text_field": long_text}])
    assert refused.value.body["error"]["reason"] == (
        "Input too large. The tokenized input length [82] exceeds the maximum sequence length [16]")


def test_task_result_shapes(server: StandIn) -> None:
    client = server.client()
    labels = ["negative", "neutral", "positive"]
    upload(client, "classify", scripted("classification"),
           config=bert_config("text_classification", classification_labels=labels, num_top_classes=2))
    upload(client, "entities", scripted("tokens"),
           config=bert_config("ner", classification_labels=["O", "B-LOC", "I-LOC"]))
    upload(client, "masked", scripted("fill_mask"), config=bert_config("fill_mask"))
    for model_id in ("classify", "entities", "masked"):
        client.ml.start_trained_model_deployment(model_id=model_id)

    classified = client.ml.infer_trained_model(model_id="classify", docs=[{"text_field": "hello world"}])
    result = classified["inference_results"][0]
    assert result["predicted_value"] in labels and 0 < result["prediction_probability"] <= 1
    assert len(result["top_classes"]) == 2
    assert set(result["top_classes"][0]) == {"class_name", "class_probability", "class_score"}
    assert result["top_classes"][0]["class_name"] == result["predicted_value"]

    ner = client.ml.infer_trained_model(model_id="entities", docs=[{"text_field": "paris london"}])
    entities = ner["inference_results"][0]
    assert "predicted_value" in entities and isinstance(entities["entities"], list)
    for entity in entities["entities"]:
        assert entity["class_name"] == "LOC"
        assert "paris london"[entity["start_pos"]:entity["end_pos"]] == entity["entity"]

    filled = client.ml.infer_trained_model(model_id="masked", docs=[{"text_field": "the [MASK] fox"}])
    mask = filled["inference_results"][0]
    # FillMaskResults: the token as predicted_value, the filled text under `<results_field>_sequence`
    assert mask["predicted_value"] == mask["top_classes"][0]["class_name"] and len(mask["top_classes"]) == 5
    assert mask["predicted_value_sequence"] == f"the {mask['predicted_value']} fox"


def test_file_version_newer_than_libtorch_reads_is_refused(standin: Any, bert: tuple[bytes, Any]) -> None:
    old = standin(es_version="8.5.0")  # libtorch 1.11.0 reads TorchScript files up to version 9
    client = old.client()  # asks for compatible-with=8
    upload(client, "too-new", bert[0])
    with pytest.raises(elasticsearch.ApiError) as refused:
        client.ml.start_trained_model_deployment(model_id="too-new")
    assert node_failure(refused) == ("Attempted to read a PyTorch file with version 10, but the maximum supported "
                                     "version for reading is 9. Your PyTorch installation may be too old.")
    assert client.ml.get_trained_models_stats(model_id="too-new")["trained_model_stats"][0].get(
        "deployment_stats") is None  # the failed deployment was removed


def test_unlisted_operation_refused_by_9_4_and_accepted_by_9_2(standin: Any, server: StandIn) -> None:
    definition = scripted("tril")
    strict = standin(es_version="9.4.0").client()
    upload(strict, "tril", definition)
    with pytest.raises(elasticsearch.ApiError) as refused:
        strict.ml.start_trained_model_deployment(model_id="tril")
    assert node_failure(refused) == (
        "Model graph does not match any supported architecture. Unrecognised operations: aten::tril")
    lenient = server.client()  # 9.2.0
    upload(lenient, "tril", definition)
    assert lenient.ml.start_trained_model_deployment(model_id="tril")["assignment"]["assignment_state"] == "started"


def test_forbidden_operation_legacy_check_on_9_2_and_full_validator_on_9_4(standin: Any, server: StandIn) -> None:
    definition = scripted("from_file")
    legacy = server.client()  # 9.2.0 runs the legacy check on forward's top-level nodes
    upload(legacy, "from-file", definition)
    with pytest.raises(elasticsearch.ApiError) as old_check:
        legacy.ml.start_trained_model_deployment(model_id="from-file")
    assert node_failure(old_check) == (
        "Loading the inference process failed because it contains forbidden operation: aten::from_file")
    strict = standin(es_version="9.4.0").client()
    upload(strict, "from-file", definition)
    with pytest.raises(elasticsearch.ApiError) as new_check:
        strict.ml.start_trained_model_deployment(model_id="from-file")
    assert node_failure(new_check) == "Model contains forbidden operations: aten::from_file"


def test_state_hooks_refused_by_9_5(standin: Any) -> None:
    client = standin(es_version="9.5.0").client()
    upload(client, "hooks", scripted("hooks"))
    with pytest.raises(elasticsearch.ApiError) as refused:
        client.ml.start_trained_model_deployment(model_id="hooks")
    assert node_failure(refused) == "Model archive contains custom state hooks: __getstate__, __setstate__"


def test_missing_vocabulary_and_garbage_definition_fail_on_the_node(server: StandIn) -> None:
    client = server.client()
    client.ml.put_trained_model(model_id="no-vocab", **bert_config())
    client.ml.put_trained_model_definition_part(model_id="no-vocab", part=0, definition="AAAA",
                                                total_definition_length=3, total_parts=1)
    with pytest.raises(elasticsearch.ApiError) as no_vocab:
        client.ml.start_trained_model_deployment(model_id="no-vocab")
    assert "Could not find vocabulary document [no-vocab_vocabulary]" in node_failure(no_vocab)
    upload(client, "garbage", b"not a zip archive at all")
    with pytest.raises(elasticsearch.ApiError) as garbage:
        client.ml.start_trained_model_deployment(model_id="garbage")
    assert node_failure(garbage).startswith("PytorchStreamReader failed reading zip archive")


def test_start_timeout_is_408_and_the_deployment_keeps_starting(standin: Any) -> None:
    # The native load is held until the test releases it: the 100 ms wait cannot be outrun by a fast load, and
    # the deployment is provably still starting when the 408 arrives, however slow the machine.
    slow = standin(fail="pause-start=slow")
    client = slow.client()
    upload(client, "slow", scripted("embedding"))
    with pytest.raises(elasticsearch.ApiError) as timed_out:
        client.ml.start_trained_model_deployment(model_id="slow", timeout="100ms")
    assert timed_out.value.meta.status == 408
    assert timed_out.value.body["error"]["type"] == "model_deployment_timeout_exception"
    assert timed_out.value.body["error"]["reason"].startswith(
        "Timed out after [100ms] waiting for trained model deployment [slow] to start.")
    assert [h["deployment_id"] for h in slow.wait_for_pause("start", model_id="slow")] == ["slow"]

    def state() -> str:
        stats = client.ml.get_trained_models_stats(model_id="slow")["trained_model_stats"][0]
        return str(stats["deployment_stats"]["state"])

    states = [state()]  # held: the start carries on after the 408
    assert [h["model_id"] for h in slow.release("start")] == ["slow"]
    deadline = time.monotonic() + 60  # only turns a hang into a failure; no timing is asserted
    while states[-1] == "starting" and time.monotonic() < deadline:
        time.sleep(0.05)  # poll like a loader would
        states.append(state())
    assert states[0] == "starting" and states[-1] == "started"
    with pytest.raises(elasticsearch.BadRequestError) as twice:
        client.ml.start_trained_model_deployment(model_id="slow")
    assert twice.value.body["error"]["reason"] == (
        "Could not start model deployment because an existing deployment with the same id [slow] exist")


def test_deployment_survives_restart(standin: Any) -> None:
    first = standin()
    client = first.client()
    upload(client, "durable", scripted("embedding"))
    client.ml.start_trained_model_deployment(model_id="durable")
    before = client.ml.infer_trained_model(model_id="durable", docs=[{"text_field": "hello"}])
    first.kill()
    first.restart()
    client = first.client()
    stats = client.ml.get_trained_models_stats(model_id="durable")["trained_model_stats"][0]
    assert stats["deployment_stats"]["state"] == "started"
    after = client.ml.infer_trained_model(model_id="durable", docs=[{"text_field": "hello"}])
    assert after["inference_results"] == before["inference_results"]
