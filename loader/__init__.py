"""esbundle's offline side: read, verify and load bundles. Imports nothing heavy (no torch)."""

__version__ = "0.1.0"
