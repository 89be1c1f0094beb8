"""Model files and options that would give a wrong or unloadable bundle: refused with a clear message and exit
code before anything is written (found in review)."""
from __future__ import annotations

import json
from pathlib import Path

import torch  # noqa: F401  (declared in [export]: missing is an error, not a skip)

from loader.format.model_config import config_problems
from tests import models
from tests.conftest import EMBEDDING_CONFIG, Keys, RunCli


def export(run_cli: RunCli, keys: Keys, model_dir: Path, out: Path, *extra: object) -> object:
    return run_cli("export", "--model-dir", model_dir, "--task-type", "auto", "--signing-key",
                   keys.pair.private_path, "--out", out, *extra)


def test_a_classifier_without_its_pooler_weights_is_refused(tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    from safetensors.torch import load_file, save_file

    model_dir = models.bert(tmp_path / "model", labels=["a", "b"])
    weights = load_file(str(model_dir / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if "pooler" not in k}, str(model_dir / "model.safetensors"),
              metadata={"format": "pt"})
    result = export(run_cli, keys, model_dir, tmp_path / "out")
    assert result.exit_code == 9, result.output  # random pooler weights would flip the cluster's labels
    assert "bert.pooler" in result.stderr and not (tmp_path / "out").exists()


def test_labels_that_are_not_keyed_by_integers_are_a_model_error(tmp_path: Path, keys: Keys,
                                                                   run_cli: RunCli) -> None:
    model_dir = models.bert(tmp_path / "model", labels=["a", "b"])
    config = json.loads((model_dir / "config.json").read_text())
    config["id2label"] = {"first": "a", "second": "b"}
    (model_dir / "config.json").write_text(json.dumps(config))
    result = export(run_cli, keys, model_dir, tmp_path / "out")
    assert result.exit_code == 9 and "id2label must map integer ids" in result.stderr


def test_out_of_range_options_are_usage_errors(tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    model_dir = models.bert(tmp_path / "model", labels=["a", "b"])
    too_long = export(run_cli, keys, model_dir, tmp_path / "out", "--expires-in", "99999999")
    assert too_long.exit_code == 2 and "--expires-in must be 1..36500 days" in too_long.stderr
    (tmp_path / "a-file").write_text("")
    under_file = export(run_cli, keys, model_dir, tmp_path / "a-file" / "out")
    assert under_file.exit_code == 2 and "is a file, not a directory" in under_file.stderr


def test_a_span_not_below_the_max_length_is_refused_as_elasticsearch_would() -> None:
    config = {**EMBEDDING_CONFIG, "inference_config": {"question_answering": {"tokenization": {"bert": {
        "max_sequence_length": 64, "span": 128, "truncate": "none"}}}}}
    assert "[span] provided [128] must not be greater than [max_sequence_length] provided [64]" in \
        config_problems(config, "question_answering")
