"""torch modules shaped like the cluster's call: exactly the positional inputs the native process passes for the
tokenization, and exactly the tensor it reads for the task.

The Hugging Face model sits inside unchanged; the wrapper only routes inputs by name (dropping the ones the
model's forward does not take, e.g. DistilBERT's token_type_ids) and picks the output. For sentence-transformers
models the whole pipeline (transformer, pooling, dense, normalisation) is inside, so the traced output is what
`SentenceTransformer.encode` returns, not the raw token states.
Imports torch at module level: import this module only inside export functions.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from loader.errors import ModelError

# What the cluster reads, per task (tracing-conventions.md): which output of the Hugging Face model.
OUTPUT_FOR_TASK = {
    "fill_mask": "logits",
    "text_expansion": "logits",
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

    def state_bytes(self) -> int:
        """Parameters plus buffers: what the cluster holds once per deployment."""
        tensors = [*self.wrapper.parameters(), *self.wrapper.buffers()]
        return sum(t.nelement() * t.element_size() for t in tensors)


def _auto_class(task: str, architectures: tuple[str, ...]) -> Any:
    import transformers

    if task == "text_embedding":  # only reached for DPR encoders; sentence-transformers load elsewhere
        return getattr(transformers, architectures[0])
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


def load_hf_model(path: Path, task: str, architectures: tuple[str, ...], arity: int) -> LoadedModel:
    """Load the head the task reads; refuse if the checkpoint lacks its weights (they would be random)."""
    cls = _auto_class(task, architectures)
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
    output = "pooler" if task == "text_embedding" else OUTPUT_FOR_TASK[task]
    wrapper = WRAPPER_BY_ARITY[arity](HFCore(model, output)).eval()
    return LoadedModel(wrapper=wrapper, original=model, output=output, sentence_transformer=False)


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


def quantize(module: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of the Linear layers (weights int8, activations quantised on the fly)."""
    import warnings

    with warnings.catch_warnings():
        # torch deprecates the quantized tensor API in favour of torchao, which TorchScript cannot save.
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
