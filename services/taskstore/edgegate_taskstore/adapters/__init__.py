"""The taskstore's I/O: JetStream storage, the work queue, security, inference readiness."""
