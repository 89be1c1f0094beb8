"""The export's pure rules, one function at a time: ids, task detection, max length, the torch policy, vocabulary
documents. No tracing here (fast); the tokenizers are real ones built from tiny vocabularies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bundler.export import es_config, tasks, torch_compat
from bundler.export.options import ExportOptions, check_options, derive_es_model_id, normalise_task_type
from loader.errors import ModelError, PolicyError, UsageError
from loader.format.model_config import model_id_problem
from tests import models


@pytest.mark.parametrize(("source", "expected"), [
    ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers__all-minilm-l6-v2"),
    ("dslim/bert-base-NER", "dslim__bert-base-ner"),
    ("intfloat/e5-small-v2", "intfloat__e5-small-v2"),
    ("Org/Model+Name (v2)", "org__model_name___v2"),
    (".hidden", "hidden"),
    ("a" * 50 + "/" + "b" * 50, "b" * 50),
])
def test_es_model_id_is_derived_like_eland_and_valid(source: str, expected: str) -> None:
    derived = derive_es_model_id(source)
    assert derived.endswith(expected) and len(derived) <= 64
    assert model_id_problem(derived) is None


def test_task_names_and_options() -> None:
    assert normalise_task_type("Text-Embedding") == "text_embedding"
    assert normalise_task_type("zero_shot") == "zero_shot_classification"
    with pytest.raises(UsageError, match="not a known task type"):
        normalise_task_type("summarization")
    base = {"signing_key": Path("k"), "out": Path("o"), "model_dir": Path("m")}
    assert check_options(ExportOptions(**base, task_type="ner")).task_type == "ner"
    with pytest.raises(UsageError, match="--revision applies to --hub-model-id only"):
        check_options(ExportOptions(**base, revision="main"))
    with pytest.raises(UsageError, match="is neither a hub repository id"):  # and no directory of that name
        check_options(ExportOptions(signing_key=Path("k"), out=Path("o"), hub_model_id="../../no-such-model-dir"))
    with pytest.raises(UsageError, match="must start and end with alphanumeric"):  # '.' ids are Elastic's own
        check_options(ExportOptions(**base, es_model_id=".elser"))


def facts(architectures: list[str], labels: list[str] | None = None, st: bool = False,
          model_type: str = "bert") -> tasks.ModelFacts:
    config: dict[str, Any] = {"model_type": model_type, "architectures": architectures}
    if labels is not None:
        config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    return tasks.facts_from_config(config, sentence_transformer=st)


@pytest.mark.parametrize(("model", "task"), [
    (facts(["BertForMaskedLM"]), "fill_mask"),
    (facts(["BertModel"], st=True), "text_embedding"),
    (facts(["MPNetForMaskedLM"], st=True), "text_embedding"),
    (facts(["DPRQuestionEncoder"], model_type="dpr"), "text_embedding"),
    (facts(["BertForTokenClassification"], ["O", "B-PER"]), "ner"),
    (facts(["RobertaForSequenceClassification"], ["neg", "pos"]), "text_classification"),
    (facts(["BartForSequenceClassification"], ["contradiction", "neutral", "entailment"]),
     "zero_shot_classification"),
    (facts(["BertForSequenceClassification"], ["LABEL_0"]), "text_similarity"),
    (facts(["DistilBertForQuestionAnswering"]), "question_answering"),
])
def test_auto_detects_the_task_from_the_architecture(model: tasks.ModelFacts, task: str) -> None:
    assert tasks.detect_task(model) == task
    tasks.check_task_fits(task, model)


def test_tasks_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ModelError, match="cannot tell the task"):
        tasks.detect_task(facts(["BertModel"]))
    with pytest.raises(ModelError, match="needs IOB labels"):
        tasks.check_task_fits("ner", facts(["BertForTokenClassification"], ["LABEL_0", "LABEL_1"]))
    with pytest.raises(ModelError, match="at least 2 labels"):
        tasks.check_task_fits("text_classification", facts(["BertForSequenceClassification"], ["score"]))
    with pytest.raises(ModelError, match="'entailment' label"):
        tasks.check_task_fits("zero_shot_classification", facts(["BertForSequenceClassification"], ["a", "b"]))
    with pytest.raises(ModelError, match="ForQuestionAnswering head"):
        tasks.check_task_fits("question_answering", facts(["BertForMaskedLM"]))
    with pytest.raises(ModelError, match="text_embedding needs"):
        tasks.check_task_fits("text_embedding", facts(["BertForSequenceClassification"], ["a", "b"]))
    tasks.check_task_fits("pass_through", facts(["BertForSequenceClassification"], ["a", "b"]))
    assert tasks.classification_labels(facts(["X"], ["B-PER", "I-PER"])) == ["B_PER", "I_PER"]


class _Tok:
    def __init__(self, model_max_length: int) -> None:
        self.model_max_length = model_max_length


def test_max_sequence_length_rules() -> None:
    rule = es_config.max_sequence_length
    assert rule(override=100, st_max_seq_length=256, tokenizer=_Tok(512), family="bert", task="ner")[0] == 100
    assert rule(override=None, st_max_seq_length=256, tokenizer=_Tok(512), family="bert",
                task="text_embedding") == (256, "sentence-transformers max_seq_length")
    assert rule(override=None, st_max_seq_length=None, tokenizer=_Tok(514), family="roberta", task="ner")[0] == 514
    huge = _Tok(int(1e30))
    assert rule(override=None, st_max_seq_length=None, tokenizer=huge, family="bert",
                task="ner") == (512, "BERT default")
    with pytest.raises(ModelError, match="cannot determine the model's maximum input length") as refused:
        rule(override=None, st_max_seq_length=None, tokenizer=huge, family="roberta", task="ner")
    assert refused.value.hint == "pass --max-model-input-length N"
    assert rule(override=None, st_max_seq_length=None, tokenizer=_Tok(512), family="bert",
                task="question_answering")[0] == 386


def test_torch_policy_for_a_target_release() -> None:
    target = torch_compat.cluster_torch("9.2.0")
    assert target.libtorch == "2.7.1"
    with pytest.raises(PolicyError) as refused:
        torch_compat.check_torch("2.13.0+cpu", target, allow_newer=False)
    assert "torch==2.7.1" in (refused.value.hint or "")
    assert any("--allow-newer-torch" in w for w in torch_compat.check_torch("2.13.0+cpu", target, allow_newer=True))
    assert torch_compat.check_torch("2.7.1", target, allow_newer=False) == []
    assert torch_compat.cluster_torch("9.0.3").libtorch == "2.5.1"
    assert torch_compat.cluster_torch("8.19.21").libtorch == "2.7.1"  # a patch newer than the table's last
    assert torch_compat.cluster_torch("9.1.8").uncertain
    no_target = torch_compat.check_torch("2.13.0", None, allow_newer=False)
    assert len(no_target) == 1 and "torch==2.7.1" in no_target[0]
    with pytest.raises(UsageError):
        torch_compat.cluster_torch("7.17.0")
    with pytest.raises(UsageError):
        torch_compat.cluster_torch("latest")


def test_minimum_cluster_version() -> None:
    assert torch_compat.min_es_version("2.7.1", 10, set()) == ("8.19.8", "2.7.1")
    assert torch_compat.min_es_version("2.13.0+cpu", 10, set()) == ("8.19.8", "2.7.1")
    assert torch_compat.min_es_version("2.1.0", 10, set()) == ("8.13.0", "2.1.2")
    assert torch_compat.min_es_version("1.12.0", 10, {"embedding_size"}) == ("8.8.0", "1.13.1")
    assert torch_compat.min_es_version("1.12.0", 10, {"prefix_strings"}) == ("8.12.0", "1.13.1")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tokenizers")
    dirs = {"bert": models.bert(root / "bert"), "roberta": models.roberta(root / "roberta", labels=["a", "b"]),
            "xlm_roberta": models.xlm_roberta(root / "xlmr"), "deberta_v2": models.deberta_v2(root / "deberta")}
    return {name: AutoTokenizer.from_pretrained(str(path)) for name, path in dirs.items()}


def test_vocabulary_documents_per_family(built: dict[str, Any]) -> None:
    from bundler.export.tokenization import family_of, tokenization_options, vocabulary_document

    for name, tokenizer in built.items():
        family = family_of(tokenizer)
        assert family.name == name
        document = vocabulary_document(family, tokenizer)
        tokens = document["vocabulary"]
        assert tokenizer.convert_tokens_to_ids(tokens) == list(range(len(tokens)))
        assert ("merges" in document) == (name == "roberta")
        assert ("scores" in document) == (name in ("xlm_roberta", "deberta_v2"))
    roberta = vocabulary_document(family_of(built["roberta"]), built["roberta"])
    assert roberta["merges"][:3] == ["Ġ t", "h e", "Ġt he"]  # by rank
    xlmr = vocabulary_document(family_of(built["xlm_roberta"]), built["xlm_roberta"])
    assert xlmr["vocabulary"][:4] == ["<s>", "<pad>", "</s>", "<unk>"] and xlmr["vocabulary"][-1] == "<mask>"
    assert xlmr["scores"][:4] == [0.0] * 4 and xlmr["scores"][5] < xlmr["scores"][4] < 0
    assert tokenization_options(family_of(built["bert"]), built["bert"]) == {"do_lower_case": True}
    assert tokenization_options(family_of(built["roberta"]), built["roberta"]) == {"add_prefix_space": False}
    assert tokenization_options(family_of(built["xlm_roberta"]), built["xlm_roberta"]) == {}


def test_special_tokens_must_be_the_clusters(tmp_path: Path) -> None:
    """A BERT vocabulary whose tokenizer uses other special tokens would be fed different ids by the cluster."""
    from transformers import BertTokenizer

    from bundler.export.tokenization import family_of, vocabulary_document

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["<pad>", "<unk>", "<cls>", "<sep>", "hello"]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab), unk_token="<unk>", pad_token="<pad>", cls_token="<cls>",
                              sep_token="<sep>", mask_token="<unk>")
    with pytest.raises(ModelError, match=r"uses \[CLS\] as its cls token"):
        vocabulary_document(family_of(tokenizer), tokenizer)
