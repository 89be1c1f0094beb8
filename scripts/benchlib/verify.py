"""Benchmark: `esbundle verify` against `sha256sum` over the same stored files of a >= 1 GiB bundle, warm cache.

Usage: scripts/bench_verify [--size 1G] [--runs 5] [--workdir DIR] [--json]
Run from a checkout after scripts/test has set up .venv. Both commands run alternately, several times;
medians are reported with min and max, and the ratio of medians. Target: ratio <= 1.3, verify peak RSS <= 150 MB.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchlib.common import VENV_BIN, measure, summary, warm, write_random
from bundler.cli.sizes import parse_size


def build(workdir: Path, size: int) -> tuple[Path, Path]:
    bundle = workdir / "bundle"
    if (bundle / "manifest.json").exists():
        return bundle, workdir / "keys" / "bench.pub"
    write_random(workdir / "model.pt", size)
    (workdir / "config.json").write_text(json.dumps({
        "inference_config": {"text_embedding": {"tokenization": {"bert": {"do_lower_case": True}}}},
        "input": {"field_names": ["text_field"]}, "model_type": "pytorch"}))
    (workdir / "vocab.json").write_text(json.dumps({"vocabulary": ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]}))
    esb = str(VENV_BIN / "esbundle")
    measure([esb, "keygen", "--out", str(workdir / "keys"), "--name", "bench", "--no-passphrase"])
    measure([esb, "pack", "--definition", str(workdir / "model.pt"), "--config", str(workdir / "config.json"),
             "--vocab", str(workdir / "vocab.json"), "--signing-key", str(workdir / "keys" / "bench.key"),
             "--out", str(bundle), "--es-model-id", "bench-model"])
    (workdir / "model.pt").unlink()
    return bundle, workdir / "keys" / "bench.pub"


def run(size: int, runs: int, workdir: Path) -> dict[str, object]:
    bundle, pub = build(workdir, size)
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    warm(files)
    verify_cmd = [str(VENV_BIN / "esbundle"), "verify", str(bundle), "--trusted-key", str(pub)]
    sha_cmd = ["sha256sum", *map(str, files)]
    env = {"ESBUNDLE_NO_PROGRESS": "1"}
    verify_runs, sha_runs = [], []
    for _ in range(runs):
        sha_runs.append(measure(sha_cmd))
        verify_runs.append(measure(verify_cmd, env=env))
    v, s = summary(verify_runs), summary(sha_runs)
    ratio = v["median_s"] / s["median_s"]
    return {"bundle_bytes": sum(p.stat().st_size for p in files), "files": len(files), "verify": v, "sha256sum": s,
            "ratio": ratio, "ratio_target": 1.3, "ratio_met": ratio <= 1.3,
            "rss_target_mb": 150, "rss_met": v["peak_rss_mb"] <= 150}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        result = run(parse_size(args.size), args.runs, args.workdir or Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    v, s = result["verify"], result["sha256sum"]
    print(f"bundle: {result['bundle_bytes'] / 2**30:.2f} GiB in {result['files']} files, {args.runs} runs, warm cache")
    print(f"{'':<16}{'median s':>10}{'min s':>8}{'max s':>8}{'peak RSS MB':>13}")
    for name, r in (("sha256sum", s), ("esbundle verify", v)):
        print(f"{name:<16}{r['median_s']:>10.2f}{r['min_s']:>8.2f}{r['max_s']:>8.2f}{r['peak_rss_mb']:>13.0f}")
    met = "met" if result["ratio_met"] else "NOT met"
    print(f"ratio verify/sha256sum: {result['ratio']:.2f} (target <= 1.3: {met}); "
          f"verify peak RSS {v['peak_rss_mb']:.0f} MB (target <= 150: {'met' if result['rss_met'] else 'NOT met'})")


if __name__ == "__main__":
    main()
