"""Generated protobuf and gRPC modules for edgegate (never edit by hand).

`make protos` regenerates everything below this package from `protos/`:

- `edgegate_protos.common.v1`, `.gateway.v1`, `.inference.v1`, `.security.v1`, `.taskstore.v1`
- `edgegate_protos.oip`: the Open Inference Protocol v2 (Triton's superset; proto package
  `inference`)

The `inference` protos use the same names as Triton's own generated code
(`inference.ModelInferRequest`, ...), which tritonclient registers in
protobuf's default descriptor pool. So that a process can import both (a test
calling our server with tritonclient, say), ours live in `INFERENCE_POOL`.
"""

from google.protobuf import descriptor_pool

INFERENCE_POOL = descriptor_pool.DescriptorPool()
