"""Least privilege, on the real CLI against the stand-in with users and roles (`--user NAME:PASSWORD:PRIVILEGE,...`).

A user holding exactly the role `esbundle load --print-role` prints loads, starts and proves a model (a tiny
sentence-transformers model exported here, whose recorded samples the smoke test compares) and one of Elastic's
packages; a user lacking one privilege of that role is refused before anything is written, the privilege named; a
user lacking one an informative check needs gets a note and the load goes on. `status` needs only `monitor`.
What the stand-in holds afterwards is read as its superuser (the first `--user`), never from the loader's output.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bundler.cli.esbundle import cli
from bundler.keys import KeyPair, generate_keypair
from tests import models
from tests.conftest import RunCli
from tests.packages import make_package
from tests.standin.fixture import StandIn
from tests.test_load_package import Exported, export

ADMIN = "elastic:changeme"
MODEL_ID, ENDPOINT = "mpnet-tiny", "mpnet-endpoint"
NOTHING = "nothing was uploaded"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, KeyPair]]:
    """Real text_embedding bundles with samples, of one tiny model under one id (each exported once)."""
    root = tmp_path_factory.mktemp("least-privilege")
    keys = generate_keypair(root / "keys", "publisher")
    model_dir = models.mpnet_sentence_transformer(root / "model")
    made: dict[str, tuple[Path, KeyPair]] = {}

    def get(name: str) -> tuple[Path, KeyPair]:
        if name not in made:
            result = CliRunner().invoke(cli, [
                "export", "--model-dir", str(model_dir), "--task-type", "text_embedding", "--es-model-id", MODEL_ID,
                "--signing-key", str(keys.private_path), "--out", str(root / name), "--target-es-version", "9.2.0",
                "--allow-newer-torch"], env={"ESBUNDLE_NO_PROGRESS": "1"}, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            made[name] = (root / name, keys)
        return made[name]

    return get


@pytest.fixture
def exported(exports: Callable[[str], tuple[Path, KeyPair]]) -> tuple[Path, KeyPair]:
    return exports("bundle")


def printed_role(run_cli: RunCli, *flags: str) -> list[str]:
    result = run_cli("load", "--print-role", *flags)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"cluster"}
    return list(body["cluster"])


def user(name: str, privileges: list[str]) -> str:
    return f"{name}:pw-{name}:{','.join(privileges)}"


def load(run_cli: RunCli, bundle: tuple[Path, KeyPair], server: StandIn, name: str, *flags: str) -> Any:
    path, keys = bundle
    return run_cli("load", path, "--trusted-key", keys.public_path, "--url", server.url, "-u", name,
                   "-p", f"pw-{name}", *flags)


def held_models(server: StandIn) -> list[str]:
    answer = server.http("GET", "/_ml/trained_models/_all").json()
    return sorted(m["model_id"] for m in answer["trained_model_configs"]
                  if not m["model_id"].startswith(".") and "prepackaged" not in m.get("tags", []))


def held_endpoints(server: StandIn) -> list[str]:
    return sorted(e["inference_id"] for e in server.http("GET", "/_inference").json()["endpoints"])


# --- the printed role -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "role"), [
    ((), ["manage_ml", "monitor"]),
    (("--start",), ["manage_ml", "monitor"]),
    (("--start", "--no-smoke-test"), ["manage_ml", "monitor"]),
    (("--inference-id", ENDPOINT), ["manage_inference", "manage_ml", "monitor"]),
    (("--replace",), ["manage_inference", "manage_ml", "monitor"]),
    (("--clear-previous", "--start"), ["manage_inference", "manage_ml", "monitor"]),
    (("--dry-run",), ["monitor"]),
    (("--dry-run", "--inference-id", ENDPOINT), ["monitor"]),
])
def test_print_role_connects_to_nothing(flags: tuple[str, ...], role: list[str], run_cli: RunCli,
                                        monkeypatch: pytest.MonkeyPatch, exported: tuple[Path, KeyPair]) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--print-role tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert printed_role(run_cli, *flags) == role
    # The same with a bundle and a cluster named: neither is read or reached (the role does not depend on them)
    with_bundle = run_cli("load", exported[0], "--url", "http://127.0.0.1:9", "--print-role", *flags)
    assert with_bundle.exit_code == 0 and json.loads(with_bundle.stdout) == {"cluster": role}
    if "manage_inference" in role:
        assert "on 8.11-8.13 grant the actions cluster:admin/xpack/inference/* instead" in with_bundle.stderr


def test_load_without_a_bundle_is_still_a_usage_error(run_cli: RunCli) -> None:
    result = run_cli("load", "--start")
    assert result.exit_code == 2 and "Missing argument 'BUNDLE...'" in result.output


# --- exactly the printed role ---------------------------------------------------------------------------------

def test_the_printed_role_loads_starts_and_checks_the_model(exported: tuple[Path, KeyPair], run_cli: RunCli,
                                                            standin: Callable[..., StandIn]) -> None:
    role = printed_role(run_cli, "--start")
    server = standin(user=[ADMIN, user("loader", role), user("viewer", ["monitor"])])
    result = load(run_cli, exported, server, "loader", "--start")
    assert result.exit_code == 0, result.output
    assert "not checked" not in result.stdout and "privilege" not in result.stdout  # every check ran
    smoke = [line for line in result.stdout.splitlines() if " smoke " in line]
    assert smoke and all(line.startswith("ok ") for line in smoke), result.stdout
    assert held_models(server) == [MODEL_ID]
    stats = server.http("GET", f"/_ml/trained_models/{MODEL_ID}/_stats").json()
    assert stats["trained_model_stats"][0]["deployment_stats"]["state"] == "started"
    # `status` with `monitor` only
    status = run_cli("status", "--url", server.url, "-u", "viewer", "-p", "pw-viewer", "--json")
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.stdout)
    assert row["model_id"] == MODEL_ID and row["fully_defined"] is True and row["deployment"] == "started"
    assert status.stderr == ""


def test_the_printed_role_creates_and_checks_an_inference_endpoint(exported: tuple[Path, KeyPair], run_cli: RunCli,
                                                                   standin: Callable[..., StandIn]) -> None:
    role = printed_role(run_cli, "--inference-id", ENDPOINT)
    server = standin(user=[ADMIN, user("loader", role)])
    result = load(run_cli, exported, server, "loader", "--inference-id", ENDPOINT)
    assert result.exit_code == 0, result.output
    assert sum(1 for line in result.stdout.splitlines() if line.startswith("ok    smoke") and "_inference:" in line) > 0
    assert held_models(server) == [MODEL_ID] and held_endpoints(server) == [ENDPOINT]


def test_the_printed_role_replaces_a_model_and_the_endpoints_over_it(
        exports: Callable[[str], tuple[Path, KeyPair]], run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    role = printed_role(run_cli, "--replace")
    short = [p for p in role if p != "manage_inference"]
    server = standin(user=[ADMIN, user("root", ["all"]), user("loader", role), user("short", short)])
    assert load(run_cli, exports("bundle"), server, "root", "--inference-id", ENDPOINT).exit_code == 0
    refused = load(run_cli, exports("other"), server, "short", "--replace")
    assert refused.exit_code == 7, refused.output
    assert ("the user [short] lacks the cluster privilege [manage_inference] needed for DELETE "
            "_inference/<inference_id>?force=true (cluster:admin/xpack/inference/delete)") in refused.stderr
    assert held_endpoints(server) == [ENDPOINT]  # nothing was touched
    replaced = load(run_cli, exports("other"), server, "loader", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert f"deleted the inference endpoint [{ENDPOINT}] that used the replaced model" in replaced.stdout
    assert held_endpoints(server) == [] and held_models(server) == [MODEL_ID]


@pytest.mark.parametrize("missing", ["manage_inference", "manage_ml", "monitor"])
def test_lacking_one_privilege_of_the_role_refuses_before_anything_is_written(
        missing: str, exported: tuple[Path, KeyPair], run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    role = printed_role(run_cli, "--inference-id", ENDPOINT)
    server = standin(user=[ADMIN, user("short", [p for p in role if p != missing])])
    result = load(run_cli, exported, server, "short", "--inference-id", ENDPOINT)
    assert result.exit_code == 7, result.output
    if missing == "monitor":  # reaching the cluster (GET /, client.py) is refused in Elasticsearch's words
        assert ("action [cluster:monitor/main] is unauthorized for user [short] with effective roles [short_role], "
                "this action is granted by the cluster privileges [monitor,manage,all]") in result.stderr
        assert NOTHING in result.stderr and held_models(server) == [] and held_endpoints(server) == []
        return
    if missing == "manage_ml":
        assert ("the user [short] lacks the cluster privilege [manage_ml] needed for PUT _ml/trained_models/"
                f"{MODEL_ID} (cluster:admin/xpack/ml/inference/put), PUT _ml/trained_models/{MODEL_ID}/vocabulary "
                f"(cluster:admin/xpack/ml/trained_models/vocabulary/put), PUT _ml/trained_models/{MODEL_ID}/"
                "definition/<part> (cluster:admin/xpack/ml/trained_models/part/put)") in result.stderr
    else:
        assert (f"the user [short] lacks the cluster privilege [manage_inference] needed for PUT _inference/"
                f"<task_type>/{ENDPOINT} (cluster:admin/xpack/inference/put)") in result.stderr
    assert NOTHING in result.stderr and "--print-role" in result.stderr
    assert held_models(server) == [] and held_endpoints(server) == []


def test_an_essential_read_refused_names_the_privilege_and_the_call(
        exported: tuple[Path, KeyPair], run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    reads = ["cluster:monitor/main", "cluster:monitor/xpack/license/get", "cluster:monitor/nodes/info"]
    server = standin(user=[ADMIN, user("blind", [*reads, "manage_inference"])])
    result = load(run_cli, exported, server, "blind")
    assert result.exit_code == 7, result.output
    assert (f"the user lacks the cluster privilege [monitor_ml] needed for GET _ml/trained_models/{MODEL_ID} "
            "(cluster:monitor/xpack/ml/inference/get): Elasticsearch answered 403 security_exception: action "
            "[cluster:monitor/xpack/ml/inference/get] is unauthorized for user [blind] with effective roles "
            "[blind_role], this action is granted by the cluster privileges [monitor_ml,manage_ml,monitor,manage,all]"
            ) in result.stderr
    assert NOTHING in result.stderr and held_models(server) == []


# --- informative checks ---------------------------------------------------------------------------------------

def test_lacking_what_an_informative_check_needs_notes_it_and_loads(
        exported: tuple[Path, KeyPair], run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    server = standin(user=[ADMIN, user("narrow", ["cluster:monitor/main", "manage_ml"])])
    result = load(run_cli, exported, server, "narrow", "--start")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("note  not checked")]
    assert notes == [
        "note  not checked: the licence (Elasticsearch refuses the machine learning calls itself without one that "
        "has it): the user lacks the cluster privilege [monitor] needed for GET _license "
        "(cluster:monitor/xpack/license/get)",
        "note  not checked: whether an ML node exists, and the ML nodes' platform: the user lacks the cluster "
        "privilege [monitor] needed for GET _nodes (cluster:monitor/nodes/info)"], result.stdout
    assert "ok    deploy   started" in result.stdout
    assert held_models(server) == [MODEL_ID]


def test_a_dry_run_says_the_load_would_be_refused(exported: tuple[Path, KeyPair], run_cli: RunCli,
                                                  standin: Callable[..., StandIn]) -> None:
    server = standin(user=[ADMIN, user("viewer", printed_role(run_cli, "--dry-run"))])
    result = load(run_cli, exported, server, "viewer", "--dry-run", "--start")
    assert result.exit_code == 0, result.output
    assert ("note  the load would be refused: the user [viewer] lacks the cluster privilege [manage_ml] needed for "
            f"PUT _ml/trained_models/{MODEL_ID} (cluster:admin/xpack/ml/inference/put)") in result.stdout
    assert "DRY RUN" in result.stdout and held_models(server) == []


def test_status_notes_the_endpoints_it_may_not_list(exported: tuple[Path, KeyPair], run_cli: RunCli,
                                                    standin: Callable[..., StandIn]) -> None:
    server = standin(user=[ADMIN, user("root", ["all"]), user("ml", ["cluster:monitor/main", "monitor_ml"]),
                           user("none", ["cluster:monitor/main"])])
    assert load(run_cli, exported, server, "root").exit_code == 0
    status = run_cli("status", "--url", server.url, "-u", "ml", "-p", "pw-ml")
    assert status.exit_code == 0, status.output
    assert MODEL_ID in status.stdout
    assert status.stderr.strip() == (
        "note  not checked: the inference endpoints serving each model: the user lacks the cluster privilege "
        "[monitor_inference] needed for GET _inference (cluster:monitor/xpack/inference/get)")
    refused = run_cli("status", "--url", server.url, "-u", "none", "-p", "pw-none")
    assert refused.exit_code == 7
    assert ("the user lacks the cluster privilege [monitor_ml] needed for GET _ml/trained_models/* "
            "(cluster:monitor/xpack/ml/inference/get)") in refused.stderr
    assert "a role with the cluster privilege [monitor] is enough for esbundle status" in refused.stderr


# --- one of Elastic's packages ---------------------------------------------------------------------------------

def test_the_printed_role_imports_and_starts_a_package(tmp_path: Path, run_cli: RunCli,
                                                       standin: Callable[..., StandIn]) -> None:
    pair = generate_keypair(tmp_path / "keys", "publisher")
    package = make_package(tmp_path / "models", "tiny-e5", padding=1 << 20)
    bundle = export(package, pair.private_path, tmp_path / "bundle")
    exported = Exported(package, bundle, pair.public_path)
    repository = tmp_path / "config" / "models"
    repository.mkdir(parents=True)
    for path in (package.metadata_file, package.pt, package.vocabulary_file):
        (repository / path.name).write_bytes(path.read_bytes())
    role = printed_role(run_cli, "--start")
    server = standin(data_dir=tmp_path / "data", config_dir=tmp_path / "config",
                     model_repository=repository.as_uri() + "/", user=[ADMIN, user("loader", role)])
    result = run_cli("load", exported.bundle, "--trusted-key", exported.pub, "--url", server.url, "-u", "loader",
                     "-p", "pw-loader", "--start")
    assert result.exit_code == 0, result.output
    assert "ok    upload   import" in result.stdout
    assert "not checked" not in result.stdout and "privilege" not in result.stdout
    back = server.http("GET", "/_standin/trained_models/.tiny-e5/definition")
    assert back.status == 200 and back.body == package.pt.read_bytes()
