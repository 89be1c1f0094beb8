"""What an Elasticsearch release can run: its libtorch, the TorchScript file versions that reads, and the checks
of its native process, from the data in `loader/data/`. The exporter predicts with it and the loader refuses."""
