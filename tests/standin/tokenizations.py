"""The `tokenization` of an NLP task config, parsed as Elasticsearch's strict Tokenization parsers do.

Owns the tokenizations a PUT may name (Tokenization.declareCommonFields and each subclass; `byte_level_bpe` from
9.5.0), their constructor checks (Tokenization, RobertaTokenization, XLMRobertaTokenization,
ByteLevelBpeTokenization), the defaults a stored config carries and each tokenization's mask token. Every
tokenization is read by a ConstructingObjectParser whose arguments are all optional: the constructor runs when the
last of them arrives, or once the object is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import EsError
from .jsonscan import Path
from .releases import Version
from .xcontent import Failed, Location, Source, expect_object, failed_to_build, read_field, unknown_field

COMMON_FIELDS = {"do_lower_case": "bool", "with_special_tokens": "bool", "max_sequence_length": "int",
                 "truncate": "string", "span": "int"}
SPAN_SINCE: Version = (8, 2, 0)  # Tokenization reads `span` from transport version 8.2.0 on
TRUNCATE_ENUM = "org.elasticsearch.xpack.core.ml.inference.trainedmodel.Tokenization.Truncate"
TRUNCATE_VALUES = ("first", "second", "none", "balanced")
UNSET_SPAN = -1


@dataclass(frozen=True)
class Kind:
    parser: str  # the ConstructingObjectParser's name, as its errors print it
    mask_token: str
    extra: tuple[tuple[str, str, Any], ...] = ()  # (field, value kind, default), in toXContent's order
    lower_case_refused: str = ""  # the tokenizer name in "unable to set [do_lower_case] to [true] for ..."
    since: Version = (8, 0, 0)  # the first release whose parser registry names it


# ByteLevelBpeTokenization: special token strings are options; a blank one is the default (resolveSpecialToken).
_BPE_OPTIONS = (("add_prefix_space", "bool", False), ("unk_token", "string", "<unk>"),
                ("pad_token", "string", "<pad>"), ("bos_token", "string", "<s>"), ("eos_token", "string", "</s>"),
                ("mask_token", "string", "<mask>"))
KINDS = {
    "bert": Kind("bert_tokenization", "[MASK]"),
    "bert_ja": Kind("bert_japanese_tokenization", "[MASK]"),
    "mpnet": Kind("mpnet_tokenization", "<mask>"),
    "roberta": Kind("roberta_tokenization", "<mask>", (("add_prefix_space", "bool", False),), "roberta"),
    "xlm_roberta": Kind("xlm_roberta_tokenization", "<mask>", (), "XLMRoberta"),
    "deberta_v2": Kind("deberta_v2", "[MASK]"),
    # Transport version ml_byte_level_bpe_tokenization (9377000, no backport id) lies in 9.5's range.
    "byte_level_bpe": Kind("byte_level_bpe_tokenization", "<mask>", _BPE_OPTIONS, "byte_level_bpe", since=(9, 5, 0)),
}


def registered(version: Version) -> set[str]:
    """The tokenization names the release's NamedXContentRegistry knows."""
    return {name for name, kind in KINDS.items() if version >= kind.since}


def fields(kind: str, version: Version) -> dict[str, str]:
    declared = {name: k for name, k in COMMON_FIELDS.items() if name != "span" or version >= SPAN_SINCE}
    return declared | {name: value_kind for name, value_kind, _ in KINDS[kind].extra}


def mask_token(kind: str, options: dict[str, Any]) -> str:
    """Tokenization.getMaskToken(): fixed per tokenizer, configurable for byte_level_bpe."""
    return str(options.get("mask_token", KINDS[kind].mask_token))


def default() -> tuple[str, dict[str, Any]]:
    """Tokenization.createDefault(): bert with every default."""
    return "bert", construct("bert", {})


def parse_entry(kind: str, value: Any, src: Source, path: Path, version: Version) -> dict[str, Any]:
    """One tokenization's options, read in document order; the stored options, or Failed."""
    spec = KINDS[kind]
    expect_object(spec.parser, value, src, path)
    declared = fields(kind, version)
    args: dict[str, Any] = {}
    built: dict[str, Any] | None = None
    for name, raw in value.items():
        field_path = (*path, name)
        if name not in declared:
            raise unknown_field(spec.parser, name, declared, src, field_path)
        args[name] = read_field(spec.parser, name, declared[name], raw, src, field_path)
        if len(args) == len(declared):
            # The last constructor argument arrived: the object is built inside this field's parse.
            built = _build(kind, args, src.value(field_path), spec.parser)
            if isinstance(built, Failed):
                raise built.wrap(spec.parser, name)
    if built is None:
        built = _build(kind, args, src.end(path), spec.parser)
        if isinstance(built, Failed):
            raise built
    return built


def _build(kind: str, args: dict[str, Any], at: Location, parser: str) -> dict[str, Any] | Failed:
    try:
        return construct(kind, args)
    except EsError as cause:
        return failed_to_build(parser, cause, at)


def construct(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """The tokenization's constructor, in its order of checks; the options a stored config shows."""
    truncate = args.get("truncate")
    if truncate is not None and truncate.upper() not in (t.upper() for t in TRUNCATE_VALUES):
        raise errors.illegal_argument(f"No enum constant {TRUNCATE_ENUM}.{truncate.upper()}")
    max_length = args.get("max_sequence_length")
    if max_length is not None and max_length <= 0:
        raise errors.illegal_argument("[max_sequence_length] must be positive")
    max_length = 512 if max_length is None else max_length
    truncate = "first" if truncate is None else truncate.lower()
    span = args.get("span", UNSET_SPAN)
    if span < 0 and span != UNSET_SPAN:
        raise errors.illegal_argument(f"[span] must be non-negative to indicate span length or [{UNSET_SPAN}] "
                                      "to indicate no windowing should occur")
    if span > max_length:
        raise errors.illegal_argument(
            f"[span] provided [{span}] must not be greater than [max_sequence_length] provided [{max_length}]")
    if span != UNSET_SPAN and truncate != "none":
        raise errors.illegal_argument(f"[span] must not be provided when [truncate] is [{truncate}]")
    lower = bool(args.get("do_lower_case", False))
    refused_for = KINDS[kind].lower_case_refused
    if refused_for and lower:
        raise errors.illegal_argument(f"unable to set [do_lower_case] to [true] for {refused_for} tokenizer")
    stored = {"do_lower_case": lower, "with_special_tokens": bool(args.get("with_special_tokens", True)),
              "max_sequence_length": max_length, "truncate": truncate, "span": span}
    extra = KINDS[kind].extra
    return stored | {name: _option(args.get(name), value_kind, default) for name, value_kind, default in extra}


def _option(value: Any, value_kind: str, default: Any) -> Any:
    if value_kind == "bool":
        return default if value is None else bool(value)
    return default if value is None or not str(value).strip() else value
