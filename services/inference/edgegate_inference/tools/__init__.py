"""Offline model tools behind `edgegate model`: build, quantise and inspect ONNX models.

They prepare what the service serves and never run inside it: the build step
is the only code in edgegate that touches PyTorch, and it imports it lazily,
so the service's image needs neither PyTorch nor these tools' extra
(`edgegate-inference[tools]`).
"""
