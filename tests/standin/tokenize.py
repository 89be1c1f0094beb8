"""Tokenization as the cluster does it: from the uploaded vocabulary and the config's options.

Owns building a `tokenizers` tokenizer from a vocabulary document (`vocabulary`, `merges`, `scores`) and one
tokenization entry of the config, and what Elasticsearch's NlpTokenizer does with it: the inner tokenization of one
text (token ids, each token's offsets and its word position, as the family's Lucene tokenizer sets them), the
special tokens of one sequence and of a pair per family, truncation (`first`, `second`, `balanced`, `none`),
windowing with `span`, and the padded positional model inputs of a request (tracing-conventions.md): bert and
bert_ja four tensors, mpnet/roberta/xlm_roberta two, deberta_v2 three.

Sources: NlpTokenizer (tokenize of one sequence, of a pair, of a pair with spans), the TokensBuilders of
BertTokenizationResult, MPNetTokenizationResult, RobertaTokenizationResult, XLMRobertaTokenizationResult and
DebertaTokenizationResult, TokenizationResult (padding, attention mask, token types, positions),
WordPieceTokenFilter (every piece of a word carries the word's offsets), BpeTokenizer (the pieces of a pre-token
carry its offsets, the first one without its leading space) and UnigramTokenizer (each piece its own offsets and its
own position). bert_ja is not a `tokenizers` pipeline: its words come from Kuromoji in SEARCH mode and its pieces
from Elasticsearch's WordPiece filter (japanese.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import EsError

# Special tokens per kind: (classification/start, separator/end, unknown, padding, mask).
_SPECIALS = {
    "bert": ("[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"),
    "bert_ja": ("[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"),
    "deberta_v2": ("[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"),
    # MPNet's WordPiece keeps BERT's unknown token (its vocabularies carry both `<unk>` and `[UNK]`).
    "mpnet": ("<s>", "</s>", "[UNK]", "<pad>", "<mask>"),
    "roberta": ("<s>", "</s>", "<unk>", "<pad>", "<mask>"),
    "xlm_roberta": ("<s>", "</s>", "<unk>", "<pad>", "<mask>"),
}

INPUT_NAMES = {
    "bert": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "bert_ja": ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    "deberta_v2": ("input_ids", "attention_mask", "token_type_ids"),
    "mpnet": ("input_ids", "attention_mask"),
    "roberta": ("input_ids", "attention_mask"),
    "xlm_roberta": ("input_ids", "attention_mask"),
}

# Separators between the two sequences of a pair: `[CLS] a [SEP] b [SEP]` or `<s> a </s></s> b </s>`
# (getNumExtraTokensForSeqPair: 3 for bert, bert_ja and deberta_v2, 4 for mpnet, roberta and xlm_roberta).
_PAIR_SEPARATORS = {"bert": 1, "bert_ja": 1, "deberta_v2": 1, "mpnet": 2, "roberta": 2, "xlm_roberta": 2}
_SINGLE_EXTRA = 2  # numExtraTokensForSingleSequence: the start and end tokens

Offsets = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Inner:
    """NlpTokenizer.InnerTokenization: one text's tokens without special tokens."""

    ids: tuple[int, ...]
    offsets: Offsets  # each token's DelimitedToken offsets (code points into the text)
    positions: tuple[int, ...]  # the token position map: tokens of one word share a position

    def cut(self, start: int, end: int) -> Inner:
        return Inner(self.ids[start:end], self.offsets[start:end], self.positions[start:end])

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Encoding:
    """TokenizationResult.Tokens: one row of a request (a whole input, a truncated one, or one window)."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]  # per token, (0, 0) for special tokens
    word_ids: list[int | None]  # the token map; None for special tokens
    special: list[bool]
    truncated: bool
    pair_offset: int = 0  # seqPairOffset: the first token of the second sequence
    texts: tuple[str, ...] = ()  # Tokens.input(): the sequences as given
    sequences: tuple[Offsets, ...] = ()  # Tokens.tokens(): each sequence's delimited tokens
    span_prev: int = -1


class TextTokenizer:
    """One deployment's tokenizer: single sequences, pairs and windows, as Elasticsearch builds them."""

    def __init__(self, kind: str, options: dict[str, Any], vocabulary: dict[str, Any]) -> None:
        self.kind = kind
        self.options = options
        self.vocab: list[str] = list(vocabulary["vocabulary"])
        self.max_length = int(options.get("max_sequence_length", 512))
        self.truncate = options.get("truncate", "first")
        self.span = int(options.get("span", -1))
        self.with_special = bool(options.get("with_special_tokens", True))
        self.specials = _SPECIALS[kind]
        self.mask_token = self.specials[4]
        self._ids = {token: i for i, token in enumerate(self.vocab)}
        self._japanese: Any = None
        if kind == "bert_ja":
            from . import japanese

            self._japanese = japanese.WordPiece(self.vocab, self.specials[2],
                                                bool(options.get("do_lower_case", False)))
            self._tokenizer = None
        else:
            self._tokenizer = self._build(vocabulary)

    def _build(self, vocabulary: dict[str, Any]) -> Any:
        from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

        ids = dict(self._ids)
        unk = self.specials[2]
        lower = bool(self.options.get("do_lower_case", False))
        if self.kind in ("bert", "mpnet"):
            tokenizer = Tokenizer(models.WordPiece(ids, unk_token=unk, max_input_chars_per_word=100))
            tokenizer.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lower
            )
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tokenizer.decoder = decoders.WordPiece()
        elif self.kind == "roberta":
            merges = [tuple(m.split(" ", 1)) for m in vocabulary.get("merges", [])]
            prefix = bool(self.options.get("add_prefix_space", False))
            tokenizer = Tokenizer(models.BPE(ids, merges, unk_token=unk if unk in ids else None))
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
            tokenizer.decoder = decoders.ByteLevel()
        else:  # xlm_roberta, deberta_v2: SentencePiece unigram with the uploaded scores
            scores = vocabulary.get("scores") or [0.0] * len(self.vocab)
            tokenizer = Tokenizer(models.Unigram(list(zip(self.vocab, scores, strict=True)), ids.get(unk, 0), False))
            steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lower else [])
            tokenizer.normalizer = normalizers.Sequence(steps)
            # UnigramTokenizer: words split on whitespace (dropped), each word's first piece marked with `▁`.
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
            tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        # Special tokens present in the vocabulary are matched whole (a `[MASK]` in the text stays one token).
        # BpeTokenizer trims the whitespace before a never-split token: lstrip.
        lstrip = self.kind == "roberta"
        tokenizer.add_special_tokens([AddedToken(t, special=True, lstrip=lstrip) for t in self.specials if t in ids])
        return tokenizer

    def token_id(self, token: str) -> int | None:
        return self._ids.get(token)

    @property
    def pad_id(self) -> int:
        return self._ids.get(self.specials[3], 0)

    # --- one text, no special tokens ------------------------------------------------------------------------

    def inner(self, text: str) -> Inner:
        if self._tokenizer is None:
            return self._inner_japanese(text)
        encoded = self._tokenizer.encode(text, add_special_tokens=False)
        ids, offsets, words = list(encoded.ids), [tuple(o) for o in encoded.offsets], list(encoded.word_ids)
        if self.kind in ("xlm_roberta", "deberta_v2"):
            return Inner(tuple(ids), tuple(_skip_space(text, o) for o in offsets), tuple(range(len(ids))))
        positions, groups = _positions(words)
        spans = {}
        for position, members in groups.items():
            spans[position] = (min(offsets[i][0] for i in members), max(offsets[i][1] for i in members))
        if self.kind == "roberta":
            return Inner(tuple(ids), tuple(_bpe_offsets(text, positions, spans)), tuple(positions))
        return Inner(tuple(ids), tuple(spans[p] for p in positions), tuple(positions))

    def _inner_japanese(self, text: str) -> Inner:
        """bert_ja: Elasticsearch's words (japanese.split_words), each one's WordPiece ids with the word's
        offsets; accents are stripped when the text is lowercased."""
        from . import japanese

        ids: list[int] = []
        positions: list[int] = []
        offsets: list[tuple[int, int]] = []
        strip = bool(self.options.get("do_lower_case", False))
        for index, (word, start, end) in enumerate(japanese.split_words(text, strip_accents=strip)):
            for piece in self._japanese.pieces(word):
                ids.append(piece)
                positions.append(index)
                offsets.append((start, end))
        return Inner(tuple(ids), tuple(offsets), tuple(positions))

    # --- rows: special tokens around one sequence or a pair --------------------------------------------------

    def _special_id(self, index: int) -> int:
        token = self.specials[index]
        if token not in self._ids:
            raise errors.server_error(f"the vocabulary has no [{token}] token")
        return self._ids[token]

    def _row(self, parts: list[Inner], texts: tuple[str, ...], sequences: tuple[Offsets, ...], truncated: bool,
             span_prev: int = -1) -> Encoding:
        """The TokensBuilder of the family: addSequence or addSequencePair, then build."""
        first = parts[0]
        if len(parts) == 1 and not self.with_special:
            ids, positions, offsets = list(first.ids), list(first.positions), list(first.offsets)
            pair_offset = 0
        elif len(parts) == 1:
            ids = [self._special_id(0), *first.ids, self._special_id(1)]
            positions, offsets = [-1, *first.positions, -1], [(0, 0), *first.offsets, (0, 0)]
            pair_offset = 0
        else:
            ids, positions, offsets, pair_offset = self._pair_row(first, parts[1])
        special = [p < 0 for p in positions]
        return Encoding(ids, [self.vocab[i] for i in ids], offsets, [None if p < 0 else p for p in positions],
                        special, truncated, pair_offset, texts, sequences, span_prev)

    def _pair_row(self, first: Inner, second: Inner) -> tuple[list[int], list[int], list[tuple[int, int]], int]:
        if self.kind == "deberta_v2" and (not first.ids or not second.ids):
            raise errors.illegal_argument("Both sequences must have at least one token")
        if not first.positions:  # tokenMap1.get(tokenMap1.size() - 1) on an empty list
            raise EsError(500, "index_out_of_bounds_exception", "Index -1 out of bounds for length 0")
        shift = first.positions[-1]
        seps = _PAIR_SEPARATORS[self.kind]
        cls, sep = self._special_id(0), self._special_id(1)
        ids = [cls, *first.ids, *[sep] * seps, *second.ids, sep]
        positions = [-1, *first.positions, *[-1] * seps, *(p + shift for p in second.positions), -1]
        offsets = [(0, 0), *first.offsets, *[(0, 0)] * seps, *second.offsets, (0, 0)]
        return ids, positions, offsets, len(first.ids) + 1 + seps

    # --- one sequence: NlpTokenizer.tokenize(seq, truncate, span, sequenceId, windowSize) ---------------------

    def encode(self, text: str) -> Encoding:
        """The first row of one text with the configured truncation (the only one unless windowing)."""
        return self.windows(text, self.truncate, self.span)[0]

    def windows(self, text: str, truncate: str, span: int) -> list[Encoding]:
        inner = self.inner(text)
        keep = self.max_length - _SINGLE_EXTRA if self.with_special else self.max_length
        count = len(inner) + (_SINGLE_EXTRA if self.with_special else 0)
        truncated = False
        full = inner.offsets
        if count > self.max_length:
            if truncate != "none":  # first, second and balanced cut the one sequence alike: keep the start
                truncated, inner = True, inner.cut(0, keep)
            elif span == -1:
                raise errors.bad_request(f"Input too large. The tokenized input length [{count}] exceeds the "
                                         f"maximum sequence length [{self.max_length}]")
        if count <= self.max_length or span == -1:
            return [self._row([inner], (text,), (full,), truncated)]
        return [self._row([window], (text,), (window.offsets,), False, prev)
                for window, prev in _split(inner, keep, span, single=True)]

    # --- pairs ------------------------------------------------------------------------------------------------

    def _pair_extra(self) -> int:
        if not self.with_special:
            raise errors.illegal_argument("Unable to do sequence pair tokenization without special tokens")
        return _SINGLE_EXTRA + _PAIR_SEPARATORS[self.kind]

    def pair(self, seq1: str, seq2: str, truncate: str) -> Encoding:
        """NlpTokenizer.tokenize(seq1, seq2, truncate, sequenceId): the pair cut to fit, never windowed."""
        first, second = self.inner(seq1), self.inner(seq2)
        extra = self._pair_extra()
        sequences = (first.offsets, second.offsets)
        count = len(first) + len(second) + extra
        truncated = count > self.max_length
        if truncated:
            if truncate == "none":
                raise errors.bad_request(f"Input too large. The tokenized input length [{count}] exceeds the "
                                         f"maximum sequence length [{self.max_length}]")
            first, second = self._truncate_pair(first, second, truncate, extra)
        return self._row([first, second], (seq1, seq2), sequences, truncated)

    def _truncate_pair(self, first: Inner, second: Inner, truncate: str, extra: int) -> tuple[Inner, Inner]:
        room = self.max_length - extra
        if truncate == "first":
            if len(second) > room:
                raise errors.bad_request(_too_large(truncate, "second", len(second), room))
            return first.cut(0, room - len(second)), second
        if truncate == "second":
            if len(first) > room:
                raise errors.bad_request(_too_large(truncate, "first", len(first), room))
            return first, second.cut(0, room - len(first))
        # balanced
        half = room // 2
        first_length = min(len(first), half if len(second) > half else room - len(second))
        second_length = min(len(second), room - first_length)
        return first.cut(0, first_length), second.cut(0, second_length)

    def pair_windows(self, seq1: str, seq2: str, truncate: str, span: int) -> list[Encoding]:
        """NlpTokenizer.tokenize(seq1, seq2, truncate, span, sequenceId): question answering and text similarity.
        Only `first`, `second` and `none` truncate here; a long pair otherwise goes to windows over the second
        sequence (with `span` -1 too: Elasticsearch's switch has no `balanced` case)."""
        extra = self._pair_extra()
        first, second = self.inner(seq1), self.inner(seq2)
        full = (first.offsets, second.offsets)
        count = len(first) + len(second) + extra
        truncated = False
        if count > self.max_length and span < 0 and truncate != "balanced":
            if truncate == "none":
                raise errors.bad_request(f"Input too large. The tokenized input length [{count}] exceeds the "
                                         f"maximum sequence length [{self.max_length}]")
            truncated = True
            first, second = self._truncate_pair(first, second, truncate, extra)
        if truncated or count < self.max_length:
            return [self._row([first, second], (seq1, seq2), full, truncated)]
        room = self.max_length - extra - len(first)
        if room <= 0:
            raise errors.illegal_argument(
                f"Unable to do sequence pair tokenization: the first sequence [{len(first) + extra} tokens] is longer "
                f"than the max sequence length [{self.max_length} tokens]")
        if span > room:
            raise errors.illegal_argument(
                "Unable to do sequence pair tokenization: the combined first sequence, span length and delimiting "
                f"tokens [{len(first)} + {span} + {extra} = {len(first) + span + extra} tokens] is longer than the "
                f"max sequence length [{self.max_length} tokens]. Reduce the size of the [span] window.")
        rows = [self._row([first, window], (seq1, seq2), (first.offsets, window.offsets), False, prev)
                for window, prev in _split(second, room, span, single=False)]
        _check_windows(rows)
        return rows

    # --- the request's tensors ---------------------------------------------------------------------------------

    def batch(self, rows: list[Encoding]) -> list[Any]:
        """TokenizationResult.writePaddedTokens, writeAttentionMask, writeTokenTypeIds, writePositionIds: each row
        padded to the longest with the pad id; the attention mask is padded with the pad id too, token types are
        all 0 (for pairs as well) and positions count from 0."""
        import torch

        width = max(len(row.ids) for row in rows)
        pad = self.pad_id
        tokens = [row.ids + [pad] * (width - len(row.ids)) for row in rows]
        attention = [[1] * len(row.ids) + [pad] * (width - len(row.ids)) for row in rows]
        tensors = {
            "input_ids": torch.tensor(tokens, dtype=torch.int64),
            "attention_mask": torch.tensor(attention, dtype=torch.int64),
            "token_type_ids": torch.zeros((len(rows), width), dtype=torch.int64),
            "position_ids": torch.arange(width, dtype=torch.int64).unsqueeze(0).repeat(len(rows), 1),
        }
        return [tensors[name] for name in INPUT_NAMES[self.kind]]

    def inputs(self, encoding: Encoding) -> list[Any]:
        """The positional int64 `[1, seq]` tensors of one row."""
        return self.batch([encoding])


def _positions(words: list[int | None]) -> tuple[list[int], dict[int, list[int]]]:
    """A new position at each new word (every special token in the text is a word of its own)."""
    positions: list[int] = []
    groups: dict[int, list[int]] = {}
    previous: int | None = None
    for index, word in enumerate(words):
        if not positions or word is None or word != previous:
            positions.append(len(groups))
            groups[len(groups)] = [index]
        else:
            positions.append(positions[-1])
            groups[positions[-1]].append(index)
        previous = word
    return positions, groups


def _bpe_offsets(text: str, positions: list[int], spans: dict[int, tuple[int, int]]) -> list[tuple[int, int]]:
    """BpeTokenizer: every piece of a pre-token carries the pre-token's offsets; its first piece starts after the
    pre-token's leading space (a space the tokenizer added itself, `add_prefix_space`, is not in the text)."""
    offsets = []
    for index, position in enumerate(positions):
        start, end = spans[position]
        first = index == 0 or positions[index - 1] != position
        offsets.append((start + 1 if first and text[start:start + 1] == " " else start, end))
    return offsets


def _skip_space(text: str, offset: tuple[int, int]) -> tuple[int, int]:
    start, end = offset
    while start < end and text[start].isspace():
        start += 1
    return start, end


def _split(inner: Inner, room: int, span: int, single: bool) -> list[tuple[Inner, int]]:
    """The windowing loops of NlpTokenizer: windows of `room` tokens that do not end inside a word, each next one
    starting `span` tokens back, moved back to its word's start. Returns each window and its spanPrev."""
    windows: list[tuple[Inner, int]] = []
    positions, total = inner.positions, len(inner)
    end = start = 0
    prev = -1
    while end < total:
        end = min(start + room, total)
        if end != total:
            while end > start + 1 and positions[end] == positions[end - 1]:
                end -= 1
        windows.append((inner.cut(start, end), prev))
        prev = span
        previous_start, start = start, end - span
        if start <= previous_start and not single:
            raise EsError(500, "illegal_state_exception", "Tokenization cannot be satisfied with the current span "
                                                          "setting. Consider decreasing the span setting")
        if start <= previous_start and end < total:
            # The one-sequence loop has no such check: Elasticsearch would loop for ever; the stand-in answers.
            raise errors.server_error("the window does not move forward with this [span] (Elasticsearch hangs)")
        if start < total:
            while start > previous_start + 1 and positions[start] == positions[start - 1]:
                start -= 1
                prev += 1
    return windows


def _check_windows(rows: list[Encoding]) -> None:
    """TokenizationResult's constructor: a second row of one sequence needs a span."""
    if any(row.span_prev == -1 for row in rows[1:]):
        raise errors.illegal_argument("cannot window a sequence without a configured span")


def _too_large(truncate: str, which: str, length: int, room: int) -> str:
    return (f"Attempting truncation [{truncate}] but input is too large for the {which} sequence. The tokenized input "
            f"length [{length}] exceeds the maximum sequence length [{room}], when taking special tokens into account")

