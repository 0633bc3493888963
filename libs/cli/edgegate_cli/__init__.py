"""The `edgegate` command: what people type (local mode, and admin tools as they land)."""

__version__ = "0.1.0"
