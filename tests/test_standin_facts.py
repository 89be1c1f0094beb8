"""The product's facts about Elasticsearch releases against the stand-in's own, and the stand-in's `_start` refusals.

The product predicts from `loader/data/es_libtorch.json` and `es_model_ops.json` (and the rules in
`loader/releases/`); the stand-in judges from `tests/standin/release_facts.json`, written separately from
Elasticsearch's and ml-cpp's sources. This test (which, unlike the stand-in, may read the product) fails on any
disagreement, one line per release and fact: the libtorch each release runs, the highest TorchScript file version
each libtorch reads, the allowlist, the forbidden operations, which releases run each check, and the refusal each
side gives for the same graph. A wrong edit on one side therefore fails here instead of being mirrored by the judge.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch

from loader.releases import deployability, libtorch
from tests.standin import native, releases
from tests.standin.testkit import save, scripted

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_OPS = json.loads((ROOT / "loader" / "data" / "es_model_ops.json").read_text(encoding="utf-8"))
PRODUCT_LIBTORCH = json.loads((ROOT / "loader" / "data" / "es_libtorch.json").read_text(encoding="utf-8"))
Version = tuple[int, int, int]


def _show(version: Version) -> str:
    return ".".join(map(str, version))


def _boundaries(spec: dict[str, object]) -> Iterable[Version]:
    """Each end of a stand-in `lines` fact and the releases just outside it."""
    for bounds in spec["lines"].values():  # type: ignore[attr-defined]
        for key in ("from", "to"):
            if key in bounds:
                major, minor, patch = releases.parse_version(bounds[key])
                yield from ((major, minor, p) for p in (patch - 1, patch, patch + 1) if p >= 0)


def versions() -> list[Version]:
    """The product's known releases, every boundary of the stand-in's facts, and a later minor."""
    found = set(deployability.known_versions())
    checks = releases.facts()["checks"]
    for spec in (checks["graph_validator"], checks["legacy_forbidden_check"], checks["state_hook_scan"],
                 *(e for e in checks["graph_validator"]["forbidden_operations"] if "lines" in e)):
        found.update(_boundaries(spec))
    table = releases.facts()["libtorch"]
    for first in [u["first_release"] for u in table["upgrades"]] + [b["first_patch"] for b in table["backports"]]:
        major, minor, patch = releases.parse_version(first)
        found.update((major, minor, p) for p in (patch - 1, patch) if p >= 0)
    found.add((9, 6, 0))
    return sorted(v for v in found if v >= (8, 0, 0))


def disagreements(pairs: Iterable[tuple[str, object, object]]) -> list[str]:
    return [f"{where}: product {ours!r}, stand-in {theirs!r}" for where, ours, theirs in pairs if ours != theirs]


def test_the_compared_releases_span_every_line_and_boundary() -> None:
    compared = versions()
    assert {v[:2] for v in compared} >= {(8, minor) for minor in range(20)} | {(9, minor) for minor in range(7)}
    assert {(8, 19, 19), (8, 19, 20), (9, 4, 4), (9, 4, 5), (9, 1, 7), (9, 1, 8), (8, 17, 6)} <= set(compared)


def test_libtorch_per_release() -> None:
    found = disagreements((f"{_show(v)}: libtorch", libtorch.libtorch_for(v), releases.libtorch_for(v))
                          for v in versions())
    assert found == [], "\n".join(found)


def test_highest_file_version_each_libtorch_reads() -> None:
    product = PRODUCT_LIBTORCH["max_readable_torchscript_file_version"]
    standin = {r["libtorch"]: r["max_file_version"] for r in releases.facts()["torchscript_readers"]["readers"]}
    found = disagreements((f"libtorch {name}: max readable TorchScript file version", product.get(name),
                           standin.get(name)) for name in sorted(set(product) | set(standin)))
    found += disagreements((f"{_show(v)}: max readable file version",
                            libtorch.max_file_version(libtorch.libtorch_for(v) or ""),
                            releases.release(_show(v)).max_file_version) for v in versions())
    assert found == [], "\n".join(found)


def test_allowlist() -> None:
    product = set(PRODUCT_OPS["allowed_operations"])
    standin = set(releases.facts()["checks"]["graph_validator"]["allowed_operations"])
    found = [f"allowlist: {op} only in the product's" for op in sorted(product - standin)]
    found += [f"allowlist: {op} only in the stand-in's" for op in sorted(standin - product)]
    found += disagreements([("allowlist (product code)", deployability.allowed_operations(), product)])
    assert found == [], "\n".join(found)


def test_forbidden_operations_per_release() -> None:
    product = set(PRODUCT_OPS["forbidden_operations"])
    standin = {e["op"] for e in releases.facts()["checks"]["graph_validator"]["forbidden_operations"]}
    found = [f"forbidden list: {op} only in the product's" for op in sorted(product - standin)]
    found += [f"forbidden list: {op} only in the stand-in's" for op in sorted(standin - product)]
    for v in versions():
        rel = releases.release(_show(v))
        if rel.full_validator or deployability.runs_full_validator(v):
            found += disagreements([(f"{_show(v)}: forbidden operations", sorted(deployability.forbidden_operations(v)),
                                     sorted(releases.op_rules(rel).forbidden))])
    legacy = releases.facts()["checks"]["legacy_forbidden_check"]["operations"]
    found += disagreements([("legacy check: forbidden operations", sorted(PRODUCT_OPS["legacy_check"]["forbidden"]),
                             sorted(legacy))])
    assert found == [], "\n".join(found)


def _product_checks(v: Version) -> dict[str, bool]:
    full = deployability.runs_full_validator(v)
    return {"graph validator": full, "state-hook scan": deployability.runs_state_hook_check(v),
            "legacy forward check": not full and deployability._in_ranges(v, PRODUCT_OPS["legacy_check"]["releases"])}


def test_releases_that_run_each_check() -> None:
    found = []
    for v in versions():
        rel = releases.release(_show(v))
        standin = {"graph validator": rel.full_validator, "state-hook scan": rel.state_hook_check,
                   "legacy forward check": rel.legacy_check}
        found += disagreements((f"{_show(v)}: runs the {check}", ran, standin[check])
                               for check, ran in _product_checks(v).items())
    # The product's tables name releases too: each must agree with the stand-in.
    for tag in PRODUCT_OPS["full_validator_releases"]:
        found += disagreements([(f"{tag} (es_model_ops.json full_validator_releases): runs the graph validator",
                                 True, releases.release(tag).full_validator)])
    for named in re.findall(r"\d+\.\d+\.\d+", PRODUCT_OPS["state_hook_check"]):
        major, minor, patch = releases.parse_version(named)
        before = releases.release(f"{major}.{minor}.{patch - 1}").state_hook_check if patch else False
        found += disagreements([(f"{named} (es_model_ops.json state_hook_check): first scanning patch of its line",
                                 (True, False), (releases.release(named).state_hook_check, before))])
    assert found == [], "\n".join(found)


GRAPHS = {
    "allowed": ({"aten::linear", "aten::layer_norm", "prim::Constant"}, ["aten::linear"]),
    "tril": ({"aten::tril", "aten::linear"}, ["aten::tril"]),
    "save and tril": ({"aten::save", "aten::tril"}, ["aten::save"]),
    "from_file nested": ({"aten::from_file", "prim::If"}, ["prim::If"]),
    "reinterpret": ({"inductor::_reinterpret_tensor", "aten::add"}, ["inductor::_reinterpret_tensor"]),
    "as_strided": ({"aten::as_strided"}, ["aten::as_strided"]),
    "call method": ({"prim::CallMethod", "aten::exp"}, ["prim::CallMethod"]),
    "whole allowlist": (set(PRODUCT_OPS["allowed_operations"]), ["aten::add"]),
}


def _standin_refusal(v: Version, file_version: int, ops: set[str], top: list[str], hooks: bool,
                     nodes: int) -> str | None:
    rel = releases.release(_show(v))
    if file_version > rel.max_file_version:
        return releases.version_message(file_version, rel)
    if rel.state_hook_check and hooks:
        return releases.message("state_hooks", ["__getstate__", "__setstate__"])
    return releases.graph_refusal(rel, frozenset(ops), top, nodes)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_the_same_graph_gets_the_same_verdict(graph: str) -> None:
    ops, top = GRAPHS[graph]
    found = []
    for v in versions():
        for file_version, hooks, nodes in ((10, False, 500), (7, False, 500), (10, True, 500), (10, False, 1_000_001)):
            facts = deployability.GraphFacts(file_version, frozenset(ops), frozenset(top), hooks, nodes)
            product = deployability.refusal(v, facts)
            standin = _standin_refusal(v, file_version, ops, top, hooks, nodes)
            # The product quotes libtorch's version refusal without its last sentence.
            same = product == standin or bool(product and standin and product.startswith("Attempted to read")
                                              and standin.startswith(product + ". "))
            if not same:
                found.append(f"{_show(v)}: {graph} (file version {file_version}, hooks {hooks}, {nodes} nodes): "
                             f"product {product!r}, stand-in {standin!r}")
    assert found == [], "\n".join(found)


# --- The stand-in's `_start` (native.start) refuses as the emulated release would ----------------------------


def with_version(definition: bytes, version: int) -> bytes:
    """The same archive with its version record rewritten (what an exporter on another torch would write)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(definition)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/.data/version") or info.filename.endswith("/version"):
                data = f"{version}\n".encode()
            dst.writestr(info, data)
    return out.getvalue()


def refusal(definition: bytes, es_version: str) -> str | None:
    try:
        native.start(definition, releases.release(es_version))
    except native.NativeFailure as exc:
        return str(exc)
    return None


def test_start_refuses_a_file_version_the_release_libtorch_cannot_read() -> None:
    embedding = scripted("embedding")
    too_new = "Attempted to read a PyTorch file with version {}, but the maximum supported version for reading is {}."
    old = " Your PyTorch installation may be too old."
    assert refusal(with_version(embedding, 10), "8.5.0") == too_new.format(10, 9) + old
    assert refusal(with_version(embedding, 9), "8.5.0") is None
    assert (refusal(with_version(embedding, 7), "8.2.3") or "").startswith(too_new.format(7, 6))
    assert refusal(with_version(embedding, 10), "8.7.0") is None
    # libtorch opens the archive (and refuses its version) before ml-cpp's pre-load scan can read it.
    assert (refusal(with_version(scripted("hooks"), 11), "9.5.0") or "").startswith(too_new.format(11, 10))


def test_start_refuses_operations_outside_the_release_allowlist() -> None:
    tril = scripted("tril")
    unrecognised = "Model graph does not match any supported architecture. Unrecognised operations: aten::tril"
    for es_version in ("9.4.0", "9.4.5", "9.5.2", "8.19.20", "9.6.0"):
        assert refusal(tril, es_version) == unrecognised, es_version
    for es_version in ("9.3.8", "9.2.0", "8.19.19", "8.12.0"):
        assert refusal(tril, es_version) is None, es_version
    from_file = scripted("from_file")
    assert refusal(from_file, "9.4.0") == "Model contains forbidden operations: aten::from_file"
    assert refusal(from_file, "9.0.2") == \
        "Loading the inference process failed because it contains forbidden operation: aten::from_file"
    assert refusal(from_file, "9.0.1") is None  # no check in that release
    hooks = scripted("hooks")
    assert refusal(hooks, "9.4.5") == "Model archive contains custom state hooks: __getstate__, __setstate__"
    assert refusal(hooks, "9.3.8") is None  # no scan, and the legacy check finds neither operation
    # 9.4.4 does not scan, but its validator sees what the hook methods compile to.
    assert (refusal(hooks, "9.4.4") or "").startswith("Model graph does not match any supported architecture.")


def test_start_refuses_what_a_real_exporter_writes_for_an_old_release() -> None:
    class Gelu(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.gelu(x, approximate="tanh")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; ES needs it
        definition = save(torch.jit.script(Gelu()))
    with zipfile.ZipFile(io.BytesIO(definition)) as archive:
        version = native.file_version(archive)
    assert version == 10  # torch writes 10 for gelu since 1.12
    assert (refusal(definition, "8.6.2") or "").startswith(
        "Attempted to read a PyTorch file with version 10, but the maximum supported version for reading is 9.")
    assert refusal(definition, "8.7.0") is None
