"""text_expansion: a sparse (SPLADE) model is traced with its pooling inside, answering one weight per vocabulary
entry, `[batch, vocab]` float32, which is what Elasticsearch's TextExpansionProcessor reads (`r[0][0]`).

Tiny random models are exported through the real CLI: a plain BERT masked-LM (SPLADE max pooling of
log(1 + relu(logits)), written out here on AutoModelForMaskedLM's own output), and sentence-transformers sparse
encoders (MLMTransformer + SpladePooling, both pooling strategies and both activations) compared with
SparseEncoder.encode itself. The definition is reassembled from the bundle's parts and fed inputs tokenized here,
by a tokenizer this test builds from the vocabulary file, one text at a time and as one padded batch.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result
from transformers import AutoModelForMaskedLM, BertTokenizer

from bundler.cli.esbundle import cli
from bundler.keys import KeyPair, generate_keypair
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from tests import models, reference
from tests.conftest import RunCli

ROOT = Path(__file__).resolve().parent.parent
# The newest releases check every operation of the graph against an allowlist: a target among them makes the
# export itself refuse an operation the cluster would (aten::log1p is not on the list).
TARGET = ("--target-es-version", "9.5.2", "--allow-newer-torch")
TEXTS = (
    "Hello.",
    "The weather in Paris is sunny today.",
    "The quick brown fox jumps over the lazy dog near the river bank. " * 12,
    "Größenwahn im Café: naïve façade — Привет, мир! ½ ≠ 0.5 😀",
)
SPARSE_TOP = 10  # weights a sample records


@dataclass(frozen=True)
class Case:
    name: str
    pooling: str  # max | sum
    activation: str  # relu | log1p_relu
    sentence_transformers: bool
    task: str = "text_expansion"
    max_length: int = 40
    quantize: bool = False
    mlm_transformer: bool = True  # the first module: MLMTransformer, or Transformer with transformer_task fill-mask


CASES = [
    Case("masked-lm", "max", "relu", False, max_length=models.MAX_LEN),
    Case("masked-lm-quantized", "max", "relu", False, max_length=models.MAX_LEN, quantize=True),
    Case("st-max-relu", "max", "relu", True, task="auto"),
    Case("st-sum-relu", "sum", "relu", True),
    Case("st-max-log1p-relu", "max", "log1p_relu", True),
    Case("st-sum-log1p-relu", "sum", "log1p_relu", True),
    Case("st-fill-mask-transformer", "sum", "relu", True, task="auto", mlm_transformer=False),
]
NAMES = [c.name for c in CASES]


@dataclass
class Exported:
    case: Case
    model_dir: Path
    vocab_file: Path  # the vocabulary the test builds its own tokenizer from
    bundle: Path
    result: Result


def _clean_env() -> dict[str, str | None]:
    """A module-wide fixture runs before conftest's per-test isolation: leave out a developer's settings here."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith(("ESBUNDLE_", "ES_"))}
    return {**env, "ESBUNDLE_NO_PROGRESS": "1"}


def _make(case: Case, folder: Path) -> tuple[Path, Path]:
    if case.sentence_transformers:
        model_dir = models.splade_sparse_encoder(folder, case.pooling, case.activation, max_seq_length=case.max_length,
                                                 mlm_transformer=case.mlm_transformer)
        return model_dir, folder.parent / f"{folder.name}-base" / "vocab.txt"
    model_dir = models.bert_masked_lm(folder)
    return model_dir, model_dir / "vocab.txt"


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, publisher: KeyPair) -> dict[str, Exported]:
    """Every case exported once through `esbundle export`, in process."""
    root = tmp_path_factory.mktemp("sparse")
    done = {}
    for case in CASES:
        model_dir, vocab_file = _make(case, root / "models" / case.name)
        bundle = root / "bundles" / case.name
        args = ["export", "--model-dir", model_dir, "--task-type", case.task, "--signing-key",
                publisher.private_path, "--out", bundle, *TARGET, "--json", *(["--quantize"] if case.quantize else [])]
        result = CliRunner().invoke(cli, [str(a) for a in args], env=_clean_env(), catch_exceptions=False)
        assert result.exit_code == 0, (case.name, result.output)
        done[case.name] = Exported(case, model_dir, vocab_file, bundle, result)
    return done


def tokenizer_for(item: Exported) -> BertTokenizer:
    tokenizer = BertTokenizer(vocab=str(item.vocab_file), do_lower_case=True)
    assert len(tokenizer) == len(vocabulary(item))  # the whole vocabulary file was read
    return tokenizer


def vocabulary(item: Exported) -> list[str]:
    return item.vocab_file.read_text(encoding="utf-8").splitlines()


def reference_weights(item: Exported, texts: list[str]) -> torch.Tensor:
    """The independent answer, `[len(texts), vocab]`: SparseEncoder.encode for a sentence-transformers sparse
    encoder (dense, every weight kept); for a plain masked-LM, SPLADE written out here on its own logits, each text
    alone (no padding): max over the tokens of log(1 + relu(logits))."""
    case = item.case
    if case.sentence_transformers:
        from sentence_transformers import SparseEncoder

        encoder = SparseEncoder(str(item.model_dir), device="cpu")
        assert encoder.max_seq_length == case.max_length
        assert (encoder[1].pooling_strategy, encoder[1].activation_function) == (case.pooling, case.activation)
        return encoder.encode(texts, max_active_dims=None, convert_to_tensor=True, convert_to_sparse_tensor=False,
                              show_progress_bar=False).float()
    model = AutoModelForMaskedLM.from_pretrained(str(item.model_dir)).eval()
    tokenizer = tokenizer_for(item)
    rows = []
    with torch.no_grad():
        for text in texts:
            named = tokenizer(text, truncation=True, max_length=case.max_length, return_tensors="pt")
            logits = model(**named).logits[0]
            rows.append(torch.log1p(torch.relu(logits)).max(dim=0).values)
    return torch.stack(rows)


def traced(item: Exported) -> Any:
    return torch.jit.load(io.BytesIO(reference.definition_bytes(item.bundle)))


def run_traced(module: Any, item: Exported, texts: list[str]) -> tuple[torch.Tensor, list[int]]:
    args, lengths = reference.cluster_inputs(tokenizer_for(item), "bert", texts, None,
                                             max_length=item.case.max_length, truncation=True)
    with torch.no_grad():
        return module(*args), lengths


@pytest.mark.parametrize("name", NAMES)
def test_bundle_is_a_text_expansion_bundle(name: str, exported: dict[str, Exported], publisher: KeyPair) -> None:
    item = exported[name]
    if item.case.sentence_transformers:  # the layout sentence-transformers wrote is the one the case is about
        kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads((item.model_dir / "modules.json").read_text())]
        assert kinds == ["MLMTransformer" if item.case.mlm_transformer else "Transformer", "SpladePooling"]
    manifest = verify_bundle(item.bundle, load_trusted_keys([publisher.public_path]), progress=False).manifest
    assert manifest.task_type == "text_expansion"
    config = json.loads((item.bundle / "config.json").read_text())
    assert list(config["inference_config"]) == ["text_expansion"]
    tokenization = config["inference_config"]["text_expansion"]["tokenization"]
    assert list(tokenization) == ["bert"] and tokenization["bert"]["max_sequence_length"] == item.case.max_length
    check = manifest.provenance["trace_check"]
    assert check["passed"] and check["quantized"] == item.case.quantize
    assert check["reference"].startswith("SparseEncoder.encode" if item.case.sentence_transformers
                                         else "transformers BertForMaskedLM.forward")
    strict = check["trace_vs_quantized_module"] if item.case.quantize else check
    assert strict["worst_cosine"] >= 0.9999 and strict["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_graph_holds_only_operations_elasticsearch_allows(name: str, exported: dict[str, Exported]) -> None:
    item = exported[name]
    manifest = json.loads((item.bundle / "manifest.json").read_bytes())
    operations = set(manifest["compatibility"]["graph"]["operations"])
    allowed = set(json.loads((ROOT / "loader" / "data" / "es_model_ops.json").read_text())["allowed_operations"])
    assert "aten::log1p" not in operations and "aten::log1p_" not in operations
    assert operations <= allowed, sorted(operations - allowed)
    assert {"aten::log", "aten::relu"} <= operations
    assert ("aten::max" if item.case.pooling == "max" else "aten::sum") in operations
    # the module read back from the parts holds no log1p either (the manifest is not taken on trust)
    module = traced(item)
    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    assert not [n for n in graph.nodes() if "log1p" in n.kind()]


@pytest.mark.parametrize("name", NAMES)
def test_reassembled_definition_answers_like_the_reference(name: str, exported: dict[str, Exported]) -> None:
    """`[batch, vocab]` float32, one text at a time and as one padded batch, against the independent reference."""
    item = exported[name]
    vocab_size = len(vocabulary(item))
    module = traced(item)
    texts = list(TEXTS)
    want = reference_weights(item, texts)
    assert want.shape == (len(texts), vocab_size)
    batch, lengths = run_traced(module, item, texts)
    assert max(lengths) == item.case.max_length and min(lengths) < item.case.max_length  # truncated and padded
    assert batch.dtype == torch.float32 and tuple(batch.shape) == (len(texts), vocab_size)
    singles = [run_traced(module, item, [text])[0] for text in texts]
    assert all(tuple(s.shape) == (1, vocab_size) for s in singles)
    if item.case.quantize:  # int8 weights move every value: the direction stays
        for i, got in enumerate(batch):
            cosine = float(torch.nn.functional.cosine_similarity(got.double(), want[i].double(), dim=0))
            assert cosine >= 0.8, (name, i, cosine)
        return
    for i in range(len(texts)):
        reference.assert_close(singles[i][0], want[i], f"{name}, text {i} alone")
        reference.assert_close(batch[i], want[i], f"{name}, text {i} in a padded batch")
        # the tokens the cluster keeps (weight > 0) are the reference's, up to weights at rounding level
        assert not ((want[i] > 1e-5) & (batch[i] <= 0)).any() and not ((batch[i] > 1e-5) & (want[i] <= 0)).any()
        assert (batch[i] >= 0).all()


@pytest.mark.parametrize("name", [n for n in NAMES if "quantized" not in n])
def test_recorded_samples_are_the_references_top_weights(name: str, exported: dict[str, Exported]) -> None:
    """The expansion each sample records: the reference's highest weights, named as Elasticsearch names them."""
    item = exported[name]
    vocab = vocabulary(item)
    samples = json.loads((item.bundle / "manifest.json").read_bytes())["samples"]
    assert samples
    for sample in samples:
        expected = sample["expected"]
        assert set(expected) == {"expansion", "atol"}
        expansion = expected["expansion"]
        (weights,) = reference_weights(item, [sample["input"]["text"]])
        ranked = sorted(weights.tolist(), reverse=True)
        assert len(expansion) == min(SPARSE_TOP, sum(1 for w in ranked if w > 0))
        floor = ranked[len(expansion) - 1]
        for token, weight in expansion.items():
            assert "." not in token
            index = next(i for i, entry in enumerate(vocab) if entry.replace(".", "__") == token)
            assert abs(weight - float(weights[index])) <= 1e-4, (token, weight, float(weights[index]))
            assert weight > 0 and weight >= floor - 1e-4


@pytest.fixture(scope="module")
def st_sparse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.splade_sparse_encoder(tmp_path_factory.mktemp("refused") / "st")


@pytest.mark.parametrize("task", ["text_embedding", "fill_mask", "pass_through"])
def test_sparse_encoder_asked_for_another_task_is_refused(task: str, st_sparse: Path, run_cli: RunCli,
                                                          tmp_path: Path, publisher: KeyPair) -> None:
    out = tmp_path / "bundle"
    result = run_cli("export", "--model-dir", st_sparse, "--task-type", task, "--signing-key",
                     publisher.private_path, "--out", out)
    assert result.exit_code == 9, result.output
    assert (f"task {task} does not fit a sentence-transformers sparse encoder (MLMTransformer + SpladePooling)"
            in result.output)
    assert "--task-type text_expansion" in result.output
    assert not out.exists()


def test_sparse_pipeline_other_than_masked_lm_then_splade_pooling_is_refused(st_sparse: Path, run_cli: RunCli,
                                                                             tmp_path: Path,
                                                                             publisher: KeyPair) -> None:
    changed = tmp_path / "st-normalized"
    shutil.copytree(st_sparse, changed)
    modules = json.loads((changed / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                    "type": "sentence_transformers.base.modules.normalize.Normalize"})
    (changed / "modules.json").write_text(json.dumps(modules))
    result = run_cli("export", "--model-dir", changed, "--task-type", "text_expansion", "--signing-key",
                     publisher.private_path, "--out", tmp_path / "bundle")
    assert result.exit_code == 9, result.output
    assert "sparse-encoder pipeline MLMTransformer -> SpladePooling -> Normalize" in result.output


def test_an_unsupported_operation_is_refused_by_the_export(st_sparse: Path, run_cli: RunCli, tmp_path: Path,
                                                           publisher: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why log1p is built from other operations: traced as torch.log1p, the export refuses the graph in
    Elasticsearch's own words (the release checks every operation)."""
    from bundler.export import sparse

    monkeypatch.setattr(sparse, "log1p", torch.log1p)
    out = tmp_path / "bundle"
    result = run_cli("export", "--model-dir", st_sparse, "--task-type", "text_expansion", "--signing-key",
                     publisher.private_path, "--out", out, *TARGET)
    assert result.exit_code == 6, result.output
    assert "Unrecognised operations: aten::log1p" in result.output
    assert not out.exists()


def test_expansion_expectation_is_what_the_cluster_answers() -> None:
    """Weights above 0 only, highest first (ties in vocabulary order), `.` written `__`, cut at `top`."""
    from bundler.export.sparse import expansion_expectation

    vocab = ["[PAD]", "e.g.", "cat", ".", "dog", "fish"]
    row = [0.0, 0.5, 0.25, 0.5, -1.0, 1e-9]
    assert expansion_expectation(row, vocab) == {"expansion": {"e__g__": 0.5, "__": 0.5, "cat": 0.25, "fish": 1e-9}}
    assert list(expansion_expectation(row, vocab)["expansion"]) == ["e__g__", "__", "cat", "fish"]
    assert expansion_expectation(torch.tensor(row), vocab, top=2) == {"expansion": {"e__g__": 0.5, "__": 0.5}}
    assert expansion_expectation([0.0, -2.0], ["a", "b"]) == {"expansion": {}}


def test_expansion_expectation_refuses_weights_the_vocabulary_cannot_name() -> None:
    from bundler.export.sparse import expansion_expectation
    from loader.errors import ModelError

    with pytest.raises(ModelError, match="3 weights per text but the vocabulary has 2 entries"):
        expansion_expectation([0.1, 0.2, 0.3], ["a", "b"])


def test_pooling_matches_splade_pooling_on_padded_logits() -> None:
    """The traced pooling (log1p from allowed operations, max taken before the activation) against
    sentence-transformers' SpladePooling itself, on logits with padding and values around 0."""
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    from bundler.export.sparse import SparsePooling

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 50, generator=generator) * torch.tensor([1.0, 1e-3, 1e-8]).view(3, 1, 1)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    for strategy in ("max", "sum"):
        for activation in ("relu", "log1p_relu"):
            splade = SpladePooling(pooling_strategy=strategy, activation_function=activation).eval()
            want = splade({"token_embeddings": logits.clone(), "attention_mask": mask})["sentence_embedding"]
            got = SparsePooling(strategy, activation)(logits, mask)
            assert torch.equal(got > 0, want > 0), (strategy, activation)
            assert torch.allclose(got, want, rtol=1e-6, atol=0), (strategy, activation)
