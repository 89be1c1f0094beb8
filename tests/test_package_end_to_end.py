"""One of Elastic's packages from the model server to a deployed model, by the README's commands, over both routes.

Connected side: `esbundle export --elastic-model` from a local model server (tests/repository_server.py) serving a
package made here (tests/packages.py). Offline side: `verify`, then `repository install` into the stand-in's config
directory (file route) or `repository serve` (HTTP route: the stand-in downloads five ranges in parallel, then the
last 1 MiB), then `load --start`. The stand-in's read-back must equal the published `.pt`, the smoke test must pass,
and the cluster's answer must equal the Hugging Face model run directly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bundler.keys import KeyPair, generate_keypair
from tests.conftest import RunCli
from tests.packages import MadePackage, make_package, reference_embeddings
from tests.repository_server import RepositoryServer
from tests.serve_process import start_serve
from tests.standin.fixture import StandIn

NAME = "tiny-elser"
TEXT = "my cat sleeps on the warm laptop keyboard"


@dataclass(frozen=True)
class Carried:
    package: MadePackage
    bundle: Path
    keys: KeyPair


@pytest.fixture(scope="module")
def carried(tmp_path_factory: pytest.TempPathFactory) -> Carried:
    """The package published (above 6 MiB: the HTTP route's five ranges plus the last chunk), and its bundle made
    by the real command line as on the connected machine."""
    from click.testing import CliRunner

    from bundler.cli.esbundle import cli

    root = tmp_path_factory.mktemp("carried")
    package = make_package(root / "published", NAME, padding=7 << 20)
    keys = generate_keypair(root / "keys", "publisher")
    server = RepositoryServer(package.directory).start()
    try:
        result = CliRunner().invoke(cli, ["export", "--elastic-model", NAME, "--elastic-models-url", server.url,
                                          "--signing-key", str(keys.private_path), "--out", str(root / "bundle")],
                                    env={"ESBUNDLE_NO_PROGRESS": "1"}, catch_exceptions=False)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    return Carried(package, root / "bundle", keys)


def proven(carried: Carried, server: StandIn, run_cli: RunCli) -> None:
    """`load --start` succeeds, and the cluster holds and answers exactly what was published."""
    result = run_cli("load", carried.bundle, "--trusted-key", carried.keys.public_path, "--url", server.url,
                     "--start")
    assert result.exit_code == 0, result.output
    assert f"LOADED   [.{NAME}]" in result.stdout
    smoke = [line for line in result.stdout.splitlines() if " smoke " in line]
    assert len(smoke) == 3 and all(line.startswith("ok ") for line in smoke), result.stdout
    back = server.http("GET", f"/_standin/trained_models/.{NAME}/definition", timeout=120)
    assert back.status == 200 and back.body == carried.package.pt.read_bytes()
    answer = server.client().ml.infer_trained_model(model_id=f".{NAME}", docs=[{"text_field": TEXT}])
    got = torch.tensor(answer["inference_results"][0]["predicted_value"])
    want = reference_embeddings(carried.package, [TEXT])[0]
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_the_file_route(carried: Carried, standin: Callable[..., StandIn], run_cli: RunCli, tmp_path: Path) -> None:
    verified = run_cli("verify", carried.bundle, "--trusted-key", carried.keys.public_path)
    assert verified.exit_code == 0, verified.output
    models = tmp_path / "config" / "models"
    installed = run_cli("repository", "install", carried.bundle, "--to", models, "--trusted-key",
                        carried.keys.public_path)
    assert installed.exit_code == 0, installed.output
    setting = f"xpack.ml.model_repository: {models.as_uri()}/"
    assert setting in installed.output
    published = carried.package
    for path in (published.metadata_file, published.vocabulary_file, published.pt):
        assert (models / path.name).read_bytes() == path.read_bytes()
    server = standin(data_dir=tmp_path / "data", config_dir=tmp_path / "config",
                     model_repository=setting.split(": ", 1)[1])
    proven(carried, server, run_cli)


def test_the_http_route(carried: Carried, standin: Callable[..., StandIn], run_cli: RunCli, tmp_path: Path) -> None:
    served = start_serve(carried.bundle, carried.keys.public_path, tmp_path / "serve.log")
    try:
        server = standin(data_dir=tmp_path / "data", model_repository=served.url)
        proven(carried, server, run_cli)
        requests = served.stderr()
    finally:
        served.stop()
    pt_requests = [line for line in requests.splitlines() if f"/{NAME}.pt" in line]
    assert len(pt_requests) == 6, requests  # five parallel ranges, then the last chunk, as Elasticsearch fetches
