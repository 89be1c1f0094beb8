"""`scripts/bench`: every side-by-side benchmark in one run, a table with the targets, bench/results.json and a
PNG chart of the ratios.

Usage: scripts/bench [--quick] [--runs 3] [--workdir DIR]
- export of all-MiniLM-L6-v2: esbundle export against eland 9.2.0's TransformerModel(...).save;
- verify of a bundle (1 GiB; 256 MiB with --quick): esbundle verify against sha256sum, warm cache;
- load of all-MiniLM-L6-v2 and of a synthetic definition (1 GiB; 256 MiB with --quick) into one stand-in:
  esbundle load against eland's uploader, and the stand-in's ceiling;
- cost growth: esbundle load of 64 MiB, 256 MiB and 1 GiB definitions (64, 128, 256 MiB with --quick).
Every figure is the median of --runs runs (at least 3), with min and max.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchlib import export as export_bench
from benchlib import load as load_bench
from benchlib import verify as verify_bench
from benchlib.common import ROOT, eland_python

MIB = 1 << 20


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, {platform.system()} {platform.release()}"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, figure, target, met) for the table and the README."""
    e, v, lo = results["export"], results["verify"], results["load"]
    syn, mini, g = lo["models"]["synthetic"], lo["models"].get("minilm"), results["growth"]

    def yes(flag: bool) -> str:
        return "met" if flag else "NOT met"

    def t(r: dict[str, Any]) -> str:  # median [min-max] seconds
        return f"{r['median_s']:.2f} [{r['min_s']:.2f}-{r['max_s']:.2f}] s"

    out = [("export all-MiniLM-L6-v2: esbundle / eland wall time", f"{e['ratio']:.2f}x "
            f"({t(e['esbundle'])} vs {t(e['eland'])})", "<= 1.5x", yes(e["ratio_met"])),
           (f"verify {v['bundle_bytes'] / 2**30:.2f} GiB: esbundle / sha256sum", f"{v['ratio']:.2f}x "
            f"({t(v['verify'])} vs {t(v['sha256sum'])})", "<= 1.3x", yes(v["ratio_met"])),
           ("verify peak RSS", f"{v['verify']['peak_rss_mb']:.0f} MB", "<= 150 MB", yes(v["rss_met"]))]
    for name, r in (("all-MiniLM-L6-v2", mini), (f"{syn['definition_bytes'] / 2**30:.2f} GiB synthetic", syn)):
        if r is None:
            continue
        out.append((f"load {name}: esbundle / eland throughput", f"{r['throughput_ratio']:.2f}x "
                    f"({r['esbundle']['mb_per_s']:.0f} vs {r['eland']['mb_per_s']:.0f} MB/s; "
                    f"{t(r['esbundle'])} vs {t(r['eland'])})", ">= 2x",
                    yes(r["throughput_ratio"] >= 2)))
    out.append(("load synthetic: share of the stand-in's ceiling", f"{100 * syn['share_of_ceiling']:.0f}% "
                f"({syn['esbundle']['mb_per_s']:.0f} of {syn['ceiling']['mb_per_s']:.0f} MB/s; ceiling "
                f"{t(syn['ceiling'])})", ">= 70%",
                yes(syn["share_of_ceiling"] >= 0.7)))
    out.append(("load synthetic: loader peak RSS", f"{syn['esbundle']['peak_rss_mb']:.0f} MB", "<= 200 MB",
                yes(syn["esbundle"]["peak_rss_mb"] <= 200)))
    sizes = ", ".join(f"{r['definition_bytes'] >> 20} MiB {t(r)}" for r in g["sizes"])
    out.append(("load time growth (s per GiB, largest vs smallest)", f"{sizes}", "linear",
                yes(g["linear_met"])))
    out.append(("load memory growth (peak RSS spread)", f"{g['rss_spread_mb']:.0f} MB", "flat (<= 50 MB)",
                yes(g["flat_memory_met"])))
    return out


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e, v, lo = results["export"], results["verify"], results["load"]["models"]
    bars = [("export\nvs eland\n(time, lower\nis better)", e["ratio"], 1.5),
            ("verify\nvs sha256sum\n(time, lower\nis better)", v["ratio"], 1.3)]
    for name, r in lo.items():
        bars.append((f"load {name}\nvs eland\n(throughput,\nhigher is better)", r["throughput_ratio"], 2.0))
    bars.append(("load synthetic\nshare of the\nstand-in's ceiling", lo["synthetic"]["share_of_ceiling"], 0.7))
    fig, ax = plt.subplots(figsize=(10, 4.8))
    xs = range(len(bars))
    ax.bar(xs, [b[1] for b in bars], color="#3b7dd8")
    ax.scatter(xs, [b[2] for b in bars], marker="_", s=900, color="#d83b3b", zorder=3, label="target")
    for x, (_, value, _) in zip(xs, bars, strict=True):
        ax.text(x, value, f"{value:.2f}", ha="center", va="bottom")
    ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=8)
    ax.set_ylabel("ratio")
    ax.set_title(f"esbundle against its peers ({results['machine']})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Smaller synthetic sizes; under 5 minutes here.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    runs = max(3, args.runs)
    big = 256 * MIB if args.quick else 1024 * MIB
    sizes = [64 * MIB, 128 * MIB, 256 * MIB] if args.quick else [64 * MIB, 256 * MIB, 1024 * MIB]
    eland_python()  # make the peer's environment first, outside every timing
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = args.workdir or Path(tmp)
        for sub in ("export", "verify", "load"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                                   "quick": args.quick, "runs": runs}
        print("export ...", flush=True)
        results["export"] = export_bench.run(runs, work / "export")
        print("verify ...", flush=True)
        results["verify"] = verify_bench.run(big, runs, work / "verify")
        print("load ...", flush=True)
        results["load"] = load_bench.run(big, runs, work / "load")
        print("growth ...", flush=True)
        results["growth"] = load_bench.growth(sizes, runs, work / "load")
    table = rows(results)
    results["table"] = [dict(zip(("measure", "figure", "target", "met"), row, strict=True)) for row in table]
    out = ROOT / "bench"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, out / "ratios.png")
    width = max(len(r[0]) for r in table)
    print(f"\n{results['machine']}, {results['date']}, median of {runs} runs{' (--quick)' if args.quick else ''}")
    for measure_, figure, target, met in table:
        print(f"{measure_:<{width}}  {figure}\n{'':<{width}}  target {target}: {met}")
    print(f"\nwrote {out / 'results.json'} and {out / 'ratios.png'}")


if __name__ == "__main__":
    main()
