"""Everything that talks to a cluster: the client (the one network chokepoint), preflight, upload, the resume
journal, deployment and the smoke test, receipts, and the `load` and `status` operations built from them."""
