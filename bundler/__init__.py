"""esbundle's connected side: keys, export (tracing), packing and signing bundles.

Heavy libraries (torch, transformers, huggingface_hub) are imported only inside the export functions, so the
CLI still starts on the offline install.
"""
