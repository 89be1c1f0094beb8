"""The bundle format, defined once: file layout, path rules and limits (`layout`), canonical JSON (`canonical`), the
manifest (`manifest`), the DSSE envelope (`dsse`), key ids (`keys`), volumes and their label (`volumes`), the
Elasticsearch config and vocabulary rules (`model_config`), and the record the loader writes into the cluster
(`cluster_metadata`). The connected side imports it to write; the offline side to read and verify."""
