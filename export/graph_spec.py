"""What an exportable graph declares: example inputs (two sizes or more), names and dynamic axes.

Model files return `GraphSpec`s; `export.onnx_export` turns each into an .onnx file (traced by the dynamo exporter,
or built node by node when `build` is set) and checks it with onnxruntime against the PyTorch module at every
example size."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GraphSpec:
    name: str                      # graph name, also the file stem: "<name>.onnx"
    module: object                 # torch.nn.Module in eval mode, forward(*inputs) -> tensor or tuple
    input_names: list
    output_names: list
    examples: list                 # list of input tuples; the first is traced, all are checked
    dynamic_axes: dict             # input name -> {axis index: dim name}
    check_outputs: list = field(default_factory=list)  # outputs compared in the check (default: all)
    atol: float = 1e-4
    build: object = None           # optional () -> onnx.ModelProto written by hand; `module` is then only the reference
    post_check: object = None      # optional (path) -> None, run after the check (raises on failure)
    keep_fp32: tuple = ()          # initializer name prefixes kept float32 by --fp16 (signal-processing constants)
