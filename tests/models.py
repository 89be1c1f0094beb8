"""Tiny random models for the export tests: real transformers classes with small configs, saved with
save_pretrained next to tokenizers built from small vocabularies written here. Nothing is downloaded.

Each factory writes a model folder and returns it. Sizes are chosen so that tracing and checking take a second.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

_TEXT = (
    "the quick brown fox jumps over lazy dog near river bank hello elasticsearch stores documents and "
    "answers search queries in real time weather paris is sunny today engines index millions of my cat "
    "sleeps on warm laptop keyboard what does where this example about animals a short one traced pair "
)
WORDS = tuple(_TEXT.split())
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 48}
MAX_LEN = 64  # tokenizers' model_max_length: keeps the "past max length" check text short


def _seed(seed: int) -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(seed)


def _wordpiece_vocab(specials: list[str], tail: list[str] = ()) -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = [*specials, *letters, *[f"##{c}" for c in letters], ".", ",", "?", "!", "'", *WORDS, *tail]
    return list(dict.fromkeys(tokens))  # a real vocab.txt has no duplicates: ids are line numbers


def _labels(config: dict[str, Any], labels: list[str] | None) -> dict[str, Any]:
    if labels is None:
        return config
    return {**config, "id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def bert(out: Path, head: str = "AutoModelForSequenceClassification", labels: list[str] | None = None,
         model_type: str = "bert", seed: int = 0) -> Path:
    """BERT-family (bert, distilbert, electra...) with a WordPiece tokenizer from vocab.txt."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok_class = {"bert": transformers.BertTokenizer, "distilbert": transformers.DistilBertTokenizer,
                 "electra": transformers.BertTokenizer}[model_type]
    tokenizer = tok_class(vocab=str(out / "vocab.txt"), do_lower_case=True, model_max_length=MAX_LEN)
    if model_type == "distilbert":
        config = transformers.DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=48,
                                               max_position_embeddings=128, **_labels({}, labels))
    else:
        cfg_class = transformers.BertConfig if model_type == "bert" else transformers.ElectraConfig
        extra = {"embedding_size": 32} if model_type == "electra" else {}
        config = cfg_class(vocab_size=len(vocab), max_position_embeddings=128, **SMALL, **extra,
                           **_labels({}, labels))
    model = getattr(transformers, head).from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def bert_ja(out: Path, head: str = "AutoModelForMaskedLM", seed: int = 1) -> Path:
    """BertJapaneseTokenizer with MeCab word splitting (fugashi + ipadic) and WordPiece subwords."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    japanese = ["日本語", "の", "テキスト", "です", "東京", "タワー", "は", "高い", "。", "猫", "が", "寝", "て",
                "いる"]
    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], japanese)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertJapaneseTokenizer(
        vocab_file=str(out / "vocab.txt"), word_tokenizer_type="mecab", mecab_kwargs={"mecab_dic": "ipadic"},
        do_lower_case=False, model_max_length=MAX_LEN)
    config = transformers.BertConfig(vocab_size=len(vocab), max_position_embeddings=128, **SMALL)
    getattr(transformers, head).from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def mpnet_sentence_transformer(out: Path, seed: int = 2, dense: int = 16, prompts: dict[str, str] | None = None,
                               default_prompt_name: str | None = None) -> Path:
    """A sentence-transformers folder: tiny MPNet, mean pooling, a Dense layer and normalisation (and prompts,
    as e5-style models declare them)."""
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    _seed(seed)
    base = out.parent / f"{out.name}-base"
    base.mkdir(parents=True)
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *_wordpiece_vocab(["[UNK]"])[0:], "<mask>"]
    (base / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.MPNetTokenizer(vocab=str(base / "vocab.txt"), do_lower_case=True, model_max_length=MAX_LEN)
    config = transformers.MPNetConfig(vocab_size=len(vocab), max_position_embeddings=130, **SMALL)
    transformers.MPNetModel(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    transformer = modules.Transformer(str(base), max_seq_length=48)
    width = transformer.get_embedding_dimension()
    st = SentenceTransformer(modules=[transformer, modules.Pooling(width, pooling_mode="mean"),
                                      modules.Dense(width, dense), modules.Normalize()], device="cpu",
                             prompts=prompts, default_prompt_name=default_prompt_name)
    st.save(str(out))
    return out


def bert_sentence_transformer(out: Path, seed: int = 6) -> Path:
    """sentence-transformers over a cased BERT tokenizer with its own `do_lower_case` (the sentence_bert_config.json
    of sentence-transformers before 6.0, as most hub models have it): it lowercases the text before tokenizing,
    which the cluster must be told (do_lower_case) and the check must reproduce."""
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    _seed(seed)
    base = out.parent / f"{out.name}-base"
    base.mkdir(parents=True)
    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], ["Hello", "The"])
    (base / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizer(vocab=str(base / "vocab.txt"), do_lower_case=False,
                               model_max_length=MAX_LEN).save_pretrained(base)
    config = transformers.BertConfig(vocab_size=len(vocab), max_position_embeddings=128, **SMALL)
    transformers.BertModel(config).save_pretrained(base)
    transformer = modules.Transformer(str(base), max_seq_length=40)
    width = transformer.get_embedding_dimension()
    SentenceTransformer(modules=[transformer, modules.Pooling(width, pooling_mode="cls")],
                        device="cpu").save(str(out))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 40, "do_lower_case": True}))
    return out


def dpr_question_encoder(out: Path, seed: int = 7) -> Path:
    """A DPR question encoder: text_embedding read from its pooled output, no sentence-transformers."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.DPRQuestionEncoderTokenizer(vocab=str(out / "vocab.txt"), model_max_length=MAX_LEN)
    tokenizer.save_pretrained(out)
    config = transformers.DPRConfig(vocab_size=len(vocab), max_position_embeddings=128, **SMALL)
    transformers.DPRQuestionEncoder(config).save_pretrained(out)
    return out


def _byte_level_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary: the 256 byte symbols, a few merges, and RoBERTa's special tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *symbols]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("o", "r"), ("e", "r"), ("i", "n"), ("Ġ", "s"),
              ("Ġ", "f"), ("o", "x")]
    tokens += ["".join(merge) for merge in merges]
    tokens.append("<mask>")
    return {t: i for i, t in enumerate(tokens)}, merges


def roberta(out: Path, head: str = "AutoModelForSequenceClassification", labels: list[str] | None = None,
            model_type: str = "roberta", seed: int = 3) -> Path:
    """RoBERTa or BART with a byte-level BPE tokenizer (vocab + merges)."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    vocab, merges = _byte_level_vocab()
    if model_type == "bart":
        tokenizer = transformers.BartTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LEN)
        config = transformers.BartConfig(vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1,
                                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=48,
                                         decoder_ffn_dim=48, max_position_embeddings=128, **_labels({}, labels))
    else:
        tokenizer = transformers.RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LEN)
        config = transformers.RobertaConfig(vocab_size=len(vocab), max_position_embeddings=MAX_LEN + 2,
                                            pad_token_id=1, **SMALL, **_labels({}, labels))
    getattr(transformers, head).from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _unigram_vocab(specials: list[str]) -> list[tuple[str, float]]:
    pieces = [f"▁{w}" for w in dict.fromkeys(WORDS)] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁", ".", ",", "?"]
    return [(s, 0.0) for s in specials] + [(p, -1.0 - i / 10) for i, p in enumerate(pieces)]


def xlm_roberta(out: Path, head: str = "AutoModel", seed: int = 4) -> Path:
    """XLM-RoBERTa with a SentencePiece-style Unigram tokenizer (pieces with scores)."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    vocab = [*_unigram_vocab(["<s>", "<pad>", "</s>", "<unk>"]), ("<mask>", 0.0)]
    tokenizer = transformers.XLMRobertaTokenizer(vocab=vocab, model_max_length=MAX_LEN)
    config = transformers.XLMRobertaConfig(vocab_size=len(vocab), max_position_embeddings=MAX_LEN + 2,
                                           pad_token_id=1, **SMALL)
    getattr(transformers, head).from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def deberta_v2(out: Path, head: str = "AutoModelForSequenceClassification", labels: list[str] | None = None,
               seed: int = 5) -> Path:
    """DeBERTa-v2 with a Unigram tokenizer."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    vocab = [*_unigram_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]), ("[MASK]", 0.0)]
    tokenizer = transformers.DebertaV2Tokenizer(vocab=vocab, model_max_length=MAX_LEN)
    config = transformers.DebertaV2Config(vocab_size=len(vocab), max_position_embeddings=128, **SMALL,
                                          **_labels({}, labels))
    getattr(transformers, head).from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def unsupported_tokenizer(out: Path) -> Path:
    """A BERT model whose tokenizer is a GPT-2 (byte-level BPE without RoBERTa's specials): no ES family."""
    import transformers

    out.mkdir(parents=True)
    vocab, merges = _byte_level_vocab()
    transformers.GPT2Tokenizer(vocab=vocab, merges=merges).save_pretrained(out)
    transformers.BertModel(transformers.BertConfig(vocab_size=len(vocab), **SMALL)).save_pretrained(out)
    return out


def with_legacy_weights(model_dir: Path, head: str = "AutoModelForSequenceClassification") -> Path:
    """Replace model.safetensors by a pickled pytorch_model.bin, as older hub repositories have it."""
    import transformers

    model = getattr(transformers, head).from_pretrained(str(model_dir))
    (model_dir / "model.safetensors").unlink()
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    return model_dir


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def bert_ja_sentence_transformer(out: Path, seed: int = 8) -> Path:
    """sentence-transformers over a BERT whose tokenizer is BertJapaneseTokenizer (MeCab word splitting), as
    Japanese sentence-embedding models have it: mean pooling, no normalisation."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    base = bert_ja(out.parent / f"{out.name}-base", head="AutoModel", seed=seed)
    transformer = modules.Transformer(str(base), max_seq_length=48)
    width = transformer.get_embedding_dimension()
    SentenceTransformer(modules=[transformer, modules.Pooling(width, pooling_mode="mean")],
                        device="cpu").save(str(out))
    return out


def bert_masked_lm(out: Path, seed: int = 9, bias: float = -0.25) -> Path:
    """A BERT masked-LM for text_expansion, its output bias lowered so that most logits are negative and the
    SPLADE weights sparse, as a trained expansion model's are (random logits would weigh nearly every token)."""
    import transformers

    models_dir = bert(out, "AutoModelForMaskedLM", seed=seed)
    model = transformers.BertForMaskedLM.from_pretrained(str(models_dir))
    with torch.no_grad():
        model.cls.predictions.bias.fill_(bias)
    model.save_pretrained(models_dir)
    return models_dir


def splade_sparse_encoder(out: Path, pooling_strategy: str = "max", activation_function: str = "relu",
                          seed: int = 10, max_seq_length: int = 40, mlm_transformer: bool = True) -> Path:
    """A sentence-transformers sparse encoder saved by SparseEncoder.save: MLMTransformer (or, as
    sentence-transformers 5.4+ writes new ones, a Transformer with transformer_task fill-mask) over a tiny BERT
    masked-LM, then SpladePooling with the given pooling and activation. The base folder keeps its vocab.txt."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    base = bert_masked_lm(out.parent / f"{out.name}-base", seed=seed)
    first = (MLMTransformer(str(base), max_seq_length=max_seq_length) if mlm_transformer
             else Transformer(str(base), transformer_task="fill-mask", max_seq_length=max_seq_length))
    encoder = SparseEncoder(modules=[first, SpladePooling(pooling_strategy=pooling_strategy,
                                                          activation_function=activation_function)], device="cpu")
    encoder.save(str(out))
    return out


ACCENTED = ["é", "è", "ê", "à", "ö", "ü", "ï", "ç", "ã", "å", "ř", "ł"]  # with a ## form each: words keep them


def bert_encoder(out: Path, seed: int = 11, strip_accents: bool | None = None, lowercase: bool = True) -> Path:
    """A plain uncased BERT encoder (BertModel, no head, no sentence-transformers files) for text_embedding with
    the exporter's own pooling. Its vocabulary has accented letters, so an accented word is split into pieces
    either way. `strip_accents=False` makes the tokenizer lower-case but keep accents (as some hub models declare
    it), where Elasticsearch's bert tokenization strips them whenever it lower-cases; `lowercase=False` with
    `strip_accents=True` strips them without lower-casing, where Elasticsearch keeps them."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                             [*ACCENTED, *[f"##{c}" for c in ACCENTED]])
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizer(vocab=str(out / "vocab.txt"), do_lower_case=lowercase, strip_accents=strip_accents,
                               model_max_length=MAX_LEN).save_pretrained(out)
    config = transformers.BertConfig(vocab_size=len(vocab), max_position_embeddings=128, **SMALL)
    transformers.BertModel(config).save_pretrained(out)
    return out


def mpnet_encoder(out: Path, seed: int = 12) -> Path:
    """A plain uncased MPNet encoder (MPNetModel, no sentence-transformers files): the mpnet tokenization, whose
    cluster input is input_ids and attention_mask only."""
    import transformers

    _seed(seed)
    out.mkdir(parents=True)
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *_wordpiece_vocab(["[UNK]"]), "<mask>"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.MPNetTokenizer(vocab=str(out / "vocab.txt"), do_lower_case=True,
                                model_max_length=MAX_LEN).save_pretrained(out)
    config = transformers.MPNetConfig(vocab_size=len(vocab), max_position_embeddings=130, **SMALL)
    transformers.MPNetModel(config).save_pretrained(out)
    return out
