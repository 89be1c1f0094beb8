"""Reading and verifying a bundle, offline: safe bounded reads, volumes, trusted keys, the verifier, inspect, copy.
Never touches the network."""
