"""`_infer` answers for the nine NLP tasks, shaped as Elasticsearch shapes them (tests/standin/README.md, "Inference
answers").

Expectations never come from the stand-in's code: they are Elasticsearch's own unit-test numbers (quoted with the
test they come from), Hugging Face's computation on the same logits or its tokenizers on the same vocabulary, or
written out here from logits the test controls (tests/standin/testkit.probe: a module whose output is a table
lookup on the input ids). Driven with the official client against one stand-in process.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Iterator
from typing import Any

import elasticsearch
import pytest
import torch
import transformers
from transformers.pipelines.document_question_answering import select_starts_ends

from tests.standin.errors import EsError
from tests.standin.fixture import StandIn, start_standin
from tests.standin.testkit import MPNET_VOCAB, VOCAB, probe
from tests.standin.tokenize import TextTokenizer

# BertTokenizerTests.TEST_CASED_VOCAB (Elasticsearch's ml tests), used by its QuestionAnswering and ZeroShot tests.
ES_VOCAB = ["Elastic", "##search", "is", "fun", "my", "little", "red", "car", "God", "##zilla", ".", ",", "[CLS]",
            "[SEP]", "[MASK]", "[UNK]", "day", "Pancake", "with", "[PAD]", "?"]
# QuestionAnsweringProcessorTests.START_TOKEN_SCORES and END_TOKEN_SCORES.
ES_START = [1.6665655, -7.988514, -8.249796, .529973, -8.46703, -8.345977, -8.459701, -8.260341, .071103, -7.339133,
            -7.647086, -8.165343, -8.277936, -8.156116, -8.104215, -8.45849, -8.249917, -2.0896196, -0.67172474]
ES_END = [1.0593028, -8.276232, -7.9352865, -8.340191, -8.326643, -8.225507, -8.548992, -8.50256, -8.716394, -8.0558195,
          -8.4110565, -6.564298, -8.570332, .01, -7.2465587, .6000237, -8.045577, -6.3548584, -3.5642238]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    shared = start_standin(tmp_path_factory.mktemp("infer") / "data")
    yield shared
    shared.kill()


@pytest.fixture(scope="module")
def client(server: StandIn) -> Any:
    return server.client()


def deploy(client: Any, model_id: str, definition: bytes, task: str, vocabulary: list[str], *, kind: str = "bert",
           tokenization: dict[str, Any] | None = None, merges: list[str] | None = None,
           scores: list[float] | None = None, **settings: Any) -> None:
    """Config, vocabulary, the one part, then a started deployment."""
    options = tokenization if tokenization is not None else {"do_lower_case": True, "max_sequence_length": 64}
    client.ml.put_trained_model(model_id=model_id, model_type="pytorch", input={"field_names": ["text_field"]},
                                inference_config={task: {"tokenization": {kind: options}, **settings}})
    extra = {key: value for key, value in (("merges", merges), ("scores", scores)) if value is not None}
    client.ml.put_trained_model_vocabulary(model_id=model_id, vocabulary=vocabulary, **extra)
    client.ml.put_trained_model_definition_part(model_id=model_id, part=0, total_parts=1,
                                                definition=base64.b64encode(definition).decode(),
                                                total_definition_length=len(definition))
    client.ml.start_trained_model_deployment(model_id=model_id, wait_for="started")


def infer(client: Any, model_id: str, text: str, update: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = {"inference_config": update} if update is not None else {}
    return dict(client.ml.infer_trained_model(model_id=model_id, docs=[{"text_field": text}], **extra)[
        "inference_results"][0])


def refused(client: Any, model_id: str, text: str, update: dict[str, Any] | None = None) -> tuple[int, str, str]:
    with pytest.raises(elasticsearch.ApiError) as excinfo:
        infer(client, model_id, text, update)
    error = excinfo.value.body["error"]
    return excinfo.value.meta.status, error["type"], error["reason"]


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v - max(values)) for v in values]
    return [e / sum(exps) for e in exps]


def table(vocabulary: list[str], width: int, seed: float) -> list[list[float]]:
    """Distinct, deterministic rows per id (no ties)."""
    return [[round(math.sin(seed * (i + 1) + 0.7 * k) * 3 + 0.01 * k, 4) for k in range(width)]
            for i in range(len(vocabulary))]


def bert_hf(vocabulary: list[str], lower: bool = True) -> Any:
    return transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocabulary)}, do_lower_case=lower)


def run_module(definition: bytes, ids: list[int]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch deprecates TorchScript; Elasticsearch runs it
        module = torch.jit.load(io.BytesIO(definition))
    inputs = torch.tensor([ids])
    with torch.no_grad():
        return module(inputs, torch.ones_like(inputs), torch.zeros_like(inputs), torch.arange(len(ids)).unsqueeze(0))


# --- question_answering -----------------------------------------------------------------------------------------------

QA_TOKENIZATION = {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 384, "truncate": "none",
                   "span": 128}


def test_question_answering_gives_elasticsearchs_worked_answer(client: Any) -> None:
    """QuestionAnsweringProcessorTests.testProcessor: 19 tokens, the context after 7; score 0.05264939, chars 8-48."""
    deploy(client, "qa-es", probe("fixed", [ES_START, ES_END]), "question_answering", ES_VOCAB,
           tokenization=QA_TOKENIZATION, num_top_classes=1, max_answer_length=10, results_field="prediction")
    text = "Pancake day is fun with Elasticsearch and little red car"
    result = infer(client, "qa-es", text, {"question_answering": {"question": "is Elasticsearch fun?"}})
    assert list(result) == ["prediction", "start_offset", "end_offset", "top_classes", "prediction_probability"]
    assert (result["prediction"], result["start_offset"], result["end_offset"]) == (text[8:48], 8, 48)
    assert result["prediction_probability"] == pytest.approx(0.05264939, abs=1e-6)
    assert result["top_classes"] == [{"answer": text[8:48], "start_offset": 8, "end_offset": 48,
                                      "score": result["prediction_probability"]}]


def test_question_answering_top_classes_cover_whole_words(client: Any) -> None:
    """QuestionAnsweringProcessorTests.testTopScoresMoreThanOne (context from token 8, answers of 10 tokens at most):
    (0, 7) 0.05265336 then (0, 5) 0.0291865. Token 5 is `Elastic` of `Elasticsearch`: the answer ends with the word."""
    text = "Pancake day is fun with Elasticsearch and little red"
    update = {"question_answering": {"question": "is Elasticsearch so fun?", "num_top_classes": 2}}
    result = infer(client, "qa-es", text, update)
    first, second = result["top_classes"]
    assert (first["answer"], first["start_offset"], first["end_offset"]) == (
        "Pancake day is fun with Elasticsearch and", 0, 41)
    assert first["score"] == pytest.approx(0.05265336, abs=1e-6)
    assert (second["answer"], second["start_offset"], second["end_offset"]) == (
        "Pancake day is fun with Elasticsearch", 0, 37)
    assert second["score"] == pytest.approx(0.0291865, abs=1e-6)
    assert (result["prediction"], result["prediction_probability"]) == (first["answer"], first["score"])


def hf_answers(hf: Any, definition: bytes, question: str, context: str, top_k: int, max_len: int) -> list[Any]:
    """Hugging Face's question answering post-processing (select_starts_ends: CLS and the context in the softmax,
    CLS then dropped) on the module's logits for HF's own encoding, spans mapped to whole words of the context."""
    encoded = hf(question, context)
    start, end = run_module(definition, encoded["input_ids"])
    p_mask = torch.tensor([0 if i == 0 or s == 1 else 1 for i, s in enumerate(encoded.sequence_ids())]).numpy()
    starts, ends, scores, _ = select_starts_ends(start.numpy(), end.numpy(), p_mask, None, top_k=top_k,
                                                 max_answer_len=max_len)
    answers = []
    for s, e, score in zip(starts, ends, scores, strict=True):
        first = encoded.word_to_chars(encoded.token_to_word(int(s)), sequence_index=1)
        last = encoded.word_to_chars(encoded.token_to_word(int(e)), sequence_index=1)
        answers.append((context[first.start:last.end], first.start, last.end, float(score)))
    return answers


def test_question_answering_matches_hugging_faces_computation(client: Any) -> None:
    definition = probe("qa", table(VOCAB, 2, 1.37))
    deploy(client, "qa-hf", definition, "question_answering", VOCAB)
    question, context = "is the fox quick", "The quick brown foxs is searching over the lazy dog in Paris"
    result = infer(client, "qa-hf", context,
                   {"question_answering": {"question": question, "num_top_classes": 3, "max_answer_length": 4}})
    want = hf_answers(bert_hf(VOCAB), definition, question, context, 3, 4)
    got = [(a["answer"], a["start_offset"], a["end_offset"], a["score"]) for a in result["top_classes"]]
    assert [g[:3] for g in got] == [w[:3] for w in want]
    assert [g[3] for g in got] == pytest.approx([w[3] for w in want], rel=1e-5)
    assert result["predicted_value"] == want[0][0] and "is_truncated" not in result


def test_question_answering_windows_the_context_with_span(client: Any) -> None:
    """12 tokens at most, a one-token question: 8 context tokens per window, the next window 3 tokens back, no window
    ending or starting inside a word (NlpTokenizer's pair windowing)."""
    definition = probe("qa", table(VOCAB, 2, 2.11))
    deploy(client, "qa-span", definition, "question_answering", VOCAB, tokenization={
        "do_lower_case": True, "max_sequence_length": 12, "truncate": "none", "span": 3})
    context = "the quick brown fox jumps over the lazy dogs hello elastic searching is in paris"
    words = context.split()
    # (first word, words) of each window: [0,8) [5,12) [8,16) [12,17) in tokens (dogs and searching are two tokens)
    windows = [(0, 8), (5, 6), (8, 6), (11, 4)]
    hf = bert_hf(VOCAB)
    best = None
    for first, count in windows:
        part = " ".join(words[first:first + count])
        (answer, start, end, score), = hf_answers(hf, definition, "fox", part, 1, 15)
        shift = len(" ".join(words[:first])) + (1 if first else 0)
        if best is None or score >= best[3]:  # a later window wins a tie (insertWithOverflow)
            best = (answer, start + shift, end + shift, score)
    result = infer(client, "qa-span", context, {"question_answering": {"question": "fox"}})
    assert (result["predicted_value"], result["start_offset"], result["end_offset"]) == best[:3]
    assert result["prediction_probability"] == pytest.approx(best[3], rel=1e-5)
    assert list(result) == ["predicted_value", "start_offset", "end_offset", "prediction_probability"]


def test_question_answering_refusals(client: Any) -> None:
    assert refused(client, "qa-hf", "the fox") == (
        400, "status_exception",
        "please provide configuration update for question_answering task including the desired [question]")
    assert refused(client, "qa-hf", "the fox", {"text_similarity": {"text": "fox"}}) == (
        400, "status_exception", "Inference config of type [question_answering] can not be updated with a inference "
                                 "request of type [text_similarity]")
    assert refused(client, "qa-hf", "the fox", {"question_answering": {"question": "fox", "num_top_classes": -1}}) == (
        400, "status_exception", "[num_top_classes] must be greater than or equal to [0]; provided [-1]")


def test_question_answering_truncating_the_question_says_so(client: Any) -> None:
    definition = probe("qa", table(VOCAB, 2, 0.91))
    deploy(client, "qa-first", definition, "question_answering", VOCAB,
           tokenization={"do_lower_case": True, "max_sequence_length": 9, "truncate": "first"})
    update = {"question_answering": {"question": "the quick brown fox jumps"}}
    result = infer(client, "qa-first", "the lazy dog", update)
    assert result["is_truncated"] is True
    assert result["predicted_value"] in ("the", "lazy", "dog", "the lazy", "lazy dog", "the lazy dog")


# --- pair tokenization ------------------------------------------------------------------------------------------------

ROBERTA_VOCAB = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "h", "e", "l", "o", "w", "r", "d", "Ġ", "Ġh", "he", "ll",
                 "Ġhe", "Ġw", "wo", "Ġwo", "Ġparis", "Ġlondon", "paris"]
ROBERTA_MERGES = ["Ġ h", "h e", "l l", "Ġh e", "Ġ w", "w o", "Ġw o"]
PIECES = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁he", -1.0), ("llo", -1.0), ("▁", -2.0),
          ("wor", -1.0), ("ld", -1.0), ("▁wor", -1.0), ("<mask>", 0.0), ("▁paris", -1.0)]
DEBERTA_PIECES = [("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0), *PIECES[4:10], ("[MASK]", 0.0)]


def _family(kind: str) -> tuple[TextTokenizer, Any]:
    """The stand-in's tokenizer and Hugging Face's for the same vocabulary."""
    options = {"do_lower_case": kind in ("bert", "mpnet"), "max_sequence_length": 64}
    if kind == "bert":
        return TextTokenizer(kind, options, {"vocabulary": VOCAB}), bert_hf(VOCAB)
    if kind == "mpnet":
        vocab = {w: i for i, w in enumerate(MPNET_VOCAB)}
        return (TextTokenizer(kind, options, {"vocabulary": MPNET_VOCAB}),
                transformers.MPNetTokenizerFast(vocab=vocab, do_lower_case=True))
    if kind == "roberta":
        hf = transformers.RobertaTokenizerFast(vocab={w: i for i, w in enumerate(ROBERTA_VOCAB)},
                                               merges=[tuple(m.split()) for m in ROBERTA_MERGES])
        return TextTokenizer(kind, options, {"vocabulary": ROBERTA_VOCAB, "merges": ROBERTA_MERGES}), hf
    pieces = PIECES if kind == "xlm_roberta" else DEBERTA_PIECES
    vocabulary = {"vocabulary": [p for p, _ in pieces], "scores": [s for _, s in pieces]}
    if kind == "xlm_roberta":
        return TextTokenizer(kind, options, vocabulary), transformers.XLMRobertaTokenizerFast(vocab=pieces)
    return TextTokenizer(kind, options, vocabulary), transformers.DebertaV2TokenizerFast(vocab=pieces, unk_id=3)


PAIRS = {"bert": ("is the fox quick", "the quick brown foxs searching"), "mpnet": ("hello world", "the lazy dogs"),
         "roberta": ("hello world", "world hello"), "xlm_roberta": ("hello world", "world  hello"),
         "deberta_v2": ("hello world", "world hello")}


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_pairs_carry_each_familys_special_tokens(kind: str) -> None:
    """`[CLS] a [SEP] b [SEP]` (bert, deberta_v2) or `<s> a </s></s> b </s>` (mpnet, roberta, xlm_roberta), as the
    family's Hugging Face tokenizer builds the pair; the second sequence starts after the separators."""
    ours, hf = _family(kind)
    first, second = PAIRS[kind]
    want = hf(first, second)["input_ids"]
    row = ours.pair(first, second, "none")
    assert row.ids == want
    assert row.pair_offset == len(hf(first, add_special_tokens=False)["input_ids"]) + (2 if kind in (
        "bert", "deberta_v2") else 3)
    assert [r.ids for r in ours.pair_windows(first, second, "none", -1)] == [want]


def test_bert_ja_pairs_are_cls_first_sep_second_sep() -> None:
    """BertJapaneseTokenizerTests.testTokenize: its vocabulary and sentence (ids below, unchanged), here the first of
    a pair whose second is テスト (3); [CLS] is 11, [SEP] 12."""
    vocab = ["日本", "語", "使", "テスト", "、", "。", "Bert", "##Japanese", "##Tokenizer", "Elastic", "##search",
             "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]"]
    sentence_ids = [0, 1, 14, 4, 9, 10, 14, 6, 7, 8, 14, 14, 3, 5]
    ours = TextTokenizer("bert_ja", {"max_sequence_length": 32}, {"vocabulary": vocab})
    row = ours.pair("日本語で、ElasticsearchのBertJapaneseTokenizerを使うテスト。", "テスト", "none")
    assert (row.ids, row.pair_offset) == ([11, *sentence_ids, 12, 3, 12], 16)


def _words(tokenizer: TextTokenizer, ids: list[int]) -> str:
    return " ".join(tokenizer.vocab[i] for i in ids)


def test_pair_truncation_first_second_and_balanced() -> None:
    """NlpTokenizer.tokenize(seq1, seq2): 10 tokens at most, 3 special: 7 for the two sequences."""
    ours = TextTokenizer("bert", {"do_lower_case": True, "max_sequence_length": 10}, {"vocabulary": VOCAB})
    first, second = "the quick brown fox jumps", "over the lazy dog hello world"
    assert _words(ours, ours.pair(first, second, "first").ids) == (
        "[CLS] the [SEP] over the lazy dog hello world [SEP]")
    assert _words(ours, ours.pair(first, second, "second").ids) == (
        "[CLS] the quick brown fox jumps [SEP] over the [SEP]")
    assert _words(ours, ours.pair(first, second, "balanced").ids) == (
        "[CLS] the quick brown [SEP] over the lazy dog [SEP]")
    assert ours.pair(first, second, "balanced").truncated
    with pytest.raises(EsError) as excinfo:
        ours.pair("the", "over the lazy dog hello world the quick", "first")
    assert (excinfo.value.status, excinfo.value.reason) == (400,
        "Attempting truncation [first] but input is too large for the second sequence. The tokenized input length [8] "
        "exceeds the maximum sequence length [7], when taking special tokens into account")


def test_token_offsets_and_positions_per_family() -> None:
    """What each family's Lucene tokenizer gives a token: WordPieceTokenFilter every piece its word's offsets and
    position; BpeTokenizer every piece of a pre-token the pre-token's offsets, the first without the leading space;
    UnigramTokenizer every piece its own offsets and its own position."""
    bert, _ = _family("bert")
    inner = bert.inner("quick foxs")
    assert (inner.offsets, inner.positions) == (((0, 5), (6, 10), (6, 10)), (0, 1, 1))
    roberta, _ = _family("roberta")
    inner = roberta.inner("hello world")
    assert [roberta.vocab[i] for i in inner.ids] == ["he", "ll", "o", "Ġwo", "r", "l", "d"]
    assert inner.offsets == ((0, 5), (0, 5), (0, 5), (6, 11), (5, 11), (5, 11), (5, 11))
    assert inner.positions == (0, 0, 0, 1, 1, 1, 1)
    xlm, _ = _family("xlm_roberta")
    inner = xlm.inner("hello  world")
    assert [xlm.vocab[i] for i in inner.ids] == ["▁he", "llo", "▁wor", "ld"]
    assert (inner.offsets, inner.positions) == (((0, 2), (2, 5), (7, 10), (10, 12)), (0, 1, 2, 3))


def test_a_pair_needs_special_tokens() -> None:
    ours = TextTokenizer("bert", {"with_special_tokens": False}, {"vocabulary": VOCAB})
    with pytest.raises(EsError) as excinfo:
        ours.pair("the fox", "the dog", "none")
    assert (excinfo.value.status, excinfo.value.type, excinfo.value.reason) == (
        400, "illegal_argument_exception", "Unable to do sequence pair tokenization without special tokens")


def test_a_long_balanced_question_answering_pair_is_windowed_without_a_span() -> None:
    """NlpTokenizer.tokenize(seq1, seq2, truncate, span, id) truncates only for first, second and none: a long pair
    with `balanced` goes to the window loop with span -1, and TokenizationResult refuses a second window of one
    sequence that has no span."""
    ours = TextTokenizer("bert", {"do_lower_case": True, "max_sequence_length": 8}, {"vocabulary": VOCAB})
    with pytest.raises(EsError) as excinfo:
        ours.pair_windows("fox", "the quick brown fox jumps over the lazy dog", "balanced", -1)
    assert (excinfo.value.status, excinfo.value.type, excinfo.value.reason) == (
        400, "illegal_argument_exception", "cannot window a sequence without a configured span")


# --- text_similarity --------------------------------------------------------------------------------------------------

def _weights(vocabulary: list[str]) -> list[list[float]]:
    return [[round(math.sqrt(i + 2), 3)] for i in range(len(vocabulary))]


def test_text_similarity_scores_the_config_text_then_the_document(client: Any) -> None:
    """The raw score of (text, document), here the sum of the ids' weights; truncating `second` cuts the document.
    Token types all 0 (else the probe adds 1000)."""
    definition = probe("rows", _weights(VOCAB))
    deploy(client, "sim-second", definition, "text_similarity", VOCAB,
           tokenization={"do_lower_case": True, "max_sequence_length": 9, "truncate": "second"})
    hf = bert_hf(VOCAB)
    ids = hf("the fox", "the quick brown fox jumps over the lazy dog", truncation="only_second", max_length=9)
    want = sum(_weights(VOCAB)[i][0] for i in ids["input_ids"])
    result = infer(client, "sim-second", "the quick brown fox jumps over the lazy dog",
                   {"text_similarity": {"text": "the fox"}})
    assert result == {"predicted_value": pytest.approx(want, rel=1e-6), "is_truncated": True}


def test_text_similarity_combines_windows_by_max_or_mean(client: Any) -> None:
    """10 tokens at most, a one-token text: 6 document tokens per window, the next 2 back: [0,6) and [4,10)."""
    weights = _weights(VOCAB)
    for function in ("max", "mean"):
        deploy(client, f"sim-{function}", probe("rows", weights), "text_similarity", VOCAB,
               tokenization={"do_lower_case": True, "max_sequence_length": 10, "truncate": "none", "span": 2},
               span_score_combination_function=function)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "hello"]
    hf = bert_hf(VOCAB)
    scores = [sum(weights[i][0] for i in hf("fox", " ".join(part))["input_ids"]) for part in (words[:6], words[4:])]
    update = {"text_similarity": {"text": "fox"}}
    assert infer(client, "sim-max", " ".join(words), update) == {"predicted_value": pytest.approx(max(scores))}
    assert infer(client, "sim-mean", " ".join(words), update) == {"predicted_value": pytest.approx(sum(scores) / 2)}
    assert refused(client, "sim-max", "the fox") == (
        400, "status_exception", "please provide configuration update for text_similarity task including the desired "
                                 "[text]")


@pytest.mark.parametrize("kind", ["mpnet", "roberta", "xlm_roberta", "deberta_v2"])
def test_text_similarity_sends_each_familys_pair(client: Any, kind: str) -> None:
    ours, hf = _family(kind)
    first, second = PAIRS[kind]
    definition = probe("rows", _weights(ours.vocab))
    vocabulary: dict[str, Any] = {"merges": ROBERTA_MERGES} if kind == "roberta" else {}
    if kind in ("xlm_roberta", "deberta_v2"):
        vocabulary["scores"] = [s for _, s in (PIECES if kind == "xlm_roberta" else DEBERTA_PIECES)]
    deploy(client, f"sim-{kind}", definition, "text_similarity", ours.vocab, kind=kind,
           tokenization={"max_sequence_length": 64, "do_lower_case": kind == "mpnet"}, **vocabulary)
    want = sum(_weights(ours.vocab)[i][0] for i in hf(first, second)["input_ids"])
    result = infer(client, f"sim-{kind}", second, {"text_similarity": {"text": first}})
    assert result == {"predicted_value": pytest.approx(want, rel=1e-6)}


# --- zero_shot_classification -----------------------------------------------------------------------------------------

# ZeroShotClassificationProcessorTests.testBuildRequest: "Elasticsearch fun" with the label "new" (or "stuff")
# and the default hypothesis is [12, 0, 1, 3, 13, 15, 15, 2, 15, 10, 13]; with "fun" (id 3) in place of the label:
IDS_NEW = [12, 0, 1, 3, 13, 15, 15, 2, 15, 10, 13]
IDS_FUN = [12, 0, 1, 3, 13, 15, 15, 2, 3, 10, 13]
IDS_LITTLE_RED = [12, 0, 1, 3, 13, 15, 15, 2, 5, 6, 10, 13]
ZS_LABELS = ["contradiction", "neutral", "entailment"]  # entailment at 2, contradiction at 0


def _zero_shot_rows(ids: list[int], attention: list[int]) -> tuple[float, float]:
    """(contradiction, entailment) of the probe below: 0.05 and 0.1 per id, times the attention mask."""
    return (sum(0.05 * i * a for i, a in zip(ids, attention, strict=True)),
            sum(0.1 * i * a for i, a in zip(ids, attention, strict=True)))


@pytest.fixture(scope="module")
def zero_shot(client: Any) -> str:
    definition = probe("rows", [[0.05 * i, 0.0, 0.1 * i] for i in range(len(ES_VOCAB))])
    deploy(client, "zs", definition, "zero_shot_classification", ES_VOCAB, classification_labels=ZS_LABELS,
           tokenization={"do_lower_case": False, "max_sequence_length": 512, "truncate": "none"})
    return "zs"


def test_zero_shot_softmaxes_the_entailment_logits(client: Any, zero_shot: str) -> None:
    result = infer(client, zero_shot, "Elasticsearch fun", {"zero_shot_classification": {"labels": ["fun", "new"]}})
    (_, fun), (_, new) = _zero_shot_rows(IDS_FUN, [1] * 11), _zero_shot_rows(IDS_NEW, [1] * 11)
    p_fun, p_new = softmax([fun, new])
    assert list(result) == ["predicted_value", "top_classes", "prediction_probability"]
    assert result["predicted_value"] == "new" and result["prediction_probability"] == pytest.approx(p_new)
    assert result["top_classes"] == [
        {"class_name": "new", "class_probability": pytest.approx(p_new), "class_score": pytest.approx(p_new)},
        {"class_name": "fun", "class_probability": pytest.approx(p_fun), "class_score": pytest.approx(p_fun)}]


def test_zero_shot_multi_label_weighs_entailment_against_contradiction(client: Any, zero_shot: str) -> None:
    update = {"zero_shot_classification": {"labels": ["fun", "new"], "multi_label": True}}
    result = infer(client, zero_shot, "Elasticsearch fun", update)
    want = {name: softmax(list(reversed(_zero_shot_rows(ids, [1] * 11))))[0]
            for name, ids in (("fun", IDS_FUN), ("new", IDS_NEW))}
    assert {c["class_name"]: c["class_probability"] for c in result["top_classes"]} == pytest.approx(want)


def test_zero_shot_rows_are_padded_with_the_pad_id_in_the_attention_mask_too(client: Any, zero_shot: str) -> None:
    """BertTokenizationResultTests.testBatchWithPadding: a shorter row is padded with the pad id (19 here) in the
    tokens and in the attention mask ([1, 1, 1, 1, 19, 19] there)."""
    update = {"zero_shot_classification": {"labels": ["fun", "little red"]}}
    result = infer(client, zero_shot, "Elasticsearch fun", update)
    _, fun = _zero_shot_rows([*IDS_FUN, 19], [1] * 11 + [19])
    _, little_red = _zero_shot_rows(IDS_LITTLE_RED, [1] * 12)
    probabilities = dict(zip(["fun", "little red"], softmax([fun, little_red]), strict=True))
    assert {c["class_name"]: c["class_probability"] for c in result["top_classes"]} == pytest.approx(probabilities)


def test_zero_shot_labels_and_template_from_the_config(client: Any) -> None:
    definition = probe("rows", [[0.05 * i, 0.0, 0.1 * i] for i in range(len(ES_VOCAB))])
    deploy(client, "zs-stored", definition, "zero_shot_classification", ES_VOCAB, classification_labels=ZS_LABELS,
           labels=["fun", "red"], hypothesis_template="{} is it.", results_field="topic",
           tokenization={"do_lower_case": False, "max_sequence_length": 512, "truncate": "none"})
    result = infer(client, "zs-stored", "my car")
    # [CLS] my car [SEP] <label> is [UNK] . [SEP]
    rows = {label: [12, 4, 7, 13, ident, 2, 15, 10, 13] for label, ident in (("fun", 3), ("red", 6))}
    logits = {label: _zero_shot_rows(ids, [1] * 9)[1] for label, ids in rows.items()}
    assert result["topic"] == "red" and result["prediction_probability"] == pytest.approx(softmax(
        [logits["red"], logits["fun"]])[0])


def test_zero_shot_refusals(client: Any, zero_shot: str) -> None:
    assert refused(client, zero_shot, "fun") == (400, "status_exception",
                                                 "zero_shot_classification requires non-empty [labels]")
    assert refused(client, zero_shot, "fun", {"zero_shot_classification": {"multi_label": True}}) == (
        400, "status_exception",
        "stored configuration has no [labels] defined, supplied inference_config update must supply [labels]")


def test_zero_shot_truncation_is_reported(client: Any) -> None:
    definition = probe("rows", [[0.05 * i, 0.0, 0.1 * i] for i in range(len(ES_VOCAB))])
    deploy(client, "zs-balanced", definition, "zero_shot_classification", ES_VOCAB, classification_labels=ZS_LABELS,
           tokenization={"do_lower_case": False, "max_sequence_length": 8, "truncate": "balanced"})
    result = infer(client, "zs-balanced", "my little red car is fun", {"zero_shot_classification": {"labels": ["x"]}})
    assert result["is_truncated"] is True and result["predicted_value"] == "x"


# --- text_expansion ---------------------------------------------------------------------------------------------------

def _expansion(client: Any, model_id: str, vocabulary: list[str], weights: list[float], text: str = "a") -> Any:
    deploy(client, model_id, probe("constant", [weights]), "text_expansion", vocabulary,
           tokenization={"do_lower_case": False, "max_sequence_length": 16})
    return infer(client, model_id, text)["predicted_value"]


def test_text_expansion_keeps_positive_weights_highest_first(client: Any) -> None:
    """TextExpansionProcessorTests.testProcessResult: [0, 1, 0, 3, 4, 0, 0] over a..g is e 4, d 3, b 1."""
    vocabulary = ["a", "b", "c", "d", "e", "f", "g", "[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    got = _expansion(client, "te-es", vocabulary, [0, 1, 0, 3, 4, 0, 0, 0, 0, -1, 0])
    assert list(got.items()) == [("e", 4.0), ("d", 3.0), ("b", 1.0)]


def test_text_expansion_writes_dots_as_double_underscores(client: Any) -> None:
    """TextExpansionProcessorTests.testSanitizeOutputTokens: `.` becomes `__` (and `##.` `##__`)."""
    vocabulary = ["aa", "bb", "cc", ".", "##.", "[UNK]", "[PAD]", "[CLS]", "[SEP]"]
    got = _expansion(client, "te-dots", vocabulary, [1, 2, 3, 4, 5, 0, 0, 0, 0], "aa")
    assert list(got.items()) == [("##__", 5.0), ("__", 4.0), ("cc", 3.0), ("bb", 2.0), ("aa", 1.0)]


def test_text_expansion_weights_are_floats_and_ties_keep_vocabulary_order(client: Any) -> None:
    vocabulary = ["a", "b", "c", "[UNK]", "[PAD]", "[CLS]", "[SEP]"]
    got = _expansion(client, "te-float", vocabulary, [0.1, 0.7, 0.1, 0, 0, 0, 0])
    assert list(got.items()) == [("b", 0.7), ("a", 0.1), ("c", 0.1)]  # Float.toString: 0.1, not 0.10000000149...


def test_text_expansion_of_a_pooled_two_dimensional_output(client: Any) -> None:
    """A SPLADE module returning [batch, vocab]: the native process wraps it, r[0][0] is the pooled vector."""
    rows = table(VOCAB, len(VOCAB), 0.37)
    deploy(client, "te-pooled", probe("pooled", rows), "text_expansion", VOCAB)
    ids = bert_hf(VOCAB)("quick fox")["input_ids"]
    pooled = [max(rows[i][k] for i in ids) for k in range(len(VOCAB))]
    want = sorted(((VOCAB[k], w) for k, w in enumerate(pooled) if w > 0), key=lambda item: -item[1])
    got = infer(client, "te-pooled", "quick fox")["predicted_value"]
    assert list(got) == [token for token, _ in want]
    assert list(got.values()) == pytest.approx([w for _, w in want], rel=1e-6)


def test_text_expansion_of_raw_token_logits_reads_the_first_token_only(client: Any) -> None:
    """A module returning [batch, seq, vocab] (masked-LM logits, unpooled): r[0][0] is the [CLS] row, the defect a
    real cluster shows with such a module."""
    rows = table(VOCAB, len(VOCAB), 0.53)
    deploy(client, "te-raw", probe("tokens", rows), "text_expansion", VOCAB, results_field="tokens")
    cls = rows[VOCAB.index("[CLS]")]
    want = sorted(((VOCAB[k], w) for k, w in enumerate(cls) if w > 0), key=lambda item: -item[1])
    got = infer(client, "te-raw", "quick fox jumps")
    assert list(got["tokens"]) == [token for token, _ in want]


def test_text_expansion_of_more_weights_than_vocabulary_fails(client: Any) -> None:
    vocabulary = ["a", "[UNK]", "[PAD]", "[CLS]", "[SEP]"]
    deploy(client, "te-long", probe("constant", [[0, 0, 0, 0, 0, 0.5]]), "text_expansion", vocabulary,
           tokenization={"do_lower_case": False, "max_sequence_length": 16})
    assert refused(client, "te-long", "a") == (
        500, "index_out_of_bounds_exception", "Index 5 out of bounds for length 5")


# --- fill_mask --------------------------------------------------------------------------------------------------------

FM_VOCAB = ["The", "capital", "of", "is", "Paris", "France", "[MASK]", "[CLS]", "[SEP]", "[UNK]", "[PAD]"]
FM_ROW = [0.01, 0.01, 0.3, 0.01, 0.2, 1.2, 0.1, -20, -20, -20, -20]  # FillMaskProcessorTests.testProcessResults


@pytest.fixture(scope="module")
def fill_mask(client: Any) -> str:
    rows = [[0.0] * len(FM_VOCAB) for _ in FM_VOCAB]
    rows[FM_VOCAB.index("[MASK]")] = FM_ROW
    deploy(client, "fm-es", probe("tokens", rows), "fill_mask", FM_VOCAB, num_top_classes=4,
           tokenization={"do_lower_case": False, "max_sequence_length": 32})
    return "fm-es"


def test_fill_mask_gives_elasticsearchs_worked_answer(client: Any, fill_mask: str) -> None:
    """FillMaskProcessorTests.testProcessResults: France, then of, then Paris; the sequence with France in."""
    result = infer(client, fill_mask, "The capital of [MASK] is Paris")
    probabilities = softmax([float(torch.tensor(v, dtype=torch.float32)) for v in FM_ROW])
    order = sorted(range(len(FM_ROW)), key=lambda i: -probabilities[i])[:4]
    assert list(result) == ["predicted_value", "top_classes", "prediction_probability", "predicted_value_sequence"]
    assert [c["class_name"] for c in result["top_classes"]] == ["France", "of", "Paris", "[MASK]"]
    assert [c["class_probability"] for c in result["top_classes"]] == pytest.approx([probabilities[i] for i in order])
    assert result["predicted_value"] == "France"
    assert result["predicted_value_sequence"] == "The capital of France is Paris"
    assert result["prediction_probability"] == pytest.approx(probabilities[5])


def test_fill_mask_num_top_classes_all_none_and_results_field(client: Any, fill_mask: str) -> None:
    text = "The capital of [MASK] is Paris"
    every = infer(client, fill_mask, text, {"fill_mask": {"num_top_classes": -1}})
    assert len(every["top_classes"]) == len(FM_VOCAB)
    none = infer(client, fill_mask, text, {"fill_mask": {"num_top_classes": 0, "results_field": "guess"}})
    assert list(none) == ["guess", "prediction_probability", "guess_sequence"]
    assert none["guess"] == "France" and none["guess_sequence"] == "The capital of France is Paris"


def test_fill_mask_answers_wordpiece_tokens_as_they_are(client: Any) -> None:
    """BertTokenizationResult does not override decode: a `##s` answer keeps its `##`."""
    rows = [[0.0] * len(VOCAB) for _ in VOCAB]
    rows[VOCAB.index("[MASK]")][VOCAB.index("##s")] = 9.0
    deploy(client, "fm-pieces", probe("tokens", rows), "fill_mask", VOCAB)
    result = infer(client, "fm-pieces", "the fox [MASK]")
    assert (result["predicted_value"], result["predicted_value_sequence"]) == ("##s", "the fox ##s")


def test_fill_mask_decodes_byte_level_and_sentencepiece_tokens(client: Any) -> None:
    """RobertaTokenizationResult.decode maps the byte characters back and trims; XLMRobertaTokenizationResult
    drops the leading `▁`."""
    rows = [[0.0] * len(ROBERTA_VOCAB) for _ in ROBERTA_VOCAB]
    rows[ROBERTA_VOCAB.index("<mask>")][ROBERTA_VOCAB.index("Ġparis")] = 9.0
    deploy(client, "fm-roberta", probe("tokens", rows), "fill_mask", ROBERTA_VOCAB, kind="roberta",
           merges=ROBERTA_MERGES, tokenization={"max_sequence_length": 32})
    assert infer(client, "fm-roberta", "hello <mask>")["predicted_value_sequence"] == "hello paris"
    pieces = [p for p, _ in PIECES]
    rows = [[0.0] * len(pieces) for _ in pieces]
    rows[pieces.index("<mask>")][pieces.index("▁paris")] = 9.0
    deploy(client, "fm-xlm", probe("tokens", rows), "fill_mask", pieces, kind="xlm_roberta",
           scores=[s for _, s in PIECES], tokenization={"max_sequence_length": 32})
    assert infer(client, "fm-xlm", "hello <mask>")["predicted_value"] == "paris"


# --- text_classification ----------------------------------------------------------------------------------------------

def test_text_classification_top_classes(client: Any) -> None:
    rows = table(VOCAB, 3, 0.77)
    deploy(client, "tc", probe("rows", rows), "text_classification", VOCAB, classification_labels=["neg", "pos", "mix"])
    ids = bert_hf(VOCAB)("the quick brown fox")["input_ids"]
    probabilities = softmax([sum(rows[i][k] for i in ids) for k in range(3)])
    order = sorted(range(3), key=lambda k: -probabilities[k])
    labels = ["neg", "pos", "mix"]
    plain = infer(client, "tc", "the quick brown fox")
    best = probabilities[order[0]]
    assert plain == {"predicted_value": labels[order[0]], "prediction_probability": pytest.approx(best)}
    two = infer(client, "tc", "the quick brown fox", {"text_classification": {"num_top_classes": 2}})
    assert [c["class_name"] for c in two["top_classes"]] == [labels[k] for k in order[:2]]
    every = infer(client, "tc", "the quick brown fox", {"text_classification": {"num_top_classes": -1}})
    assert [c["class_probability"] for c in every["top_classes"]] == pytest.approx([probabilities[k] for k in order])
    assert refused(client, "tc", "fox", {"text_classification": {"classification_labels": ["a", "b"]}}) == (
        400, "status_exception", "The number of [classification_labels] the model is defined with [3] does not match "
                                 "the number in the update [2]")


def test_text_classification_with_more_labels_than_logits_fails(client: Any) -> None:
    deploy(client, "tc-short", probe("rows", table(VOCAB, 2, 0.3)), "text_classification", VOCAB,
           classification_labels=["neg", "pos", "mix"])
    assert refused(client, "tc-short", "fox") == (
        500, "status_exception", "Expected exactly [3] values in text classification result; got [2]")


def test_text_classification_of_a_windowed_text_reads_the_first_window(client: Any) -> None:
    """8 tokens at most, `span` 2: windows [0,6) and [4,9); TextClassificationProcessor reads r[0][0] only."""
    rows = table(VOCAB, 2, 0.45)
    deploy(client, "tc-span", probe("rows", rows), "text_classification", VOCAB, classification_labels=["a", "b"],
           tokenization={"do_lower_case": True, "max_sequence_length": 8, "truncate": "none", "span": 2})
    ids = bert_hf(VOCAB)("the quick brown fox jumps over")["input_ids"]
    probabilities = softmax([sum(rows[i][k] for i in ids) for k in range(2)])
    result = infer(client, "tc-span", "the quick brown fox jumps over the lazy dog")
    assert result["prediction_probability"] == pytest.approx(max(probabilities)) and "is_truncated" not in result


# --- ner --------------------------------------------------------------------------------------------------------------

NER_LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def _ner_rows() -> list[list[float]]:
    rows = [[3.0, 0.0, 0.0, 0.0, 0.0] for _ in VOCAB]
    rows[VOCAB.index("mountain")] = [0.0, 2.0, 0.5, 0.0, 0.0]
    rows[VOCAB.index("view")] = [0.0, 0.5, 2.5, 0.0, 0.0]
    rows[VOCAB.index("search")] = [0.0, 0.0, 0.0, 3.0, 0.0]
    rows[VOCAB.index("##ing")] = [2.0, 0.0, 0.0, 0.0, 0.0]
    rows[VOCAB.index("paris")] = [0.0, 1.5, 1.0, 0.0, 0.0]
    return rows


def test_ner_averages_a_words_pieces_and_groups_entities(client: Any) -> None:
    """NerProcessor: softmax per token, a word's pieces averaged (search + ##ing: B-PER wins on the average, 0.461,
    where `##ing` alone says O), entities run from a tag to the following inside tags of the same class; the entity
    text comes from the lower-cased input (do_lower_case), the annotation from the input as given."""
    rows = _ner_rows()
    deploy(client, "ner", probe("tokens", rows), "ner", VOCAB, classification_labels=NER_LABELS)
    text = "Hello Mountain View searching in Paris"
    result = infer(client, "ner", text)
    p = {word: softmax(rows[VOCAB.index(word)]) for word in ("mountain", "view", "search", "##ing", "paris")}
    searching = [(a + b) / 2 for a, b in zip(p["search"], p["##ing"], strict=True)]
    assert result == {
        "predicted_value": "Hello [Mountain View](LOC&Mountain+View) [searching](PER&searching) in [Paris](LOC&Paris)",
        "entities": [
            {"entity": "mountain view", "class_name": "LOC", "class_probability": pytest.approx(
                (p["mountain"][1] + p["view"][2]) / 2), "start_pos": 6, "end_pos": 19},
            {"entity": "searching", "class_name": "PER", "class_probability": pytest.approx(searching[3]),
             "start_pos": 20, "end_pos": 29},
            {"entity": "paris", "class_name": "LOC", "class_probability": pytest.approx(p["paris"][1]),
             "start_pos": 33, "end_pos": 38}]}
    assert searching[3] == pytest.approx(0.461, abs=1e-3)


def test_ner_results_field_override_and_an_answer_without_entities(client: Any) -> None:
    result = infer(client, "ner", "the lazy dog", {"ner": {"results_field": "tagged"}})
    assert result == {"tagged": "the lazy dog", "entities": []}


def test_ner_offsets_count_utf16_units_as_java_strings_do(client: Any) -> None:
    """Java string offsets: a character outside the BMP counts two."""
    result = infer(client, "ner", "\U0001F600 Paris")
    assert result["predicted_value"] == "\U0001F600 [Paris](LOC&Paris)"
    assert [(e["entity"], e["start_pos"], e["end_pos"]) for e in result["entities"]] == [("paris", 3, 8)]


# --- text_embedding, pass_through and the native result ---------------------------------------------------------------

def test_text_embedding_reads_r00_and_reports_truncation(client: Any) -> None:
    rows = table(VOCAB, 4, 0.61)
    deploy(client, "emb", probe("rows", rows), "text_embedding", VOCAB,
           tokenization={"do_lower_case": True, "max_sequence_length": 5})
    ids = bert_hf(VOCAB)("the quick brown fox jumps", truncation=True, max_length=5)["input_ids"]
    result = infer(client, "emb", "the quick brown fox jumps")
    assert result["predicted_value"] == pytest.approx([sum(rows[i][k] for i in ids) for k in range(4)], rel=1e-6)
    assert result["is_truncated"] is True
    assert "is_truncated" not in infer(client, "emb", "the fox")


def test_text_embedding_of_a_three_dimensional_output_is_the_first_token(client: Any) -> None:
    rows = table(VOCAB, 4, 0.29)
    deploy(client, "emb-tokens", probe("tokens", rows), "text_embedding", VOCAB)
    assert infer(client, "emb-tokens", "the fox")["predicted_value"] == pytest.approx(rows[VOCAB.index("[CLS]")])


def test_pass_through_answers_r0_a_row_per_token(client: Any) -> None:
    rows = table(VOCAB, 3, 0.83)
    deploy(client, "pt", probe("tokens", rows), "pass_through", VOCAB)
    ids = bert_hf(VOCAB)("lazy dogs")["input_ids"]
    result = infer(client, "pt", "lazy dogs")
    assert result["predicted_value"] == [pytest.approx(rows[i], rel=1e-6) for i in ids]


def test_an_update_for_another_task_is_refused(client: Any) -> None:
    assert refused(client, "emb", "the fox", {"fill_mask": {"num_top_classes": 2}}) == (
        400, "status_exception",
        "Inference config of type [text_embedding] can not be updated with a inference request of type [fill_mask]")
    assert infer(client, "emb", "the fox", {"text_embedding": {"results_field": "vector"}}).keys() == {"vector"}
