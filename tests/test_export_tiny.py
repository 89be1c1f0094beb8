"""Export tiny random models of every task type and every tokenizer family, then check each bundle from the
outside: it verifies with the offline verifier, its config and vocabulary fit the family, and the definition
reassembled from its parts, fed inputs this test tokenizes itself the way the cluster does, answers like the
original Hugging Face model run directly (pooling written out here) and, for sentence-transformers models, like
SentenceTransformer.encode. The samples the bundle records are checked against that same reference, never used
as one.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# BertJapaneseTokenizer splits words with MeCab: fugashi and its dictionary (ipadic) are declared in the test
# extra, so a missing one is an error here, not a skip.
import fugashi  # noqa: F401
import ipadic  # noqa: F401
import pytest

from bundler.keys import KeyPair, generate_keypair
from loader.bundle.trust import load_trusted_keys
from loader.bundle.verify import verify_bundle
from loader.format.manifest import Manifest
from tests import models, reference
from tests.conftest import RunCli
from tests.reference import CLUSTER_INPUTS, raw_bytes

# What the original model's forward is given: the tokenizer's tensors (never position ids: transformers makes
# its own, and the cluster's 0..n-1 must agree with them).
IDS_MASK = ("input_ids", "attention_mask")
IDS_MASK_TYPES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    task: str  # asked for
    expected_task: str
    family: str
    head: str  # the transformers class the reference loads the saved folder with
    model_inputs: tuple[str, ...]  # what the reference passes to its forward
    max_length: int = models.MAX_LEN  # the config's max_sequence_length: where the cluster truncates
    pooling: str | None = None  # text_embedding: how the reference makes the vector (see reference_answer)
    lowercase: bool = False  # the cluster lowercases the text (config do_lower_case) where the tokenizer does not
    sentence_transformer: bool = False  # also compared with SentenceTransformer.encode


CASES = [
    Case("bert-classifier", lambda p: models.bert(p, labels=["NEGATIVE", "POSITIVE"]), "auto",
         "text_classification", "bert", "AutoModelForSequenceClassification", IDS_MASK_TYPES),
    Case("distilbert-ner", lambda p: models.bert(p, "AutoModelForTokenClassification", ["O", "B-PER", "I-PER"],
                                                 model_type="distilbert"), "auto", "ner", "bert",
         "AutoModelForTokenClassification", IDS_MASK),  # DistilBERT has no token types
    Case("electra-qa", lambda p: models.bert(p, "AutoModelForQuestionAnswering", model_type="electra"), "auto",
         "question_answering", "bert", "AutoModelForQuestionAnswering", IDS_MASK_TYPES),
    Case("bert-mlm", lambda p: models.bert(p, "AutoModelForMaskedLM"), "auto", "fill_mask", "bert",
         "AutoModelForMaskedLM", IDS_MASK_TYPES),
    Case("bert-expansion", lambda p: models.bert(p, "AutoModelForMaskedLM"), "text_expansion", "text_expansion",
         "bert", "AutoModelForMaskedLM", IDS_MASK_TYPES),
    # A bert_ja masked-LM as fill_mask is refused (tests/test_bert_ja.py); pass_through is how it goes.
    Case("bert-ja", models.bert_ja, "pass_through", "pass_through", "bert_ja", "AutoModel", IDS_MASK_TYPES),
    # Tiny MPNet, mean pooling, Dense 32 -> 16 (tanh), Normalize; sentence-transformers truncates at 48.
    Case("mpnet-sentence-transformer", models.mpnet_sentence_transformer, "auto", "text_embedding", "mpnet",
         "AutoModel", IDS_MASK, max_length=48, pooling="mean, dense, normalize", sentence_transformer=True),
    # Cased BERT tokenizer, CLS pooling, no normalisation; sentence-transformers lowercases first, truncates at 40.
    Case("bert-st-lowercasing", models.bert_sentence_transformer, "text_embedding", "text_embedding", "bert",
         "AutoModel", IDS_MASK_TYPES, max_length=40, pooling="cls", lowercase=True, sentence_transformer=True),
    Case("dpr-question-encoder", models.dpr_question_encoder, "auto", "text_embedding", "bert",
         "DPRQuestionEncoder", IDS_MASK_TYPES, pooling="dpr cls"),
    Case("roberta-cross-encoder", lambda p: models.roberta(p, labels=["score"]), "auto", "text_similarity",
         "roberta", "AutoModelForSequenceClassification", IDS_MASK),
    Case("bart-nli", lambda p: models.roberta(p, labels=["contradiction", "neutral", "entailment"],
                                              model_type="bart"), "auto", "zero_shot_classification", "roberta",
         "AutoModelForSequenceClassification", IDS_MASK),
    Case("xlm-roberta-base", models.xlm_roberta, "pass_through", "pass_through", "xlm_roberta", "AutoModel",
         IDS_MASK),
    Case("deberta-v2-classifier", lambda p: models.deberta_v2(p, labels=["a", "b", "c"]), "auto",
         "text_classification", "deberta_v2", "AutoModelForSequenceClassification", IDS_MASK_TYPES),
]
NAMES = [c.name for c in CASES]

# The texts the traced modules are fed here, chosen by this test: short, ordinary (with upper case, which the
# lowercasing case must lower), one well past every max length (the cluster truncates it), non-ASCII, and Japanese
# (MeCab splits it for bert_ja).
TEXTS = (
    "Hello.",
    "The weather in Paris is sunny today.",
    "The quick brown fox jumps over the lazy dog near the river bank. " * 12,
    "Größenwahn im Café: naïve façade — Привет, мир! ½ ≠ 0.5 😀",
    "東京タワーは高い。猫が寝ている。",
)
# Pair tasks as Elasticsearch sends them: (question, context) and (query, document) truncating the second;
# zero-shot (premise, hypothesis made from the template and a candidate label) truncating the first.
QUESTION = "Where does the fox jump?"
HYPOTHESIS_TEMPLATE = "This example is {}."  # Elasticsearch's default hypothesis_template


def model_pairs(task: str, mask_token: str | None) -> tuple[list[str], list[str] | None, bool | str]:
    """The (first, second) sequences the model sees for TEXTS, and how the cluster truncates them."""
    texts = [f"{mask_token} {t}" for t in TEXTS] if task == "fill_mask" else list(TEXTS)  # exactly one mask
    if task in ("text_similarity", "question_answering"):
        return [QUESTION] * len(texts), texts, "only_second"
    if task == "zero_shot_classification":
        return texts, [HYPOTHESIS_TEMPLATE.format("animals")] * len(texts), "only_first"
    return texts, None, True


def sample_pair(task: str, sample_input: dict[str, Any]) -> tuple[str, str | None, bool | str]:
    """What the model sees for a recorded sample's `_infer` input (docs/FORMAT.md, Samples)."""
    text = sample_input["text"]
    if task in ("text_similarity", "question_answering"):
        return sample_input["text_pair"], text, "only_second"
    if task == "zero_shot_classification":
        return text, HYPOTHESIS_TEMPLATE.format(sample_input["labels"][0]), "only_first"
    return text, None, True


def reference_answer(case: Case, model_dir: Path, named: dict[str, Any]) -> Any:
    """The original model's answer to one request (the tokenizer's tensors, unpadded), in the shape the cluster
    reads for the task, without the batch dimension. Pooling is written out here, not taken from the exporter."""
    import torch

    model = reference.original(model_dir, case.head)
    kwargs = {name: named[name] for name in case.model_inputs}
    if "token_type_ids" in kwargs:  # what the cluster sends for both sequences of a pair (reference.py)
        kwargs["token_type_ids"] = torch.zeros_like(kwargs["token_type_ids"])
    task = case.expected_task
    with torch.no_grad():
        if case.pooling == "dpr cls":
            # DPR's pooled output is the [CLS] hidden state of its BERT (projection_dim 0: no projection).
            assert model.config.projection_dim == 0
            cls = model.question_encoder.bert_model(**kwargs).last_hidden_state[0, 0]
            assert torch.equal(model(**kwargs).pooler_output[0], cls)
            return cls
        output = model(**kwargs)
    if task == "text_embedding":
        hidden = output.last_hidden_state
        if case.pooling == "cls":
            return hidden[0, 0]
        assert case.pooling == "mean, dense, normalize", case.pooling
        vector = reference.mean_pooling(hidden, named["attention_mask"])
        vector = reference.sentence_transformers_dense(model_dir, "2_Dense", vector)
        return torch.nn.functional.normalize(vector, dim=-1)[0]
    if task == "question_answering":
        return torch.stack((output.start_logits[0], output.end_logits[0]))
    if task == "pass_through":
        return output.last_hidden_state[0]
    if task == "text_expansion":  # SPLADE: max over the tokens of log(1 + relu(logits))
        return torch.log1p(torch.relu(output.logits[0])).max(dim=0).values
    return output.logits[0]


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
        model_dir = case.make(root / "models" / case.name)
        bundle = root / "bundles" / case.name
        # sentence-transformers lowercasing keeps accents the cluster strips: allowed, as its publisher would
        result = run_export(ExportOptions(model_dir=model_dir, task_type=case.task, signing_key=publisher.private_path,
                                          out=bundle, allow_accent_difference=case.lowercase),
                            log=StageLog(enabled=False))
        done[case.name] = Exported(case, model_dir, bundle, result)
    return done


@pytest.mark.parametrize("name", NAMES)
def test_bundle_verifies_and_fits_the_family(name: str, exported: dict[str, Exported], publisher: KeyPair) -> None:
    item = exported[name]
    verified = verify_bundle(item.bundle, load_trusted_keys([publisher.public_path]), progress=False)
    manifest = verified.manifest
    assert manifest.task_type == item.case.expected_task == item.result.task_type
    config = json.loads((item.bundle / "config.json").read_text())
    (task_config,) = config["inference_config"].values()
    (family, tokenization), = task_config["tokenization"].items()
    assert family == item.case.family
    assert tokenization["max_sequence_length"] == item.case.max_length
    entry = manifest.file("vocabulary")
    assert entry is not None
    vocabulary = json.loads(raw_bytes(item.bundle / entry.path, {"compression": entry.compression, "size": entry.size}))
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
    pair_task = item.case.expected_task in ("text_similarity", "zero_shot_classification", "question_answering")
    assert [c["pair"] for c in check["cases"]] == [pair_task] * len(check["cases"])
    assert set(manifest.provenance["files"]) >= {"config.json"}
    assert manifest.provenance["source"] == {"kind": "directory", "directory": str(item.model_dir.resolve())}
    assert manifest.compatibility["graph"]["file_version"] == manifest.provenance["torchscript_file_version"]
    assert 3 <= len(manifest.samples) <= 4
    assert not [w for w in item.result.warnings if "would refuse" in w], "not deployable on the newest release"
    if manifest.task_type == "fill_mask":  # the cluster refuses fill_mask input without exactly one mask
        mask = vocabulary["vocabulary"][4]
        assert all(s["input"]["text"].count(mask) == 1 for s in manifest.samples)


@pytest.mark.parametrize("name", NAMES)
def test_reassembled_definition_answers_like_the_original(name: str, exported: dict[str, Exported]) -> None:
    """The definition read back from the bundle's parts, fed this test's own inputs one request at a time and as
    one padded batch, answers like the original model run directly (and like SentenceTransformer.encode)."""
    import torch
    from transformers import AutoTokenizer

    item = exported[name]
    case, task = item.case, item.case.expected_task
    module = torch.jit.load(io.BytesIO(reference.definition_bytes(item.bundle)))
    tokenizer = AutoTokenizer.from_pretrained(str(item.model_dir))
    firsts, seconds, truncation = model_pairs(task, tokenizer.mask_token)
    originals = list(firsts)
    if case.lowercase:
        assert seconds is None
        firsts = [text.lower() for text in firsts]
        # the case is only a test of lowercasing if the tokenizer itself would not lower these texts
        assert any(tokenizer(cased)["input_ids"] != tokenizer(lowered)["input_ids"]
                   for cased, lowered in zip(originals, firsts, strict=True))
    pairs = seconds or [None] * len(firsts)
    want = [reference_answer(case, item.model_dir, tokenizer(first, second, truncation=truncation,
                                                             max_length=case.max_length, return_tensors="pt",
                                                             return_token_type_ids=True))
            for first, second in zip(firsts, pairs, strict=True)]

    with torch.no_grad():
        for i, (first, second) in enumerate(zip(firsts, pairs, strict=True)):
            args, lengths = reference.cluster_inputs(tokenizer, case.family, [first],
                                                     [second] if second is not None else None,
                                                     max_length=case.max_length, truncation=truncation)
            (got,) = reference.traced_rows(module(*args), task, lengths)
            reference.assert_close(got, want[i], f"{name}, text {i} alone")
        args, lengths = reference.cluster_inputs(tokenizer, case.family, firsts, seconds,
                                                 max_length=case.max_length, truncation=truncation)
        assert max(lengths) == case.max_length, "no text reached the max length: truncation not exercised"
        assert min(lengths) < case.max_length, "no row was padded"
        batch = reference.traced_rows(module(*args), task, lengths)
    for i, got in enumerate(batch):
        reference.assert_close(got, want[i], f"{name}, text {i} in a padded batch")
    if task in ("text_classification", "zero_shot_classification"):  # identical decisions, not just close logits
        assert [int(g.argmax()) for g in batch] == [int(w.argmax()) for w in want]

    if case.sentence_transformer:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(item.model_dir), device="cpu")
        assert st.max_seq_length == case.max_length
        # encode() is given the original texts: it lowercases them itself when its config says so.
        encoded = st.encode(originals, convert_to_tensor=True, show_progress_bar=False)
        for i, got in enumerate(batch):
            reference.assert_close(got, encoded[i], f"{name}, text {i}: traced vs SentenceTransformer.encode")
            reference.assert_close(want[i], encoded[i], f"{name}, text {i}: written-out pooling vs encode")


@pytest.mark.parametrize("name", NAMES)
def test_recorded_samples_are_the_originals_answers(name: str, exported: dict[str, Exported]) -> None:
    """The answers the bundle records for the loader's smoke test are the original model's, turned into
    Elasticsearch's answer shape by rules written out here (or by transformers' own pipelines where they follow
    the same rules): the samples are checked, never used as the expectation."""
    from transformers import AutoTokenizer

    item = exported[name]
    case, task = item.case, item.case.expected_task
    tokenizer = AutoTokenizer.from_pretrained(str(item.model_dir))
    samples = json.loads((item.bundle / "manifest.json").read_bytes())["samples"]
    assert samples
    for sample in samples:
        expected = sample["expected"]
        assert expected.pop("atol") == 1e-3  # what the loader allows the cluster (unquantized)
        if task == "zero_shot_classification":
            check_zero_shot(item, tokenizer, sample["input"], expected)
            continue
        first, second, truncation = sample_pair(task, sample["input"])
        if case.lowercase:
            first = first.lower()
        named = tokenizer(first, second, truncation=truncation, max_length=case.max_length, return_tensors="pt",
                          return_token_type_ids=True)
        want = reference_answer(case, item.model_dir, named)
        SAMPLE_CHECKS[task](item, tokenizer, sample["input"], expected, want, named)


TOLERANCE = 1e-4  # recorded to 6 significant digits, from a trace within 1e-4 of the original


def close(got: float, want: Any) -> bool:
    return abs(got - float(want)) <= TOLERANCE


def check_embedding(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any], want: Any,
                    named: Any) -> None:
    import torch

    assert set(expected) == {"dimensions", "prefix", "norm"}
    assert expected["dimensions"] == want.shape[-1]
    assert torch.allclose(torch.tensor(expected["prefix"]), want[:8], atol=TOLERANCE, rtol=0)
    assert close(expected["norm"], want.norm())


def check_labels(expected: dict[str, Any], names: list[str], logits: Any) -> None:
    """Elasticsearch's classification answer: softmax over the labels, best first, its probability."""
    import torch

    probabilities = torch.softmax(logits.double(), dim=-1)
    assert set(expected) == {"predicted_value", "top_classes", "prediction_probability"}
    assert expected["predicted_value"] == names[int(probabilities.argmax())]
    assert close(expected["prediction_probability"], probabilities.max())
    scores = [entry["class_probability"] for entry in expected["top_classes"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(entry["class_name"] for entry in expected["top_classes"]) == sorted(names)
    for entry in expected["top_classes"]:
        assert entry["class_score"] == entry["class_probability"]
        assert close(entry["class_probability"], probabilities[names.index(entry["class_name"])])


def check_classification(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any],
                         want: Any, named: Any) -> None:
    id2label = reference.original(item.model_dir, item.case.head).config.id2label
    check_labels(expected, [id2label[i] for i in range(len(id2label))], want)


def check_zero_shot(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any]) -> None:
    """One (text, hypothesis) row per candidate label, all in one request: Elasticsearch pads the rows with the pad
    id and pads the attention mask with the pad id too (TokenizationResult.writeAttentionMask; for RoBERTa/BART
    that is 1), token types 0; the entailment logits of all rows through one softmax."""
    import torch

    model = reference.original(item.model_dir, item.case.head)
    entailment = [model.config.id2label[i].lower() for i in range(model.config.num_labels)].index("entailment")
    rows = [tokenizer(given["text"], HYPOTHESIS_TEMPLATE.format(label), truncation="only_first",
                      max_length=item.case.max_length)["input_ids"] for label in given["labels"]]
    width, pad = max(len(r) for r in rows), tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [pad] * (width - len(r)) for r in rows])
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        logits = model(**{k: inputs[k] for k in item.case.model_inputs}).logits[:, entailment]
    check_labels(expected, list(given["labels"]), logits)


def check_similarity(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any], want: Any,
                     named: Any) -> None:
    assert set(expected) == {"predicted_value"}
    assert close(expected["predicted_value"], want.flatten()[0])


def check_fill_mask(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any], want: Any,
                    named: Any) -> None:
    """Softmax over the vocabulary at the mask; the token as Elasticsearch names a WordPiece entry (as it is)."""
    import torch

    position = named["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    probabilities = torch.softmax(want[position].double(), dim=-1)
    top = torch.topk(probabilities, 5)
    words = [tokenizer.convert_ids_to_tokens(int(i)) for i in top.indices]  # WordPiece entries as they are
    assert expected["predicted_value"] == words[0]
    assert expected["predicted_value_sequence"] == given["text"].replace(tokenizer.mask_token, words[0])
    assert [c["class_name"] for c in expected["top_classes"]] == words
    assert close(expected["prediction_probability"], top.values[0])


def check_ner(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any], want: Any,
              named: Any) -> None:
    """transformers' token-classification pipeline with `average` aggregation follows Elasticsearch's rules:
    probabilities averaged over a word's pieces, a B tag or another class starts a new entity, mean scores."""
    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(item.model_dir), aggregation_strategy="average",
                      device="cpu")
    found = [e for e in tagger(given["text"]) if e["entity_group"] != "O"]
    assert [(e["class_name"], e["start_pos"], e["end_pos"]) for e in expected["entities"]] == [
        (e["entity_group"].replace("-", "_"), e["start"], e["end"]) for e in found]
    for entity, reference_entity in zip(expected["entities"], found, strict=True):
        # cut from the input as the cluster sees it: lower-cased when the tokenization lower-cases
        assert entity["entity"] == given["text"].lower()[entity["start_pos"]:entity["end_pos"]]
        assert close(entity["class_probability"], reference_entity["score"])


def check_question_answering(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any],
                             want: Any, named: Any) -> None:
    """Elasticsearch's rule, written out: softmax of the start and of the end logits over CLS and the context
    tokens (the question and the final separator excluded), CLS then dropped; the best start x end with
    end - start < 15; offsets of the whole words, as every WordPiece of a word carries the word's offsets."""
    import torch

    encoding = tokenizer(given["text_pair"], given["text"], truncation="only_second",
                         max_length=item.case.max_length, return_offsets_mapping=True)
    sequences, word_ids = encoding.sequence_ids(), encoding.word_ids()
    context = [i for i, s in enumerate(sequences) if s == 1]
    eligible = torch.tensor([i == 0 or i in context for i in range(len(sequences))])
    starts, ends = (torch.softmax(torch.where(eligible, row.double(), -10000.0), dim=0) for row in want)
    starts[0] = ends[0] = 0.0
    score, first, last = max((float(starts[i] * ends[j]), i, j) for i in context for j in context if 0 <= j - i < 15)
    spans = [span for span, s, w in zip(encoding["offset_mapping"], sequences, word_ids, strict=True) if s == 1]
    words = [w for s, w in zip(sequences, word_ids, strict=True) if s == 1]
    start = min(a for (a, _), w in zip(spans, words, strict=True) if w == word_ids[first])
    end = max(b for (_, b), w in zip(spans, words, strict=True) if w == word_ids[last])
    assert (expected["start_offset"], expected["end_offset"]) == (start, end)
    assert expected["predicted_value"] == given["text"][start:end]
    assert close(expected["prediction_probability"], score)


def check_expansion(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any], want: Any,
                    named: Any) -> None:
    """The recorded top tokens (`.` named `__`) with their SPLADE weights (reference_answer)."""
    weights = want.double()
    assert set(expected) == {"expansion"} and expected["expansion"]
    for token, weight in expected["expansion"].items():
        assert close(weight, weights[tokenizer.convert_tokens_to_ids(token.replace("__", "."))])
    assert min(expected["expansion"].values()) >= sorted(weights.tolist())[-len(expected["expansion"])] - TOLERANCE


def check_raw(item: Exported, tokenizer: Any, given: dict[str, Any], expected: dict[str, Any], want: Any,
              named: Any) -> None:
    import torch

    assert set(expected) == {"output_prefix", "shape"}
    assert expected["shape"] == list(want.shape)
    assert torch.allclose(torch.tensor(expected["output_prefix"]), want.flatten()[:8], atol=TOLERANCE, rtol=0)


SAMPLE_CHECKS = {
    "text_embedding": check_embedding, "text_classification": check_classification,
    "text_similarity": check_similarity, "fill_mask": check_fill_mask, "ner": check_ner,
    "question_answering": check_question_answering, "text_expansion": check_expansion, "pass_through": check_raw,
}


def test_configs_follow_the_reference_rules(exported: dict[str, Exported]) -> None:
    def task_config(name: str) -> dict[str, Any]:
        config = json.loads((exported[name].bundle / "config.json").read_text())
        return next(iter(config["inference_config"].values()))

    assert task_config("distilbert-ner")["classification_labels"] == ["O", "B_PER", "I_PER"]
    assert task_config("bert-classifier")["classification_labels"] == ["NEGATIVE", "POSITIVE"]
    assert task_config("bart-nli")["classification_labels"] == ["contradiction", "neutral", "entailment"]
    assert task_config("bart-nli")["hypothesis_template"] == HYPOTHESIS_TEMPLATE
    qa = task_config("electra-qa")["tokenization"]["bert"]
    # Elasticsearch's default span is 128, but it refuses a span that is not below max_sequence_length.
    assert qa["truncate"] == "none" and qa["max_sequence_length"] == models.MAX_LEN
    assert qa["span"] == min(128, models.MAX_LEN - 1)
    assert task_config("roberta-cross-encoder")["tokenization"]["roberta"]["truncate"] == "second"
    assert task_config("roberta-cross-encoder")["tokenization"]["roberta"]["add_prefix_space"] is False
    assert task_config("bert-mlm")["tokenization"]["bert"]["do_lower_case"] is True
    assert task_config("bert-ja")["tokenization"]["bert_ja"]["do_lower_case"] is False
    assert task_config("mpnet-sentence-transformer")["embedding_size"] == 16  # after the Dense layer
    # sentence-transformers lowercases although its tokenizer does not: the cluster must lowercase too
    assert task_config("bert-st-lowercasing")["tokenization"]["bert"]["do_lower_case"] is True
    assert task_config("dpr-question-encoder")["embedding_size"] == models.SMALL["hidden_size"]


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
