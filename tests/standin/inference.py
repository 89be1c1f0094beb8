"""`_infer` on a started deployment: run the module, shape the result as Elasticsearch does.

Owns the per-task post-processing: text_embedding (the vector), text_classification (label,
probability, top classes), ner (entities and annotated text), fill_mask (best token and top
classes) and pass_through (the first output as is). The module's first output is the one read,
as the native process reads it.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote_plus

from . import errors
from .tokenize import Encoding, TextTokenizer


def _first_output(output: Any) -> Any:
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _top_classes(names: list[str], probabilities: list[float], wanted: int) -> list[dict[str, Any]]:
    order = sorted(range(len(names)), key=lambda i: -probabilities[i])
    if wanted >= 0:
        order = order[:wanted]
    return [
        {"class_name": names[i], "class_probability": probabilities[i], "class_score": probabilities[i]}
        for i in order
    ]


def run(module: Any, tokenizer: TextTokenizer, task: str, settings: dict[str, Any], text: str) -> dict[str, Any]:
    """One document's result object."""
    import torch

    if task == "fill_mask":
        _check_mask(text, tokenizer.mask_token)
    encoding = tokenizer.encode(text)
    with torch.no_grad():
        output = _first_output(module(*tokenizer.inputs(encoding)))
    field = settings.get("results_field", "predicted_value")
    if task == "text_embedding":
        result: dict[str, Any] = {field: [float(v) for v in output[0].tolist()]}
    elif task == "pass_through":
        result = {field: output.tolist()}
    elif task == "text_classification":
        result = _classification(output[0].tolist(), settings, field)
    elif task == "ner":
        result = _ner(output[0].tolist(), encoding, text, settings, field)
    elif task == "fill_mask":
        result = _fill_mask(output[0].tolist(), encoding, tokenizer, text, settings, field)
    else:
        raise errors.not_emulated(f"inference for task [{task}]")
    if encoding.truncated:
        result["is_truncated"] = True
    return result


def _classification(logits: list[float], settings: dict[str, Any], field: str) -> dict[str, Any]:
    labels = settings.get("classification_labels") or [str(i) for i in range(len(logits))]
    probabilities = _softmax(logits)
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    result: dict[str, Any] = {field: labels[best]}
    wanted = int(settings.get("num_top_classes", 0))
    if wanted != 0:
        result["top_classes"] = _top_classes(labels, probabilities, wanted)
    result["prediction_probability"] = probabilities[best]
    return result


def _ner(logits: list[list[float]], encoding: Encoding, text: str, settings: dict[str, Any],
         field: str) -> dict[str, Any]:
    labels = [label.replace("-", "_") for label in settings.get("classification_labels") or []]
    # One tag per word, taken from the word's first sub-token (special tokens carry no word).
    words: dict[int, tuple[str, float, int, int]] = {}
    for index, word in enumerate(encoding.word_ids):
        if word is None or encoding.special[index]:
            continue
        start, end = encoding.offsets[index]
        probabilities = _softmax(logits[index])
        best = max(range(len(probabilities)), key=lambda i: probabilities[i])
        if word in words:
            tag, score, first_start, _ = words[word]
            words[word] = (tag, score, first_start, end)
        else:
            words[word] = (labels[best] if best < len(labels) else "O", probabilities[best], start, end)
    entities: list[dict[str, Any]] = []
    scores: list[list[float]] = []
    for tag, score, start, end in (words[w] for w in sorted(words)):
        prefix, _, entity_class = tag.partition("_")
        if tag == "O" or not entity_class:
            continue
        if prefix == "I" and entities and entities[-1]["class_name"] == entity_class:
            entities[-1]["end_pos"] = end
            scores[-1].append(score)
            continue
        entities.append({"entity": "", "class_name": entity_class, "class_probability": 0.0,
                         "start_pos": start, "end_pos": end})
        scores.append([score])
    annotated, cursor = [], 0
    for entity, entity_scores in zip(entities, scores, strict=True):
        entity["entity"] = text[entity["start_pos"]:entity["end_pos"]]
        entity["class_probability"] = sum(entity_scores) / len(entity_scores)
        annotated.append(text[cursor:entity["start_pos"]])
        annotated.append(f"[{entity['entity']}]({entity['class_name']}&{quote_plus(entity['entity'])})")
        cursor = entity["end_pos"]
    annotated.append(text[cursor:])
    return {field: "".join(annotated), "entities": entities}


def _check_mask(text: str, mask: str) -> None:
    """FillMaskProcessor.validateInputs, on the text before tokenization."""
    first = text.find(mask)
    if first < 0:
        raise errors.EsError(400, "validation_exception",
                             f"Validation Failed: 1: no {mask} token could be found in the input;")
    if text.find(mask, first + len(mask)) > 0:
        raise errors.bad_request(f"only one {mask} token should exist in the input")


def _fill_mask(logits: list[list[float]], encoding: Encoding, tokenizer: TextTokenizer, text: str,
               settings: dict[str, Any], field: str) -> dict[str, Any]:
    mask_id = tokenizer.token_id(tokenizer.mask_token)
    positions = [i for i, token_id in enumerate(encoding.ids) if token_id == mask_id]
    if not positions:  # FillMaskProcessor.processResult: the text had the mask, the tokenization lost it
        raise errors.server_error(f"mask token id [{mask_id}] not found in the tokenization")
    probabilities = _softmax(logits[positions[0]])
    top = _top_classes(tokenizer.vocab, probabilities, int(settings.get("num_top_classes", 5)) or 1)
    best = top[0]["class_name"]
    result: dict[str, Any] = {field: text.replace(tokenizer.mask_token, best, 1), "token": best}
    result["top_classes"] = top
    return result
