"""edgegate Taskstore: offline tasks on JetStream, done exactly once."""

__version__ = "0.1.0"
