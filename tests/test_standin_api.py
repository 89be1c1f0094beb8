"""The stand-in answers the trained-model API as Elasticsearch does: statuses, error types, texts.

Driven with the official `elasticsearch` client and with raw HTTP, against real stand-in
processes. Most tests share one default (9.2.0, trial) stand-in with a model id of their own.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import elasticsearch
import pytest

from tests.standin.fixture import REPO, StandIn, es_client, start_standin
from tests.standin.testkit import VOCAB, bert_config, error_of

VND9 = "application/vnd.elasticsearch+json; compatible-with=9"
VND8 = "application/vnd.elasticsearch+json; compatible-with=8"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("shared") / "data")
    yield shared
    shared.kill()


@pytest.fixture(scope="module")
def client(server: StandIn) -> Any:
    return server.client()


def part(client: Any, model_id: str, number: int, data: bytes, total_length: int, total_parts: int) -> Any:
    return client.ml.put_trained_model_definition_part(
        model_id=model_id, part=number, definition=base64.b64encode(data).decode(),
        total_definition_length=total_length, total_parts=total_parts)


# --- process, headers, cluster documents ---------------------------------------------------------

def test_launcher_prints_ready_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen([str(REPO / "scripts" / "es-standin"), "--port", "0", "--data-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        reader = ThreadPoolExecutor(1)  # the read has a deadline: a stand-in that never says ready fails, not hangs
        ready = reader.submit(process.stdout.readline)
        reader.shutdown(wait=False)
        if not wait([ready], timeout=60).done:
            pytest.fail("the stand-in printed no ready line within 60 s")
        line = ready.result().decode()
        assert line.startswith("ready http://127.0.0.1:") and not line.endswith(":0\n")
        client = elasticsearch.Elasticsearch(line.split()[1])
        assert client.info()["version"]["number"] == "9.2.0"
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        process.kill()


def test_every_response_carries_product_header_and_compatible_content_type(server: StandIn) -> None:
    ok = server.http("GET", "/", headers={"Accept": VND9})
    assert ok.status == 200
    assert ok.headers["X-Elastic-Product"] == "Elasticsearch"
    assert ok.headers["Content-Type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    plain = server.http("GET", "/_ml/trained_models/no-such-model")
    assert plain.status == 404 and plain.headers["X-Elastic-Product"] == "Elasticsearch"
    assert plain.headers["Content-Type"] == "application/json"
    missing = "No known trained model with model_id [no-such-model]"
    assert plain.json() == {"error": {"root_cause": [{"type": "resource_not_found_exception", "reason": missing}],
                                      "type": "resource_not_found_exception", "reason": missing}, "status": 404}


def test_cluster_documents(client: Any) -> None:
    assert client.ping()
    assert client.info()["tagline"] == "You Know, for Search"
    assert client.license.get()["license"]["type"] == "trial"
    nodes = client.nodes.info()["nodes"]
    assert len(nodes) == 1 and "ml" in next(iter(nodes.values()))["roles"]
    assert "limits" in client.ml.info()


def test_8x_refuses_compatible_with_9_and_accepts_8(standin: Any) -> None:
    old = standin(es_version="8.5.0")
    refused = old.http("GET", "/", headers={"Accept": VND9})
    assert refused.status == 400
    error = refused.json()["error"]
    assert error["type"] == "media_type_header_exception"
    assert error["reason"] == "Invalid media-type value on headers [Accept, Content-Type]"
    assert error["caused_by"]["reason"] == ("Accept version must be either version 8 or 7, but found 9. "
                                            "Accept=application/vnd.elasticsearch+json; compatible-with=9")
    accepted = old.http("GET", "/", headers={"Accept": VND8})
    assert accepted.status == 200 and accepted.json()["version"]["number"] == "8.5.0"
    assert old.client().info()["version"]["number"] == "8.5.0"  # the helper sends compatible-with=8


def test_9x_accepts_8_and_9_refuses_7_and_mismatch(server: StandIn) -> None:
    assert server.http("GET", "/", headers={"Accept": VND8}).status == 200
    assert server.http("GET", "/", headers={"Accept": VND9}).status == 200
    assert server.http("GET", "/", headers={"Accept": VND8.replace("8", "7")}).status == 400
    mismatch = server.http("PUT", "/_ml/trained_models/mismatch", body=b"{}",
                           headers={"Accept": VND9, "Content-Type": VND8})
    assert mismatch.status == 400
    assert mismatch.json()["error"]["caused_by"]["reason"].startswith(
        "A compatible version is required on both Content-Type and Accept headers if either one has requested a "
        "compatible version and the compatible versions must match.")


def test_stats_path_is_not_a_model_id(client: Any) -> None:
    assert client.ml.get_trained_models_stats()["count"] == client.ml.get_trained_models(model_id="_all")["count"]


def test_unknown_route_method_and_parameter(server: StandIn) -> None:
    assert server.http("GET", "/_nothing_here").json() == {
        "error": "no handler found for uri [/_nothing_here] and method [GET]", "status": 400}
    wrong = server.http("POST", "/_ml/trained_models/x/vocabulary", body={})
    assert wrong.status == 405
    unknown = server.http("GET", "/_ml/trained_models?sise=3")
    assert unknown.status == 400
    assert unknown.json()["error"]["reason"] == (
        "request [/_ml/trained_models] contains unrecognized parameter: [sise] -> did you mean [size]?")


# --- model config ----------------------------------------------------------------------------------

def test_put_and_get_config(client: Any) -> None:
    stored = client.ml.put_trained_model(model_id="cfg-1", description="d", metadata={"sha": "x"}, **bert_config())
    assert stored["created_by"] == "api_user" and stored["license_level"] == "platinum"
    assert stored["location"] == {"index": {"name": ".ml-inference-native-000002"}}
    assert stored["metadata"] == {"sha": "x"}
    got = client.ml.get_trained_models(model_id="cfg-1")["trained_model_configs"][0]
    assert got == stored.body and "fully_defined" not in got
    with pytest.raises(elasticsearch.BadRequestError) as again:
        client.ml.put_trained_model(model_id="cfg-1", **bert_config())
    assert error_of(again) == (400, "resource_already_exists_exception",
                               "Trained machine learning model [cfg-1] already exists")


@pytest.mark.parametrize(("model_id", "reason"), [
    ("Bad_Id", "Validation Failed: 1: Invalid model_id; 'Bad_Id' can contain lowercase alphanumeric (a-z and 0-9), "
               "hyphens or underscores; must start and end with alphanumeric;"),
    ("a" * 65, f"Validation Failed: 1: Invalid model_id; '{'a' * 65}' cannot contain more than 64 characters.;"),
])
def test_model_id_rules(client: Any, model_id: str, reason: str) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model(model_id=model_id, **bert_config())
    assert error_of(refused) == (400, "action_request_validation_exception", reason)


def test_unknown_field_is_a_parse_error_with_location(server: StandIn) -> None:
    refused = server.http("PUT", "/_ml/trained_models/cfg-2", body=b'{"descripton":"x"}')
    assert refused.status == 400
    reason = "[1:2] [trained_model_config] unknown field [descripton] did you mean [description]?"
    assert refused.json()["error"] == {"root_cause": [{"type": "x_content_parse_exception", "reason": reason}],
                                       "type": "x_content_parse_exception", "reason": reason}
    later = server.http("PUT", "/_ml/trained_models/cfg-2", body=b'{\n  "model_type": "pytorch",\n  "foo": 1}')
    assert later.json()["error"]["reason"] == "[3:3] [trained_model_config] unknown field [foo]"


@pytest.mark.parametrize("field", ["location", "version", "created_by", "create_time", "license_level"])
def test_fields_not_settable_at_creation(client: Any, field: str) -> None:
    # Values each field's parser (and the config's constructor) accepts, so that validation is what refuses them.
    value: Any = {"location": {"index": {"name": "x"}}, "version": "8.0.0", "create_time": 1700000000000,
                  "license_level": "platinum"}.get(field, "x")
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.put_trained_model(model_id=f"illegal-{field.replace('_', '-')}", body={**bert_config(), field: value})
    assert error_of(refused) == (400, "action_request_validation_exception",
                                 f"Validation Failed: 1: illegal to set [{field}] at inference model creation;")


def test_vocabulary_inside_tokenization_and_classification_labels(server: StandIn) -> None:
    with_vocabulary = bert_config()
    with_vocabulary["inference_config"]["text_embedding"]["vocabulary"] = {"index": "x"}
    refused = server.http("PUT", "/_ml/trained_models/cfg-3", body=with_vocabulary).json()["error"]
    assert refused["type"] == "x_content_parse_exception"
    assert refused["reason"].endswith("[trained_model_config] failed to parse field [inference_config]")
    assert refused["root_cause"] == [{"type": "status_exception",
                                      "reason": "illegal setting [vocabulary] on inference model creation"}]
    one_label = server.http("PUT", "/_ml/trained_models/cfg-3",
                            body=bert_config("text_classification", classification_labels=["a"])).json()["error"]
    assert one_label["root_cause"][0]["reason"].startswith("[text_classification] requires at least 2")


def test_get_lists_wildcards_and_refuses_status_for_several(client: Any) -> None:
    for model_id in ("list-a", "list-b"):
        client.ml.put_trained_model(model_id=model_id, **bert_config())
    assert [m["model_id"] for m in client.ml.get_trained_models(model_id="list-*")["trained_model_configs"]] == [
        "list-a", "list-b"]
    assert client.ml.get_trained_models(model_id="_all")["count"] >= 2
    assert client.ml.get_trained_models(model_id="nothing-*")["count"] == 0
    with pytest.raises(elasticsearch.BadRequestError) as several:
        client.ml.get_trained_models(model_id="list-a,list-b", include="definition_status")
    assert error_of(several) == (400, "status_exception",
                                 "Getting the model download status is not supported when getting more than one model")


# --- vocabulary and parts -------------------------------------------------------------------------

def test_vocabulary_rules(client: Any) -> None:
    with pytest.raises(elasticsearch.NotFoundError) as unknown:
        client.ml.put_trained_model_vocabulary(model_id="voc-none", vocabulary=VOCAB)
    assert error_of(unknown)[2] == "Could not find trained model [voc-none]"
    client.ml.put_trained_model(model_id="voc-roberta", model_type="pytorch",
                                inference_config={"text_embedding": {"tokenization": {"roberta": {}}}})
    with pytest.raises(elasticsearch.BadRequestError) as merges:
        client.ml.put_trained_model_vocabulary(model_id="voc-roberta", vocabulary=VOCAB)
    assert error_of(merges)[2] == ("cannot put vocabulary for model [voc-roberta] as tokenizer type [roberta] "
                                   "requires [merges] to be provided and non-empty")
    client.ml.put_trained_model(model_id="voc-xlm", model_type="pytorch",
                                inference_config={"text_embedding": {"tokenization": {"xlm_roberta": {}}}})
    with pytest.raises(elasticsearch.BadRequestError) as scores:
        client.ml.put_trained_model_vocabulary(model_id="voc-xlm", vocabulary=VOCAB)
    assert "requires [scores] to be provided and non-empty" in error_of(scores)[2]
    with pytest.raises(elasticsearch.BadRequestError) as length:
        client.ml.put_trained_model_vocabulary(model_id="voc-xlm", vocabulary=VOCAB, scores=[0.0])
    assert error_of(length)[2] == "Validation Failed: 1: [scores] must have same length as [vocabulary];"
    client.ml.put_trained_model(model_id="voc-bert", **bert_config())
    assert client.ml.put_trained_model_vocabulary(model_id="voc-bert", vocabulary=VOCAB)["acknowledged"]
    with pytest.raises(elasticsearch.BadRequestError) as again:
        client.ml.put_trained_model_vocabulary(model_id="voc-bert", vocabulary=VOCAB)
    assert error_of(again)[1] == "resource_already_exists_exception"


@pytest.mark.parametrize(("number", "total_length", "total_parts", "reason"), [
    (-1, 10, 1, "[part] must be greater or equal to 0"),
    (0, 10, 0, "[total_parts] must be greater than 0;2: [part] must be less than total_parts"),
    (0, 10, 10_001, "[total_parts] must be less than or equal to 10000"),
    (0, 0, 1, "[total_definition_length] must be greater than 0"),
    (2, 10, 2, "[part] must be less than total_parts"),
])
def test_part_request_validation(server: StandIn, number: int, total_length: int, total_parts: int,
                                 reason: str) -> None:
    body = {"definition": "AAAA", "total_definition_length": total_length, "total_parts": total_parts}
    refused = server.http("PUT", f"/_ml/trained_models/any/definition/{number}", body=body)
    assert refused.status == 400
    assert refused.json()["error"]["type"] == "action_request_validation_exception"
    assert refused.json()["error"]["reason"] == f"Validation Failed: 1: {reason};"


def test_part_store_rules(client: Any, server: StandIn) -> None:
    with pytest.raises(elasticsearch.NotFoundError):
        part(client, "parts-none", 0, b"abc", 3, 1)
    client.ml.put_trained_model(model_id="parts-1", **bert_config())
    missing = server.http("PUT", "/_ml/trained_models/parts-1/definition/0",
                          body={"total_definition_length": 3, "total_parts": 1}).json()["error"]
    assert (missing["type"], missing["reason"]) == ("illegal_argument_exception", "[definition] must not be null.")
    empty = server.http("PUT", "/_ml/trained_models/parts-1/definition/0",
                        body={"definition": "", "total_definition_length": 3, "total_parts": 1}).json()["error"]
    assert empty["reason"] == "[definition_length] must be greater than 0"
    assert part(client, "parts-1", 0, b"abc", 3, 1)["acknowledged"]
    with pytest.raises(elasticsearch.BadRequestError) as again:
        part(client, "parts-1", 0, b"abc", 3, 1)
    assert error_of(again) == (400, "resource_already_exists_exception",
                               "Trained machine learning model chunked doc [parts-1][0] already exists")
    assert server.http("GET", "/_standin/trained_models/parts-1/definition").body == b"abc"
    stats = server.http("GET", "/_standin/trained_models/parts-1/stats").json()
    assert stats["parts_stored"] == 1 and stats["put_attempts"] == {"0": 4} and stats["refused"] == {"0": 3}
    assert stats["outcomes"] == {"0": ["refused-400", "refused-400", "stored", "exists"]}


def test_definition_status_and_start_part_checks(client: Any) -> None:
    client.ml.put_trained_model(model_id="status-1", **bert_config())

    def fully_defined() -> bool:
        configs = client.ml.get_trained_models(model_id="status-1", include="definition_status")
        return configs["trained_model_configs"][0]["fully_defined"]

    with pytest.raises(elasticsearch.NotFoundError) as no_parts:
        client.ml.start_trained_model_deployment(model_id="status-1")
    assert error_of(no_parts)[2] == "Could not find trained model definition [status-1]"
    part(client, "status-1", 0, b"x" * 200, 500, 3)
    part(client, "status-1", 1, b"x" * 200, 500, 3)
    assert not fully_defined()
    with pytest.raises(elasticsearch.BadRequestError) as truncated:
        client.ml.start_trained_model_deployment(model_id="status-1")
    assert error_of(truncated)[2] == ("Model definition truncated. Unable to deserialize trained model "
                                      "definition [status-1]")
    part(client, "status-1", 2, b"x" * 100, 600, 3)
    assert not fully_defined()
    with pytest.raises(elasticsearch.BadRequestError) as disagree:
        client.ml.start_trained_model_deployment(model_id="status-1")
    assert error_of(disagree)[2].startswith(
        "[status-1] [total_definition_length] must be the same in all model definition parts. The value [600] in "
        "model definition part [2] does not match the value [500] in part [0]. ")
    client.ml.put_trained_model(model_id="status-2", **bert_config())
    part(client, "status-2", 1, b"y" * 5, 10, 2)
    part(client, "status-2", 0, b"x" * 5, 10, 2)  # any order
    assert client.ml.get_trained_models(model_id="status-2", include="definition_status")[
        "trained_model_configs"][0]["fully_defined"]


@pytest.mark.parametrize(("params", "reason"), [
    ({"threads_per_allocation": 3}, "[threads_per_allocation] must be a power of 2 less than or equal to 32"),
    ({"threads_per_allocation": 64}, "[threads_per_allocation] must be a power of 2 less than or equal to 32"),
    ({"priority": "low", "number_of_allocations": 2}, "[number_of_allocations] must be 1 when [priority] is low"),
    ({"queue_capacity": 0}, "[queue_capacity] must be a positive integer"),
])
def test_start_parameter_rules(client: Any, params: dict[str, Any], reason: str) -> None:
    with pytest.raises(elasticsearch.BadRequestError) as refused:
        client.ml.start_trained_model_deployment(model_id="whatever", **params)
    assert error_of(refused) == (400, "action_request_validation_exception", f"Validation Failed: 1: {reason};")


def test_delete_and_stop_without_deployment(client: Any) -> None:
    with pytest.raises(elasticsearch.NotFoundError):
        client.ml.delete_trained_model(model_id="del-none")
    client.ml.put_trained_model(model_id="del-1", **bert_config())
    assert client.ml.stop_trained_model_deployment(model_id="del-1")["stopped"]
    with pytest.raises(elasticsearch.NotFoundError) as no_match:
        client.ml.stop_trained_model_deployment(model_id="del-1", allow_no_match=False)
    assert error_of(no_match)[2] == "No known model deployment with id [del-1]"
    assert client.ml.delete_trained_model(model_id="del-1")["acknowledged"]
    with pytest.raises(elasticsearch.NotFoundError):
        client.ml.get_trained_models(model_id="del-1")


# --- licence, size limit, security, TLS -----------------------------------------------------------

def test_basic_license_refuses_ml_writes(standin: Any) -> None:
    basic = standin(license="basic").client()
    with pytest.raises(elasticsearch.AuthorizationException) as refused:
        basic.ml.put_trained_model(model_id="lic", **bert_config())
    assert refused.value.body["error"] == {
        "root_cause": [{"type": "security_exception", "reason": "current license is non-compliant for [ml]",
                        "license.expired.feature": "ml"}],
        "type": "security_exception", "reason": "current license is non-compliant for [ml]",
        "license.expired.feature": "ml"}
    assert basic.license.get()["license"]["type"] == "basic"


def test_request_above_max_content_length_is_413(standin: Any) -> None:
    small = standin(max_content_length=1000)
    small.client().ml.put_trained_model(model_id="big", **bert_config())
    too_big = small.http("PUT", "/_ml/trained_models/big/definition/0",
                         body={"definition": "A" * 2000, "total_definition_length": 1500, "total_parts": 1})
    assert too_big.status == 413 and too_big.body == b""
    assert small.http("GET", "/").status == 200  # the server is fine afterwards


def test_authentication_basic_and_api_key(standin: Any) -> None:
    secured = standin(user="elastic:changeme", api_key="key-id:key-secret")
    missing = secured.http("GET", "/", auth=False)
    assert missing.status == 401
    assert missing.headers.get_all("WWW-Authenticate") == [
        'Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
    assert missing.json()["error"]["reason"] == "missing authentication credentials for REST request [/]"
    wrong = secured.http("GET", "/_ml/info?pretty", auth=False,
                         headers={"Authorization": "Basic " + base64.b64encode(b"elastic:nope").decode()})
    assert wrong.json()["error"]["reason"] == (
        "unable to authenticate user [elastic] for REST request [/_ml/info?pretty]")
    bad_key = secured.http("GET", "/", auth=False,
                           headers={"Authorization": "ApiKey " + base64.b64encode(b"key-id:wrong").decode()})
    assert bad_key.status == 401
    assert bad_key.json()["error"]["additional_unsuccessful_credentials"] == (
        "API key: invalid credentials for API key [key-id]")
    assert es_client(secured).info()["version"]["number"] == "9.2.0"  # basic
    by_key = elasticsearch.Elasticsearch(secured.url, api_key=("key-id", "key-secret"))
    assert by_key.info()["version"]["number"] == "9.2.0"
    with pytest.raises(elasticsearch.AuthenticationException):
        es_client(secured, auth=False).info()


def test_tls_with_written_ca(standin: Any) -> None:
    secure = standin(tls=True)
    assert secure.url.startswith("https://127.0.0.1:") and secure.ca_cert is not None and secure.ca_cert.is_file()
    assert secure.client().info()["version"]["number"] == "9.2.0"
    assert elasticsearch.Elasticsearch(secure.url.replace("127.0.0.1", "localhost"),
                                       ca_certs=str(secure.ca_cert)).info()["tagline"]
    with pytest.raises(elasticsearch.ConnectionError):
        elasticsearch.Elasticsearch(secure.url, max_retries=0).info()  # without the CA


# --- persistence, concurrency, faults -------------------------------------------------------------

def test_restart_sees_the_same_models(standin: Any) -> None:
    first = standin()
    client = first.client()
    client.ml.put_trained_model(model_id="kept", **bert_config())
    client.ml.put_trained_model_vocabulary(model_id="kept", vocabulary=VOCAB)
    part(client, "kept", 0, b"hello ", 11, 2)
    identity = client.info()["cluster_uuid"]
    first.kill()
    first.restart()
    client = first.client()
    assert client.info()["cluster_uuid"] == identity  # the same cluster, as a restarted node is
    assert client.ml.get_trained_models(model_id="kept")["count"] == 1
    with pytest.raises(elasticsearch.BadRequestError):
        client.ml.put_trained_model_vocabulary(model_id="kept", vocabulary=VOCAB)
    part(client, "kept", 1, b"world", 11, 2)
    assert first.http("GET", "/_standin/trained_models/kept/definition").body == b"hello world"


def test_concurrent_part_uploads(client: Any, server: StandIn) -> None:
    client.ml.put_trained_model(model_id="parallel", **bert_config())
    chunks = [bytes([i]) * (1000 + i) for i in range(24)]
    total = sum(len(c) for c in chunks)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: part(es_client(server), "parallel", i, chunks[i], total, len(chunks)),
                      range(len(chunks))))
    assert server.http("GET", "/_standin/trained_models/parallel/definition").body == b"".join(chunks)
    assert server.http("GET", "/_standin/trained_models/parallel/stats").json()["parts_stored"] == 24


def test_fault_plan_status_codes_are_deterministic_and_not_stored(standin: Any) -> None:
    faulty = standin(fail="part-status=503@0.5,part-status=429@0.3,seed=7")
    client = faulty.client()
    client.ml.put_trained_model(model_id="flaky", **bert_config())
    seen: list[tuple[int, int]] = []
    for number in range(8):
        while True:
            try:
                part(client, "flaky", number, b"z" * 10, 80, 8)
                break
            except elasticsearch.ApiError as exc:
                assert (exc.meta.status, exc.body["error"]["type"]) in (
                    (503, "cluster_block_exception"), (429, "es_rejected_execution_exception"))
                seen.append((number, exc.meta.status))
    assert seen, "a 50% plan over 8 parts injects at least one fault with seed 7"
    stats = faulty.http("GET", "/_standin/trained_models/flaky/stats").json()
    assert stats["parts_stored"] == 8 and set(stats["stored"].values()) == {1}
    assert sum(stats["refused"].values()) == len(seen)
    replay = standin(fail="part-status=503@0.5,part-status=429@0.3,seed=7")
    replay_client = replay.client()
    replay_client.ml.put_trained_model(model_id="flaky", **bert_config())
    replayed = []
    for number in range(8):
        while True:
            try:
                part(replay_client, "flaky", number, b"z" * 10, 80, 8)
                break
            except elasticsearch.ApiError as exc:
                replayed.append((number, exc.meta.status))
    assert replayed == seen


def test_fault_close_on_part_drops_connection_without_storing(standin: Any) -> None:
    faulty = standin(fail="close-on-part=1")
    client = faulty.client()
    client.ml.put_trained_model(model_id="dropped", **bert_config())
    part(client, "dropped", 0, b"a" * 100, 200, 2)
    with pytest.raises(elasticsearch.ConnectionError):
        part(client, "dropped", 1, b"b" * 100, 200, 2)
    part(client, "dropped", 1, b"b" * 100, 200, 2)  # only the first arrival is dropped
    stats = faulty.http("GET", "/_standin/trained_models/dropped/stats").json()
    assert stats["outcomes"] == {"0": ["stored"], "1": ["closed", "stored"]}


@pytest.mark.parametrize(("rule", "acknowledged"), [("exit-after-parts=2", 2), ("crash-after-parts=2", 1)])
def test_fault_exit_after_parts(standin: Any, rule: str, acknowledged: int) -> None:
    faulty = standin(fail=rule)
    client = faulty.client()
    client.ml.put_trained_model(model_id="dying", **bert_config())
    answered = 0
    for number in range(3):
        try:
            part(client, "dying", number, b"c" * 10, 30, 3)
            answered += 1
        except elasticsearch.ConnectionError:
            break
    assert faulty.wait() == 3
    assert answered == acknowledged
    faulty.restart(fail=None)
    stats = faulty.http("GET", "/_standin/trained_models/dying/stats").json()
    assert stats["parts_stored"] == 2  # the crash stored its part without answering


def test_stopped_process_refuses_connections(standin: Any) -> None:
    stopping = standin()
    assert stopping.stop() == 0
    with pytest.raises(elasticsearch.ConnectionError):
        es_client(stopping).info()


def test_module_entry_point_rejects_bad_fault_plan(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tests.standin", "--port", "0", "--data-dir", str(tmp_path),
                             "--fail", "explode=1"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown fault rule [explode]" in result.stderr


def test_a_held_part_is_stored_only_once_released(standin: Any) -> None:
    """The `pause-at-part` hold that the race tests rely on: part 1 is received and held, not stored or answered,
    until the test releases it; a release with nothing held is an empty answer, an unknown point a 400."""
    held = standin(fail="pause-at-part=1")
    client = held.client()
    client.ml.put_trained_model(model_id="paused", **bert_config())
    part(client, "paused", 0, b"a" * 10, 20, 2)
    with ThreadPoolExecutor(max_workers=1) as pool:
        second = pool.submit(part, client, "paused", 1, b"b" * 10, 20, 2)
        [hold] = held.wait_for_pause("part", model_id="paused", part=1)
        assert hold["point"] == "part" and not second.done()
        status = held.http("GET", "/_ml/trained_models/paused?include=definition_status").json()
        assert status["trained_model_configs"][0]["fully_defined"] is False
        assert [r["part"] for r in held.release("part", model_id="paused")] == [1]
        assert second.result(timeout=60)["acknowledged"] is True
    status = held.http("GET", "/_ml/trained_models/paused?include=definition_status").json()
    assert status["trained_model_configs"][0]["fully_defined"] is True
    assert held.pauses() == [] and held.release() == []
    assert held.http("POST", "/_standin/release?point=nowhere").status == 400
