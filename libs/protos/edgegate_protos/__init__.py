"""Generated protobuf and gRPC modules for edgegate (never edit by hand).

`make protos` regenerates everything below this package from `protos/`:

- `edgegate_protos.common.v1`, `.gateway.v1`, `.security.v1`, `.taskstore.v1`
- `edgegate_protos.inference`: the Open Inference Protocol v2 (Triton's superset)
"""
