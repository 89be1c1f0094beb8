"""bert_ja as Elasticsearch runs it. The stand-in splits Japanese text into words the way Elasticsearch's
BertJapaneseTokenizer does (Lucene's Kuromoji in SEARCH mode, punctuation and whitespace kept, then BERT's basic
split and WordPiece; tests/standin/japanese.py names the sources), and bert_ja bundles exported by the product
load, start and answer in the stand-in like the Hugging Face model run directly on its own tokenizer's ids.

The expected words are written out here: from Elasticsearch's and Lucene's own tests where they have one
(BertJapaneseTokenizerTests, Lucene's search-segmentation-tests.txt and TestJapaneseTokenizer), and checked
against MeCab (fugashi with ipadic: another segmenter over the same dictionary) where Kuromoji and MeCab agree.
"""
from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fugashi
import ipadic
import pytest
import torch
import transformers

from tests import models, reference
from tests.conftest import Keys, RunCli
from tests.standin import japanese
from tests.standin.fixture import StandIn
from tests.standin.tokenize import TextTokenizer

# Elasticsearch's BertJapaneseTokenizerTests.TEST_CASED_VOCAB.
ES_TEST_VOCAB = ["日本", "語", "使", "テスト", "、", "。", "Bert", "##Japanese", "##Tokenizer", "Elastic", "##search",
                 "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]"]
MASK_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "東京", "は", "高い", "。", "[", "]", "M", "##A", "##S",
              "##K", "Hello", "world"]
# Japanese texts on which Kuromoji (SEARCH) and MeCab split alike: no whitespace, no long compounds, nothing NFKC
# changes; the last one is past every max length (both sides keep the start and close it with [SEP]).
JA_TEXTS = ("東京タワーは高い。", "猫が寝ている。", "猫がテキストを読む。", "東京タワーは2024年にLEDで光った。",
            "猫が寝ている。" * 12)
MECAB = fugashi.GenericTagger(ipadic.MECAB_ARGS)


def _words(text: str) -> list[str]:
    return [word for word, _start, _end in japanese.split_words(text)]


def _mecab(text: str) -> list[str]:
    return [node.surface for node in MECAB(text)]


def _tokenizer(vocab: list[str], *, lower: bool = False, special: bool = True) -> TextTokenizer:
    options = {"do_lower_case": lower, "with_special_tokens": special, "max_sequence_length": 512}
    return TextTokenizer("bert_ja", options, {"vocabulary": vocab})


# --- the stand-in's word splitting ------------------------------------------------------------------------------


def test_elasticsearchs_own_bert_ja_test_sentence() -> None:
    """BertJapaneseTokenizerTests.testTokenize: the same vocabulary, text, tokens, ids and token map."""
    text = "日本語で、ElasticsearchのBertJapaneseTokenizerを使うテスト。"
    encoding = _tokenizer(ES_TEST_VOCAB, special=False).encode(text)
    assert encoding.tokens == ["日本", "語", "[UNK]", "、", "Elastic", "##search", "[UNK]", "Bert", "##Japanese",
                               "##Tokenizer", "[UNK]", "[UNK]", "テスト", "。"]
    assert encoding.ids == [0, 1, 14, 4, 9, 10, 14, 6, 7, 8, 14, 14, 3, 5]
    assert encoding.word_ids == [0, 1, 2, 3, 4, 4, 5, 6, 6, 6, 7, 8, 9, 10]


def test_a_sentence_of_kanji_hiragana_katakana_latin_and_digits() -> None:
    text = "東京タワーは2024年にLEDで光った。"
    expected = ["東京", "タワー", "は", "2024", "年", "に", "LED", "で", "光っ", "た", "。"]
    assert _words(text) == expected
    assert _mecab(text) == expected  # plain text: Kuromoji and MeCab agree
    assert japanese.split_words(text)[3] == ("2024", 6, 10)  # offsets into the text


@pytest.mark.parametrize(("text", "search", "whole"), [
    # Lucene's search-segmentation-tests.txt (the compound token itself is discarded, as Elasticsearch asks).
    ("関西国際空港", ["関西", "国際", "空港"], True),
    ("奈良先端科学技術大学院大学", ["奈良", "先端", "科学", "技術", "大学院", "大学"], True),
    ("シニアソフトウェアエンジニア", ["シニア", "ソフトウェア", "エンジニア"], True),
    ("ソフトウェアエンジニアリング", ["ソフトウェア", "エンジニアリング"], False),  # the parts cost too much
    ("京都大学硬式野球部", ["京都大", "学", "硬式", "野球", "部"], False),
    ("日本語で", ["日本", "語", "で"], False),  # how Elasticsearch's own test sentence starts
])
def test_search_mode_decompounds_long_words(text: str, search: list[str], whole: bool) -> None:
    assert _words(text) == search
    normal = [text[s:e] for s, e in japanese.kuromoji_words(text, "normal")]
    assert normal == _mecab(text)  # NORMAL mode is MeCab's segmentation
    if whole:
        assert normal == [text]


def test_mask_is_split_so_the_cluster_never_sees_it(tmp_path: Path) -> None:
    """Only `[MASK]` never splits in BertTokenizer, and only inside one word; Kuromoji has already made `[`,
    `MASK` and `]` three words (SYMBOL, ALPHA, SYMBOL), so the mask token never reaches the model. The model's
    own tokenizer matches special tokens before splitting and keeps it."""
    text = "東京[MASK]は高い。"
    assert _words(text) == ["東京", "[", "MASK", "]", "は", "高い", "。"]
    tokenizer = _tokenizer(MASK_VOCAB)
    encoding = tokenizer.encode(text)
    assert encoding.tokens == ["[CLS]", "東京", "[", "M", "##A", "##S", "##K", "]", "は", "高い", "。", "[SEP]"]
    assert tokenizer.token_id("[MASK]") == 4 and 4 not in encoding.ids
    (tmp_path / "vocab.txt").write_text("\n".join(MASK_VOCAB) + "\n", encoding="utf-8")
    hf = transformers.BertJapaneseTokenizer(vocab_file=str(tmp_path / "vocab.txt"), word_tokenizer_type="mecab",
                                            mecab_kwargs={"mecab_dic": "ipadic"}, do_lower_case=False)
    assert hf.tokenize(text) == ["東京", "[MASK]", "は", "高い", "。"]


def test_whitespace_is_a_word_of_its_own() -> None:
    """With punctuation kept, Kuromoji outputs each run of SPACE-class chars as a word; WordPiece does not know
    it. MeCab skips whitespace."""
    assert _words("Hello world") == ["Hello", " ", "world"]
    assert _words("猫が \n寝ている") == ["猫", "が", " \n", "寝", "て", "いる"]
    assert _mecab("Hello world") == ["Hello", "world"]
    assert _tokenizer(MASK_VOCAB).encode("Hello world").tokens == ["[CLS]", "Hello", "[UNK]", "world", "[SEP]"]


def test_no_nfkc_and_control_chars_dropped() -> None:
    """Half-width katakana reach the dictionary as they are (Hugging Face's MeCab tokenizer applies NFKC first);
    ControlCharFilter drops format chars and every char outside the BMP; offsets stay in the original text."""
    assert _words("ﾃｷｽﾄ") == ["ﾃｷｽﾄ"]
    assert _mecab(unicodedata.normalize("NFKC", "ﾃｷｽﾄ")) == ["テキスト"]
    assert japanese.split_words("猫\u200bが😀寝る") == [("猫", 0, 1), ("が", 2, 3), ("寝る", 4, 6)]


def test_nakaguro_is_a_symbol() -> None:
    """Lucene makes U+30FB (・) a SYMBOL, MeCab's char.def a KATAKANA (TestJapaneseTokenizer.testDecomposition3,
    where punctuation is discarded, gives マシュー ホプキンス)."""
    assert _words("魔女狩大将マシュー・ホプキンス。") == ["魔女", "狩", "大将", "マシュー", "・", "ホプキンス", "。"]
    assert _mecab("魔女狩大将マシュー・ホプキンス。") == ["魔女", "狩", "大将", "マシュー・ホプキンス", "。"]


def test_lowercasing_strips_accents_and_long_words_are_unknown() -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "elan", "a", "##a"]
    assert _tokenizer(vocab, lower=True, special=False).encode("Élan").ids == [5]
    assert _tokenizer(vocab, special=False).encode("Élan").ids == [1]
    assert _tokenizer(vocab, special=False).encode("a" * 100).ids == [6] + [7] * 99
    assert _tokenizer(vocab, special=False).encode("a" * 101).ids == [1]  # maxInputCharsPerWord 100


# --- end to end: export, load, start, answer ----------------------------------------------------------------------


def _export(run_cli: RunCli, keys: Keys, model_dir: Path, bundle: Path, task: str, model_id: str) -> None:
    exported = run_cli("export", "--model-dir", model_dir, "--task-type", task, "--es-model-id", model_id,
                       "--signing-key", keys.pair.private_path, "--out", bundle, "--target-es-version", "9.2.0",
                       "--allow-newer-torch")
    assert exported.exit_code == 0, exported.output


def _cluster_side(server: StandIn, model_id: str) -> tuple[str, str, TextTokenizer]:
    """What the cluster holds: the task, the input field, and its tokenizer (the stored config's bert_ja options
    over the uploaded vocabulary), built as the stand-in builds it for `_infer`."""
    (config,) = server.client().ml.get_trained_models(model_id=model_id)["trained_model_configs"]
    ((task, settings),) = config["inference_config"].items()
    stored = server.data_dir / "models" / model_id / "vocabulary.json"
    vocabulary = json.loads(stored.read_text(encoding="utf-8"))
    tokenizer = TextTokenizer("bert_ja", settings["tokenization"]["bert_ja"], vocabulary)
    return task, config["input"]["field_names"][0], tokenizer


def _infer(server: StandIn, model_id: str, field: str, text: str) -> dict[str, Any]:
    response = server.client().ml.infer_trained_model(model_id=model_id, docs=[{field: text}])
    return dict(response["inference_results"][0])


def _hf_inputs(tokenizer: Any, text: str, max_length: int) -> dict[str, torch.Tensor]:
    """The model's own tokenizer, truncating where the cluster does."""
    return dict(tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt",
                          return_token_type_ids=True))


def _load(run_cli: RunCli, keys: Keys, bundle: Path, server: StandIn) -> Any:
    return run_cli("load", bundle, "--trusted-key", keys.pub, "--url", server.url, "--start", "--smoke-test")


def test_a_bert_ja_pass_through_bundle_answers_like_the_model(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    model_dir = models.bert_ja(tmp_path / "model")
    _export(run_cli, keys, model_dir, tmp_path / "bundle", "pass_through", "ja-pass-through")
    server = standin(es_version="9.2.0")
    loaded = _load(run_cli, keys, tmp_path / "bundle", server)
    assert loaded.exit_code == 0, loaded.output
    task, field, cluster = _cluster_side(server, "ja-pass-through")
    assert (task, cluster.max_length) == ("pass_through", models.MAX_LEN)
    hf = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = reference.original(model_dir, "AutoModel")
    for text in JA_TEXTS:
        named = _hf_inputs(hf, text, cluster.max_length)
        assert cluster.encode(text).tokens == hf.convert_ids_to_tokens(named["input_ids"][0].tolist()), text
        with torch.no_grad():
            want = model(**named).last_hidden_state[0]  # Elasticsearch answers r[0]: [tokens][hidden]
        got = torch.tensor(_infer(server, "ja-pass-through", field, text)["predicted_value"])
        reference.assert_close(got, want, text)


def test_a_bert_ja_sentence_embedding_bundle_answers_like_the_model(
        tmp_path: Path, keys: Keys, run_cli: RunCli, standin: Callable[..., StandIn]) -> None:
    """Its smoke test passes only with samples the cluster splits like MeCab (Japanese, without whitespace)."""
    model_dir = models.bert_ja_sentence_transformer(tmp_path / "model")
    _export(run_cli, keys, model_dir, tmp_path / "bundle", "text_embedding", "ja-embedding")
    server = standin(es_version="9.2.0")
    loaded = _load(run_cli, keys, tmp_path / "bundle", server)
    assert loaded.exit_code == 0, loaded.output
    assert len([line for line in loaded.output.splitlines() if line.startswith("ok    smoke")]) == 3, loaded.output
    task, field, cluster = _cluster_side(server, "ja-embedding")
    assert (task, cluster.max_length) == ("text_embedding", 48)  # sentence-transformers' max_seq_length
    base = tmp_path / "model-base"  # the transformers model and tokenizer under the sentence-transformers folder
    hf = transformers.AutoTokenizer.from_pretrained(str(base))
    model = reference.original(base, "AutoModel")
    for text in JA_TEXTS:
        named = _hf_inputs(hf, text, cluster.max_length)
        assert cluster.encode(text).tokens == hf.convert_ids_to_tokens(named["input_ids"][0].tolist()), text
        with torch.no_grad():
            want = reference.mean_pooling(model(**named).last_hidden_state, named["attention_mask"])[0]
        got = torch.tensor(_infer(server, "ja-embedding", field, text)["predicted_value"])
        reference.assert_close(got, want, text)


def test_a_bert_ja_masked_lm_is_refused_as_fill_mask(tmp_path: Path, keys: Keys, run_cli: RunCli) -> None:
    """Elasticsearch's bert_ja splits `[MASK]` into `[`, `MASK`, `]` before WordPiece (see
    test_mask_is_split_so_the_cluster_never_sees_it): a fill_mask bundle could never answer in the cluster, so the
    export refuses it, `auto` included, names the reason and the way out, and writes nothing."""
    model_dir = models.bert_ja(tmp_path / "model")
    for task in ("auto", "fill_mask"):
        out = tmp_path / f"bundle-{task}"
        refused = run_cli("export", "--model-dir", model_dir, "--task-type", task, "--es-model-id", "ja-fill-mask",
                          "--signing-key", keys.pair.private_path, "--out", out, "--target-es-version", "9.2.0",
                          "--allow-newer-torch")
        assert refused.exit_code == 9, refused.output
        assert "fill_mask with the bert_ja tokenization" in refused.stderr, refused.stderr
        assert "[MASK]" in refused.stderr and "--task-type pass_through" in refused.stderr, refused.stderr
        assert not out.exists()
