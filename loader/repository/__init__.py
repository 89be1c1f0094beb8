"""A cluster's model repository (`xpack.ml.model_repository`) filled from signed package bundles: the repository
files of a verified bundle (`files`), which arguments make up which bundle (`bundles`), writing them into a
directory on the master-eligible nodes (`install`), serving them over HTTP (`ranges`, `serve`), and the setting
that points the cluster at either (`setting`)."""
