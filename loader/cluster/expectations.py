"""Does one `_infer` answer meet what a sample recorded at export? Pure comparisons, one per answer shape.

The export recorded the answer Elasticsearch's result processors give for the traced module's output; the cluster
runs another libtorch and its own tokenizer, so numbers may move by the sample's `atol` and a label may change only
where the recorded answer itself nearly tied (its runner-up within `atol` of the winner).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _close(got: Any, want: float, atol: float) -> bool:
    return _number(got) and abs(got - want) <= atol


def judge(expected: Mapping[str, Any], result: Mapping[str, Any]) -> Verdict:
    """The verdict for one answer, by the shape the sample recorded (bundles of every schema version)."""
    atol = float(expected.get("atol", 1e-3))
    checks: list[tuple[str, Callable[[Mapping[str, Any], Mapping[str, Any], float], Verdict]]] = [
        ("prefix", _embedding), ("entities", _entities), ("start_offset", _answer), ("expansion", _expansion),
        ("top_classes", _label), ("output_prefix", _raw)]
    for key, check in checks:
        if key in expected:
            return check(expected, result, atol)
    if _number(expected.get("predicted_value")):
        return _score(expected, result, atol)
    if "predicted_value" in expected:
        return _label(expected, result, atol)
    return Verdict("error" not in result, "answered")


def _embedding(expected: Mapping[str, Any], result: Mapping[str, Any], atol: float) -> Verdict:
    vector = result.get("predicted_value")
    if not isinstance(vector, list) or not all(_number(v) for v in vector):
        return Verdict(False, f"no embedding in the answer ({sorted(result)})")
    if len(vector) != expected["dimensions"]:
        return Verdict(False, f"{len(vector)} dimensions, expected {expected['dimensions']}")
    worst = max(abs(a - b) for a, b in zip(vector, expected["prefix"], strict=False))
    norm = math.sqrt(sum(v * v for v in vector))
    if worst > atol or abs(norm - expected["norm"]) > atol:
        return Verdict(False, f"embedding differs: max |diff| {worst:.2e} over the first {len(expected['prefix'])} "
                              f"values, norm {norm:.6f} vs {expected['norm']:.6f} (tolerance {atol})")
    return Verdict(True, f"{len(vector)} dims, max |diff| {worst:.1e}, norm {norm:.4f}")


def _score(expected: Mapping[str, Any], result: Mapping[str, Any], atol: float) -> Verdict:
    got, want = result.get("predicted_value"), expected["predicted_value"]
    if not _close(got, want, atol):
        return Verdict(False, f"score {got!r}, expected {want!r} (tolerance {atol})")
    return Verdict(True, f"score {got:.4f}")


def _near_tie(expected: Mapping[str, Any], got: Any, atol: float) -> bool:
    """The recorded answer's own score for `got` is within atol of its winner's."""
    classes = {c.get("class_name"): c.get("class_probability") for c in expected.get("top_classes", ())}
    best = expected.get("prediction_probability")
    return _number(classes.get(got)) and _number(best) and best - classes[got] <= atol


def _label(expected: Mapping[str, Any], result: Mapping[str, Any], atol: float) -> Verdict:
    got, want = result.get("predicted_value"), expected["predicted_value"]
    if got != want:
        if _near_tie(expected, got, atol):
            return Verdict(True, f"label {got!r} (a near tie with {want!r} at export)")
        return Verdict(False, f"label {got!r}, expected {want!r}")
    want_p = expected.get("prediction_probability")
    if _number(want_p) and not _close(result.get("prediction_probability"), want_p, atol):
        return Verdict(False, f"label {got!r} with probability {result.get('prediction_probability')!r}, "
                              f"expected {want_p:.6g} (tolerance {atol})")
    return Verdict(True, f"label {got!r}" + (f" p={want_p:.4f}" if _number(want_p) else ""))


def _entity_key(entity: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return entity.get("class_name"), entity.get("start_pos"), entity.get("end_pos")


def _entities(expected: Mapping[str, Any], result: Mapping[str, Any], atol: float) -> Verdict:
    want, got = expected["entities"], result.get("entities")
    if not isinstance(got, list) or [_entity_key(e) for e in got] != [_entity_key(e) for e in want]:
        def names(entities: Any) -> str:
            return ", ".join(f"{e.get('class_name')}[{e.get('start_pos')}:{e.get('end_pos')}]"
                             for e in entities or []) or "none"
        return Verdict(False, f"entities {names(got)}, expected {names(want)}")
    for g, w in zip(got, want, strict=True):
        if not _close(g.get("class_probability"), w["class_probability"], atol):
            return Verdict(False, f"entity {w.get('entity')!r} probability {g.get('class_probability')!r}, "
                                  f"expected {w['class_probability']} (tolerance {atol})")
    return Verdict(True, f"{len(want)} entities: " + ", ".join(f"{e['class_name']} {e['entity']!r}" for e in want))


def _answer(expected: Mapping[str, Any], result: Mapping[str, Any], atol: float) -> Verdict:
    span = (expected["predicted_value"], expected["start_offset"], expected["end_offset"])
    got = (result.get("predicted_value"), result.get("start_offset"), result.get("end_offset"))
    if got != span:
        return Verdict(False, f"answer {got[0]!r} at {got[1]}-{got[2]}, expected {span[0]!r} at {span[1]}-{span[2]}")
    if not _close(result.get("prediction_probability"), expected["prediction_probability"], atol):
        return Verdict(False, f"answer {span[0]!r} with probability {result.get('prediction_probability')!r}, "
                              f"expected {expected['prediction_probability']} (tolerance {atol})")
    return Verdict(True, f"answer {span[0]!r} at {span[1]}-{span[2]}")


def _expansion(expected: Mapping[str, Any], result: Mapping[str, Any], atol: float) -> Verdict:
    """Every recorded top token carries its weight (a token the cluster dropped weighs 0)."""
    got = result.get("predicted_value")
    if not isinstance(got, dict):
        return Verdict(False, f"no expansion in the answer ({sorted(result)})")
    want: Mapping[str, float] = expected["expansion"]
    off = [(token, got.get(token, 0.0), weight) for token, weight in want.items()
           if not _close(got.get(token, 0.0), weight, atol)]
    if off:
        token, g, w = off[0]
        return Verdict(False, f"{len(off)} of the {len(want)} top tokens differ, e.g. {token!r}: {g!r}, expected "
                              f"{w} (tolerance {atol})")
    return Verdict(True, f"{len(got)} tokens, the top {len(want)} as recorded")


def _raw(expected: Mapping[str, Any], result: Mapping[str, Any], atol: float) -> Verdict:
    got = result.get("predicted_value")
    flat = list(_flatten(got)) if isinstance(got, list) else []
    prefix: Sequence[float] = expected["output_prefix"]
    worst = max((abs(a - b) for a, b in zip(flat, prefix, strict=False)), default=math.inf)
    if len(flat) < len(prefix) or worst > atol:
        return Verdict(False, f"output differs from the recorded prefix (max |diff| {worst:.2e}, tolerance {atol})")
    return Verdict(True, f"output prefix max |diff| {worst:.1e}")


def _flatten(value: Any) -> Any:
    for item in value:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item
