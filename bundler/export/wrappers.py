"""torch modules shaped like the cluster's call: exactly the positional inputs the native process passes for the
tokenization, and exactly the tensor it reads for the task.

The Hugging Face model sits inside unchanged; the wrapper only routes inputs by name (dropping the ones the
model's forward does not take, e.g. DistilBERT's token_type_ids) and picks the output. For sentence-transformers
models the whole pipeline (transformer, pooling, dense, normalisation) is inside, so the traced output is what
`SentenceTransformer.encode` returns, not the raw token states. For text_expansion the SPLADE pooling (sparse.py)
is inside, so the traced output is one weight per vocabulary entry, `[batch, vocab]`. For a plain encoder's
text_embedding the pooling of its token states (pooling.py) is inside, `[batch, hidden]`.
Imports torch at module level: import this module only inside export functions.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bundler.export import sparse
from bundler.export.pooling import EmbeddingPooling
from bundler.export.tasks import PoolingSettings, SpladeSettings
from loader.errors import ModelError

# What the cluster reads, per task (tracing-conventions.md): which output of the Hugging Face model.
OUTPUT_FOR_TASK = {
    "fill_mask": "logits",
    "text_expansion": "logits",  # pooled inside the wrapper (ExpansionCore): the cluster reads [batch, vocab]
    "ner": "logits",
    "text_classification": "logits",
    "zero_shot_classification": "logits",
    "text_similarity": "logits",
    "question_answering": "start_end",
    "pass_through": "first",
}


def pick_output(output: Any, kind: str) -> Tensor:
    """The tensor the cluster reads, from a transformers ModelOutput (used by the wrapper and by the check)."""
    if kind == "logits":
        return output.logits
    if kind == "start_end":
        # One tensor [2, batch, seq]: the native process reads only the first element of a tuple.
        return torch.stack([output.start_logits, output.end_logits], dim=0)
    if kind == "pooler":
        return output.pooler_output
    return output[0]


class HFCore(nn.Module):
    """A transformers model, called with the named inputs it accepts, returning one tensor."""

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model = model
        self.output = output
        self.accepted = set(inspect.signature(model.forward).parameters)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        kwargs = {name: value for name, value in inputs.items() if name in self.accepted}
        return pick_output(self.model(**kwargs, return_dict=True), self.output)


class ExpansionCore(HFCore):
    """A masked-LM whose logits are pooled into SPLADE weights `[batch, vocab]` (sparse.SparsePooling)."""

    def __init__(self, model: nn.Module, pooling: sparse.SparsePooling) -> None:
        super().__init__(model, "logits")
        self.pooling = pooling

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.pooling(super().forward(inputs), inputs["attention_mask"])


class PooledCore(HFCore):
    """An encoder whose last hidden states are pooled into one vector per text (pooling.EmbeddingPooling)."""

    def __init__(self, model: nn.Module, pooling: EmbeddingPooling) -> None:
        super().__init__(model, "first")
        self.pooling = pooling

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.pooling(super().forward(inputs), inputs["attention_mask"])


class STCore(nn.Module):
    """A sentence-transformers model: every module runs, so pooling, dense and normalisation are included."""

    def __init__(self, st_model: nn.Module) -> None:
        super().__init__()
        self.st_model = st_model

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        features: dict[str, Tensor] = dict(inputs)
        for index, module in enumerate(self.st_model):
            features = module(features)
            if index == 0 and "token_embeddings" in features:
                # CLS pooling finds the first real token with argmax (for left padding), an operation newer
                # Elasticsearch releases refuse. The cluster pads on the right, so the first token is the CLS:
                # handing it over directly gives the same vector without argmax in the graph.
                features["cls_token_embeddings"] = features["token_embeddings"][:, 0]
        return features["sentence_embedding"]


class ClusterInputs4(nn.Module):
    """bert, bert_ja: input_ids, attention_mask, token_type_ids, position_ids."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                position_ids: Tensor) -> Tensor:
        return self.core({"input_ids": input_ids, "attention_mask": attention_mask,
                          "token_type_ids": token_type_ids, "position_ids": position_ids})


class ClusterInputs3(nn.Module):
    """deberta_v2: input_ids, attention_mask, token_type_ids."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        return self.core({"input_ids": input_ids, "attention_mask": attention_mask,
                          "token_type_ids": token_type_ids})


class ClusterInputs2(nn.Module):
    """mpnet, roberta (and BART), xlm_roberta: input_ids, attention_mask."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.core({"input_ids": input_ids, "attention_mask": attention_mask})


WRAPPER_BY_ARITY: dict[int, type[nn.Module]] = {2: ClusterInputs2, 3: ClusterInputs3, 4: ClusterInputs4}


@dataclass
class LoadedModel:
    """The original model (for the check's reference answers) and the cluster-shaped wrapper around it."""

    wrapper: nn.Module
    original: nn.Module  # the transformers model, or the SentenceTransformer
    output: str  # how to read the original's output; "st" for sentence-transformers
    sentence_transformer: bool
    embedding_pooling: PoolingSettings | None = None  # a plain encoder's text_embedding: its token states pooled

    def state_bytes(self) -> int:
        """Parameters plus buffers: what the cluster holds once per deployment."""
        tensors = [*self.wrapper.parameters(), *self.wrapper.buffers()]
        return sum(t.nelement() * t.element_size() for t in tensors)


def _auto_class(task: str, architectures: tuple[str, ...], pooled_output: bool) -> Any:
    import transformers

    if task == "text_embedding":  # a DPR encoder reads its own class; a plain encoder its base model
        return getattr(transformers, architectures[0]) if pooled_output else transformers.AutoModel
    return {
        "fill_mask": transformers.AutoModelForMaskedLM,
        "text_expansion": transformers.AutoModelForMaskedLM,
        "ner": transformers.AutoModelForTokenClassification,
        "text_classification": transformers.AutoModelForSequenceClassification,
        "zero_shot_classification": transformers.AutoModelForSequenceClassification,
        "text_similarity": transformers.AutoModelForSequenceClassification,
        "question_answering": transformers.AutoModelForQuestionAnswering,
        "pass_through": transformers.AutoModel,
    }[task]


# Tasks whose heads read the pooled output (BERT-style sequence classification): its weights must be there.
_READS_POOLER = ("text_classification", "zero_shot_classification", "text_similarity")


def _ignorable(key: str, task: str) -> bool:
    # Buffers rebuilt at load; the pooler only where the task's head does not read it.
    return "position_ids" in key or ("pooler" in key and task not in _READS_POOLER)


def load_hf_model(path: Path, task: str, architectures: tuple[str, ...], arity: int,
                  splade: SpladeSettings | None = None, pooling: PoolingSettings | None = None) -> LoadedModel:
    """Load the head the task reads; refuse if the checkpoint lacks its weights (they would be random). For
    text_expansion the logits are pooled as `splade` says (a plain masked-LM: max pooling of log(1 + relu)); for
    a plain encoder's text_embedding the token states are pooled as `pooling` says (without it, a DPR encoder:
    its own pooled output)."""
    cls = _auto_class(task, architectures, pooled_output=pooling is None)
    try:
        model, info = cls.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load the model for {task} ({type(exc).__name__}: {exc})") from None
    missing = sorted(k for k in info.get("missing_keys", ()) if not _ignorable(k, task))
    if missing:
        raise ModelError(f"{path}: the checkpoint has no weights for {len(missing)} tensor(s) the {task} model "
                         f"needs (e.g. {', '.join(missing[:3])}); they would be random",
                         hint="choose the task the model was trained for")
    model.eval()
    core = _core(model, task, splade, pooling)
    wrapper = WRAPPER_BY_ARITY[arity](core).eval()
    return LoadedModel(wrapper=wrapper, original=model, output=core.output, sentence_transformer=False,
                       embedding_pooling=pooling if task == "text_embedding" else None)


def _core(model: nn.Module, task: str, splade: SpladeSettings | None, pooling: PoolingSettings | None) -> HFCore:
    """The model with the output the cluster reads picked, and pooled where the task needs it inside."""
    if task == "text_expansion":
        splade = splade or SpladeSettings()
        return ExpansionCore(model, sparse.SparsePooling(splade.pooling_strategy, splade.activation_function))
    if task == "text_embedding" and pooling is not None:
        return PooledCore(model, EmbeddingPooling(pooling.mode, pooling.normalize))
    return HFCore(model, "pooler" if task == "text_embedding" else OUTPUT_FOR_TASK[task])


def load_sentence_transformer(path: Path, arity: int, max_seq_length: int) -> LoadedModel:
    from sentence_transformers import SentenceTransformer

    try:
        st_model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load as a sentence-transformers model ({type(exc).__name__}: {exc})") \
            from None
    # The cluster truncates at the config's max_sequence_length; the reference must truncate at the same place.
    st_model.max_seq_length = max_seq_length
    st_model.eval()
    wrapper = WRAPPER_BY_ARITY[arity](STCore(st_model)).eval()
    return LoadedModel(wrapper=wrapper, original=st_model, output="st", sentence_transformer=True)


def load_sparse_encoder(root: Path, model_dir: Path, architectures: tuple[str, ...], arity: int,
                        splade: SpladeSettings, max_seq_length: int) -> LoadedModel:
    """A sentence-transformers sparse encoder (MLMTransformer + SpladePooling): the masked-LM loaded from its
    folder and pooled as its SpladePooling says is what is traced; the SparseEncoder itself is the reference."""
    from sentence_transformers import SparseEncoder

    loaded = load_hf_model(model_dir, "text_expansion", architectures, arity, splade)
    try:
        encoder = SparseEncoder(str(root), device="cpu", local_files_only=True)
    except Exception as exc:
        raise ModelError(f"{root}: cannot load as a sentence-transformers sparse encoder ({type(exc).__name__}: "
                         f"{exc})") from None
    # The cluster truncates at the config's max_sequence_length and keeps every weight above 0: so must encode().
    encoder.max_seq_length = max_seq_length
    encoder.max_active_dims = None
    encoder.eval()
    return LoadedModel(wrapper=loaded.wrapper, original=encoder, output="sparse_encoder", sentence_transformer=True)


def quantize(module: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Dynamic int8 quantisation of the Linear layers (weights int8, activations quantised on the fly). In place
    once the original's answers are taken: a copy would hold the float weights twice."""
    import warnings

    with warnings.catch_warnings():
        # torch deprecates the quantized tensor API in favour of torchao, which TorchScript cannot save.
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=inplace)
