"""The security service's I/O: what `core/` needs from outside, over the network or disk."""
