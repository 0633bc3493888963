"""What every edgegate service shares.

Modules, from the bottom layer up (each imports only from layers below it;
`make lint` enforces this with import-linter):

- `errors`, `subjects`: the typed error root; every NATS subject, stream and bucket name.
- `config`, `logging`, `telemetry`, `metrics`: settings, JSON logs, tracing, Prometheus.
- `bus`, `rpc`: the NATS wrapper; the gRPC server bootstrap.
- `service`: runs one service process (NATS + gRPC + /metrics, drains on SIGTERM).
- `local`: local mode: a real nats-server and service processes on one machine.
"""

__version__ = "0.1.0"
