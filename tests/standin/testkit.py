"""Small helpers for tests that drive the stand-in: tiny TorchScript models and upload steps.

Owns test material only (no part of the server): hand-written TorchScript modules of every task
shape, a tiny random BERT traced the way the exporter traces, and the upload sequence a loader
performs (config, vocabulary, base64 parts) through the official client.
"""

from __future__ import annotations

import base64
import io
import warnings
from typing import Any

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
         "hello", "world", "elastic", "search", "is", "in", "mountain", "view", "paris", "london", "##s", "##ing", "a",
         "an"]


def bert_config(task: str = "text_embedding", **task_settings: Any) -> dict[str, Any]:
    """A PUT body for a bert-tokenized model of `task`."""
    settings = {"tokenization": {"bert": {"do_lower_case": True, "max_sequence_length": 16}}, **task_settings}
    return {"model_type": "pytorch", "inference_config": {task: settings}, "input": {"field_names": ["text_field"]}}


def upload(client: Any, model_id: str, definition: bytes, *, config: dict[str, Any] | None = None,
           vocabulary: list[str] | None = None, part_size: int = 16 * 1024) -> int:
    """Config, vocabulary and every part, in order, last part last. Returns the number of parts."""
    client.ml.put_trained_model(model_id=model_id, **(config or bert_config()))
    client.ml.put_trained_model_vocabulary(model_id=model_id, vocabulary=vocabulary or VOCAB)
    parts = [definition[i:i + part_size] for i in range(0, len(definition), part_size)]
    for number, chunk in enumerate(parts):
        client.ml.put_trained_model_definition_part(
            model_id=model_id, part=number, definition=base64.b64encode(chunk).decode(),
            total_definition_length=len(definition), total_parts=len(parts))
    return len(parts)


def save(module: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; ES needs it
        torch.jit.save(module, buffer)
    return buffer.getvalue()


MPNET_VOCAB = ["<s>", "<pad>", "</s>", "<unk>", *VOCAB[5:-1], "[UNK]", "<mask>"]


def scripted(kind: str, width: int = 8, labels: int = 3, padding: int = 0) -> bytes:
    """Hand-written TorchScript modules taking bert's four inputs (the task shapes take two or four).

    kind: `embedding` ([1, width]), `classification` ([1, labels]), `tokens` ([1, seq, labels]),
    `pass_through` ([1, seq, width], the raw per-token output a pass_through task returns as is),
    `fill_mask` ([1, seq, len(VOCAB)]), `tril` (uses aten::tril), `from_file` (aten::from_file at the top of
    forward), `hooks` (has __getstate__/__setstate__). `padding`: an unused buffer of that many zero bytes, to make
    an archive of several MiB (the model repository's 1 MiB parts).
    """
    from typing import Optional

    import torch
    from torch import Tensor, nn

    torch.manual_seed(0)

    class Embed(nn.Module):
        def __init__(self, out: int, per_token: bool) -> None:
            super().__init__()
            self.embedding = nn.Embedding(len(VOCAB), width)
            self.head = nn.Linear(width, out)
            self.per_token = per_token

        def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,  # noqa: UP045
                    position_ids: Optional[Tensor] = None) -> Tensor:  # noqa: UP045 - TorchScript wants Optional
            hidden = self.embedding(input_ids)
            if self.per_token:
                return self.head(hidden)
            return self.head(hidden.mean(dim=1))

    modules = {
        "embedding": lambda: Embed(width, False),
        "classification": lambda: Embed(labels, False),
        "tokens": lambda: Embed(labels, True),
        "pass_through": lambda: Embed(width, True),
        "fill_mask": lambda: Embed(len(VOCAB), True),
        **_refused_modules(),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        plain = modules[kind]().eval()
        if padding:
            plain.register_buffer("padding", torch.zeros(padding, dtype=torch.uint8))
        module = torch.jit.script(plain)
    return save(module)


def probe(mode: str, table: list[list[float]]) -> bytes:
    """A TorchScript module whose output a test computes by hand from the input ids, `table` giving each id's row.

    mode `rows`: `[batch, k]`, the sum over the sequence of table[id] times the attention mask (a sequence
    classification head); `tokens`: `[batch, seq, k]`, table[id] per token (token classification, masked LM
    logits); `pooled`: `[batch, k]`, the maximum over the sequence of table[id] (a pooled sparse encoder); `qa`:
    `[2, batch, seq]`, start logits table[id][0] and end logits table[id][1] stacked (a question answering head);
    `fixed`: `[2, batch, seq]`, table[0] and table[1] cut to the sequence length whatever the ids; `constant`:
    `[batch, k]`, table[0] whatever the ids. Token type ids, when given, add 1000 per non-zero type to every id's
    row, so an answer shows whether they were all 0. Takes two to four inputs, like the task shapes.
    """
    from typing import Optional

    import torch
    from torch import Tensor, nn

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mode = mode
            self.register_buffer("table", torch.tensor(table, dtype=torch.float32))

        def forward(self, input_ids: Tensor, attention_mask: Tensor,
                    token_type_ids: Optional[Tensor] = None,  # noqa: UP045 - TorchScript wants Optional
                    position_ids: Optional[Tensor] = None) -> Tensor:  # noqa: UP045
            batch, seq = input_ids.shape[0], input_ids.shape[1]
            if self.mode == "fixed":
                return self.table[:, :seq].unsqueeze(1).expand(2, batch, seq)
            if self.mode == "constant":
                return self.table[0].unsqueeze(0).expand(batch, self.table.shape[1])
            rows = self.table[input_ids]
            if token_type_ids is not None:
                rows = rows + (token_type_ids != 0).to(rows.dtype).unsqueeze(-1) * 1000.0
            if self.mode == "rows":
                return (rows * attention_mask.to(rows.dtype).unsqueeze(-1)).sum(1)
            if self.mode == "pooled":
                return torch.amax(rows, 1)
            if self.mode == "qa":
                return torch.stack([rows[:, :, 0], rows[:, :, 1]])
            return rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.script(Probe().eval())
    return save(module)


def _refused_modules() -> dict[str, Any]:
    """The module classes whose graphs or archives the start checks refuse (`scripted` kinds)."""
    import torch
    from torch import Tensor, nn

    class Tril(nn.Module):
        def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                    position_ids: Tensor) -> Tensor:
            return input_ids.to(torch.float32).tril()

    class FromFile(nn.Module):
        def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                    position_ids: Tensor) -> Tensor:
            # Never run: the check refuses the graph at load time.
            data = torch.from_file("/nonexistent", False, 1)
            return input_ids.to(torch.float32) + data.sum()

    class Hooks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.offset = 1

        def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                    position_ids: Tensor) -> Tensor:
            return (input_ids + self.offset).to(torch.float32)

        @torch.jit.export
        def __getstate__(self) -> tuple[int, bool]:
            return (self.offset, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[int, bool]) -> None:
            self.offset = state[0]
            self.training = state[1]

    return {"tril": Tril, "from_file": FromFile, "hooks": Hooks}


def tiny_bert(hidden: int = 32) -> tuple[bytes, Any]:
    """A random tiny BERT sentence embedder traced with the four positional inputs and frozen.

    Returns the saved archive and the traced module (to run it directly in the test).
    """
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, attn_implementation="eager")
    bert = BertModel(config).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any, position_ids: Any) -> Any:
            hidden_states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids, position_ids=position_ids)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
            return (hidden_states * mask).sum(1) / mask.sum(1)

    ids = torch.tensor([[2, 5, 6, 7, 3]])
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids), torch.arange(5).unsqueeze(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(MeanPooled().eval(), example, strict=False)
        frozen = torch.jit.freeze(traced)
    return save(frozen), frozen


def error_of(excinfo: Any) -> tuple[int, str, str]:
    """Status, error type and reason of an elasticsearch.ApiError caught by pytest.raises."""
    body = excinfo.value.body
    return excinfo.value.meta.status, body["error"]["type"], body["error"]["reason"]
