"""The answers a sample records are Elasticsearch's: its result processors' rules, checked on small logits whose
answers are worked out by hand here (softmax written out, words and offsets counted in the text)."""
from __future__ import annotations

import math

import pytest

from bundler.export import answers

LABELS = ["O", "B_PER", "I_PER", "B_LOC", "I_LOC"]


def probabilities(logits: list[float]) -> list[float]:
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


def test_classification_is_a_softmax_over_the_labels_best_first() -> None:
    got = answers.classification([1.0, 3.0, 2.0], ["neg", "pos", "neutral"])
    p = probabilities([1.0, 3.0, 2.0])
    assert got["predicted_value"] == "pos"
    assert [c["class_name"] for c in got["top_classes"]] == ["pos", "neutral", "neg"]
    assert got["prediction_probability"] == pytest.approx(p[1])
    assert got["top_classes"][2]["class_score"] == pytest.approx(p[0])


def test_zero_shot_takes_each_label_rows_entailment_logit_through_one_softmax() -> None:
    # classification_labels order decides where entailment sits: here the last of three logits.
    rows = [[0.0, 0.0, 2.0], [5.0, 0.0, 1.0]]
    got = answers.zero_shot(rows, ["sports", "politics"], ["contradiction", "neutral", "ENTAILMENT"])
    assert got["predicted_value"] == "sports"
    assert got["prediction_probability"] == pytest.approx(math.exp(2) / (math.exp(2) + math.exp(1)))


def words_of(text: str, cut: list[tuple[int, int]], *, prefix: int = 1, suffix: int = 1,
             second_start: int = 0) -> answers.Words:
    """Tokens: `prefix` tokens without a word (CLS, a question), one token per (word, piece) given, `suffix` SEP."""
    spans: dict[int, tuple[int, int]] = {}
    word_of_token: list[int | None] = [None] * prefix
    for word, (start, end) in enumerate(cut):
        spans[word] = (start, end)
        word_of_token.append(word)
    word_of_token += [None] * suffix
    return answers.Words(word_of_token, spans, second_start, len(word_of_token))


def test_ner_averages_pieces_and_groups_b_then_i_words_into_one_entity() -> None:
    text = "Jo Smith in Paris"
    # tokens: CLS, Jo, Smi, ##th, in, Paris, SEP (Smith is two pieces of one word)
    w = answers.Words([None, 0, 1, 1, 2, 3, None], {0: (0, 2), 1: (3, 8), 2: (9, 11), 3: (12, 17)}, 0, 7)
    smi = [0.0, 0.0, 4.0, 0.0, 0.0]  # I_PER, sure
    th = [1.0, 0.0, 0.0, 0.0, 0.0]  # O, unsure: averaged per word, I_PER still wins for "Smith"
    onehot = {tag: [6.0 if i == LABELS.index(tag) else 0.0 for i in range(5)] for tag in LABELS}
    rows = [onehot["O"], onehot["B_PER"], smi, th, onehot["O"], onehot["B_LOC"], onehot["O"]]
    got = answers.ner(rows, w, text, LABELS)
    assert [(e["entity"], e["class_name"], e["start_pos"], e["end_pos"]) for e in got["entities"]] == [
        ("Jo Smith", "PER", 0, 8), ("Paris", "LOC", 12, 17)]
    assert got["predicted_value"] == "[Jo Smith](PER&Jo+Smith) in [Paris](LOC&Paris)"
    p_jo = probabilities(onehot["B_PER"])[1]
    p_smith = (probabilities(smi)[2] + probabilities(th)[2]) / 2
    assert got["entities"][0]["class_probability"] == pytest.approx((p_jo + p_smith) / 2)


def test_ner_entity_spans_words_and_marks_spaces_with_plus() -> None:
    text = "Mary Ann Lee left"
    w = words_of(text, [(0, 4), (5, 8), (9, 12), (13, 17)])
    onehot = {tag: [5.0 if i == LABELS.index(tag) else 0.0 for i in range(5)] for tag in LABELS}
    rows = [onehot["O"], onehot["B_PER"], onehot["I_PER"], onehot["I_PER"], onehot["O"], onehot["O"]]
    got = answers.ner(rows, w, text, LABELS)
    assert [(e["entity"], e["start_pos"], e["end_pos"]) for e in got["entities"]] == [("Mary Ann Lee", 0, 12)]
    assert got["predicted_value"] == "[Mary Ann Lee](PER&Mary+Ann+Lee) left"


def test_an_i_tag_without_a_b_still_starts_an_entity_and_a_b_splits_one() -> None:
    text = "Rome Oslo"
    w = words_of(text, [(0, 4), (5, 9)])
    onehot = {tag: [5.0 if i == LABELS.index(tag) else 0.0 for i in range(5)] for tag in LABELS}
    rows = [onehot["O"], onehot["I_LOC"], onehot["B_LOC"], onehot["O"]]
    got = answers.ner(rows, w, text, LABELS)
    assert [e["entity"] for e in got["entities"]] == ["Rome", "Oslo"]


def test_question_answering_scores_start_times_end_over_the_context_only() -> None:
    context = "The fox jumps over the dog"
    words = [(0, 3), (4, 7), (8, 13), (14, 18), (19, 22), (23, 26)]
    # tokens: CLS, q1, q2, SEP, six context words, SEP -> context starts at token 4
    w = answers.Words([None, None, None, None, 0, 1, 2, 3, 4, 5, None], dict(enumerate(words)), 4, 11)
    start = [9.0, 9.0, 9.0, 9.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 9.0]  # question and final SEP are never answers
    end = [9.0, 9.0, 9.0, 9.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 9.0]
    got = answers.question_answering(start, end, w, context)
    assert (got["predicted_value"], got["start_offset"], got["end_offset"]) == ("fox jumps over", 4, 18)
    eligible_start = [9.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]  # CLS and the six context tokens share the softmax
    eligible_end = [9.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0]
    p_start = math.exp(3.0) / sum(math.exp(v) for v in eligible_start)
    p_end = math.exp(2.0) / sum(math.exp(v) for v in eligible_end)
    assert got["prediction_probability"] == pytest.approx(p_start * p_end, rel=1e-6)


def test_question_answering_keeps_answers_shorter_than_max_answer_length() -> None:
    context = "a b c d"
    w = words_of(context, [(0, 1), (2, 3), (4, 5), (6, 7)])
    start = [0.0, 5.0, 0.0, 0.0, 0.0, 0.0]
    end = [0.0, 0.0, 0.0, 0.0, 5.0, 0.0]
    assert answers.question_answering(start, end, w, context)["predicted_value"] == "a b c d"
    assert answers.question_answering(start, end, w, context, max_answer_length=2)["predicted_value"] != "a b c d"


def test_fill_mask_names_tokens_as_elasticsearch_decodes_them_and_fills_the_sequence() -> None:
    vocabulary = ["<pad>", "##ing", "paris", "\u0120london", "\u0120caf\u00c3\u00a9"]
    got = answers.fill_mask([0.0, 1.0, 4.0, 3.0, 2.0], vocabulary, "I love <mask>.", "<mask>", "roberta", top=3)
    assert got["predicted_value"] == "paris"
    assert got["predicted_value_sequence"] == "I love paris."
    # Byte-level BPE: the word-start mark is a space, trimmed; the bytes of "é" decode as UTF-8.
    assert [c["class_name"] for c in got["top_classes"]] == ["paris", "london", "caf\u00e9"]
    bert = answers.fill_mask([0.0, 9.0, 1.0, 1.0, 1.0], vocabulary, "[MASK]", "[MASK]", "bert", top=1)
    assert bert["predicted_value"] == "##ing"  # WordPiece entries as they are
    xlm = answers.fill_mask([0.0, 0.0, 0.0, 0.0, 0.0], ["\u2581rome"], "x", "x", "xlm_roberta", top=1)
    assert xlm["predicted_value"] == "rome"
    assert got["prediction_probability"] == pytest.approx(probabilities([0.0, 1.0, 4.0, 3.0, 2.0])[2])
