"""What a release would refuse at deployment, caught before the media travel: at pack/export with a target, in
inspect, in load's preflight, and confirmed by the stand-in's own `_start` checks (independent code)."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from loader.releases.deployability import GraphFacts, accepting_ranges, refusal
from loader.releases.libtorch import parse_version
from tests.conftest import EMBEDDING_CONFIG, TINY_VOCAB, Keys, RunCli
from tests.standin.fixture import StandIn

TRIL = "Model graph does not match any supported architecture. Unrecognised operations: aten::tril"
HOOKS = "Model archive contains custom state hooks: __getstate__, __setstate__"


class Tril(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        return torch.tril(attention_mask.float()).sum(dim=1, keepdim=True)


class Hooks(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        return attention_mask.float() * self.scale

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.scale, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.scale = state[0]
        self.training = state[1]


def scripted(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def pack_args(tmp_path: Path, keys: Keys, definition: Path, out: str) -> list[object]:
    config, vocab = tmp_path / "config.json", tmp_path / "vocab.json"
    config.write_text(json.dumps(EMBEDDING_CONFIG))
    vocab.write_text(json.dumps(TINY_VOCAB))
    return ["pack", "--definition", definition, "--config", config, "--vocab", vocab,
            "--signing-key", keys.pair.private_path, "--out", tmp_path / out, "--es-model-id", "graph-model"]


@pytest.mark.parametrize("version,expected", [
    ("9.4.0", TRIL), ("8.19.20", TRIL), ("9.5.2", TRIL), ("9.2.0", None), ("8.19.19", None), ("9.3.8", None),
])
def test_operation_allowlist_by_release(version: str, expected: str | None) -> None:
    facts = GraphFacts(10, frozenset({"aten::tril", "aten::linear"}), frozenset({"aten::tril"}), False)
    assert refusal(parse_version(version), facts) == expected


def test_forbidden_before_unrecognised_and_the_legacy_check() -> None:
    facts = GraphFacts(10, frozenset({"aten::save", "aten::tril"}), frozenset({"aten::save"}), False)
    assert refusal((9, 4, 0), facts) == "Model contains forbidden operations: aten::save"
    assert refusal((9, 2, 0), facts) == \
        "Loading the inference process failed because it contains forbidden operation: aten::save"
    assert refusal((8, 12, 0), facts) is None  # no check at all in that release


def test_state_hooks_and_file_versions() -> None:
    hooks = GraphFacts(10, frozenset({"aten::mul"}), frozenset({"aten::mul"}), True)
    assert refusal((9, 5, 0), hooks) == HOOKS and refusal((9, 4, 5), hooks) == HOOKS
    assert refusal((9, 4, 4), hooks) is None
    newer = GraphFacts(10, frozenset(), frozenset(), False)
    assert refusal((8, 5, 0), newer) == \
        "Attempted to read a PyTorch file with version 10, but the maximum supported version for reading is 9"
    assert accepting_ranges(newer)[0].startswith("8.7.0")


def test_pack_refuses_for_the_target_and_names_the_operation(tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    definition = scripted(Tril(), tmp_path / "tril.pt")
    for version in ("9.4.0", "8.19.20"):
        refused = run_cli(*pack_args(tmp_path, keys, definition, f"b-{version}"), "--target-es-version", version)
        assert refused.exit_code == 6, refused.output
        assert f"Elasticsearch {version} would refuse to deploy this model: {TRIL}" in refused.stderr
        assert "releases that would deploy it: 8.0.0-8.19.19, 9.0.0-9.3.8" in refused.stderr
        assert not (tmp_path / f"b-{version}").exists()
    accepted = run_cli(*pack_args(tmp_path, keys, definition, "b-9.2"), "--target-es-version", "9.2.0")
    assert accepted.exit_code == 0, accepted.output
    shown = run_cli("inspect", tmp_path / "b-9.2", "--trusted-key", keys.pub)
    assert re.search(r"^ops not allowlisted +aten::tril$", shown.stdout, re.M), shown.stdout
    assert re.search(r"^deploys on +8\.0\.0-8\.19\.19, 9\.0\.0-9\.3\.8$", shown.stdout, re.M), shown.stdout

    forced = run_cli(*pack_args(tmp_path, keys, definition, "b-forced"), "--target-es-version", "9.4.0",
                     "--allow-unsupported-ops")
    assert forced.exit_code == 0, forced.output
    compat = json.loads((tmp_path / "b-forced" / "manifest.json").read_text())["compatibility"]
    assert compat["allow_unsupported_ops"] is True and compat["predicted_refusal"] == TRIL


def test_state_hooks_refused_for_9_5(tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    definition = scripted(Hooks(), tmp_path / "hooks.pt")
    refused = run_cli(*pack_args(tmp_path, keys, definition, "b"), "--target-es-version", "9.5.0")
    assert refused.exit_code == 6 and HOOKS in refused.stderr


def test_load_predicts_what_the_clusters_start_then_says(tmp_path: Path, keys: Keys, run_cli: RunCli,
                                                         standin: Callable[..., StandIn]) -> None:
    definition = scripted(Tril(), tmp_path / "tril.pt")
    assert run_cli(*pack_args(tmp_path, keys, definition, "b"), "--target-es-version", "9.2.0").exit_code == 0
    server = standin(es_version="9.4.0")
    refused = run_cli("load", tmp_path / "b", "--trusted-key", keys.pub, "--url", server.url, "--start")
    assert refused.exit_code == 6 and f"would refuse to deploy this model: {TRIL}" in refused.stderr
    assert "nothing was uploaded" in refused.stderr
    # Forced past the prediction, the stand-in's native process (its own code) refuses with the same words.
    forced = run_cli("load", tmp_path / "b", "--trusted-key", keys.pub, "--url", server.url, "--start", "--force")
    assert forced.exit_code == 7
    assert "Could not start trained model deployment" in forced.stderr and TRIL in forced.stderr
