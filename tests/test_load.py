"""`esbundle load` against the real stand-in process, driven as users drive it (the CLI).

The stand-in is the independent judge: what it stores is read back through its own endpoint and compared with
the definition that went into the bundle, byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loader.format import layout
from tests.conftest import Keys, MakeBundle, RunCli
from tests.standin.fixture import StandIn, wait_until

BIG = 2_000_000  # 31 parts of 64 KiB


def definition_sha(bundle: Path) -> str:
    return json.loads((bundle / layout.MANIFEST).read_text())["definition"]["sha256"]


def read_back(server: StandIn, model_id: str = "tiny-model") -> str:
    response = server.http("GET", f"/_standin/trained_models/{model_id}/definition")
    assert response.status == 200, response.body[:200]
    return hashlib.sha256(response.body).hexdigest()


def attempts(server: StandIn, model_id: str = "tiny-model") -> dict[str, Any]:
    return server.http("GET", f"/_standin/trained_models/{model_id}/stats").json()


def shipped(config: dict[str, Any]) -> bool:
    """A model the cluster has without any upload: packaged (`.` ids) or pre-packaged (`lang_ident_model_1`)."""
    return config["model_id"].startswith(".") or "prepackaged" in config.get("tags", [])


def models(server: StandIn) -> list[str]:
    body = server.http("GET", "/_ml/trained_models/_all").json()
    return sorted(m["model_id"] for m in body.get("trained_model_configs", []) if not shipped(m))


def load(run_cli: RunCli, bundle: Path, keys: Keys, server: StandIn, *extra: Any) -> Any:
    args = ["load", bundle, "--trusted-key", keys.pub, "--url", server.url, *extra]
    if server.ca_cert:
        args += ["--ca-certs", server.ca_cert]
    return run_cli(*args)


def assert_each_part_stored_once(server: StandIn, parts: int) -> dict[str, Any]:
    stats = attempts(server)
    assert stats["parts_stored"] == parts
    assert all(stats["stored"].get(str(p)) == 1 for p in range(parts)), stats["stored"]
    return stats


def test_load_uploads_the_exact_bytes_and_a_rerun_is_a_quick_success(
    make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn], tmp_path: Path
) -> None:
    bundle = make_bundle(BIG)
    server = standin()
    result = load(run_cli, bundle, keys, server, "--json")
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    assert receipt["outcome"] == "loaded" and receipt["parts_sent"] == 31 and receipt["bytes_sent"] == BIG
    assert read_back(server) == definition_sha(bundle)
    stats = assert_each_part_stored_once(server, 31)
    assert all(count == 1 for count in stats["put_attempts"].values())
    # Four in flight, yet the last part arrives last: the cluster refreshes its store when it comes.
    assert stats["stored_order"][-1] == 30 and sorted(stats["stored_order"]) == list(range(31))
    config = server.http("GET", "/_ml/trained_models/tiny-model").json()["trained_model_configs"][0]
    meta = config["metadata"]["esbundle"]
    assert meta["bundle_id"] == receipt["bundle_id"] and meta["signer_key_id"] == keys.signing.key_id
    logged = [json.loads(line) for line in (tmp_path / "receipts.jsonl").read_text().splitlines()]
    assert logged[-1]["bundle_id"] == receipt["bundle_id"] and logged[-1]["cluster_uuid"]

    again = load(run_cli, bundle, keys, server)
    assert again.exit_code == 0 and "already holds this bundle" in again.stdout
    assert attempts(server)["put_attempts"] == stats["put_attempts"]

    listed = run_cli("status", "--url", server.url, "--json")
    assert json.loads(listed.stdout) == [{"bundle_id": receipt["bundle_id"], "bundle_version": 1,
                                          "deployment": "not deployed", "endpoints": [], "fully_defined": True,
                                          "model_id": "tiny-model", "signer_key_id": keys.signing.key_id}]


def test_a_definition_whose_parts_do_not_join_to_its_signed_sha256_is_never_completed(
        make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    """Every part's signed sha256 right, the signed whole-definition sha256 not theirs (a signer's inconsistent
    manifest): the parts are joined in order as they go out, the last one is never sent, and what was sent is
    deleted; the stand-in's own record of the attempts says so."""
    from tests.test_verify import resign

    bundle = make_bundle(BIG)
    resign(bundle, keys, lambda o: o["definition"].update(sha256="0" * 64))
    server = standin()
    result = load(run_cli, bundle, keys, server)
    assert result.exit_code == 4, result.output
    assert ("definition sha256 check failed: the parts joined differ from the signed sha256 of the whole "
            "definition") in result.stderr
    assert "its last part was not sent and [tiny-model] was deleted from the cluster" in result.stderr
    assert models(server) == []
    assert server.http("GET", "/_ml/trained_models/tiny-model").status == 404


def test_dry_run_writes_nothing(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                standin: Callable[..., StandIn]) -> None:
    server = standin()
    result = load(run_cli, make_bundle(), keys, server, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would create [tiny-model]" in result.stdout and "licence" in result.stdout
    assert models(server) == []


@pytest.mark.parametrize("version", ["8.19.8", "9.4.0"])
def test_8x_and_9x_clusters(version: str, make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                            standin: Callable[..., StandIn]) -> None:
    server = standin(es_version=version)
    bundle = make_bundle()
    result = load(run_cli, bundle, keys, server)
    assert result.exit_code == 0, result.output
    assert f"Elasticsearch {version}" in result.stdout
    assert read_back(server) == definition_sha(bundle)


def assert_no_secret_on_disk(state: Path, secret: str) -> None:
    """Receipts and the resume journal (all under the audit log's folder here) never hold a credential."""
    written = [p for p in state.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".parts")]
    assert any(p.name == "receipts.jsonl" for p in written)
    assert not [p for p in written if secret.encode() in p.read_bytes()]


def test_basic_auth_over_https(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                               standin: Callable[..., StandIn], tmp_path: Path) -> None:
    server = standin(user="elastic:s3cret-pw", tls=True)
    bundle = make_bundle()
    ok = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--ca-certs", server.ca_cert,
                 "-u", "elastic", env={"ES_PASSWORD": "s3cret-pw"})
    assert ok.exit_code == 0, ok.output
    assert "s3cret-pw" not in ok.output
    assert_no_secret_on_disk(tmp_path, "s3cret-pw")
    wrong = run_cli("load", make_bundle(name="b2", model_id="other"), "--trusted-key", keys.pub, "--url", server.url,
                    "--ca-certs", server.ca_cert, "-u", "elastic", "-p", "not-the-password")
    assert wrong.exit_code == 7 and "401" in wrong.stderr and "not-the-password" not in wrong.output
    untrusted_tls = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "-u", "elastic",
                            "-p", "s3cret-pw")
    assert untrusted_tls.exit_code == 7 and "did not answer" in untrusted_tls.stderr
    insecure = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "-u", "elastic",
                       "-p", "s3cret-pw", "--insecure")
    assert insecure.exit_code == 0, insecure.output
    assert "WARNING: --insecure: TLS certificates are NOT verified" in insecure.stderr
    assert_no_secret_on_disk(tmp_path, "s3cret-pw")


def test_api_key_from_environment(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                  standin: Callable[..., StandIn], tmp_path: Path) -> None:
    server = standin(api_key="loader-key:abc123secret")
    encoded = server.auth_header()["Authorization"].split(" ", 1)[1]
    result = run_cli("load", make_bundle(), "--trusted-key", keys.pub, env={"ES_URL": server.url,
                                                                             "ES_API_KEY": encoded})
    assert result.exit_code == 0, result.output
    assert encoded not in result.output
    assert_no_secret_on_disk(tmp_path, encoded)
    refused = run_cli("load", make_bundle(), "--trusted-key", keys.pub, "--url", server.url)
    assert refused.exit_code == 7 and "401" in refused.stderr


def test_basic_licence_refused_in_preflight(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                            standin: Callable[..., StandIn]) -> None:
    server = standin(license="basic")
    result = load(run_cli, make_bundle(), keys, server)
    assert result.exit_code == 6 and "licence is basic" in result.stderr and "nothing was uploaded" in result.stderr


def test_libtorch_too_old_refused_in_preflight(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                               standin: Callable[..., StandIn]) -> None:
    server = standin(es_version="8.5.0")  # libtorch 1.11.0 reads TorchScript files up to version 9
    bundle = make_bundle(provenance={"torchscript_file_version": 10},
                         compatibility={"traced_with_torch": "2.13.0", "allow_newer_torch": True})
    result = load(run_cli, bundle, keys, server)
    assert result.exit_code == 6, result.output
    assert "libtorch 1.11.0 reads TorchScript files up to version 9" in result.stderr
    server_models = server.http("GET", "/_ml/trained_models/_all", headers={
        "Accept": "application/vnd.elasticsearch+json; compatible-with=8"}).json()
    assert all(shipped(m) for m in server_models.get("trained_model_configs", []))


def test_newer_torch_without_publisher_consent_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                       standin: Callable[..., StandIn]) -> None:
    server = standin(es_version="9.2.0")
    bundle = make_bundle(compatibility={"traced_with_torch": "2.13.0"})
    refused = load(run_cli, bundle, keys, server)
    assert refused.exit_code == 6 and "newer than the cluster's libtorch 2.7.1" in refused.stderr
    forced = load(run_cli, bundle, keys, server, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert any("forced past" in o for o in json.loads(forced.stdout)["overrides"])


def test_transient_errors_are_retried(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                      standin: Callable[..., StandIn]) -> None:
    server = standin(fail="part-status=503@0.2,part-status=429@0.1,seed=7")
    bundle = make_bundle(BIG)
    result = load(run_cli, bundle, keys, server, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["retries"] > 0
    assert read_back(server) == definition_sha(bundle)
    stats = assert_each_part_stored_once(server, 31)
    assert not any("exists" in outcomes for outcomes in stats["outcomes"].values())


def test_connection_dropped_mid_part(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                     standin: Callable[..., StandIn]) -> None:
    server = standin(fail="close-on-part=3,close-on-part=17")
    bundle = make_bundle(BIG)
    result = load(run_cli, bundle, keys, server)
    assert result.exit_code == 0, result.output
    assert read_back(server) == definition_sha(bundle)
    assert_each_part_stored_once(server, 31)


def loader_process(bundle: Path, keys: Keys, url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from bundler.cli.esbundle import main; main()", "load", str(bundle),
                             "--trusted-key", str(keys.pub), "--url", url, *extra],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    """Drain and reap a loader process (its pipes are read, so it never blocks on a full one); kill it at the
    deadline, so a hung loader fails the test instead of the run."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        raise AssertionError(f"the loader did not finish within {timeout:g}s") from None


def stored_parts(server: StandIn) -> list[int]:
    return sorted(int(p) for p, n in attempts(server)["stored"].items() if n)


def test_loader_killed_half_way_then_rerun(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                           standin: Callable[..., StandIn]) -> None:
    # Parts 6 and 7 are held, received but unanswered: with 2 in flight both senders wait on them, so when the
    # kill comes parts 0-5 are acknowledged (and recorded) and nothing else is sent, however slow the machine.
    server = standin(fail="pause-at-part=6,pause-at-part=7")
    bundle = make_bundle(BIG)
    proc = loader_process(bundle, keys, server.url, "--concurrency", "2")
    try:
        held = server.wait_for_pause("part", model_id="tiny-model", count=2)
        assert sorted(h["part"] for h in held) == [6, 7]
        assert stored_parts(server) == list(range(6))
    finally:
        proc.send_signal(signal.SIGKILL)
        finish(proc, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert attempts(server)["parts_stored"] < 31
    # The cluster finishes the two requests the dead loader left in flight: stored, never acknowledged.
    assert sorted(h["part"] for h in server.release("part")) == [6, 7]
    wait_until(lambda: stored_parts(server) == list(range(8)), "the released parts 6 and 7 to be stored")
    result = load(run_cli, bundle, keys, server, "--json")
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    assert receipt["parts_skipped"] >= 6
    assert read_back(server) == definition_sha(bundle)
    stats = assert_each_part_stored_once(server, 31)
    resent = [p for p, outcomes in stats["outcomes"].items() if "exists" in outcomes]
    assert len(resent) <= 2  # at most the parts in flight when the loader died, never an acknowledged one twice


def test_cluster_dies_half_way_restarted_then_rerun(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                    standin: Callable[..., StandIn]) -> None:
    server = standin(fail="crash-after-parts=12")
    bundle = make_bundle(BIG)
    first = load(run_cli, bundle, keys, server)
    assert first.exit_code == 7, first.output
    assert first.stderr.rstrip().endswith("run the same command again to resume: parts the cluster acknowledged are "
                                          "not sent again")
    failed = json.loads((bundle.parent / "receipts.jsonl").read_text().splitlines()[-1])
    assert failed["outcome"] == "failed" and failed["exit_code"] == 7 and failed["bundle_id"]
    server.wait()
    server.restart(fail=None)
    result = load(run_cli, bundle, keys, server, "--json")
    assert result.exit_code == 0, result.output
    assert read_back(server) == definition_sha(bundle)
    stats = attempts(server)
    assert stats["parts_stored"] == 31
    # Only parts in flight when the cluster died (stored or not, never acknowledged) may be offered again: at
    # most the loader's concurrency (4); every acknowledged part was recorded and skipped. A part the dying
    # cluster had stored but not made durable is stored again, which is what a real cluster would need.
    resent = [p for p, outcomes in stats["outcomes"].items()
              if sum(o in ("stored", "exists") for o in outcomes) > 1]
    assert len(resent) <= 4, stats["outcomes"]


def test_part_changed_after_verification_is_never_uploaded(make_bundle: MakeBundle, keys: Keys,
                                                           standin: Callable[..., StandIn]) -> None:
    # Part 2 is held unanswered: with 1 in flight the loader, past verification, waits on it, and the last part
    # is read only once every other part is acknowledged, so the edit provably lands before part 30 is read.
    server = standin(fail="pause-at-part=2")
    bundle = make_bundle(BIG)
    last = bundle / layout.part_path(30)
    proc = loader_process(bundle, keys, server.url, "--concurrency", "1")
    try:
        server.wait_for_pause("part", model_id="tiny-model", part=2)
        data = bytearray(last.read_bytes())
        data[100] ^= 0xFF
        last.write_bytes(bytes(data))
        assert [h["part"] for h in server.release("part", part=2)] == [2]
    except BaseException:
        proc.kill()
        finish(proc, timeout=30)
        raise
    _, stderr = finish(proc)
    assert proc.returncode == 4, stderr
    assert "definition/part-00030.zst" in stderr and "changed on the medium" in stderr
    assert "30" not in attempts(server)["put_attempts"]


def test_bad_inputs_leave_the_cluster_unchanged(make_bundle: MakeBundle, keys: Keys, other_keys: Keys,
                                                run_cli: RunCli, standin: Callable[..., StandIn],
                                                tmp_path: Path) -> None:
    server = standin()
    bundle = make_bundle()
    wrong_key = run_cli("load", bundle, "--trusted-key", other_keys.pub, "--url", server.url)
    assert wrong_key.exit_code == 3 and "nothing was uploaded" in wrong_key.stderr

    corrupted = make_bundle(name="corrupted")
    (corrupted / layout.part_path(1)).write_bytes(b"garbage")
    bad = load(run_cli, corrupted, keys, server)
    assert bad.exit_code == 4 and "part-00001.zst" in bad.stderr
    assert models(server) == []

    unreachable = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", "http://127.0.0.1:9")
    assert unreachable.exit_code == 7 and "did not answer" in unreachable.stderr

    assert load(run_cli, make_bundle(name="v2", bundle_version=2), keys, server).exit_code == 0
    before = read_back(server)
    older = load(run_cli, make_bundle(name="v1", bundle_version=1), keys, server)
    assert older.exit_code == 6 and "rollback refused" in older.stderr
    audit = [json.loads(line) for line in (tmp_path / "receipts.jsonl").read_text().splitlines()]
    assert audit[-1]["outcome"] == "refused" and "rollback refused" in audit[-1]["error"]
    assert audit[-1]["exit_code"] == 6 and audit[-1]["user"]
    taken = load(run_cli, make_bundle(name="v3", bundle_version=3), keys, server)
    assert taken.exit_code == 6 and "already held by bundle" in taken.stderr
    assert "; nothing was touched" in taken.stderr and "nothing was uploaded" not in taken.stderr
    assert read_back(server) == before

    replaced = load(run_cli, tmp_path / "v3", keys, server, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert read_back(server) == definition_sha(tmp_path / "v3")
    downgrade = load(run_cli, tmp_path / "v1", keys, server, "--replace", "--allow-downgrade", "--json")
    assert downgrade.exit_code == 0, downgrade.output
    assert any("downgrade" in o for o in json.loads(downgrade.stdout)["overrides"])


def test_unknown_random_definition_fails_to_start_with_the_clusters_error(
    make_bundle: MakeBundle, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]
) -> None:
    server = standin()
    result = load(run_cli, make_bundle(), keys, server, "--start")
    assert result.exit_code == 7
    assert "Could not start trained model deployment" in result.stderr


