"""Elasticsearch's `bert_ja` tokenization: Kuromoji word splitting in SEARCH mode, then BERT's WordPiece.

What Elasticsearch does, from its source (elastic/elasticsearch, x-pack/plugin/ml/src/main/java/org/elasticsearch/
xpack/ml/inference/nlp/tokenizers/: BertJapaneseTokenizer, JapaneseWordPieceAnalyzer, WordPieceAnalyzer,
ControlCharFilter, BasicTokenFilter, WordPieceTokenFilter, BertTokenizer; checked against its
BertJapaneseTokenizerTests) and Lucene's (apache/lucene, lucene/analysis/kuromoji/.../ja/JapaneseTokenizer.java,
dict/UnknownDictionaryBuilder.java, analysis/common/.../morph/CharacterDefinitionWriter.java):

- `BertJapaneseTokenizer` is `BertTokenizer` with a `JapaneseWordPieceAnalyzer`; never-split tokens are only
  `[MASK]` (`BertTokenizer.NEVER_SPLIT`); strip accents defaults to `do_lower_case` (`JapaneseBuilder.build`).
- `JapaneseWordPieceAnalyzer.createTokenizer`: `new JapaneseTokenizer(null, false, Mode.SEARCH)`: Lucene's Kuromoji,
  no user dictionary, punctuation kept (`discardPunctuation=false`), SEARCH mode; that constructor also discards
  the compound tokens (`discardCompoundToken=true`), so a decompounded word is output only as its parts.
  `doTokenizeCjKChars` is forced to false.
- `WordPieceAnalyzer`: char filter `ControlCharFilter` (drops every UTF-16 char of type CONTROL, FORMAT,
  PRIVATE_USE or SURROGATE except \\t \\n \\r: so every character outside the BMP is dropped too), then
  `WordPieceTokenFilter.build(..., maxInputCharsPerWord=100, ...)` over the tokenizer.
- `WordPieceTokenFilter.build` puts `BasicTokenFilter` first: each word is split on punctuation marks (ASCII
  punctuation and Unicode Pd, Ps, Pe, Pc, Po, Pi, Pf), accents stripped when asked (NFD, drop Mn, drop a word left
  empty); a word equal to a never-split token passes whole, and never-split tokens are re-merged only from the
  pieces of one word. No NFKC, no lower-casing of the text: with `do_lower_case` the vocabulary lookups ignore case
  (`CharArrayMap(ignoreCase)`, a later entry of the same lower-cased key wins).
- `WordPieceTokenFilter.incrementToken`: a never-split word is its vocabulary id (else unknown); a word longer than
  100 chars is `[UNK]`; otherwise greedy longest-match-first with `##` continuations, and a word with an unmatched
  rest is one `[UNK]`.

Consequences that differ from Hugging Face's BertJapaneseTokenizer (MeCab, NORMAL segmentation, NFKC first,
special tokens matched before splitting, whitespace dropped):

- `[MASK]` never stays whole: Kuromoji splits `[MASK]` into `[`, `MASK`, `]` (SYMBOL, ALPHA, SYMBOL character
  classes), three words, and the never-split merge only works inside one word; fill_mask never finds its mask.
- Whitespace is a word: with punctuation kept Kuromoji outputs each run of spaces, tabs and newlines (character
  class SPACE) as a token, which WordPiece looks up (`[UNK]` unless the vocabulary has it).
- SEARCH mode decompounds long words: an all-kanji word longer than 2 chars costs 3000 per extra char, any other
  word longer than 7 chars 1700 per extra char; when the best path holds such a word and another segmentation of
  its span (re-scored with those penalties) is no worse than the word plus its penalty, the parts are output
  (`日本語` becomes `日本` `語`, `関西国際空港` becomes `関西` `国際` `空港`).
- No NFKC: full-width Latin and half-width katakana reach the dictionary as they are.

Kuromoji against MeCab (both with mecab-ipadic-2.7.0-20070801: the same entries, word costs and connection costs;
this module reads IPADIC from the `ipadic` package's compiled MeCab files and runs Kuromoji's own lattice on them,
which gives every segmentation of Lucene's search-segmentation-tests.txt and Elasticsearch's test sentence):

- Unknown words: Kuromoji adds one unknown word per position, the whole run of characters of the same class (and
  the same punctuation-ness) when the class groups, else one char; it ignores char.def's LENGTH (MeCab also adds
  unknown words of 1..LENGTH chars) and caps runs at 1024 chars (MeCab at 24). A class is the first one char.def
  names for the char (MeCab lets the others continue a run), and U+30FB (・) is SYMBOL in Kuromoji, not KATAKANA.
- Whitespace: MeCab skips SPACE-class chars between words; Kuromoji makes them words that cost and connect.
- Characters outside the BMP: Kuromoji sees two surrogate chars (class DEFAULT); here, after ControlCharFilter
  has dropped them, none are left.
- Equal-cost paths may be broken differently (dictionary entry order differs between the two builds); Kuromoji's
  forced backtrace after 1024 chars without a frontier (`MAX_BACKTRACE_GAP`) is not emulated.
On plain Japanese text without unknown words or whitespace, NORMAL mode here gives MeCab's segmentation.
"""

from __future__ import annotations

import struct
import unicodedata
from array import array
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ipadic

NEVER_SPLIT = ("[MASK]",)  # BertTokenizer.NEVER_SPLIT (BertTokenization.MASK_TOKEN)
MAX_INPUT_CHARS_PER_WORD = 100  # WordPieceAnalyzer.createComponents
CONTINUATION = "##"

# JapaneseTokenizer's search-mode heuristic.
SEARCH_MODE_KANJI_LENGTH = 2
SEARCH_MODE_OTHER_LENGTH = 7
SEARCH_MODE_KANJI_PENALTY = 3000
SEARCH_MODE_OTHER_PENALTY = 1700
MAX_UNKNOWN_WORD_LENGTH = 1024

# Java Character.getType categories JapaneseTokenizer.isPunctuation counts (Unicode general categories).
_KUROMOJI_PUNCTUATION = {"Zs", "Zl", "Zp", "Cc", "Cf", "Pd", "Ps", "Pe", "Pc", "Po", "Sm", "Sc", "Sk", "So", "Pi",
                         "Pf"}
# BasicTokenFilter.isPunctuationMark: ASCII punctuation, then DASH..OTHER_PUNCTUATION and the quote categories.
_BERT_PUNCTUATION = {"Pd", "Ps", "Pe", "Pc", "Po", "Pi", "Pf"}
# ControlCharFilter.isControlChar: CONTROL, FORMAT, PRIVATE_USE, SURROGATE (but not \t \n \r).
_CONTROL = {"Cc", "Cf", "Co", "Cs"}

_HEADER = struct.Struct("<10I32s")
_UNIT = struct.Struct("<iI")  # darts: base, check
_TOKEN = struct.Struct("<HHHhII")  # lcAttr, rcAttr, posid, wcost, feature, compound


@dataclass(frozen=True)
class Entry:
    """One dictionary word's costs: left and right context ids (equal in IPADIC) and its word cost."""

    left: int
    right: int
    cost: int


class _MecabDictionary:
    """A compiled MeCab dictionary (sys.dic, unk.dic): a double-array trie over UTF-8 keys whose values point at
    runs of tokens (`value >> 8` the first, `value & 0xff` how many)."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        fields = _HEADER.unpack_from(data, 0)
        dsize, tsize = fields[6], fields[7]
        self._array = memoryview(data)[_HEADER.size:_HEADER.size + dsize]
        self._tokens = memoryview(data)[_HEADER.size + dsize:_HEADER.size + dsize + tsize]

    def _unit(self, index: int) -> tuple[int, int]:
        if index * _UNIT.size >= len(self._array):
            return 0, 0xFFFFFFFF
        return _UNIT.unpack_from(self._array, index * _UNIT.size)

    def prefixes(self, key: bytes, offset: int = 0) -> list[tuple[int, int]]:
        """(length in bytes, value) of every key that is a prefix of `key[offset:]` (darts' commonPrefixSearch)."""
        found = []
        base = self._unit(0)[0]
        for i in range(offset, len(key) + 1):
            value, check = self._unit(base)
            if check == base and value < 0:
                found.append((i - offset, -value - 1))
            if i == len(key):
                break
            next_base, check = self._unit(base + key[i] + 1)
            if check != base:
                break
            base = next_base
        return found

    def entries(self, value: int) -> list[Entry]:
        first, count = value >> 8, value & 0xFF
        tokens = (_TOKEN.unpack_from(self._tokens, (first + i) * _TOKEN.size) for i in range(count))
        return [Entry(left, right, cost) for left, right, _pos, cost, _feature, _compound in tokens]


class Ipadic:
    """IPADIC as Kuromoji uses it: known words, unknown-word entries per character class, char classes (with
    their invoke and group flags), and connection costs."""

    def __init__(self, dicdir: Path) -> None:
        self.known = _MecabDictionary(dicdir / "sys.dic")
        unknown = _MecabDictionary(dicdir / "unk.dic")
        matrix = (dicdir / "matrix.bin").read_bytes()
        self._lsize = struct.unpack_from("<H", matrix, 0)[0]
        self._matrix = array("h")
        self._matrix.frombytes(matrix[4:])
        self._classes, self._flags, self._char_class = _read_char_bin(dicdir / "char.bin")
        self.unknown = {name: _exact(unknown, name) for name in self._classes}

    def connection(self, right: int, left: int) -> int:
        return self._matrix[right + self._lsize * left]

    def char_class(self, char: str) -> str:
        code = ord(char)
        if code == 0x30FB:  # Lucene's CharacterDefinitionWriter: "Override Nakaguro"
            return "SYMBOL"
        return self._classes[self._char_class[code]] if code < len(self._char_class) else "DEFAULT"

    def invokes(self, name: str) -> bool:
        return self._flags[name][0]

    def groups(self, name: str) -> bool:
        return self._flags[name][1]

    def is_kanji(self, char: str) -> bool:
        return self.char_class(char) in ("KANJI", "KANJINUMERIC")


def _exact(dictionary: _MecabDictionary, key: str) -> list[Entry]:
    raw = key.encode("utf-8")
    return [e for length, value in dictionary.prefixes(raw) if length == len(raw) for e in dictionary.entries(value)]


def _read_char_bin(path: Path) -> tuple[list[str], dict[str, tuple[bool, bool]], array]:
    """char.bin: the class names, then one CharInfo per code point below U+FFFF (bits: type 0-17, default type
    18-25, length 26-29, group 30, invoke 31). Kuromoji keeps the default (first) class and its flags."""
    data = path.read_bytes()
    count = struct.unpack_from("<I", data, 0)[0]
    names = [data[4 + 32 * i:4 + 32 * (i + 1)].split(b"\0", 1)[0].decode() for i in range(count)]
    infos = array("I")
    infos.frombytes(data[4 + 32 * count:])
    flags: dict[str, tuple[bool, bool]] = {}
    classes = array("B", bytes(len(infos)))
    for code, info in enumerate(infos):
        default = (info >> 18) & 0xFF
        classes[code] = default
        flags.setdefault(names[default], (bool(info >> 31), bool((info >> 30) & 1)))
    return names, flags, classes


@lru_cache(maxsize=1)
def ipadic_dictionary() -> Ipadic:
    return Ipadic(Path(ipadic.DICDIR))


@dataclass
class _Arc:
    """A word ending at some position: the best path cost through it, its right id, where it starts, which arc
    at that start the best path came through, and its entry."""

    cost: int
    right: int
    back: int
    back_index: int
    entry: Entry


class _Lattice:
    """Kuromoji's Viterbi lattice over one text (JapaneseTokenizer.parse, add, pruneAndRescore, backtrace)."""

    def __init__(self, dictionary: Ipadic, text: str) -> None:
        self.dictionary = dictionary
        self.text = text
        self.arcs: list[list[_Arc]] = [[] for _ in range(len(text) + 1)]
        self.arcs[0].append(_Arc(0, 0, -1, -1, Entry(0, 0, 0)))
        self.forward: list[list[tuple[int, Entry]]] = [[] for _ in range(len(text) + 1)]
        self._bytes = text.encode("utf-8")
        self._byte_at = [0]
        for char in text:
            self._byte_at.append(self._byte_at[-1] + len(char.encode("utf-8")))
        self._char_at = {b: i for i, b in enumerate(self._byte_at)}

    def penalty(self, start: int, length: int) -> int:
        """JapaneseTokenizer.computePenalty."""
        if length <= SEARCH_MODE_KANJI_LENGTH:
            return 0
        if all(self.dictionary.is_kanji(c) for c in self.text[start:start + length]):
            return (length - SEARCH_MODE_KANJI_LENGTH) * SEARCH_MODE_KANJI_PENALTY
        if length > SEARCH_MODE_OTHER_LENGTH:
            return (length - SEARCH_MODE_OTHER_LENGTH) * SEARCH_MODE_OTHER_PENALTY
        return 0

    def add(self, start: int, end: int, entry: Entry, with_penalty: bool = False) -> None:
        """JapaneseTokenizer.add: the cheapest way into `entry` from the arcs ending at `start`."""
        best_cost, best_index = None, -1
        for index, arc in enumerate(self.arcs[start]):
            cost = arc.cost + self.dictionary.connection(arc.right, entry.left)
            if best_cost is None or cost < best_cost:
                best_cost, best_index = cost, index
        assert best_cost is not None
        cost = best_cost + entry.cost + (self.penalty(start, end - start) if with_penalty else 0)
        self.arcs[end].append(_Arc(cost, entry.right, start, best_index, entry))

    def _unknown_length(self, pos: int) -> int:
        first = self.text[pos]
        kind = self.dictionary.char_class(first)
        if not self.dictionary.groups(kind):
            return 1
        punctuation = _is_kuromoji_punctuation(first)
        length = 1
        while pos + length < len(self.text) and length < MAX_UNKNOWN_WORD_LENGTH:
            char = self.text[pos + length]
            if self.dictionary.char_class(char) != kind or _is_kuromoji_punctuation(char) != punctuation:
                break
            length += 1
        return length

    def build(self, search: bool) -> None:
        """The forward pass (JapaneseTokenizer.parse): known words at every reachable position, and the unknown
        word when no known word starts there or the char's class always invokes unknown-word processing (NORMAL
        mode: not inside the last unknown word)."""
        unknown_end = -1
        for pos in range(len(self.text)):
            if not self.arcs[pos]:
                continue
            known = self.dictionary.known.prefixes(self._bytes, self._byte_at[pos])
            any_match = False
            for length, value in known:
                end = self._char_at.get(self._byte_at[pos] + length)
                if length == 0 or end is None:
                    continue
                for entry in self.dictionary.known.entries(value):
                    self.add(pos, end, entry)
                    any_match = True
            if not search and unknown_end > pos:
                continue
            kind = self.dictionary.char_class(self.text[pos])
            if not any_match or self.dictionary.invokes(kind):
                unknown_end = pos + self._unknown_length(pos)
                for entry in self.dictionary.unknown[kind]:
                    self.add(pos, unknown_end, entry)

    def prune_and_rescore(self, start: int, end: int, best_start_index: int) -> None:
        """JapaneseTokenizer.pruneAndRescore: keep the words inside [start, end), score them again from the best
        arc at `start`, this time with the search-mode penalties."""
        for pos in range(end, start, -1):
            for arc in self.arcs[pos]:
                if arc.back >= start:
                    self.forward[arc.back].append((pos, arc.entry))
            self.arcs[pos] = []
        for pos in range(start, end):
            forward, self.forward[pos] = self.forward[pos], []
            if not self.arcs[pos]:
                continue
            if pos == start:
                origin = self.arcs[start][best_start_index]
                right = 0 if start == 0 else origin.right
                for to, entry in forward:
                    cost = (origin.cost + entry.cost + self.dictionary.connection(right, entry.left)
                            + self.penalty(pos, to - pos))
                    self.arcs[to].append(_Arc(cost, entry.right, pos, best_start_index, entry))
            else:
                for to, entry in forward:
                    self.add(pos, to, entry, with_penalty=True)

    def best_end(self) -> int:
        """The arc ending the text with the least cost, the connection to EOS (id 0) included."""
        costs = [arc.cost + self.dictionary.connection(arc.right, 0) for arc in self.arcs[len(self.text)]]
        return costs.index(min(costs))

    def _second_best(self, pos: int, index: int, last_left: int | None) -> int | None:
        """Search mode at a word with a penalty: the index of the arc at `pos` that starts the alternative
        segmentation of its span, or None when the word stays whole."""
        arc = self.arcs[pos][index]
        penalty = self.penalty(arc.back, pos - arc.back)
        if penalty <= 0:
            return None
        following = (lambda a: self.dictionary.connection(a.right, last_left)) if last_left is not None \
            else (lambda a: 0)
        max_cost = arc.cost + penalty + following(arc)
        back = arc.back
        self.prune_and_rescore(back, pos, arc.back_index)
        costs = [a.cost + following(a) for a in self.arcs[pos]]
        if not costs:
            return None
        least = costs.index(min(costs))
        if costs[least] <= max_cost and self.arcs[pos][least].back != back:
            return least
        return None

    def backtrace(self, search: bool) -> list[tuple[int, int]]:
        """JapaneseTokenizer.backtrace from the end: the words as (start, end), in text order. In search mode a
        word with a penalty is replaced by its second-best segmentation when that is cheap enough (the compound
        itself is discarded); the parts are not decompounded again."""
        words: list[tuple[int, int]] = []
        pos, index = len(self.text), self.best_end()
        compound_start: int | None = None
        last_left: int | None = None  # left id of the word after this one (none after the last word)
        while pos > 0:
            arc = self.arcs[pos][index]  # read before a rescoring rebuilds the arcs ending here
            if search and compound_start is None:
                alternative = self._second_best(pos, index, last_left)
                if alternative is not None:
                    compound_start, arc = arc.back, self.arcs[pos][alternative]
            if compound_start is not None and compound_start >= arc.back:
                compound_start = None
            words.append((arc.back, pos))
            last_left = arc.entry.left
            pos, index = arc.back, arc.back_index
        return words[::-1]


def _is_kuromoji_punctuation(char: str) -> bool:
    return unicodedata.category(char) in _KUROMOJI_PUNCTUATION


def kuromoji_words(text: str, mode: str = "search") -> list[tuple[int, int]]:
    """The words Lucene's JapaneseTokenizer (IPADIC, no user dictionary, punctuation kept, compounds discarded)
    outputs for `text`, as (start, end) offsets; `mode` is "search" (what Elasticsearch uses) or "normal"."""
    if not text:
        return []
    lattice = _Lattice(ipadic_dictionary(), text)
    lattice.build(search=mode == "search")
    return lattice.backtrace(search=mode == "search")


def drop_control_chars(text: str) -> tuple[str, list[int]]:
    """ControlCharFilter: the text without control, format, private-use and non-BMP chars (\\t \\n \\r stay), and
    for each kept char its index in `text`."""
    kept = [(i, c) for i, c in enumerate(text)
            if c in "\t\n\r" or (ord(c) <= 0xFFFF and unicodedata.category(c) not in _CONTROL)]
    return "".join(c for _, c in kept), [i for i, _ in kept]


def _is_bert_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char) in _BERT_PUNCTUATION


def _strip_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


def basic_split(text: str, start: int, end: int, strip_accents: bool) -> list[tuple[str, int, int]]:
    """BasicTokenFilter on one Kuromoji word (CJK chars not split): a never-split word whole, else its punctuation
    marks as words of their own; accents stripped when asked, words left empty dropped."""
    word = text[start:end]
    if word in NEVER_SPLIT:
        return [(word, start, end)]
    pieces, last = [], start
    for pos in range(start, end):
        if _is_bert_punctuation(text[pos]):
            if pos > last:
                pieces.append((text[last:pos], last, pos))
            pieces.append((text[pos], pos, pos + 1))
            last = pos + 1
    if last < end:
        pieces.append((text[last:end], last, end))
    if strip_accents:
        pieces = [(_strip_accents(p), s, e) for p, s, e in pieces]
        pieces = [(p, s, e) for p, s, e in pieces if p]
    return pieces


def split_words(text: str, strip_accents: bool = False, mode: str = "search") -> list[tuple[str, int, int]]:
    """The words WordPiece sees for `text` in Elasticsearch's bert_ja: ControlCharFilter, Kuromoji, then
    BasicTokenFilter; offsets are into `text` (as Elasticsearch corrects them through the char filter)."""
    filtered, origin = drop_control_chars(text)
    words = []
    for start, end in kuromoji_words(filtered, mode):
        for word, s, e in basic_split(filtered, start, end, strip_accents):
            words.append((word, origin[s], origin[e - 1] + 1))
    return words


class WordPiece:
    """WordPieceTokenFilter with a vocabulary: ids per word, case-insensitive when `lower` (CharArrayMap)."""

    def __init__(self, vocabulary: list[str], unknown: str, lower: bool) -> None:
        self.lower = lower
        self.ids: dict[str, int] = {}
        for index, token in enumerate(vocabulary):
            self.ids[token.lower() if lower else token] = index
        self.unknown_id = self.lookup(unknown)
        if self.unknown_id is None:
            raise ValueError(f"provided vocabulary does not contain the unknown token of [{unknown}]")

    def lookup(self, piece: str) -> int | None:
        return self.ids.get(piece.lower() if self.lower else piece)

    def pieces(self, word: str) -> list[int]:
        never_split = any((word.lower() == t.lower()) if self.lower else word == t for t in NEVER_SPLIT)
        if never_split:
            found = self.lookup(word)
            return [self.unknown_id if found is None else found]
        if len(word.encode("utf-16-le")) // 2 > MAX_INPUT_CHARS_PER_WORD:
            return [self.unknown_id]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                found = self.lookup((CONTINUATION if start > 0 else "") + word[start:end])
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unknown_id]
            ids.append(found)
            start = end
        return ids
