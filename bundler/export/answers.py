"""What Elasticsearch answers for one document, computed from the traced module's raw output the way its result
processors do (x-pack/plugin/ml/.../inference/nlp/*Processor.java): the expectations a sample records.

Pure functions over lists of floats, so the arithmetic is the cluster's (doubles, softmax per row) and not a
model's own post-processing. Word spans follow Elasticsearch's tokenizers: every WordPiece of a word carries the
offsets of the whole word, so entities and answers always cover whole words.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FILL_MASK_TOP = 5  # FillMaskConfig's default num_top_classes
MAX_ANSWER_LENGTH = 15  # QuestionAnsweringConfig's default max_answer_length
_OUTSIDE = -10000.0  # QuestionAnsweringProcessor.topScores: the logit given to positions that cannot answer


@dataclass(frozen=True)
class Words:
    """One tokenized input as Elasticsearch sees it: per token, its word (None for special tokens and the first
    sequence of a pair) and the character span of that word in the text it came from."""

    word_of_token: list[int | None]
    span_of_word: dict[int, tuple[int, int]]
    second_start: int  # first token of the second sequence (question answering's context); 0 for one sequence
    length: int  # real tokens, padding excluded


def softmax(values: Sequence[float]) -> list[float]:
    peak = max(values)
    exps = [math.exp(v - peak) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _ranked(labels: Sequence[str], probabilities: Sequence[float]) -> list[dict[str, Any]]:
    order = sorted(range(len(labels)), key=lambda i: -probabilities[i])
    return [{"class_name": labels[i], "class_probability": probabilities[i], "class_score": probabilities[i]}
            for i in order]


def classification(logits: Sequence[float], labels: Sequence[str]) -> dict[str, Any]:
    """TextClassificationProcessor: softmax over the labels; the best label and its probability."""
    ranked = _ranked(labels, softmax(logits))
    return {"predicted_value": ranked[0]["class_name"], "top_classes": ranked,
            "prediction_probability": ranked[0]["class_probability"]}


def zero_shot(rows: Sequence[Sequence[float]], candidate_labels: Sequence[str],
              classification_labels: Sequence[str]) -> dict[str, Any]:
    """ZeroShotClassificationProcessor, multi_label false: one (text, hypothesis) row per candidate label; the
    entailment logits of all rows go through one softmax."""
    entailment = [label.lower() for label in classification_labels].index("entailment")
    return classification([row[entailment] for row in rows], candidate_labels)


def question_answering(start: Sequence[float], end: Sequence[float], words: Words, context: str,
                       max_answer_length: int = MAX_ANSWER_LENGTH) -> dict[str, Any]:
    """QuestionAnsweringProcessor.topScores for one span: softmax over CLS and the context tokens (the final
    separator excluded), CLS then dropped; the best start x end product with end - start < max_answer_length."""
    def eligible(i: int) -> bool:
        return i == 0 or words.second_start <= i < words.length - 1

    starts = softmax([v if eligible(i) else _OUTSIDE for i, v in enumerate(start)])
    ends = softmax([v if eligible(i) else _OUTSIDE for i, v in enumerate(end)])
    starts[0] = ends[0] = 0.0
    best, best_i, best_j = 0.0, words.second_start, words.second_start
    for i in range(words.second_start, words.length):
        for j in range(i, min(i + max_answer_length, words.length)):
            if starts[i] * ends[j] > best:
                best, best_i, best_j = starts[i] * ends[j], i, j
    first, last = words.word_of_token[best_i], words.word_of_token[best_j]
    if first is None or last is None:
        return {"prediction_probability": best}
    start_offset, end_offset = words.span_of_word[first][0], words.span_of_word[last][1]
    return {"predicted_value": context[start_offset:end_offset], "start_offset": start_offset,
            "end_offset": end_offset, "prediction_probability": best}


def _tagged_words(rows: Sequence[Sequence[float]], words: Words) -> list[tuple[int, int, float]]:
    """NerProcessor.tagTokens: softmax per token, averaged over a word's tokens; (word, best tag, its score)."""
    tagged: list[tuple[int, int, float]] = []
    index = 0
    while index < words.length:
        word = words.word_of_token[index]
        if word is None:
            index += 1
            continue
        block = [softmax(rows[index])]
        while index + 1 < words.length and words.word_of_token[index + 1] == word:
            index += 1
            block.append(softmax(rows[index]))
        averaged = [sum(column) / len(block) for column in zip(*block, strict=True)]
        best = max(range(len(averaged)), key=lambda k: (averaged[k], -k))
        tagged.append((word, best, averaged[best]))
        index += 1
    return tagged


def ner(rows: Sequence[Sequence[float]], words: Words, text: str, labels: Sequence[str],
        lower_case: bool = False) -> dict[str, Any]:
    """NerProcessor.groupTaggedTokens: an entity starts at any non-O word and runs over following words of the
    same entity that do not begin one (`B_`); its score is the mean of its words'; its class the tag's entity,
    upper-cased; its text cut from the input, lower-cased when the tokenization lower-cases."""
    tagged = _tagged_words(rows, words)
    seen = text.lower() if lower_case else text
    labels = [label.upper() for label in labels]
    entities: list[dict[str, Any]] = []
    position = 0
    while position < len(tagged):
        word, tag, score = tagged[position]
        entity = labels[tag].partition("_")[2]
        if not entity:
            position += 1
            continue
        scores, last = [score], word
        position += 1
        while position < len(tagged):
            next_word, next_tag, next_score = tagged[position]
            next_prefix, _, next_entity = labels[next_tag].partition("_")
            if next_prefix == "B" or next_entity != entity:
                break
            scores.append(next_score)
            last = next_word
            position += 1
        start, end = words.span_of_word[word][0], words.span_of_word[last][1]
        entities.append({"entity": seen[start:end], "class_name": entity,
                         "class_probability": sum(scores) / len(scores), "start_pos": start, "end_pos": end})
    return {"predicted_value": _annotated(text, entities), "entities": entities}


def _annotated(text: str, entities: Sequence[dict[str, Any]]) -> str:
    """NerProcessor.buildAnnotatedText: `[entity](CLASS&entity+with+plus)` in place of each entity."""
    pieces, cursor = [], 0
    for entity in entities:
        start, end = entity["start_pos"], entity["end_pos"]
        seq = text[start:end]
        pieces += [text[cursor:start], f"[{seq}]({entity['class_name']}&{seq.replace(' ', '+')})"]
        cursor = end
    return "".join(pieces) + text[cursor:]


def fill_mask(row: Sequence[float], vocabulary: Sequence[str], text: str, mask: str, family: str,
              top: int = FILL_MASK_TOP) -> dict[str, Any]:
    """FillMaskProcessor: softmax over the vocabulary at the mask's position; the best tokens, decoded as the
    family's TokenizationResult.decode does."""
    probabilities = softmax(row)
    order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:max(top, 1)]
    best = decode(vocabulary[order[0]], family)
    return {"predicted_value": best, "predicted_value_sequence": text.replace(mask, best),
            "top_classes": [{"class_name": decode(vocabulary[i], family), "class_probability": probabilities[i],
                             "class_score": probabilities[i]} for i in order],
            "prediction_probability": probabilities[order[0]]}


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: byte-level BPE writes every byte as a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_BYTES = _byte_decoder()


def decode(token: str, family: str) -> str:
    """A vocabulary entry as Elasticsearch names it in fill_mask answers: WordPiece entries as they are (`##s`
    too), byte-level BPE entries as their bytes' text, trimmed; sentencepiece entries of xlm_roberta without the
    word-start mark."""
    if family == "roberta":
        raw = bytes(_BYTES.get(c, 0) for c in token)
        return raw.decode("utf-8", errors="replace").strip()
    if family == "xlm_roberta":
        return token.removeprefix("\u2581")
    return token
