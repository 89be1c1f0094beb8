"""`esbundle export`: trace a Hugging Face model the way Elasticsearch's native process calls it, prove the
trace answers like the original, and write a signed bundle.

Modules, one concern each: `options` (what is asked), `source` (hub or folder), `tasks`, `tokenization`,
`wrappers` (cluster-shaped modules), `cluster_inputs`, `trace`, `check`, `samples`, `es_config`,
`torch_compat`, `pipeline` (`run_export`). The command is `bundler.cli.export`.
Importing this package imports no torch: `run_export` loads it when called.
"""
from bundler.export.options import ExportOptions, ExportResult
from bundler.export.pipeline import run_export

__all__ = ["ExportOptions", "ExportResult", "run_export"]
