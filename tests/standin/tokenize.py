"""Tokenization as the cluster does it: from the uploaded vocabulary and the config's options.

Owns building a `tokenizers` tokenizer from a vocabulary document (`vocabulary`, `merges`,
`scores`) and one tokenization entry of the config, encoding one text with the special tokens and
truncation Elasticsearch applies, and the positional model inputs per tokenization kind
(tracing-conventions.md): bert and bert_ja four tensors, mpnet/roberta/xlm_roberta two,
deberta_v2 three. bert_ja is not a `tokenizers` pipeline: its words come from Kuromoji in SEARCH
mode and its pieces from Elasticsearch's WordPiece filter (japanese.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import errors

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


@dataclass(frozen=True)
class Encoding:
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    special: list[bool]
    truncated: bool


class TextTokenizer:
    """One deployment's tokenizer: `encode(text)` → ids with special tokens, truncated as configured."""

    def __init__(self, kind: str, options: dict[str, Any], vocabulary: dict[str, Any]) -> None:
        self.kind = kind
        self.options = options
        self.vocab: list[str] = list(vocabulary["vocabulary"])
        self.max_length = int(options.get("max_sequence_length", 512))
        self.truncate = options.get("truncate", "first")
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
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

        ids = {token: i for i, token in enumerate(self.vocab)}
        start, end, unk, _pad, _mask = self.specials
        lower = bool(self.options.get("do_lower_case", False))
        if self.kind in ("bert", "bert_ja", "mpnet"):
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
            tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
            tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        # Special tokens present in the vocabulary are matched whole (a `[MASK]` in the text stays one token).
        tokenizer.add_special_tokens([t for t in self.specials if t in ids])
        if self.with_special and start in ids and end in ids:
            tokenizer.post_processor = processors.TemplateProcessing(
                single=f"{start} $A {end}", special_tokens=[(start, ids[start]), (end, ids[end])]
            )
        return tokenizer

    def token_id(self, token: str) -> int | None:
        if self._tokenizer is None:
            return self._ids.get(token)
        return self._tokenizer.token_to_id(token)

    def _encode_japanese(self, text: str) -> Encoding:
        """bert_ja: Elasticsearch's words (japanese.split_words), each one's WordPiece ids with the word's
        offsets, between [CLS] and [SEP]; accents are stripped when the text is lowercased (the default)."""
        from . import japanese

        ids: list[int] = []
        words: list[int | None] = []
        offsets: list[tuple[int, int]] = []
        strip = bool(self.options.get("do_lower_case", False))
        for index, (word, start, end) in enumerate(japanese.split_words(text, strip_accents=strip)):
            for piece in self._japanese.pieces(word):
                ids.append(piece)
                words.append(index)
                offsets.append((start, end))
        special = [False] * len(ids)
        start_token, end_token = self.specials[0], self.specials[1]
        if self.with_special and start_token in self._ids and end_token in self._ids:
            ids = [self._ids[start_token], *ids, self._ids[end_token]]
            words, offsets = [None, *words, None], [(0, 0), *offsets, (0, 0)]
            special = [True, *special, True]
        return Encoding(ids, [self.vocab[i] for i in ids], offsets, words, special, False)

    def _encode_full(self, text: str) -> Encoding:
        if self._tokenizer is None:
            return self._encode_japanese(text)
        encoded = self._tokenizer.encode(text)
        return Encoding(list(encoded.ids), list(encoded.tokens), [tuple(o) for o in encoded.offsets],
                        list(encoded.word_ids), [bool(m) for m in encoded.special_tokens_mask], False)

    def encode(self, text: str) -> Encoding:
        encoded = self._encode_full(text)
        length = len(encoded.ids)
        truncated = False
        keep = length
        if length > self.max_length:
            if self.truncate == "none":
                raise errors.bad_request(
                    f"Input too large. The tokenized input length [{length}] exceeds the maximum sequence "
                    f"length [{self.max_length}]"
                )
            # first/second truncate a single sequence the same way: keep the start, re-close it.
            truncated = True
            keep = self.max_length
        ids, tokens, offsets = list(encoded.ids), list(encoded.tokens), list(encoded.offsets)
        words, special = list(encoded.word_ids), list(encoded.special)
        if truncated:
            tail = 1 if self.with_special and special and special[-1] else 0
            cut = keep - tail
            ids = ids[:cut] + ids[length - tail:]
            tokens = tokens[:cut] + tokens[length - tail:]
            offsets = offsets[:cut] + offsets[length - tail:]
            words = words[:cut] + words[length - tail:]
            special = special[:cut] + special[length - tail:]
        return Encoding(ids, tokens, [tuple(o) for o in offsets], words, special, truncated)

    def inputs(self, encoding: Encoding) -> list[Any]:
        """The positional int64 `[1, seq]` tensors for this tokenization kind."""
        import torch

        n = len(encoding.ids)
        tensors = {
            "input_ids": torch.tensor([encoding.ids], dtype=torch.int64),
            "attention_mask": torch.ones((1, n), dtype=torch.int64),
            "token_type_ids": torch.zeros((1, n), dtype=torch.int64),
            "position_ids": torch.arange(n, dtype=torch.int64).unsqueeze(0),
        }
        return [tensors[name] for name in INPUT_NAMES[self.kind]]
