"""Writing a bundle: cut, compress, hash, sign, lay out on volumes, and put in place atomically."""
