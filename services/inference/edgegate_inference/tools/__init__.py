"""Offline model tools behind `edgegate model`: build, quantise and inspect ONNX models.

They prepare what the service serves and never run inside it, so the service's
image needs none of these tools' extra (`edgegate-inference[tools]`). None of
them needs PyTorch: `build-default` writes the default model's graph from its
weights (`bert_onnx`). Only `build-default --exporter torch` imports PyTorch,
lazily, from the optional `torch-export` extra.
"""
