"""Export tiny random models of every task type and every tokenizer family, then check each bundle from the
outside: it verifies with the offline verifier, its config and vocabulary fit the family, and the definition
reassembled from its parts, fed the inputs the cluster would build, gives the answers recorded in its samples.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from bundler.keys import KeyPair, generate_keypair
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.format.manifest import Manifest
from tests import models
from tests.conftest import RunCli

pytest.importorskip("torch")

CLUSTER_INPUTS = {
    "bert": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "bert_ja": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "mpnet": ("input_ids", "attention_mask"),
    "roberta": ("input_ids", "attention_mask"),
    "xlm_roberta": ("input_ids", "attention_mask"),
    "deberta_v2": ("input_ids", "attention_mask", "token_type_ids"),
}


# BertJapaneseTokenizer splits words with MeCab: fugashi and a dictionary (ipadic) are test dependencies.
HAVE_MECAB = all(importlib.util.find_spec(name) is not None for name in ("fugashi", "ipadic"))


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    task: str  # asked for
    expected_task: str
    family: str


CASES = [
    Case("bert-classifier", lambda p: models.bert(p, labels=["NEGATIVE", "POSITIVE"]), "auto",
         "text_classification", "bert"),
    Case("distilbert-ner", lambda p: models.bert(p, "AutoModelForTokenClassification", ["O", "B-PER", "I-PER"],
                                                 model_type="distilbert"), "auto", "ner", "bert"),
    Case("electra-qa", lambda p: models.bert(p, "AutoModelForQuestionAnswering", model_type="electra"), "auto",
         "question_answering", "bert"),
    Case("bert-mlm", lambda p: models.bert(p, "AutoModelForMaskedLM"), "auto", "fill_mask", "bert"),
    Case("bert-expansion", lambda p: models.bert(p, "AutoModelForMaskedLM"), "text_expansion", "text_expansion",
         "bert"),
    Case("bert-ja-mlm", models.bert_ja, "auto", "fill_mask", "bert_ja"),
    Case("mpnet-sentence-transformer", models.mpnet_sentence_transformer, "auto", "text_embedding", "mpnet"),
    Case("bert-st-lowercasing", models.bert_sentence_transformer, "text_embedding", "text_embedding", "bert"),
    Case("dpr-question-encoder", models.dpr_question_encoder, "auto", "text_embedding", "bert"),
    Case("roberta-cross-encoder", lambda p: models.roberta(p, labels=["score"]), "auto", "text_similarity",
         "roberta"),
    Case("bart-nli", lambda p: models.roberta(p, labels=["contradiction", "neutral", "entailment"],
                                              model_type="bart"), "auto", "zero_shot_classification", "roberta"),
    Case("xlm-roberta-base", models.xlm_roberta, "pass_through", "pass_through", "xlm_roberta"),
    Case("deberta-v2-classifier", lambda p: models.deberta_v2(p, labels=["a", "b", "c"]), "auto",
         "text_classification", "deberta_v2"),
]


@dataclass
class Exported:
    case: Case
    model_dir: Path
    bundle: Path
    result: Any


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, publisher: KeyPair) -> dict[str, Exported]:
    """Every case exported once for the whole module (tiny models: about a second each)."""
    from bundler.export import ExportOptions, run_export
    from bundler.stages import StageLog

    root = tmp_path_factory.mktemp("tiny")
    done = {}
    for case in CASES:
        if case.family == "bert_ja" and not HAVE_MECAB:
            continue
        model_dir = case.make(root / "models" / case.name)
        bundle = root / "bundles" / case.name
        result = run_export(ExportOptions(model_dir=model_dir, task_type=case.task, signing_key=publisher.private_path,
                                          out=bundle), log=StageLog(enabled=False))
        done[case.name] = Exported(case, model_dir, bundle, result)
    return done


def reassemble(bundle: Path) -> bytes:
    """The definition as the loader uploads it: every part decompressed, in part order."""
    manifest = Manifest.from_bytes((bundle / "manifest.json").read_bytes())
    data = b"".join(zstandard.ZstdDecompressor().decompress((bundle / p.path).read_bytes(),
                                                            max_output_size=p.size) for p in manifest.parts())
    import hashlib

    assert hashlib.sha256(data).hexdigest() == manifest.definition.sha256
    return data


def cluster_args(tokenizer: Any, family: str, first: str, second: str | None, max_length: int,
                 truncation: bool | str) -> tuple[Any, ...]:
    """Positional inputs as Elasticsearch passes them (ids, mask, token types, positions 0..n-1)."""
    import torch

    enc = tokenizer(first, second, truncation=truncation, max_length=max_length, return_tensors="pt",
                    return_token_type_ids=True)
    n = enc["input_ids"].shape[1]
    columns = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "token_type_ids": enc["token_type_ids"], "position_ids": torch.arange(n).unsqueeze(0)}
    return tuple(columns[name] for name in CLUSTER_INPUTS[family])


HEADS = {"text_classification": "AutoModelForSequenceClassification",
         "zero_shot_classification": "AutoModelForSequenceClassification",
         "text_similarity": "AutoModelForSequenceClassification", "ner": "AutoModelForTokenClassification",
         "fill_mask": "AutoModelForMaskedLM", "text_expansion": "AutoModelForMaskedLM",
         "question_answering": "AutoModelForQuestionAnswering", "pass_through": "AutoModel"}
_ORIGINALS: dict[Path, Any] = {}


def original_answer(model_dir: Path, task: str, family: str, args: tuple[Any, ...]) -> Any:
    """What the original Hugging Face model answers for the cluster's inputs, in the shape the cluster reads
    (None for embedding tasks: sentence-transformers models are compared with encode in their own test)."""
    import inspect

    import torch
    import transformers

    if task not in HEADS:
        return None
    if model_dir not in _ORIGINALS:
        _ORIGINALS[model_dir] = getattr(transformers, HEADS[task]).from_pretrained(str(model_dir)).eval()
    model = _ORIGINALS[model_dir]
    named = dict(zip(CLUSTER_INPUTS[family], args, strict=True))
    accepted = inspect.signature(model.forward).parameters
    with torch.no_grad():
        output = model(**{k: v for k, v in named.items() if k in accepted and k != "position_ids"})
    if task == "question_answering":
        return torch.stack((output.start_logits, output.end_logits))
    return output[0]


def _case(exported: dict[str, Exported], name: str) -> Exported:
    if name not in exported:
        pytest.skip("bert_ja needs fugashi and ipadic (pip install fugashi==1.5.2 ipadic==1.0.0)")
    return exported[name]


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_bundle_verifies_and_fits_the_family(name: str, exported: dict[str, Exported], publisher: KeyPair) -> None:
    item = _case(exported, name)
    verified = verify_bundle(item.bundle, load_trusted_keys([publisher.public_path]), progress=False)
    manifest = verified.manifest
    assert manifest.task_type == item.case.expected_task == item.result.task_type
    config = json.loads((item.bundle / "config.json").read_text())
    (task_config,) = config["inference_config"].values()
    (family, tokenization), = task_config["tokenization"].items()
    assert family == item.case.family
    assert tokenization["max_sequence_length"] == {"mpnet-sentence-transformer": 48,
                                                   "bert-st-lowercasing": 40}.get(name, models.MAX_LEN)
    vocabulary = json.loads(zstandard.ZstdDecompressor().decompress(
        (item.bundle / "vocabulary.json.zst").read_bytes(), max_output_size=64 << 20))
    assert ("merges" in vocabulary) == (family == "roberta")
    assert ("scores" in vocabulary) == (family in ("xlm_roberta", "deberta_v2"))
    if "scores" in vocabulary:
        assert len(vocabulary["scores"]) == len(vocabulary["vocabulary"])
    assert config["input"] == {"field_names": ["text_field"]}
    assert config["metadata"]["per_deployment_memory_bytes"] > 0
    assert config["metadata"]["per_allocation_memory_bytes"] > 0
    check = manifest.provenance["trace_check"]
    assert check["passed"] and check["worst_cosine"] >= 0.9999 and check["max_abs_diff"] <= 1e-4
    assert any(c["tokens"] == tokenization["max_sequence_length"] for c in check["cases"]), "no truncated case"
    assert any(c["label"] == "non-ASCII" for c in check["cases"])
    if item.case.expected_task in ("text_similarity", "zero_shot_classification", "question_answering"):
        assert all(c["pair"] for c in check["cases"])
    assert set(manifest.provenance["files"]) >= {"config.json"}
    assert manifest.provenance["source"] == {"kind": "directory", "directory": str(item.model_dir.resolve())}
    assert manifest.compatibility["graph"]["file_version"] == manifest.provenance["torchscript_file_version"]
    assert 3 <= len(manifest.samples) <= 4
    assert not [w for w in item.result.warnings if "would refuse" in w], "not deployable on the newest release"
    if manifest.task_type == "fill_mask":  # the cluster refuses fill_mask input without exactly one mask
        mask = vocabulary["vocabulary"][4]
        assert all(s["input"]["text"].count(mask) == 1 for s in manifest.samples)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_reassembled_definition_answers_like_the_samples(name: str, exported: dict[str, Exported]) -> None:
    import torch
    from transformers import AutoTokenizer

    item = _case(exported, name)
    module = torch.jit.load(io.BytesIO(reassemble(item.bundle)))
    manifest = Manifest.from_bytes((item.bundle / "manifest.json").read_bytes())
    config = json.loads((item.bundle / "config.json").read_text())
    (task_config,) = config["inference_config"].values()
    (family, tokenization), = task_config["tokenization"].items()
    tokenizer = AutoTokenizer.from_pretrained(str(item.model_dir))
    task = manifest.task_type
    for sample in manifest.samples:
        text, pair = sample["input"]["text"], sample["input"].get("text_pair")
        if task in ("text_similarity", "question_answering"):
            first, second, truncation = pair, text, "only_second"
        elif task == "zero_shot_classification":
            hypothesis = task_config["hypothesis_template"].format(sample["input"]["labels"][0])
            first, second, truncation = text, hypothesis, "only_first"
        else:
            first, second, truncation = text, None, True
        if tokenization.get("do_lower_case"):  # the cluster lowercases (special tokens excepted) when told to
            mask = tokenizer.mask_token or ""
            first = first.lower().replace(mask.lower(), mask) if mask else first.lower()
        args = cluster_args(tokenizer, family, first, second, tokenization["max_sequence_length"], truncation)
        with torch.no_grad():
            out = module(*args)
        reference = original_answer(item.model_dir, task, family, args)
        if reference is not None:  # independent of the exporter: the Hugging Face model itself, same inputs
            assert out.shape == reference.shape, (out.shape, reference.shape)
            assert torch.allclose(out, reference, atol=1e-4, rtol=1e-4), float((out - reference).abs().max())
        expected = sample["expected"]
        atol = expected["atol"]
        if "prefix" in expected:
            assert out.shape[-1] == expected["dimensions"] == task_config["embedding_size"]
            assert torch.allclose(out[0, :8], torch.tensor(expected["prefix"]), atol=atol)
            assert abs(float(out[0].norm()) - expected["norm"]) <= atol
        elif "top_classes" in expected:
            probabilities = torch.softmax(out[0], dim=-1)
            labels = task_config["classification_labels"]
            assert labels[int(probabilities.argmax())] == expected["predicted_value"]
            for entry in expected["top_classes"]:
                assert abs(float(probabilities[labels.index(entry["class_name"])]) - entry["class_score"]) <= atol
        elif task == "text_similarity":
            assert abs(float(out.flatten()[0]) - expected["predicted_value"]) <= atol
        else:
            row = out[:, 0] if task == "question_answering" else out[0]
            assert list(row.shape) == expected["shape"]
            assert torch.allclose(row.flatten()[:8], torch.tensor(expected["output_prefix"]), atol=atol)


def test_configs_follow_the_reference_rules(exported: dict[str, Exported]) -> None:
    def task_config(name: str) -> dict[str, Any]:
        config = json.loads((exported[name].bundle / "config.json").read_text())
        return next(iter(config["inference_config"].values()))

    assert task_config("distilbert-ner")["classification_labels"] == ["O", "B_PER", "I_PER"]
    assert task_config("bert-classifier")["classification_labels"] == ["NEGATIVE", "POSITIVE"]
    assert task_config("bart-nli")["classification_labels"] == ["contradiction", "neutral", "entailment"]
    qa = task_config("electra-qa")["tokenization"]["bert"]
    # Elasticsearch's default span is 128, but it refuses a span that is not below max_sequence_length.
    assert qa["truncate"] == "none" and qa["max_sequence_length"] == models.MAX_LEN
    assert qa["span"] == min(128, models.MAX_LEN - 1)
    assert task_config("roberta-cross-encoder")["tokenization"]["roberta"]["truncate"] == "second"
    assert task_config("roberta-cross-encoder")["tokenization"]["roberta"]["add_prefix_space"] is False
    assert task_config("bert-mlm")["tokenization"]["bert"]["do_lower_case"] is True
    if HAVE_MECAB:
        assert task_config("bert-ja-mlm")["tokenization"]["bert_ja"]["do_lower_case"] is False
    assert task_config("mpnet-sentence-transformer")["embedding_size"] == 16  # after the Dense layer
    # sentence-transformers lowercases although its tokenizer does not: the cluster must lowercase too
    assert task_config("bert-st-lowercasing")["tokenization"]["bert"]["do_lower_case"] is True
    assert task_config("dpr-question-encoder")["embedding_size"] == models.SMALL["hidden_size"]


def test_embedding_matches_sentence_transformers_encode(exported: dict[str, Exported]) -> None:
    """Pooling, Dense and Normalize are inside the trace: the cluster's vector is encode()'s vector."""
    import torch
    from sentence_transformers import SentenceTransformer

    item = exported["mpnet-sentence-transformer"]
    module = torch.jit.load(io.BytesIO(reassemble(item.bundle)))
    st = SentenceTransformer(str(item.model_dir), device="cpu")
    texts = ["the quick brown fox", "search queries in real time " * 20]
    enc = st.tokenizer(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        got = module(enc["input_ids"], enc["attention_mask"])
    want = st.encode(texts, convert_to_tensor=True)
    assert torch.nn.functional.cosine_similarity(got, want).min() >= 0.9999


def test_allow_newer_torch_is_recorded(tmp_path: Path, publisher: KeyPair) -> None:
    from bundler.export import ExportOptions, run_export
    from bundler.stages import StageLog

    model_dir = models.bert(tmp_path / "m", labels=["NO", "YES"])
    log = StageLog(enabled=False)
    result = run_export(ExportOptions(model_dir=model_dir, task_type="auto", signing_key=publisher.private_path,
                                      out=tmp_path / "b", target_es_version="9.2.0", allow_newer_torch=True), log=log)
    manifest = Manifest.from_bytes((tmp_path / "b" / "manifest.json").read_bytes())
    assert manifest.compatibility["allow_newer_torch"] is True
    assert manifest.compatibility["target_es_version"] == "9.2.0"
    assert manifest.compatibility["target_libtorch"] == "2.7.1"
    assert manifest.compatibility["traced_with_torch"] == result.compatibility["traced_with_torch"]
    assert any("--allow-newer-torch" in w for w in result.warnings)


def test_task_that_does_not_fit_the_weights_is_refused(tmp_path: Path, publisher: KeyPair) -> None:
    """A config that claims a head the checkpoint lacks: transformers would initialise it randomly."""
    from bundler.export import ExportOptions, run_export
    from bundler.stages import StageLog
    from loader.errors import ModelError

    model_dir = models.bert(tmp_path / "m", head="AutoModel")
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = ["BertForTokenClassification"]
    config["id2label"] = {"0": "O", "1": "B-LOC"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no weights for"):
        run_export(ExportOptions(model_dir=model_dir, task_type="ner", signing_key=publisher.private_path,
                                 out=tmp_path / "b"), log=StageLog(enabled=False))
    assert not (tmp_path / "b").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_check_refuses_a_trace_that_answers_differently(tmp_path: Path) -> None:
    """The check compares with the original, not with itself: a definition traced from other weights (as a trace
    that baked something in would answer) is refused, every failing text named."""
    from transformers import AutoTokenizer

    from bundler.export import check, trace, wrappers
    from bundler.export.cluster_inputs import encode
    from loader.errors import ModelError

    inputs = CLUSTER_INPUTS["bert"]
    original = models.bert(tmp_path / "original", labels=["NO", "YES"], seed=10)
    impostor = models.bert(tmp_path / "impostor", labels=["NO", "YES"], seed=11)
    tokenizer = AutoTokenizer.from_pretrained(str(original))
    loaded = wrappers.load_hf_model(original, "text_classification", ("BertForSequenceClassification",), 4)
    other = wrappers.load_hf_model(impostor, "text_classification", ("BertForSequenceClassification",), 4)
    example = encode(tokenizer, inputs, trace.TRACE_TEXTS, None, max_length=models.MAX_LEN, task="text_classification")
    trace.trace_and_save(other.wrapper, example.args, tmp_path / "impostor.pt")
    with pytest.raises(ModelError, match="trace check failed") as refused:
        check.run_check(loaded=loaded, traced=trace.load_saved(tmp_path / "impostor.pt"), tokenizer=tokenizer,
                        inputs=inputs, task="text_classification", max_length=models.MAX_LEN)
    assert "traced vs original, short (single): " in refused.value.message
    assert "max |diff|" in refused.value.message
    # and the genuine trace passes the same check
    trace.trace_and_save(loaded.wrapper, example.args, tmp_path / "genuine.pt")
    record = check.run_check(loaded=loaded, traced=trace.load_saved(tmp_path / "genuine.pt"), tokenizer=tokenizer,
                             inputs=inputs, task="text_classification", max_length=models.MAX_LEN)
    assert record["passed"] and record["argmax_mismatches"] == 0


def test_every_bundle_passes_esbundle_verify(exported: dict[str, Exported], publisher: KeyPair,
                                             run_cli: RunCli) -> None:
    for item in exported.values():
        result = run_cli("verify", item.bundle, "--trusted-key", publisher.public_path)
        assert result.exit_code == 0, (item.case.name, result.output)
        assert "content" in result.output
    inspected = run_cli("inspect", exported["bert-classifier"].bundle, "--trusted-key", publisher.public_path)
    assert inspected.exit_code == 0, inspected.output


def test_the_same_model_traces_to_the_same_bytes(exported: dict[str, Exported], publisher: KeyPair,
                                                 tmp_path: Path) -> None:
    """Reproducible: a fresh export gives a byte-identical definition (only times and the bundle id differ).
    Fresh processes, as in real use: within one process TorchScript numbers the classes it compiles."""
    import subprocess
    import sys

    model_dir = exported["bert-classifier"].model_dir
    digests = []
    for run in ("first", "second"):
        done = subprocess.run([sys.executable, "-m", "bundler", "export", "--model-dir", str(model_dir),
                               "--task-type", "auto", "--signing-key", str(publisher.private_path),
                               "--out", str(tmp_path / run)], cwd=Path(__file__).resolve().parent.parent,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        digests.append(Manifest.from_bytes((tmp_path / run / "manifest.json").read_bytes()).definition.sha256)
    assert digests[0] == digests[1]


def test_prompts_are_left_to_prefix_strings(tmp_path: Path, publisher: KeyPair) -> None:
    """An e5-style model prepends a default prompt in encode(); the cluster adds prefix_strings instead, so the
    check compares without the prompt and the export says which prefixes the model expects."""
    from bundler.export import ExportOptions, run_export
    from bundler.stages import StageLog

    model_dir = models.mpnet_sentence_transformer(tmp_path / "e5", prompts={"query": "query: ", "passage": "passage: "},
                                                  default_prompt_name="query")
    log = StageLog(enabled=False)
    result = run_export(ExportOptions(model_dir=model_dir, task_type="auto", signing_key=publisher.private_path,
                                      out=tmp_path / "b"), log=log)
    assert result.trace_check["passed"]
    assert any("passage='passage: '" in w and "--ingest-prefix" in w for w in result.warnings)
    prefixed = run_export(ExportOptions(model_dir=model_dir, task_type="auto", signing_key=publisher.private_path,
                                        out=tmp_path / "b2", ingest_prefix="passage: ", search_prefix="query: "),
                          log=StageLog(enabled=False))
    assert not any("prompts" in w for w in prefixed.warnings)
    config = json.loads((tmp_path / "b2" / "config.json").read_text())
    assert config["prefix_strings"] == {"ingest": "passage: ", "search": "query: "}
