"""edgegate Gateway: protocol translation. Every adapter turns what it receives into an Envelope."""

__version__ = "0.1.0"
