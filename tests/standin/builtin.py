"""The model every Elasticsearch cluster lists without anyone uploading it: `lang_ident_model_1`.

Elasticsearch ships it as a resource of the ML plugin (TrainedModelProvider.MODELS_STORED_AS_RESOURCE,
`lang_ident_model_1.json`) and answers for it in GET, `_stats` and the expansions of `_all`, `*` and
wildcards. It is a language-identification network (a `lang_ident` model, basic licence), never a
PyTorch model: `_start` refuses it, DELETE refuses it, PUT of its id finds it existing. Its inference
runs in the JVM, which the stand-in does not emulate.

The config below is what a cluster answers for it, from the resource file: id, `created_by`, the
7.6.0 `version`, `create_time`, description, tags, input field `text`, the size and operation
estimates (`estimated_heap_memory_usage_bytes` is read into `model_size_bytes`) and the basic licence.
`model_type` and the classification `inference_config` (ClassificationConfig's defaults) are not in
the resource versions read; they are what clients (Kibana) rely on a cluster returning (see README).
"""

from __future__ import annotations

import copy
from typing import Any

LANG_IDENT_ID = "lang_ident_model_1"

_CONFIG: dict[str, Any] = {
    "model_id": LANG_IDENT_ID,
    "model_type": "lang_ident",
    "created_by": "_xpack",
    "version": "7.6.0",
    "create_time": 1575548914594,
    "model_size_bytes": 1053992,
    "estimated_operations": 39629,
    "license_level": "basic",
    "description": "Model used for identifying language from arbitrary input text.",
    "tags": ["lang_ident", "prepackaged"],
    "input": {"field_names": ["text"]},
    "inference_config": {
        "classification": {
            "num_top_classes": 0,
            "top_classes_results_field": "top_classes",
            "results_field": "predicted_value",
            "num_top_feature_importance_values": 0,
            "prediction_field_type": "string",
        }
    },
}


def builtin_config(model_id: str) -> dict[str, Any] | None:
    """A fresh copy of the built-in model's config, or None when `model_id` is not built in."""
    return copy.deepcopy(_CONFIG) if model_id == LANG_IDENT_ID else None


def is_builtin(model_id: str) -> bool:
    return model_id == LANG_IDENT_ID
