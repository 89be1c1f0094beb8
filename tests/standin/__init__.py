"""A local Elasticsearch stand-in for tests, demos and rehearsals (see README.md in this package).

Independent of `bundler/` and `loader/`: it is the judge of what they upload.
"""
