"""text_embedding from a plain transformers encoder (no sentence-transformers files): `--pooling mean|cls|max` and
`--normalize/--no-normalize`, the pooling traced inside the module. Each tiny model is exported through the real
command line; the definition reassembled from the bundle's parts is fed inputs this test tokenizes itself the way
the cluster does, one text at a time and as one padded batch, and compared with the Hugging Face model run
directly, its last hidden state pooled by rules written out here. The default is what SentenceTransformer builds
for a plain model (mean, not normalised), and the export says and records which pooling it traced. The flags are
refused where the model or the task defines its own output.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import Result
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer

from tests import models, reference
from tests.conftest import Keys, RunCli

ROOT = Path(__file__).resolve().parent.parent
TARGET = ("--target-es-version", "9.2.0", "--allow-newer-torch")
TEXTS = (
    "Hello.",
    "The weather in Paris is sunny today.",
    "The quick brown fox jumps over the lazy dog near the river bank. " * 12,  # cut at the max length
    "Größenwahn im Café: naïve façade — Привет, мир! ½ ≠ 0.5 😀",
)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    family: str
    flags: tuple[str, ...]
    mode: str  # what the test pools with
    normalize: bool


CASES = [
    Case("bert-default", models.bert_encoder, "bert", (), "mean", False),
    Case("bert-cls-normalized", models.bert_encoder, "bert", ("--pooling", "cls", "--normalize"), "cls", True),
    Case("bert-max", models.bert_encoder, "bert", ("--pooling", "max", "--no-normalize"), "max", False),
    Case("bert-mean-normalized", models.bert_encoder, "bert", ("--pooling", "mean", "--normalize"), "mean", True),
    Case("mpnet-max-normalized", models.mpnet_encoder, "mpnet", ("--pooling", "max", "--normalize"), "max", True),
]


def written_out_pooling(hidden: torch.Tensor, mask: torch.Tensor, mode: str, normalize: bool) -> torch.Tensor:
    """One vector per row from the real tokens only (the mask's ones): their mean, the first one, or the largest
    value of each dimension; then divided by its Euclidean length if asked."""
    vectors = []
    for row in range(hidden.shape[0]):
        real = [hidden[row, i] for i in range(hidden.shape[1]) if int(mask[row, i]) == 1]
        if mode == "mean":
            vector = sum(real) / len(real)
        elif mode == "cls":
            vector = real[0]
        else:
            vector = torch.stack(real).amax(dim=0)
        if normalize:
            vector = vector / torch.sqrt((vector * vector).sum())
        vectors.append(vector)
    return torch.stack(vectors)


def export(run_cli: RunCli, keys: Keys, model_dir: Path, out: Path, *flags: str) -> Result:
    return run_cli("export", "--model-dir", model_dir, "--task-type", "text_embedding", "--signing-key",
                   keys.pair.private_path, "--out", out, *TARGET, *flags)


def allowed_and_forbidden() -> tuple[set[str], set[str]]:
    ops = json.loads((ROOT / "loader" / "data" / "es_model_ops.json").read_text(encoding="utf-8"))
    return set(ops["allowed_operations"]), set(ops["forbidden_operations"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_traced_pooling_answers_like_the_model_pooled_here(case: Case, run_cli: RunCli, keys: Keys,
                                                           tmp_path: Path) -> None:
    model_dir = case.make(tmp_path / "model")
    out = tmp_path / "bundle"
    result = export(run_cli, keys, model_dir, out, *case.flags, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    chosen = "options" if case.flags else "default"
    stated = {"mode": case.mode, "normalize": case.normalize, "chosen": chosen}
    assert summary["pooling"] == stated
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["provenance"]["embedding_pooling"] == stated
    check = manifest["provenance"]["trace_check"]
    assert check["passed"] and check["worst_cosine"] >= 0.9999 and check["max_abs_diff"] <= 1e-4
    assert "last_hidden_state pooled: " + case.mode in check["reference"]
    # every operation of the traced graph is one Elasticsearch allows; none is forbidden
    allowed, forbidden = allowed_and_forbidden()
    operations = set(manifest["compatibility"]["graph"]["operations"])
    assert operations <= allowed, sorted(operations - allowed)
    assert not operations & forbidden
    default_warned = any("mean of the token states" in w for w in summary["warnings"])
    assert default_warned == (not case.flags)

    module = torch.jit.load(io.BytesIO(reference.definition_bytes(out)))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = reference.original(model_dir, "AutoModel")
    config = json.loads((out / "config.json").read_text())["inference_config"]["text_embedding"]
    assert config["embedding_size"] == models.SMALL["hidden_size"]
    max_length = config["tokenization"][case.family]["max_sequence_length"]
    want = []
    for text in TEXTS:
        named = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**{k: named[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
        want.append(written_out_pooling(hidden, named["attention_mask"], case.mode, case.normalize)[0])
    with torch.no_grad():
        for i, text in enumerate(TEXTS):
            args, _ = reference.cluster_inputs(tokenizer, case.family, [text], None, max_length=max_length,
                                               truncation=True)
            reference.assert_close(module(*args)[0], want[i], f"{case.name}, text {i} alone")
        args, lengths = reference.cluster_inputs(tokenizer, case.family, TEXTS, None, max_length=max_length,
                                                 truncation=True)
        assert max(lengths) == max_length and min(lengths) < max_length  # truncated and padded rows
        batch = module(*args)
    for i, got in enumerate(batch):
        reference.assert_close(got, want[i], f"{case.name}, text {i} in a padded batch")
        if case.normalize:
            assert abs(float(got.norm()) - 1.0) < 1e-5
    for sample in manifest["samples"]:  # what the loader's smoke test will expect from the cluster
        named = tokenizer(sample["input"]["text"], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**{k: named[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
        vector = written_out_pooling(hidden, named["attention_mask"], case.mode, case.normalize)[0]
        assert torch.allclose(torch.tensor(sample["expected"]["prefix"]), vector[:8], atol=1e-4, rtol=0)
        assert abs(sample["expected"]["norm"] - float(vector.norm())) <= 1e-4


def test_the_default_is_what_sentence_transformers_builds_for_a_plain_model(run_cli: RunCli, keys: Keys,
                                                                           tmp_path: Path) -> None:
    """SentenceTransformer(<plain model folder>) adds mean pooling and no normalisation: the default export
    answers as its encode() does."""
    model_dir = models.bert_encoder(tmp_path / "model")
    result = export(run_cli, keys, model_dir, tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    assert "embedding: mean pooling, not normalized (default)" in result.stdout
    module = torch.jit.load(io.BytesIO(reference.definition_bytes(tmp_path / "bundle")))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    st = SentenceTransformer(str(model_dir), device="cpu")
    st.max_seq_length = models.MAX_LEN
    encoded = st.encode(list(TEXTS), convert_to_tensor=True, show_progress_bar=False)
    args, _ = reference.cluster_inputs(tokenizer, "bert", TEXTS, None, max_length=models.MAX_LEN, truncation=True)
    with torch.no_grad():
        batch = module(*args)
    for i, got in enumerate(batch):
        reference.assert_close(got, encoded[i], f"text {i}: traced vs SentenceTransformer.encode")


def test_chosen_pooling_is_stated_in_the_output(run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    model_dir = models.bert_encoder(tmp_path / "model")
    result = export(run_cli, keys, model_dir, tmp_path / "bundle", "--pooling", "max", "--normalize")
    assert result.exit_code == 0, result.output
    assert "embedding: max pooling, L2-normalized (as asked)" in result.stdout
    assert "embedding: max, L2-normalized pooling of the token states (--pooling/--normalize)" in result.stderr


def test_a_dpr_encoder_still_answers_its_own_pooled_output(run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    model_dir = models.dpr_question_encoder(tmp_path / "dpr")
    result = export(run_cli, keys, model_dir, tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_bytes())
    assert "embedding_pooling" not in manifest["provenance"]
    module = torch.jit.load(io.BytesIO(reference.definition_bytes(tmp_path / "bundle")))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = reference.original(model_dir, "DPRQuestionEncoder")
    for text in TEXTS[:2]:
        named = tokenizer(text, return_tensors="pt")
        args, _ = reference.cluster_inputs(tokenizer, "bert", [text], None, max_length=models.MAX_LEN,
                                           truncation=True)
        with torch.no_grad():
            want = model(**{k: named[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).pooler_output
            reference.assert_close(module(*args)[0], want[0], f"DPR {text!r}")


REFUSALS: list[tuple[str, tuple[str, ...], str]] = [
    ("sentence-transformers", ("--task-type", "text_embedding", "--pooling", "cls"),
     "--pooling: a sentence-transformers model pools as its own configuration says"),
    ("sentence-transformers", ("--task-type", "auto", "--no-normalize"),
     "--normalize/--no-normalize: a sentence-transformers model pools as its own configuration says"),
    ("classifier", ("--task-type", "auto", "--normalize"),
     "--normalize/--no-normalize applies to text_embedding only; the task is text_classification"),
    ("encoder", ("--task-type", "pass_through", "--pooling", "mean"),
     "--pooling applies to text_embedding only; the task is pass_through"),
    ("dpr", ("--task-type", "auto", "--pooling", "max"), "a DPR encoder's embedding is its own pooled output"),
    ("encoder", ("--task-type", "text_embedding", "--pooling", "sum"), "Invalid value for '--pooling'"),
]
MAKERS: dict[str, Callable[[Path], Path]] = {
    "sentence-transformers": models.mpnet_sentence_transformer, "encoder": models.bert_encoder,
    "classifier": lambda p: models.bert(p, labels=["NO", "YES"]), "dpr": models.dpr_question_encoder,
}


@pytest.mark.parametrize(("kind", "args", "message"), REFUSALS, ids=[f"{r[0]}-{'-'.join(r[1][1:])}" for r in REFUSALS])
def test_the_flags_are_refused_where_they_cannot_apply(kind: str, args: tuple[str, ...], message: str,
                                                       run_cli: RunCli, keys: Keys, tmp_path: Path) -> None:
    model_dir = MAKERS[kind](tmp_path / "model")
    out = tmp_path / "work" / "bundle"
    out.parent.mkdir()
    result: Any = run_cli("export", "--model-dir", model_dir, "--signing-key", keys.pair.private_path, "--out", out,
                          *TARGET, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
