"""`scripts/bench`: every side-by-side benchmark in one run, a table with the targets, bench/results.json and a
PNG chart of the ratios, every one the same way up (higher is better).

Usage: scripts/bench [--quick] [--runs 5] [--workdir DIR] [--wait-quiet MINUTES]
- verify of a bundle (1 GiB; 128 MiB with --quick): esbundle verify against `openssl dgst -sha256` and `sha256sum`
  of the same raw bytes, warm cache;
- load of a synthetic definition of the same size into one stand-in: esbundle load against eland's uploader, and
  the stand-in's ceiling;
- export of a BERT-large-sized model (8 layers of width 512 with --quick) against eland 9.2.0's trace-and-save of
  the same directory: wall and peak RSS;
- cost growth of export from all-MiniLM-L6-v2 through a BERT-base-sized to the BERT-large-sized model.
Every figure is the median of --runs runs (at least 3), with min and max. Other work on the machine skews every
figure: the run first waits (up to --wait-quiet minutes, 40 by default) for a 1-minute load average below
--quiet-load (1.0) and the CPU under 20% busy, then runs anyway; it records whether the machine was quiet, and
what share of the CPU other work took during each phase. Each measured command starts once the disk has written
back what the one before it wrote (benchlib.common.settle).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchlib import export as export_bench
from benchlib import load as load_bench
from benchlib import verify as verify_bench
from benchlib.common import ROOT, busy_cpu_seconds, eland_python, load_average, own_cpu_seconds

MIB = 1 << 20
GROWTH_TARGET = 2 / 3  # export growth: the cheaper step's marginal cost / the dearer one's, at least
STAGES = ("resolve", "load", "trace", "check", "write")  # esbundle export's, in order (bundler/stages.py)


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, {platform.system()} {platform.release()}"


def wait_for_quiet(minutes: float, threshold: float) -> dict[str, Any]:
    """Wait until the 1-minute load average is below `threshold` and other work took under 20% of the CPU over
    the last 30 s (a test suite of light processes can keep the load average low), or `minutes` have passed."""
    start = time.monotonic()
    while True:
        busy = busy_cpu_seconds()
        time.sleep(30)
        share = (busy_cpu_seconds() - busy) / (30 * (os.cpu_count() or 1))
        one, five, fifteen = load_average()
        waited = time.monotonic() - start
        quiet = one < threshold and share < 0.2
        if quiet or waited >= minutes * 60:
            return {"quiet": quiet, "threshold": threshold, "waited_s": round(waited),
                    "load_average_at_start": [one, five, fifteen], "cpu_share_busy_at_start": round(share, 3)}
        print(f"load average {one:.2f}, CPU {100 * share:.0f}% busy: waiting for a quiet machine "
              f"({waited / 60:.0f} of {minutes:.0f} min)", flush=True)


class OtherWork:
    """How much CPU other work on the machine took while a phase ran: the machine's busy CPU time less this
    benchmark's own (its measured commands and the stand-in included), as a share of all cores' time."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}

    def measure(self, phase: str, run: Any) -> Any:
        busy, own, start = busy_cpu_seconds(), own_cpu_seconds(), time.monotonic()
        result = run()
        wall = time.monotonic() - start
        others = max(0.0, (busy_cpu_seconds() - busy) - (own_cpu_seconds() - own))
        self.phases[phase] = {"wall_s": round(wall, 1), "others_cpu_s": round(others, 1),
                              "others_share": round(others / (wall * (os.cpu_count() or 1)), 3)}
        print(f"{phase}: other work took {100 * self.phases[phase]['others_share']:.0f}% of the CPU", flush=True)
        return result


def _t(r: dict[str, Any]) -> str:  # median [min-max] seconds
    return f"{r['median_s']:.2f} s [{r['min_s']:.2f}-{r['max_s']:.2f}]"


def measures(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measure as a ratio where higher is better, with its target (None: for comparison only)."""
    v, syn = results["verify"], results["load"]["models"]["synthetic"]
    e, g = results["export"]["side_by_side"], results["export"]["growth"]
    size = f"{v['raw_bytes'] / 2**30:.2f} GiB"
    model = f"{e['model']} ({e['parameters'] / 1e6:.0f}M parameters, {e['parameter_bytes'] / MIB:.0f} MiB)"
    def growth_row(key: str, unit: str, total: str) -> str:
        digits = 1 if unit == "s" else 0
        per_model = ", ".join(f"{r['model']} ({r['parameters'] / 1e6:.1f}M) {r[total]:.{digits}f} {unit} = "
                              f"{r[key]:.3g} {unit}/M" for r in g["models"])
        steps = ", ".join(f"{s['from']} -> {s['to']} {s[key]:.3g} {unit}/M" for s in g["marginal"])
        return f"{per_model}; each further million: {steps}"

    return [
        {"key": "verify_vs_openssl", "label": "verify:\nopenssl time\n/ ours",
         "measure": f"verify {size} vs `openssl dgst -sha256` of the raw bytes (wall)",
         "ours": f"{_t(v['verify'])}, {v['verify']['peak_rss_mb']:.0f} MiB", "peer": _t(v["openssl"]),
         "value": v["openssl"]["median_s"] / v["verify"]["median_s"], "target": 1 / verify_bench.OPENSSL_TARGET,
         "target_text": f"verify <= {verify_bench.OPENSSL_TARGET}x openssl's wall"},
        {"key": "verify_vs_sha256sum", "label": "verify:\nsha256sum time\n/ ours",
         "measure": f"verify {size} vs `sha256sum` of the raw bytes (wall)", "ours": _t(v["verify"]),
         "peer": _t(v["sha256sum"]), "value": v["sha256sum"]["median_s"] / v["verify"]["median_s"], "target": None,
         "target_text": "for comparison"},
        {"key": "load_ceiling", "label": "load:\nshare of the\nstand-in's ceiling",
         "measure": f"load {syn['definition_bytes'] / 2**30:.2f} GiB: share of the stand-in's ceiling (throughput)",
         "ours": f"{_t(syn['esbundle'])} = {syn['esbundle']['mb_per_s']:.0f} MB/s, "
                 f"{syn['esbundle']['peak_rss_mb']:.0f} MiB",
         "peer": f"ceiling client {_t(syn['ceiling'])} = {syn['ceiling']['mb_per_s']:.0f} MB/s",
         "value": syn["share_of_ceiling"], "target": load_bench.CEILING_TARGET,
         "target_text": f">= {load_bench.CEILING_TARGET:.0%} of the ceiling"},
        {"key": "load_vs_eland", "label": "load:\neland time\n/ ours",
         "measure": f"load {syn['definition_bytes'] / 2**30:.2f} GiB vs eland's uploader (wall)",
         "ours": f"{_t(syn['esbundle'])} = {syn['esbundle']['mb_per_s']:.0f} MB/s",
         "peer": f"{_t(syn['eland'])} = {syn['eland']['mb_per_s']:.0f} MB/s, {syn['eland']['peak_rss_mb']:.0f} MiB",
         "value": syn["throughput_ratio"], "target": None, "target_text": "for comparison"},
        {"key": "export_wall", "label": "export:\neland time\n/ ours",
         "measure": f"export {model} vs eland's trace-and-save (wall, the check included)",
         "ours": _t(e["esbundle"]) + " (" + ", ".join(f"{k} {e['esbundle_stages_s'][k]:.1f}" for k in STAGES
                                                       if k in e["esbundle_stages_s"]) + " s)",
         "peer": f"eland `TransformerModel.save` {_t(e['eland'])}",
         "value": 1 / e["wall_ratio"], "target": 1 / e["wall_target"],
         "target_text": f"wall <= {e['wall_target']}x eland's"},
        {"key": "export_rss_params", "label": "export:\nparameter bytes\n/ our peak RSS",
         "measure": f"export {e['model']}: peak RSS against the parameter bytes",
         "ours": f"{e['esbundle']['peak_rss_mb']:.0f} MiB ({e['rss_per_parameter_byte']:.2f}x the parameter bytes)",
         "peer": f"parameters {e['parameter_bytes'] / MIB:.0f} MiB",
         "value": 1 / e["rss_per_parameter_byte"], "target": 1 / e["rss_params_target"],
         "target_text": f"peak RSS <= {e['rss_params_target']}x the parameter bytes"},
        {"key": "export_rss_eland", "label": "export:\neland peak RSS\n/ ours",
         "measure": f"export {e['model']}: peak RSS against eland's", "ours": f"{e['esbundle']['peak_rss_mb']:.0f} MiB",
         "peer": f"{e['eland']['peak_rss_mb']:.0f} MiB", "value": 1 / e["rss_vs_eland"], "target": 1.0,
         "target_text": "peak RSS <= eland's"},
        {"key": "growth_time", "label": "export growth:\ns per M parameters,\ncheaper step\n/ dearer step",
         "measure": "export cost growth: wall seconds per million parameters",
         "ours": growth_row("s_per_mparam", "s", "median_s"), "peer": "-", "value": g["time_constancy"],
         "target": GROWTH_TARGET,
         "target_text": f"roughly constant: each further million within {1 / GROWTH_TARGET:.1f}x of the other step"},
        {"key": "growth_rss", "label": "export growth:\nMiB per M param.,\ncheaper step\n/ dearer step",
         "measure": "export cost growth: peak RSS (MiB) per million parameters",
         "ours": growth_row("mb_per_mparam", "MiB", "peak_rss_mb"), "peer": "-", "value": g["rss_constancy"],
         "target": GROWTH_TARGET,
         "target_text": f"roughly constant: each further million within {1 / GROWTH_TARGET:.1f}x of the other step"},
    ]


def met(m: dict[str, Any]) -> str:
    if m["target"] is None:
        return "-"
    return "met" if m["value"] >= m["target"] else "NOT met"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table for the README's Benchmarks section."""
    lines = ["| measure | esbundle | peer | ratio (higher is better) | target | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for m in rows:
        target = f"{m['target_text']} (ratio >= {m['target']:.2f})" if m["target"] is not None else m["target_text"]
        lines.append(f"| {m['measure']} | {m['ours']} | {m['peer']} | {m['value']:.2f} | {target} | {met(m)} |")
    return "\n".join(lines)


def chart(results: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 5.8))
    xs = list(range(len(rows)))
    colours = ["#3b7dd8" if m["target"] is None or m["value"] >= m["target"] else "#d8903b" for m in rows]
    ax.bar(xs, [m["value"] for m in rows], color=colours)
    targeted = [(x, m["target"]) for x, m in zip(xs, rows, strict=True) if m["target"] is not None]
    ax.scatter([x for x, _ in targeted], [t for _, t in targeted], marker="_", s=1400, linewidths=2.5,
               color="#c0202a", zorder=3, label="target (at least)")
    for x, m in zip(xs, rows, strict=True):
        ax.text(x, m["value"], f"{m['value']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle=":")
    ax.set_xticks(xs, [m["label"] for m in rows], fontsize=7.5)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ratio, higher is better (peer / esbundle, or share)")
    shares = ", ".join(f"{phase} {100 * p['others_share']:.0f}%"
                       for phase, p in results["quiet"].get("other_work", {}).items())
    quiet = ("quiet at the start" if results["quiet"]["quiet"] else "NOT quiet at the start") + \
        (f"; other work's share of the CPU: {shares}" if shares else "")
    ax.set_title(f"esbundle against its peers and targets: {results['machine']}, {results['date']}, median of "
                 f"{results['runs']} runs, {quiet}" + (" (--quick)" if results["quick"] else ""), fontsize=8)
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, Patch(color="#3b7dd8", label="target met, or no target (for comparison)"),
                       Patch(color="#d8903b", label="target not met")], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes, to check that everything runs.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--wait-quiet", type=float, default=40, metavar="MINUTES")
    parser.add_argument("--quiet-load", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="Where results.json and ratios.png go.")
    args = parser.parse_args()
    runs = max(3, args.runs)
    size = 128 * MIB if args.quick else 1024 * MIB
    eland_python()  # make the peer's environment first, outside every timing
    quiet = wait_for_quiet(args.wait_quiet, args.quiet_load)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = args.workdir or Path(tmp)
        for sub in ("export", "verify", "load"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                                   "quick": args.quick, "runs": runs, "quiet": quiet}
        other = OtherWork()
        print("verify ...", flush=True)
        results["verify"] = other.measure("verify", lambda: verify_bench.run(size, runs, work / "verify"))
        print("load ...", flush=True)
        results["load"] = other.measure("load", lambda: load_bench.run(size, runs, work / "load", minilm=False))
        print("export ...", flush=True)
        results["export"] = other.measure("export", lambda: export_bench.run(runs, work / "export", quick=args.quick))
        results["quiet"]["load_average_at_end"] = list(load_average())
        results["quiet"]["other_work"] = other.phases
        (work / "results-raw.json").write_text(json.dumps(results, indent=2) + "\n")  # kept should a step below fail
    rows = measures(results)
    results["table"] = [{**m, "met": met(m)} for m in rows]
    args.out.mkdir(exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, rows, args.out / "ratios.png")
    shares = ", ".join(f"{phase} {100 * p['others_share']:.0f}%" for phase, p in quiet["other_work"].items())
    print(f"\n{results['machine']}, {results['date']}, median of {runs} runs{' (--quick)' if args.quick else ''}; "
          f"{'quiet' if quiet['quiet'] else 'NOT quiet'} at the start (load average "
          f"{quiet['load_average_at_start'][0]:.2f}); other work's share of the CPU: {shares}")
    for m in rows:
        print(f"- {m['measure']}\n    esbundle {m['ours']}\n    peer {m['peer']}\n    ratio {m['value']:.2f} "
              f"(higher is better); target {m['target_text']}: {met(m)}")
    print("\n" + markdown(rows))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'ratios.png'}")


if __name__ == "__main__":
    main()
