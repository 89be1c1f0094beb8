"""Packages in Elastic's shape for the tests: a tiny BERT traced to `<name>.pt` as the cluster calls it, its
vocabulary document and `<name>.metadata.json`, written here (test material: not the product, not the stand-in).

The traced module takes (input_ids, attention_mask, token_type_ids, position_ids) like every bert-tokenized model
the native process runs, and answers a mean-pooled text_embedding. `padding` adds bytes to the archive (as an extra
file inside the TorchScript zip, which stays loadable) so a package can span many 1 MiB parts.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tests import models
from tests.reference import mean_pooling

MAX_LENGTH = 64


@dataclass(frozen=True)
class MadePackage:
    name: str
    directory: Path  # the repository directory holding the three files
    model_dir: Path  # the Hugging Face model the `.pt` was traced from (the independent reference)
    metadata: dict[str, Any]

    @property
    def pt(self) -> Path:
        return self.directory / f"{self.name}.pt"

    @property
    def metadata_file(self) -> Path:
        return self.directory / f"{self.name}.metadata.json"

    @property
    def vocabulary_file(self) -> Path:
        return self.directory / self.metadata["vocabulary_file"]


class _MeanPooled(torch.nn.Module):
    """bert: the four inputs the native process passes; xlm_roberta: input_ids and attention_mask."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids).last_hidden_state
        return mean_pooling(hidden, attention_mask)


class _MeanPooledTwoInputs(_MeanPooled):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pooling(hidden, attention_mask)


def trace_embedding(model_dir: Path, out: Path, padding: int = 0, family: str = "bert") -> bytes:
    import transformers

    model = transformers.AutoModel.from_pretrained(str(model_dir)).eval()
    # A padded batch of two lengths, so the padding path is recorded and no length is baked in.
    pad = 0 if family == "bert" else 1
    ids = torch.tensor([[2, 30, 31, 32, 3], [2, 30, 3, pad, pad]])
    mask = (ids != pad).long()
    if family == "bert":
        module: torch.nn.Module = _MeanPooled(model)
        example: tuple[torch.Tensor, ...] = (ids, mask, torch.zeros_like(ids),
                                             torch.arange(5).expand_as(ids).contiguous())
    else:
        module, example = _MeanPooledTwoInputs(model), (ids, mask)
    with torch.no_grad():
        traced = torch.jit.trace(module, example, strict=False)
    extra = {"padding": random.Random(0).randbytes(padding)} if padding else {}
    torch.jit.save(traced, str(out), _extra_files=extra)
    return out.read_bytes()


def _vocabulary(model_dir: Path, family: str) -> dict[str, Any]:
    """The vocabulary document as Elastic publishes it: tokens by id (and each piece's score for SentencePiece)."""
    if family == "bert":
        return {"vocabulary": (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]}
    pieces = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    return {"vocabulary": [p for p, _ in pieces], "scores": [float(s) for _, s in pieces]}


def make_package(directory: Path, name: str, *, padding: int = 0, model_dir: Path | None = None,
                 family: str = "bert", **changes: Any) -> MadePackage:
    """`<name>.metadata.json`, `<name>.pt` and `<name>.vocab.json` in `directory`, as Elastic publishes them;
    `changes` replace metadata fields (None removes one). `family` bert (like ELSER) or xlm_roberta (like E5)."""
    directory.mkdir(parents=True, exist_ok=True)
    make_model = models.bert_encoder if family == "bert" else models.xlm_roberta
    model_dir = model_dir or make_model(directory.parent / f"{name}-hf")
    definition = trace_embedding(model_dir, directory / f"{name}.pt", padding, family)
    (directory / f"{name}.vocab.json").write_text(json.dumps(_vocabulary(model_dir, family)), encoding="utf-8")
    options = {"do_lower_case": True} if family == "bert" else {}
    metadata = {
        "packaged_model_id": name, "description": "a tiny test package", "minimum_version": "12.0.0",
        "create_time": "2024-01-01T00:00:00.000Z", "size": len(definition),
        "sha256": hashlib.sha256(definition).hexdigest(),
        "inference_config": {"text_embedding": {"tokenization": {family: {
            **options, "with_special_tokens": True, "max_sequence_length": MAX_LENGTH, "truncate": "first"}}}},
        "metadata": {}, "model_type": "pytorch", "tags": [], "vocabulary_file": f"{name}.vocab.json",
    }
    metadata.update(changes)
    metadata = {k: v for k, v in metadata.items() if v is not None}
    (directory / f"{name}.metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return MadePackage(name, directory, model_dir, metadata)


def reference_embeddings(package: MadePackage, texts: list[str]) -> torch.Tensor:
    """The Hugging Face model run directly (its own tokenizer), mean-pooled: what the cluster should answer."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(package.model_dir))
    model = transformers.AutoModel.from_pretrained(str(package.model_dir)).eval()
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    return mean_pooling(hidden, encoded["attention_mask"])
