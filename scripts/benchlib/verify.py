"""Benchmark: `esbundle verify` of a bundle against `openssl dgst -sha256` and `sha256sum` of the same raw bytes
(the definition the bundle was packed from), warm cache.

Usage: scripts/bench_verify [--size 1G] [--runs 5] [--workdir DIR] [--json]
Run from a checkout after scripts/test has set up .venv. The three commands run in turn, several times; medians
are reported with min and max, and the ratios of medians. `verify` checks the signature and every byte of the
bundle (each part's size and signed sha256, spread over every core; the whole-definition sha256 is load's and
repository's, or `verify --definition-sha256`), the peers only hash the raw file once.
Target: verify at most 0.75x the wall time of `openssl dgst -sha256`; `sha256sum` for comparison.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchlib.common import VENV_BIN, measure, settle, summary, warm, write_random
from bundler.cli.sizes import parse_size

OPENSSL_TARGET = 0.75  # verify wall / openssl wall, at most


def build(workdir: Path, size: int) -> tuple[Path, Path, Path]:
    """The raw definition (kept, for the peers), the bundle packed from it, and the public key."""
    bundle, raw = workdir / "bundle", workdir / "definition.bin"
    if (bundle / "manifest.json").exists() and raw.exists() and raw.stat().st_size == size:
        return raw, bundle, workdir / "keys" / "bench.pub"
    workdir.mkdir(parents=True, exist_ok=True)
    write_random(raw, size)
    (workdir / "config.json").write_text(json.dumps({
        "inference_config": {"text_embedding": {"tokenization": {"bert": {"do_lower_case": True}}}},
        "input": {"field_names": ["text_field"]}, "model_type": "pytorch"}))
    (workdir / "vocab.json").write_text(json.dumps({"vocabulary": ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]}))
    esb = str(VENV_BIN / "esbundle")
    if not (workdir / "keys" / "bench.key").exists():
        measure([esb, "keygen", "--out", str(workdir / "keys"), "--name", "bench", "--no-passphrase"])
    measure([esb, "pack", "--definition", str(raw), "--config", str(workdir / "config.json"),
             "--vocab", str(workdir / "vocab.json"), "--signing-key", str(workdir / "keys" / "bench.key"),
             "--out", str(bundle), "--es-model-id", "bench-model"])
    return raw, bundle, workdir / "keys" / "bench.pub"


def run(size: int, runs: int, workdir: Path) -> dict[str, object]:
    raw, bundle, pub = build(workdir, size)
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    warm([raw, *files])
    commands = {
        "verify": [str(VENV_BIN / "esbundle"), "verify", str(bundle), "--trusted-key", str(pub)],
        "openssl": ["openssl", "dgst", "-sha256", str(raw)],
        "sha256sum": ["sha256sum", str(raw)],
    }
    env = {"ESBUNDLE_NO_PROGRESS": "1"}
    measured: dict[str, list] = {name: [] for name in commands}
    settle()  # the bundle just packed is written back before anything is timed
    for _ in range(runs):
        for name, cmd in commands.items():
            measured[name].append(measure(cmd, env=env))
    v, o, s = (summary(measured[name]) for name in commands)
    return {"bundle_bytes": sum(p.stat().st_size for p in files), "raw_bytes": raw.stat().st_size,
            "files": len(files), "verify": v, "openssl": o, "sha256sum": s,
            "ratio_openssl": v["median_s"] / o["median_s"], "ratio_sha256sum": v["median_s"] / s["median_s"],
            "openssl_target": OPENSSL_TARGET, "openssl_met": v["median_s"] / o["median_s"] <= OPENSSL_TARGET}


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
    print(f"raw definition {result['raw_bytes'] / 2**30:.2f} GiB; bundle {result['bundle_bytes'] / 2**30:.2f} GiB in "
          f"{result['files']} files; {args.runs} runs, warm cache")
    print(f"{'':<22}{'median s':>10}{'min s':>8}{'max s':>8}{'peak RSS MB':>13}")
    for name, r in (("openssl dgst -sha256", result["openssl"]), ("sha256sum", result["sha256sum"]),
                    ("esbundle verify", result["verify"])):
        print(f"{name:<22}{r['median_s']:>10.2f}{r['min_s']:>8.2f}{r['max_s']:>8.2f}{r['peak_rss_mb']:>13.0f}")
    met = "met" if result["openssl_met"] else "NOT met"
    print(f"verify / openssl: {result['ratio_openssl']:.2f}x (target <= {OPENSSL_TARGET}: {met}); "
          f"verify / sha256sum: {result['ratio_sha256sum']:.2f}x")


if __name__ == "__main__":
    main()
