"""`_infer` on a started deployment: apply the request's config update, build the request's rows, run the module
as the native process does, and shape the answer as Elasticsearch's result processors and result classes do.

Owns the nine NLP tasks (README "Inference answers" names each one's sources): text_embedding, pass_through,
text_classification, ner, fill_mask, text_expansion, text_similarity, zero_shot_classification and
question_answering, the native result every processor reads (`r`, a double[][][]: each row of the request run on
its own, the first element of a tuple output taken, the rows concatenated on the first dimension, a 2-D result
wrapped in one more array), the per-request config update (InferenceConfig.apply) and `is_truncated`.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import EsError
from .tokenize import Encoding, TextTokenizer

DEFAULT_FIELD = "predicted_value"  # InferenceConfig.DEFAULT_RESULTS_FIELD
# NerProcessor.DEFAULT_IOB_TAGS
_NER_DEFAULT = ("O", "B_MISC", "I_MISC", "B_PER", "I_PER", "B_ORG", "I_ORG", "B_LOC", "I_LOC")
_QA_OUTSIDE = -10000.0  # QuestionAnsweringProcessor.topScores: the logit of positions that cannot answer
# The fields each task's config update may change (besides `tokenization`'s truncate and span).
_UPDATABLE = {
    "fill_mask": ("num_top_classes", "results_field"),
    "ner": ("results_field",),
    "pass_through": ("results_field",),
    "question_answering": ("question", "num_top_classes", "max_answer_length", "results_field"),
    "text_classification": ("num_top_classes", "results_field", "classification_labels"),
    "text_embedding": ("results_field",),
    "text_expansion": ("results_field",),
    "text_similarity": ("text", "results_field", "span_score_combination_function"),
    "zero_shot_classification": ("labels", "multi_label", "results_field"),
}


class Native:
    """pytorch_inference's infer() and CResultWriter: each row of the request through `forward` on its own (a
    `[1, seq]` input per argument), the first element of a tuple output, the rows concatenated on dimension 0;
    only 2-D and 3-D float32, float64 or bfloat16 results are written."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, *inputs: Any) -> Any:
        import torch

        outputs = []
        try:
            with torch.inference_mode():
                for row in range(inputs[0].shape[0]):
                    output = self.module(*(tensor[row:row + 1] for tensor in inputs))
                    outputs.append(output[0] if isinstance(output, tuple) else output)
                result = torch.cat(outputs, 0)
        except Exception as exc:  # c10::Error and std::runtime_error end up in the process's error result
            raise _native_error(str(exc).strip()) from exc
        if result.dim() not in (2, 3):
            raise _native_error(f"Cannot convert results tensor of size [{list(result.shape)}]")
        if result.dtype == torch.bfloat16:
            return result.to(torch.float32)
        if result.dtype not in (torch.float32, torch.float64):
            raise _native_error(f"Cannot process result tensor of type [{str(result.dtype).removeprefix('torch.')}]")
        return result


def _native_error(message: str) -> EsError:
    return errors.server_error(f"Error in inference process: [{message}]")


def native_result(output: Any) -> list[Any]:
    """The double[][][] Elasticsearch parses: a 2-D result wrapped in one more array."""
    values = output.tolist()
    return [values] if output.dim() == 2 else values


def run(module: Any, tokenizer: TextTokenizer, task: str, settings: dict[str, Any], text: str,
        update: tuple[str, Any] | None = None) -> dict[str, Any]:
    """One document's result object. `module` is called once per document with the request's rows."""
    config = apply_update(task, settings, update)
    if task == "fill_mask":
        _check_mask(text, tokenizer.mask_token)
    rows = _request(task, config, tokenizer, text)
    r = native_result(module(*tokenizer.batch(rows)))
    result = _PROCESSORS[task](r, rows, tokenizer, config)
    if any(row.truncated for row in rows):  # NlpInferenceResults: written only when true
        result["is_truncated"] = True
    return result


# --- the config update -----------------------------------------------------------------------------------------

def apply_update(task: str, settings: dict[str, Any], update: tuple[str, Any] | None) -> dict[str, Any]:
    """InferenceConfig.apply(update): the stored task config with the request's `inference_config` over it."""
    config = dict(settings)
    if update is None:
        return config
    name, fields = update
    if name != task:
        raise errors.bad_request(f"Inference config of type [{task}] can not be updated with a inference request of "
                                 f"type [{name}]")
    fields = fields if isinstance(fields, dict) else {}
    labels = fields.get("classification_labels")
    if task == "text_classification" and labels is not None and len(labels) != len(settings["classification_labels"]):
        raise errors.bad_request(f"The number of [classification_labels] the model is defined with "
                                 f"[{len(settings['classification_labels'])}] does not match the number in the update "
                                 f"[{len(labels)}]")
    config.update({key: fields[key] for key in _UPDATABLE[task] if key in fields})
    tokenization = fields.get("tokenization")
    if isinstance(tokenization, dict) and tokenization:
        kind, options = next(iter(config["tokenization"].items()))
        changes = next(iter(tokenization.values()))
        changes = {k: v for k, v in (changes or {}).items() if k in ("truncate", "span")}
        config["tokenization"] = {kind: {**options, **changes}}
    if task == "zero_shot_classification" and not fields.get("labels"):
        if not settings.get("labels"):
            raise errors.bad_request("stored configuration has no [labels] defined, supplied inference_config update "
                                     "must supply [labels]")
        config["labels"] = settings["labels"]
    if task == "question_answering":  # QuestionAnsweringConfig's constructor
        top, length = int(config.get("num_top_classes", 0)), int(config.get("max_answer_length", 15))
        if top < 0:
            raise errors.bad_request(f"[num_top_classes] must be greater than or equal to [0]; provided [{top}]")
        if length <= 0:
            raise errors.bad_request(f"[max_answer_length] must be greater than [0]; provided [{length}]")
    return config


def _window_settings(config: dict[str, Any]) -> tuple[str, int]:
    options = next(iter(config["tokenization"].values()))
    return str(options.get("truncate", "first")).lower(), int(options.get("span", -1))


def _field(config: dict[str, Any]) -> str:
    return config.get("results_field") or DEFAULT_FIELD


# --- the request ---------------------------------------------------------------------------------------------

def _request(task: str, config: dict[str, Any], tokenizer: TextTokenizer, text: str) -> list[Encoding]:
    """Each processor's RequestBuilder: the rows sent to the native process for one document."""
    truncate, span = _window_settings(config)
    if task == "question_answering":
        if config.get("question") is None:
            raise errors.bad_request(
                "please provide configuration update for question_answering task including the desired [question]")
        return tokenizer.pair_windows(str(config["question"]), text, truncate, span)
    if task == "text_similarity":
        if config.get("text") is None:
            raise errors.bad_request(
                "please provide configuration update for text_similarity task including the desired [text]")
        return tokenizer.pair_windows(str(config["text"]), text, truncate, span)
    if task == "zero_shot_classification":
        labels = config.get("labels") or []
        if not labels:
            raise errors.bad_request("zero_shot_classification requires non-empty [labels]")
        if span > -1:
            raise errors.bad_request("Unable to span zero-shot classification on long text input")
        template = config.get("hypothesis_template", "This example is {}.")
        return [tokenizer.pair(text, hypothesis(template, str(label)), truncate) for label in labels]
    return tokenizer.windows(text, truncate, span)


def hypothesis(template: str, label: str) -> str:
    """LoggerMessageFormat.format(null, template, label): the first unescaped `{}` becomes the label."""
    consumed = 0
    out: list[str] = []
    while True:
        at = template.find("{}", consumed)
        if at < 0:
            return template if consumed == 0 else "".join(out) + template[consumed:]
        escaped = at > 0 and template[at - 1] == "\\"
        if escaped and not (at > 1 and template[at - 2] == "\\"):
            out.append(template[consumed:at - 1] + "{")  # `\{}`: a literal `{`; the argument waits for the next
            consumed = at + 1
            continue
        out.append(template[consumed:at - 1 if escaped else at] + label)
        return "".join(out) + template[at + 2:]


# --- one-row tasks -------------------------------------------------------------------------------------------

def _text_embedding(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
                    config: dict[str, Any]) -> dict[str, Any]:
    """TextEmbeddingProcessor: r[0][0]."""
    return {_field(config): [float(v) for v in r[0][0]]}


def _pass_through(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
                  config: dict[str, Any]) -> dict[str, Any]:
    """PassThroughProcessor: r[0], as is."""
    return {_field(config): r[0]}


def _text_classification(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
                         config: dict[str, Any]) -> dict[str, Any]:
    """TextClassificationProcessor: softmax over r[0][0]; negative num_top_classes means every label."""
    labels = list(config.get("classification_labels") or [])
    if len(r[0][0]) != len(labels):
        raise errors.server_error(f"Expected exactly [{len(labels)}] values in text classification result; got "
                                  f"[{len(r[0][0])}]")
    probabilities = softmax(r[0][0])
    order = _descending(probabilities)
    top = int(config.get("num_top_classes", 0))
    top = len(labels) if top < 0 else top
    return _classified(labels, probabilities, order[:top], order[0], config)


def _classified(labels: list[Any], probabilities: list[float], shown: list[int], best: int,
                config: dict[str, Any]) -> dict[str, Any]:
    """NlpClassificationInferenceResults: the label, `top_classes` when not empty, `prediction_probability`."""
    result: dict[str, Any] = {_field(config): labels[best]}
    if shown:
        result["top_classes"] = [{"class_name": labels[i], "class_probability": probabilities[i],
                                  "class_score": probabilities[i]} for i in shown]
    result["prediction_probability"] = probabilities[best]
    return result


def _zero_shot(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
               config: dict[str, Any]) -> dict[str, Any]:
    """ZeroShotClassificationProcessor: one row of 3 logits per label; entailment and contradiction positions from
    classification_labels; multi_label: softmax of (entailment, contradiction) per label, else one softmax over
    the labels' entailment logits. Every label is shown, best first."""
    labels = list(config["labels"])
    lowered = [str(label).lower() for label in config["classification_labels"]]
    entailment, contradiction = lowered.index("entailment"), lowered.index("contradiction")
    if len(r) < 1:
        raise errors.server_error("Zero shot classification result has no data")
    if len(r[0]) != len(labels):
        raise errors.server_error(f"Expected exactly [{len(labels)}] values in zero shot classification result; got "
                                  f"[{len(r)}]")
    for values in r[0]:
        if len(values) != 3:
            raise errors.server_error(f"Expected exactly [3] values in inner zero shot classification result; got "
                                      f"[{len(values)}]")
    if config.get("multi_label"):
        scores = [softmax([v[entailment], v[contradiction]])[0] for v in r[0]]
    else:
        scores = softmax([v[entailment] for v in r[0]])
    order = _descending(scores)
    return _classified(labels, scores, order, order[0], config)


def _text_similarity(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
                     config: dict[str, Any]) -> dict[str, Any]:
    """TextSimilarityProcessor: one value per window, the raw score; windows combined by max (default) or mean."""
    if len(r) < 1:
        raise errors.server_error("text_similarity result has no data")
    scores = []
    for values in r[0]:
        if len(values) != 1:
            raise errors.server_error(f"Expected exactly [1] value in text_similarity result; got [{len(values)}]")
        scores.append(values[0])
    if str(config.get("span_score_combination_function", "max")).lower() == "mean":
        score = _jsum(scores) / len(scores) if scores else math.nan
    else:
        score = max(scores, default=-math.inf)
    return {_field(config): score}


def _text_expansion(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
                    config: dict[str, Any]) -> dict[str, Any]:
    """TextExpansionProcessor: r[0][0] holds one weight per vocabulary id; weights above 0 kept as floats, sorted
    high first (a stable sort: ties keep vocabulary order); a `.` in a token name is written `__`."""
    vocab = tokenizer.vocab
    weights = []
    for i, value in enumerate(r[0][0]):
        if value > 0.0:
            if i >= len(vocab):  # TokenizationResult.getFromVocab: List.get past the vocabulary's end
                raise EsError(500, "index_out_of_bounds_exception", f"Index {i} out of bounds for length {len(vocab)}")
            weights.append((vocab[i].replace(".", "__"), _float32(value)))
    weights.sort(key=lambda item: -item[1])
    return {_field(config): {token: _java_float(weight) for token, weight in weights}}


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0]) if math.isfinite(value) else value


def _java_float(value: float) -> float:
    """Float.toString through the JSON writer: the shortest decimal that reads back as the same float."""
    if not math.isfinite(value):
        return value
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if _float32(float(text)) == value:
            return float(text)
    return value


# --- fill_mask -------------------------------------------------------------------------------------------------

def _check_mask(text: str, mask: str) -> None:
    """FillMaskProcessor.validateInputs, on the text before tokenization."""
    first = text.find(mask)
    if first < 0:
        raise EsError(400, "validation_exception",
                      f"Validation Failed: 1: no {mask} token could be found in the input;")
    if text.find(mask, first + len(mask)) > 0:
        raise errors.bad_request(f"only one {mask} token should exist in the input")


def _fill_mask(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
               config: dict[str, Any]) -> dict[str, Any]:
    """FillMaskProcessor: softmax over r[0][mask position]; the top tokens decoded as the tokenizer's result decodes
    them; num_top_classes -1 is the whole vocabulary and 0 no `top_classes` (the best token is still answered)."""
    mask_id = tokenizer.token_id(tokenizer.mask_token)
    if mask_id is None:
        raise errors.conflict(f"The token id for the mask token {tokenizer.mask_token} is not known in the tokenizer. "
                              "Check the vocabulary contains the mask token")
    if mask_id not in rows[0].ids:  # the text had the mask, the tokenization lost it
        raise errors.server_error(f"mask token id [{mask_id}] not found in the tokenization")
    probabilities = softmax(r[0][rows[0].ids.index(mask_id)])
    wanted = int(config.get("num_top_classes", 5))
    top = top_k(len(probabilities) if wanted == -1 else max(wanted, 1), probabilities)
    best = decode(tokenizer.kind, tokenizer.vocab[top[0]])
    field = _field(config)
    result: dict[str, Any] = {field: best}
    if wanted != 0:
        result["top_classes"] = [{"class_name": decode(tokenizer.kind, tokenizer.vocab[i]),
                                  "class_probability": probabilities[i], "class_score": probabilities[i]} for i in top]
    result["prediction_probability"] = probabilities[top[0]]
    result[field + "_sequence"] = rows[0].texts[0].replace(tokenizer.mask_token, best)
    return result


def decode(kind: str, token: str) -> str:
    """TokenizationResult.decode: as is for WordPiece and DeBERTa (`##` stays); roberta maps the byte-level
    characters back to UTF-8 bytes and trims; xlm_roberta drops a leading `▁`."""
    if kind == "xlm_roberta":
        return token.removeprefix("▁")
    if kind != "roberta":
        return token
    table = _byte_decoder()
    if any(char not in table for char in token):
        raise EsError(500, "null_pointer_exception", "a character of the token has no byte in the byte decoder")
    return bytes(table[char] for char in token).decode("utf-8", errors="replace").strip(_JAVA_TRIM)


_JAVA_TRIM = "".join(chr(c) for c in range(33))  # String.trim(): every char up to U+0020


def _byte_decoder() -> dict[str, int]:
    """BpeTokenizer.byteEncoder, reversed: the printable bytes stand for themselves, the others for 256 + n."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


# --- ner -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tagged:
    offsets: tuple[int, int]
    tag: str
    score: float


def _ner(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer, config: dict[str, Any]) -> dict[str, Any]:
    """NerProcessor: softmax per token; a word's tokens (one position) averaged; the best tag per word; entities
    from a tag's start to the last following token of the same entity that is not a beginning."""
    labels = list(config.get("classification_labels") or _NER_DEFAULT)
    row = rows[0]
    scores = [softmax(values) for values in r[0]]
    tagged = _tag_words(row, scores, labels)
    text = row.texts[0]
    lower_case = bool(next(iter(config["tokenization"].values())).get("do_lower_case", False))
    source = text.lower() if lower_case else text
    entities: list[dict[str, Any]] = []
    index = 0
    while index < len(tagged):
        first = tagged[index]
        if first.tag in ("O", "o"):
            index += 1
            continue
        end = index + 1
        while end < len(tagged) and _continues(tagged[end].tag, first.tag):
            end += 1
        start_pos, end_pos = first.offsets[0], tagged[end - 1].offsets[1]
        entities.append({"entity": source[start_pos:end_pos], "class_name": _entity(first.tag),
                         "class_probability": _jsum(t.score for t in tagged[index:end]) / (end - index),
                         "start_pos": start_pos, "end_pos": end_pos})
        index = end
    annotated = _annotated(text, entities)
    for entity in entities:
        entity["start_pos"], entity["end_pos"] = _utf16(text, entity["start_pos"]), _utf16(text, entity["end_pos"])
    return {_field(config): annotated, "entities": entities}


def _continues(tag: str, first: str) -> bool:
    """A later word stays in the entity unless its tag is a beginning (`B`/`b`) or names another entity."""
    return tag[:1] not in ("B", "b") and _entity(tag) == _entity(first)


def _entity(tag: str) -> str:
    upper = tag.upper()
    return upper[2:] if upper[:2] in ("B-", "I-", "B_", "I_") else upper


def _tag_words(row: Encoding, scores: list[list[float]], labels: list[str]) -> list[_Tagged]:
    """NerResultProcessor.tagTokens: special tokens skipped; each word's scores averaged over its tokens."""
    tagged: list[_Tagged] = []
    specials = start = 0
    positions = row.word_ids
    while start < len(row.ids):
        if positions[start] is None:
            start, specials = start + 1, specials + 1
            continue
        end = start
        while end < len(positions) - 1 and positions[end + 1] == positions[start]:
            end += 1
        average = (list(scores[start]) + [0.0] * len(labels))[:len(labels)]  # Arrays.copyOf
        for other in scores[start + 1:end + 1]:
            if len(other) > len(labels):
                raise EsError(500, "array_index_out_of_bounds_exception",
                              f"Index {len(labels)} out of bounds for length {len(labels)}")
            average = [a + (other[j] if j < len(other) else 0.0) for j, a in enumerate(average)]
        if end > start:
            average = [a / (end - start + 1) for a in average]
        best = max(range(len(average)), key=lambda i: (average[i], -i))
        tagged.append(_Tagged(row.sequences[0][start - specials], labels[best], average[best]))
        start = end + 1
    return tagged


def _annotated(text: str, entities: list[dict[str, Any]]) -> str:
    """NerProcessor.buildAnnotatedText: `[entity](CLASS&entity)`, spaces in the second copy written `+`."""
    pieces, cursor = [], 0
    for entity in entities:
        seq = text[entity["start_pos"]:entity["end_pos"]]
        pieces += [text[cursor:entity["start_pos"]], f"[{seq}]({entity['class_name']}&{seq.replace(' ', '+')})"]
        cursor = entity["end_pos"]
    return "".join(pieces) + text[cursor:]


def _utf16(text: str, offset: int) -> int:
    """A code point offset as Java's (UTF-16) string offset."""
    return offset + sum(1 for char in text[:offset] if ord(char) > 0xFFFF)


# --- question_answering ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    score: float
    window: int


def _question_answering(r: list[Any], rows: list[Encoding], tokenizer: TextTokenizer,
                        config: dict[str, Any]) -> dict[str, Any]:
    """QuestionAnsweringProcessor: r[2s] and r[2s+1] are window s's start and end logits; the best answers over
    every window (max_answer_length tokens at most), their text and offsets in the document text."""
    if len(r) < 1:
        raise errors.server_error("question answering result has no data")
    if len(r) % 2:
        raise errors.server_error("question answering result has invalid dimension, number of dimensions must be a "
                                  f"multiple of 2 found [{len(r)}]")
    top = int(config.get("num_top_classes", 0))
    gather = max(top, 1)
    if len(r) // 2 != len(rows):
        raise errors.server_error("question answering result has invalid dimensions; the number of spans "
                                  f"[{len(r) // 2}] does not match batched token size [{len(rows)}]")
    queue = LuceneQueue(gather)
    for index, row in enumerate(rows):
        starts, ends = r[2 * index], r[2 * index + 1]
        if len(starts) != len(ends):
            raise errors.server_error("question answering result has invalid dimensions; start positions "
                                      f"[{len(starts)}] must equal potential end [{len(ends)}]")
        _top_scores(starts[0], ends[0], gather, queue, row.pair_offset, len(row.ids),
                    int(config.get("max_answer_length", 15)), index)
    answers: list[dict[str, Any]] = [{}] * gather
    for slot in range(gather - 1, -1, -1):
        answers[slot] = _answer(queue.pop(), rows)
    result = {_field(config): answers[0]["answer"], "start_offset": answers[0]["start_offset"],
              "end_offset": answers[0]["end_offset"]}
    if top > 0:
        result["top_classes"] = answers
    result["prediction_probability"] = answers[0]["score"]
    return result


def _answer(span: _Span | None, rows: list[Encoding]) -> dict[str, Any]:
    if span is None:
        raise EsError(500, "null_pointer_exception", 'Cannot invoke "org.elasticsearch.xpack.ml.inference.nlp.'
                      'QuestionAnsweringProcessor$ScoreAndIndices.spanIndex()" because "scoreAndIndices" is null')
    row = rows[span.window]
    tokens, context = row.sequences[1], row.texts[1]
    for index in (span.start, span.end):
        if not 0 <= index < len(tokens):
            raise EsError(500, "index_out_of_bounds_exception", f"Index {index} out of bounds for length {len(tokens)}")
    start, end = tokens[span.start][0], tokens[span.end][1]
    return {"answer": context[start:end], "start_offset": _utf16(context, start), "end_offset": _utf16(context, end),
            "score": span.score}


def _top_scores(start: list[float], end: list[float], gather: int, queue: LuceneQueue, second: int, size: int,
                max_length: int, window: int) -> None:
    """QuestionAnsweringProcessor.topScores: softmax over CLS and the context (the final separator and padding
    excluded), CLS then zeroed; one best span per window, or every span when more answers are wanted."""
    if len(start) != len(end):
        raise errors.server_error("question answering result has invalid dimensions; possible start tokens "
                                  f"[{len(start)}] must equal possible end tokens [{len(end)}]")

    def keep(i: int) -> bool:
        return i == 0 or second <= i < size - 1

    starts = _normalize([v if keep(i) else _QA_OUTSIDE for i, v in enumerate(start)])
    ends = _normalize([v if keep(i) else _QA_OUTSIDE for i, v in enumerate(end)])
    starts[0] = ends[0] = 0.0
    if gather == 1:
        best, chosen = 0.0, _Span(0, 0, 0.0, window)
        for i in range(second, size):
            if starts[i] == 0:
                continue
            for j in range(i, min(max_length + i, size)):
                if starts[i] * ends[j] > best:
                    best, chosen = starts[i] * ends[j], _Span(i - second, j - second, starts[i] * ends[j], window)
        queue.insert_with_overflow(chosen)
        return
    for i in range(second, size):
        for j in range(i, min(max_length + i, size)):
            queue.insert_with_overflow(_Span(i - second, j - second, starts[i] * ends[j], window))


def _normalize(values: list[float]) -> list[float]:
    """QuestionAnsweringProcessor.normalizeWith: exp(v - log(sum(exp))), without taking the maximum out first."""
    total = _jsum(_java_exp(v) for v in values)
    shift = math.log(total) if total > 0 else -math.inf
    return [_java_exp(v - shift) for v in values]


def _java_exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


class LuceneQueue:
    """org.apache.lucene.util.PriorityQueue of QuestionAnsweringProcessor's ScoreAndIndices (least score on top):
    insertWithOverflow replaces the top when the new entry is not less than it."""

    def __init__(self, size: int) -> None:
        self.size, self.limit = 0, size
        self.heap: list[Any] = [None] * (size + 2)

    def insert_with_overflow(self, entry: _Span) -> None:
        if self.size < self.limit:
            self.size += 1
            self.heap[self.size] = entry
            self._up(self.size)
        elif self.size > 0 and not entry.score < self.heap[1].score:
            self.heap[1] = entry
            self._down(1)

    def pop(self) -> _Span | None:
        if self.size == 0:
            return None
        result = self.heap[1]
        self.heap[1], self.heap[self.size] = self.heap[self.size], None
        self.size -= 1
        self._down(1)
        return result

    def _up(self, i: int) -> None:
        node = self.heap[i]
        j = i >> 1
        while j > 0 and node.score < self.heap[j].score:
            self.heap[i], i, j = self.heap[j], j, j >> 1
        self.heap[i] = node

    def _down(self, i: int) -> None:
        node = self.heap[i]
        j = self._smaller_child(i)
        while j <= self.size and self.heap[j].score < node.score:
            self.heap[i], i = self.heap[j], j
            j = self._smaller_child(i)
        self.heap[i] = node

    def _smaller_child(self, i: int) -> int:
        j, k = i << 1, (i << 1) + 1
        return k if k <= self.size and self.heap[k].score < self.heap[j].score else j


# --- shared arithmetic -----------------------------------------------------------------------------------------

def softmax(values: list[float]) -> list[float]:
    """NlpHelpers.convertToProbabilitiesBySoftMax."""
    top = max(values)
    exps = [_java_exp(v - top) for v in values]
    total = _jsum(exps)
    return [e / total for e in exps]


def _jsum(values: Any) -> float:
    """A double sum added left to right, as the Java loops add it."""
    total = 0.0
    for value in values:
        total += value
    return total


def _descending(values: list[float]) -> list[int]:
    """A stable sort of the indices by value, highest first (Comparator.comparing(...).reversed())."""
    return sorted(range(len(values)), key=lambda i: -values[i])


def top_k(k: int, values: list[float]) -> list[int]:
    """NlpHelpers.topK: java.util.PriorityQueue of the first k, each later larger value replacing the least;
    the indices polled least first, answered highest first."""
    k = min(k, len(values))
    heap: list[int] = []
    for i in range(k):
        _offer(heap, i, values)
    for i in range(k, len(values)):
        if values[i] > values[heap[0]]:
            _poll(heap, values)
            _offer(heap, i, values)
    return [_poll(heap, values) for _ in range(k)][::-1]


def _offer(heap: list[int], item: int, values: list[float]) -> None:
    heap.append(item)
    k = len(heap) - 1
    while k > 0:
        parent = (k - 1) >> 1
        if values[item] >= values[heap[parent]]:
            break
        heap[k], k = heap[parent], parent
    heap[k] = item


def _poll(heap: list[int], values: list[float]) -> int:
    result, last = heap[0], heap.pop()
    n = len(heap)
    if n:
        k = 0
        while k < n >> 1:
            child = 2 * k + 1
            if child + 1 < n and values[heap[child]] > values[heap[child + 1]]:
                child += 1
            if values[last] <= values[heap[child]]:
                break
            heap[k], k = heap[child], child
        heap[k] = last
    return result


_PROCESSORS = {
    "fill_mask": _fill_mask,
    "ner": _ner,
    "pass_through": _pass_through,
    "question_answering": _question_answering,
    "text_classification": _text_classification,
    "text_embedding": _text_embedding,
    "text_expansion": _text_expansion,
    "text_similarity": _text_similarity,
    "zero_shot_classification": _zero_shot,
}
