"""GraphSpec -> .onnx with the dynamo exporter, stamped with metadata and checked by onnxruntime.

In:  a GraphSpec (module, names, >= 2 example inputs, dynamic axes) and a folder.
Out: `<folder>/<name>.onnx` (weights embedded), a report of the max abs error against PyTorch at every example.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np
import onnx
import torch

from .graph_spec import GraphSpec

OPSET = 18


class ExportCheckError(Exception):
    pass


def _dynamic_shapes(spec: GraphSpec):
    dims = {}
    shapes = []
    for name, ex in zip(spec.input_names, spec.examples[0]):
        axes = spec.dynamic_axes.get(name)
        if not axes:
            shapes.append(None)
            continue
        d = {}
        for ax, dim_name in axes.items():
            if dim_name not in dims:
                dims[dim_name] = torch.export.Dim(dim_name, min=1, max=100000)
            d[ax] = dims[dim_name]
        shapes.append(d)
    # forward(a, b, *rest): torch.export wants the var-positional part as one nested tuple
    import inspect
    params = list(inspect.signature(spec.module.forward).parameters.values())
    if params and params[-1].kind == inspect.Parameter.VAR_POSITIONAL:
        n_fixed = len(params) - 1
        return tuple(shapes[:n_fixed]) + (tuple(shapes[n_fixed:]),)
    return tuple(shapes)


def _to_numpy_outputs(out):
    if isinstance(out, torch.Tensor):
        out = (out,)
    return [o.detach().numpy() for o in out]


def export_graph(spec: GraphSpec, folder: str, metadata: dict, fp16: bool = False, log=print) -> dict:
    path = os.path.join(folder, f"{spec.name}.onnx")
    tmp = path + ".tmp"
    t0 = time.time()
    if spec.build is not None:
        model = spec.build()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                prog = torch.onnx.export(
                    spec.module, spec.examples[0], dynamo=True, opset_version=OPSET,
                    input_names=spec.input_names, output_names=spec.output_names,
                    dynamic_shapes=_dynamic_shapes(spec), optimize=True, verbose=False,
                )
        model = prog.model_proto
    _strip_provenance(model)
    if fp16:
        model = _to_fp16(model, keep=tuple(spec.keep_fp32))
    del model.metadata_props[:]
    for k, v in metadata.items():
        p = model.metadata_props.add()
        p.key, p.value = str(k), str(v)
    onnx.save_model(model, tmp)
    os.replace(tmp, path)
    errs = check_graph(spec, path, atol=(spec.atol if not fp16 else max(spec.atol, 5e-2)))
    if spec.post_check is not None:
        spec.post_check(path)
    log(f"  {spec.name}.onnx: exported in {time.time() - t0:.1f}s, max |onnx - torch| "
        + ", ".join(f"{e:.2e}" for e in errs))
    return {"file": f"{spec.name}.onnx", "inputs": spec.input_names, "outputs": spec.output_names}


def _strip_provenance(model):
    """Drop the exporter's per-node metadata (stack traces with this machine's source paths, scope names) and doc
    strings: a bundle must not depend on where it was exported, nor leak local paths."""
    def clean(graph):
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.g is not None and attr.g.ByteSize():
                    clean(attr.g)
                for g in attr.graphs:
                    clean(g)
        del graph.metadata_props[:]
        graph.doc_string = ""
        for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
            del vi.metadata_props[:]
            vi.doc_string = ""
        for init in graph.initializer:
            del init.metadata_props[:]
            init.doc_string = ""

    clean(model.graph)
    for f in model.functions:
        for node in f.node:
            del node.metadata_props[:]
            node.doc_string = ""
    model.doc_string = ""


def check_graph(spec: GraphSpec, path: str, atol: float) -> list:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    got_in = [i.name for i in sess.get_inputs()]
    got_out = [o.name for o in sess.get_outputs()]
    if got_in != spec.input_names or got_out != spec.output_names:
        raise ExportCheckError(f"{path}: graph I/O {got_in} -> {got_out} differs from {spec.input_names} -> "
                               f"{spec.output_names}")
    errs = []
    check = spec.check_outputs or spec.output_names
    for ex in spec.examples:
        with torch.no_grad():
            ref = _to_numpy_outputs(spec.module(*ex))
        feeds = {n: t.numpy() for n, t in zip(spec.input_names, ex)}
        outs = sess.run(None, feeds)
        worst = 0.0
        for name, r, o in zip(spec.output_names, ref, outs):
            if name not in check:
                continue
            if r.shape != o.shape:
                raise ExportCheckError(f"{path}: output {name} shape {o.shape} != torch {r.shape} at input shapes "
                                       f"{[tuple(t.shape) for t in ex]}")
            if r.dtype.kind in "iu":
                if not np.array_equal(r, o):
                    raise ExportCheckError(f"{path}: integer output {name} differs from torch")
                continue
            e = float(np.max(np.abs(r - o))) if r.size else 0.0
            tol = atol + 1e-3 * float(np.max(np.abs(r))) if r.size else atol
            if not e <= tol:
                raise ExportCheckError(f"{path}: output {name} differs from torch by {e:.3e} (> {tol:.1e}) at input "
                                       f"shapes {[tuple(t.shape) for t in ex]}")
            worst = max(worst, e)
        errs.append(worst)
    return errs


def _to_fp16(model, keep: tuple = ()):
    """Store float32 initializers as float16 and cast them back inside the graph (I/O stays float32).
    Initializers whose name starts with a prefix in `keep` (signal-processing constants) stay float32."""
    from onnx import helper, numpy_helper, TensorProto

    g = model.graph
    new_inits, casts = [], []
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and np.prod(init.dims) >= 1024 and not init.name.startswith(keep):
            arr = numpy_helper.to_array(init).astype(np.float16)
            half = numpy_helper.from_array(arr, init.name + "__fp16")
            new_inits.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            new_inits.append(init)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    return model
