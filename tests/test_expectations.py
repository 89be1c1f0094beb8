"""The smoke test's judgement of one `_infer` answer against what the sample recorded: within `atol`, another
label only where the recorded answer nearly tied, entities and answers exactly, every recorded expansion token."""
from __future__ import annotations

from loader.cluster.expectations import judge

LABEL = {"predicted_value": "pos", "prediction_probability": 0.5004, "atol": 1e-3,
         "top_classes": [{"class_name": "pos", "class_probability": 0.5004, "class_score": 0.5004},
                         {"class_name": "neg", "class_probability": 0.4996, "class_score": 0.4996}]}


def test_a_label_must_match_unless_the_export_nearly_tied() -> None:
    assert judge(LABEL, {"predicted_value": "pos", "prediction_probability": 0.5001}).ok
    near = judge(LABEL, {"predicted_value": "neg", "prediction_probability": 0.5002})
    assert near.ok and "near tie" in near.detail
    clear = {**LABEL, "prediction_probability": 0.9, "top_classes": [
        {"class_name": "pos", "class_probability": 0.9}, {"class_name": "neg", "class_probability": 0.1}]}
    refused = judge(clear, {"predicted_value": "neg", "prediction_probability": 0.9})
    assert not refused.ok and refused.detail == "label 'neg', expected 'pos'"


def test_a_right_label_with_a_moved_probability_fails() -> None:
    verdict = judge(LABEL, {"predicted_value": "pos", "prediction_probability": 0.6})
    assert not verdict.ok and "probability 0.6" in verdict.detail


def test_entities_must_be_the_same_spans_and_classes() -> None:
    expected = {"atol": 1e-3, "predicted_value": "[Jo](PER&Jo) left",
                "entities": [{"entity": "Jo", "class_name": "PER", "class_probability": 0.9, "start_pos": 0,
                              "end_pos": 2}]}
    same = {"entities": [{"entity": "Jo", "class_name": "PER", "class_probability": 0.9004, "start_pos": 0,
                          "end_pos": 2}]}
    assert judge(expected, same).ok
    shifted = {"entities": [{**same["entities"][0], "end_pos": 7}]}
    verdict = judge(expected, shifted)
    assert not verdict.ok and verdict.detail == "entities PER[0:7], expected PER[0:2]"
    assert not judge(expected, {"entities": []}).ok


def test_an_answer_must_be_the_same_text_and_offsets() -> None:
    expected = {"atol": 1e-3, "predicted_value": "the fox", "start_offset": 4, "end_offset": 11,
                "prediction_probability": 0.4}
    assert judge(expected, {"predicted_value": "the fox", "start_offset": 4, "end_offset": 11,
                            "prediction_probability": 0.4002}).ok
    verdict = judge(expected, {"predicted_value": "fox", "start_offset": 8, "end_offset": 11,
                               "prediction_probability": 0.4})
    assert not verdict.ok and "expected 'the fox' at 4-11" in verdict.detail


def test_every_recorded_expansion_token_keeps_its_weight() -> None:
    expected = {"atol": 1e-3, "expansion": {"paris": 2.5, "city": 1.25}}
    assert judge(expected, {"predicted_value": {"paris": 2.5004, "city": 1.2498, "france": 0.3}}).ok
    dropped = judge(expected, {"predicted_value": {"paris": 2.5}})
    assert not dropped.ok and "'city': 0.0, expected 1.25" in dropped.detail
    assert not judge(expected, {"predicted_value": [0.1, 0.2]}).ok


def test_a_raw_output_is_compared_on_its_recorded_prefix() -> None:
    expected = {"atol": 1e-3, "output_prefix": [0.1, 0.2, 0.3], "shape": [2, 2]}
    assert judge(expected, {"predicted_value": [[0.1, 0.2], [0.3, 0.4]]}).ok
    assert not judge(expected, {"predicted_value": [[0.1, 0.25], [0.3, 0.4]]}).ok
    assert not judge(expected, {"predicted_value": "text"}).ok


def test_a_similarity_score_is_compared_within_atol() -> None:
    assert judge({"predicted_value": 3.25, "atol": 1e-3}, {"predicted_value": 3.2504}).ok
    assert not judge({"predicted_value": 3.25, "atol": 1e-3}, {"predicted_value": 3.3}).ok
