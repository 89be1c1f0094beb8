"""Accents. Elasticsearch's bert (and bert_ja, mpnet) tokenizer strips accents whenever the config says
do_lower_case (BertTokenizer.Builder: doStripAccents defaults to doLowerCase; StripAccentTokenFilter: NFD, then
non-spacing marks dropped). A Hugging Face tokenizer may lower-case and keep them (`strip_accents=False`): on
accented text the cluster would feed the model other tokens. Such a model is refused unless
--allow-accent-difference is given; then the check feeds the trace the cluster's tokens, measures how far the
cluster's answers are from the model's own on accented texts, and the manifest records the override. An ordinary
uncased tokenizer strips accents itself, and its check tokenizes "Café" as the cluster does.

Each tiny model is exported through the real command line; the cluster's tokenization is written out here.
"""
from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from click.testing import Result
from transformers import AutoTokenizer

from bundler.export.accents import ACCENTED_TEXTS
from tests import models, reference
from tests.conftest import Keys, RunCli
from tests.standin.fixture import StandIn

TARGET = ("--target-es-version", "9.2.0", "--allow-newer-torch")
FLAG = "--allow-accent-difference"


def cluster_text(text: str) -> str:
    """What Elasticsearch's bert tokenizer with do_lower_case makes of a text before WordPiece: lower case,
    canonical decomposition, non-spacing marks (the accents) dropped."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


def tokens(tokenizer: Any, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])


def export(run_cli: RunCli, keys: Keys, model_dir: Path, out: Path, *flags: str) -> Result:
    return run_cli("export", "--model-dir", model_dir, "--task-type", "text_embedding", "--signing-key",
                   keys.pair.private_path, "--out", out, *TARGET, *flags)


def manifest_of(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_bytes())


def embed(model: Any, tokenizer: Any, text: str) -> torch.Tensor:
    """The model's own answer: its own tokenizer, the mean of the token states (the export's default pooling)."""
    named = tokenizer(text, truncation=True, max_length=models.MAX_LEN, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**{k: named[k] for k in ("input_ids", "attention_mask")}).last_hidden_state[0]
    return hidden.mean(dim=0)


def traced_answer(module: Any, tokenizer: Any, text: str) -> torch.Tensor:
    """The traced module fed what the cluster feeds it: the text as the cluster normalises it, tokenized."""
    args, _ = reference.cluster_inputs(tokenizer, "bert", [cluster_text(text)], None, max_length=models.MAX_LEN,
                                       truncation=True)
    with torch.no_grad():
        return module(*args)[0]


def test_a_tokenizer_that_keeps_accents_is_refused(run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    model_dir = models.bert_encoder(tmp_path / "model", strip_accents=False)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    assert tokens(tokenizer, "Café") != tokens(tokenizer, cluster_text("Café"))  # the premise: it keeps the accent
    out = tmp_path / "work" / "bundle"
    out.parent.mkdir()
    result = export(run_cli, keys, model_dir, out)
    assert result.exit_code == 9, result.output
    assert "lower-cases without stripping accents" in result.output
    assert "strips accents whenever do_lower_case is on" in result.output
    assert FLAG in result.output
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]


def test_with_the_flag_it_exports_measures_and_records_the_difference(run_cli: RunCli, keys: Keys,
                                                                      tmp_path: Path) -> None:
    model_dir = models.bert_encoder(tmp_path / "model", strip_accents=False)
    bundle = tmp_path / "bundle"
    result = export(run_cli, keys, model_dir, bundle, FLAG)
    assert result.exit_code == 0, result.output
    assert "accents: the cluster strips them, the model keeps them; on 4 accented texts" in result.stdout
    assert f"{FLAG}: the model's tokenizer keeps accents" in result.stderr
    manifest = manifest_of(bundle)
    assert manifest["compatibility"]["allow_accent_difference"] is True
    config = json.loads((bundle / "config.json").read_text())
    assert config["inference_config"]["text_embedding"]["tokenization"]["bert"]["do_lower_case"] is True
    inspected = run_cli("inspect", bundle, "--trusted-key", keys.pair.public_path)
    assert inspected.exit_code == 0, inspected.output
    assert any(line.split() == ["allow", "accent", "difference", "True"] for line in inspected.output.splitlines())

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    check = manifest["provenance"]["trace_check"]
    assert check["passed"]
    accents = check["accents"]
    assert (accents["cluster_strips_accents"], accents["model_strips_accents"]) == (True, False)
    assert accents["allow_accent_difference"] is True
    # the check tokenized as the cluster will: "Café" as "cafe"; the model's own tokenizer keeps the é
    assert accents["example"] == {"text": "Café", "cluster_tokens": tokens(tokenizer, cluster_text("Café")),
                                  "model_tokens": tokens(tokenizer, "Café")}
    assert accents["example"]["cluster_tokens"] == ["[CLS]", "c", "##a", "##f", "##e", "[SEP]"]
    assert "##é" in accents["example"]["model_tokens"]

    # The difference, measured here: the model's own answer against the cluster's (the traced module fed the
    # cluster's tokens), on the same accented texts.
    module = torch.jit.load(io.BytesIO(reference.definition_bytes(bundle)))
    model = reference.original(model_dir, "AutoModel")
    cosines, diffs = [], []
    for text in ACCENTED_TEXTS:
        own, cluster = embed(model, tokenizer, text).double(), traced_answer(module, tokenizer, text).double()
        # the trace itself is faithful: fed the cluster's tokens it answers as the model does on them
        reference.assert_close(cluster, embed(model, tokenizer, cluster_text(text)), f"{text!r}, cluster's tokens")
        cosines.append(float(torch.nn.functional.cosine_similarity(own, cluster, dim=0)))
        diffs.append(float((own - cluster).abs().max()))
    difference = accents["difference"]
    assert difference["texts"] == len(ACCENTED_TEXTS) and difference["other_token_count"] == 0
    assert abs(difference["worst_cosine"] - min(cosines)) < 1e-5
    assert abs(difference["max_abs_diff"] - max(diffs)) < 1e-3 * max(diffs) + 1e-6
    assert min(cosines) < 0.9999  # a real difference, which is why the flag was needed


def test_an_uncased_tokenizer_that_strips_accents_tokenizes_cafe_as_the_cluster(run_cli: RunCli, keys: Keys,
                                                                               tmp_path: Path) -> None:
    model_dir = models.bert_encoder(tmp_path / "model")  # do_lower_case, strip_accents unset: strips
    bundle = tmp_path / "bundle"
    result = export(run_cli, keys, model_dir, bundle)
    assert result.exit_code == 0, result.output
    assert "accent" not in result.output.lower()
    manifest = manifest_of(bundle)
    assert manifest["compatibility"]["allow_accent_difference"] is False
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    cafe = ["[CLS]", "c", "##a", "##f", "##e", "[SEP]"]
    assert tokens(tokenizer, cluster_text("Café")) == tokens(tokenizer, "Café") == cafe
    accents = manifest["provenance"]["trace_check"]["accents"]
    assert accents == {"cluster_strips_accents": True, "model_strips_accents": True,
                       "allow_accent_difference": False,
                       "example": {"text": "Café", "cluster_tokens": cafe, "model_tokens": cafe}}
    module = torch.jit.load(io.BytesIO(reference.definition_bytes(bundle)))
    model = reference.original(model_dir, "AutoModel")
    for text in ("Café", *ACCENTED_TEXTS):
        reference.assert_close(traced_answer(module, tokenizer, text), embed(model, tokenizer, text), repr(text))


def test_a_tokenizer_that_strips_accents_without_lower_casing_is_refused_even_with_the_flag(
        run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    """The cluster keeps accents without do_lower_case; the model's tokenizer strips them: the export cannot even
    feed the trace the cluster's tokens, so no flag lets it through."""
    model_dir = models.bert_encoder(tmp_path / "model", strip_accents=True, lowercase=False)
    for flags in ((), (FLAG,)):
        result = export(run_cli, keys, model_dir, tmp_path / "bundle", *flags)
        assert result.exit_code == 9, result.output
        assert "strips accents without lower-casing" in result.output
        assert not (tmp_path / "bundle").exists()


def test_sentence_transformers_lowercasing_keeps_accents_so_it_needs_the_flag(run_cli: RunCli, keys: Keys,
                                                                            tmp_path: Path) -> None:
    """sentence-transformers' own do_lower_case over a cased tokenizer keeps accents, which the cluster (told
    do_lower_case) strips: refused like a tokenizer that does the same; with the flag, measured and recorded."""
    model_dir = models.bert_sentence_transformer(tmp_path / "st")
    refused = export(run_cli, keys, model_dir, tmp_path / "refused")
    assert refused.exit_code == 9, refused.output
    assert "sentence-transformers (do_lower_case) lower-cases without stripping accents" in refused.stderr
    assert FLAG in refused.stderr and not (tmp_path / "refused").exists()
    bundle = tmp_path / "bundle"
    result = export(run_cli, keys, model_dir, bundle, FLAG)
    assert result.exit_code == 0, result.output
    manifest = manifest_of(bundle)
    assert manifest["compatibility"]["allow_accent_difference"] is True
    accents = manifest["provenance"]["trace_check"]["accents"]
    assert (accents["cluster_strips_accents"], accents["model_strips_accents"]) == (True, False)
    assert accents["example"]["cluster_tokens"] == ["[CLS]", "c", "##a", "##f", "##e", "[SEP]"]
    assert accents["difference"]["texts"] == len(ACCENTED_TEXTS)


def test_the_flag_with_nothing_to_allow_is_said(run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    model_dir = models.bert_encoder(tmp_path / "model")
    result = export(run_cli, keys, model_dir, tmp_path / "bundle", FLAG)
    assert result.exit_code == 0, result.output
    assert f"{FLAG}: the cluster strips accents exactly as the model does; nothing to allow" in result.stderr
    assert "difference" not in manifest_of(tmp_path / "bundle")["provenance"]["trace_check"]["accents"]


def test_load_says_the_publisher_accepted_the_accent_difference(run_cli: RunCli, keys: Keys, tmp_path: Path,
                                                                standin: Callable[..., StandIn]) -> None:
    model_dir = models.bert_sentence_transformer(tmp_path / "st")
    bundle = tmp_path / "bundle"
    assert export(run_cli, keys, model_dir, bundle, FLAG).exit_code == 0
    server = standin(es_version="9.2.0")
    planned = run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert "the publisher accepted that at export (--allow-accent-difference)" in planned.output
