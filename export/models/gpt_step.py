"""The `gpt_step` graph, written node by node with onnx.helper (not traced): one token through the GPT with the K/V
cache updated in place.

In:  token i64 [1,1], position i64 [1], seqlens_k i32 [1] (= T, the valid cache rows before this token),
     total_len i32 [] (= T+1), past_k_i / past_v_i f32 [1,H,C,Dk] per layer (C = cache capacity >= T+1)
Out: logits f32 [1,V]; present_k_i / present_v_i f32 [1,H,C,Dk]

Dk = `kv_head_dim(D, H)`: the head size Dh = D/H rounded up to a multiple of 8, because ONNX Runtime's
GroupQueryAttention requires one. Production models have Dh = 32 (no padding); for the others the in_proj rows of
each head get zero rows appended (q and k channels of zeros add nothing to q.k; v channels of zeros produce output
channels that out_proj's zero columns drop), and the scale stays 1/sqrt(Dh).

The cache is head-major (`[H, C, Dh]`, the layout com.microsoft.GroupQueryAttention reads). When the caller binds
present_x_i to the same buffer as past_x_i (ONNX Runtime IoBinding), GroupQueryAttention writes only the new row
(at index T) and reads rows 0..=T in place: no copy, no concatenation, no per-step allocation of the cache. Bound to
separate buffers, it copies the T past rows into present first (slower, same values). Rows past T+1 are never read.

Per layer: MatMul(in_proj) + Add, Reshape, GroupQueryAttention (packed q|k|v, num_heads = kv_num_heads = H,
scale 1/sqrt(Dh)), Reshape, MatMul(out_proj), SkipLayerNormalization (residual + out_proj bias + norm1),
MatMul(linear1) + Add, Relu, MatMul(linear2), SkipLayerNormalization (residual + linear2 bias + norm2). ONNX
Runtime fuses MatMul+Add into Gemm and Gemm+Relu into FusedGemm at load; the traced graph had ~27 nodes per layer
and this one 11, which is what a step costs beyond reading the weights. `T2S.step` (models/gpt.py) is the
reference; `convert` checks this graph against it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

OPSET = 18


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).numpy() if torch.is_tensor(t) else t)


def kv_head_dim(d: int, heads: int) -> int:
    dh = d // heads
    return (dh + 7) // 8 * 8


def _pad_in_proj(w: np.ndarray, heads: int, dh: int, dk: int) -> np.ndarray:
    """[3D, ...] rows ordered (q|k|v, head, channel) -> [3*H*Dk, ...] with zero channels appended per head."""
    rest = w.shape[1:]
    w = w.reshape(3, heads, dh, *rest)
    out = np.zeros((3, heads, dk, *rest), dtype=w.dtype)
    out[:, :, :dh] = w
    return out.reshape(3 * heads * dk, *rest)


def _pad_out_proj(w: np.ndarray, heads: int, dh: int, dk: int) -> np.ndarray:
    """out_proj weight [D_out, D_in] with D_in ordered (head, channel) -> [D_out, H*Dk]."""
    w = w.reshape(w.shape[0], heads, dh)
    out = np.zeros((w.shape[0], heads, dk), dtype=w.dtype)
    out[:, :, :dh] = w
    return out.reshape(w.shape[0], heads * dk)


def build_step_model(t2s):
    d, heads, n_layer, vocab = t2s.d, t2s.heads, t2s.n_layer, t2s.vocab
    dh = d // heads
    dk = kv_head_dim(d, heads)
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, outs, domain="", **attrs):
        nodes.append(helper.make_node(op, ins, outs, domain=domain, **attrs))
        return outs[0]

    init("audio_emb", _np(t2s.ar_audio_embedding.word_embeddings.weight))
    # the sinusoid of models.gpt.sinusoid: same float32 frequencies, sin/cos interleaved
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(math.log(10000.0) / d))
    init("pe_div", _np(div.reshape(1, d // 2)))
    init("pe_alpha", _np(t2s.ar_audio_position.alpha.reshape(1)))
    init("shape_1", np.array([1], np.int64))
    init("shape_row", np.array([1, d], np.int64))
    init("shape_qkv", np.array([1, 1, 3 * heads * dk], np.int64))
    init("shape_att", np.array([1, heads * dk], np.int64))
    init("axis_last", np.array([-1], np.int64))
    node("Reshape", ["token", "shape_1"], ["tok_flat"])
    node("Gather", ["audio_emb", "tok_flat"], ["tok_emb"], axis=0)            # [1,D]
    node("Cast", ["position"], ["pos_f"], to=TensorProto.FLOAT)                # [1]
    node("Unsqueeze", ["pos_f", "axis_last"], ["pos_col"])                      # [1,1]
    node("Mul", ["pos_col", "pe_div"], ["pe_ang"])                              # [1,D/2]
    node("Sin", ["pe_ang"], ["pe_sin"])
    node("Cos", ["pe_ang"], ["pe_cos"])
    node("Unsqueeze", ["pe_sin", "axis_last"], ["pe_sin3"])
    node("Unsqueeze", ["pe_cos", "axis_last"], ["pe_cos3"])
    node("Concat", ["pe_sin3", "pe_cos3"], ["pe_pairs"], axis=-1)              # [1,D/2,2]
    node("Reshape", ["pe_pairs", "shape_row"], ["pe"])                          # [1,D]
    node("Mul", ["pe", "pe_alpha"], ["pe_scaled"])
    x = node("Add", ["tok_emb", "pe_scaled"], ["x_0"])

    for i, blk in enumerate(t2s.h.layers):
        a = blk.self_attn
        init(f"l{i}.qkv_w", _pad_in_proj(_np(a.in_proj_weight), heads, dh, dk).T.copy())  # [D,3*H*Dk]
        init(f"l{i}.qkv_b", _pad_in_proj(_np(a.in_proj_bias), heads, dh, dk))
        init(f"l{i}.out_w", _pad_out_proj(_np(a.out_proj.weight), heads, dh, dk).T.copy())  # [H*Dk,D]
        init(f"l{i}.out_b", _np(a.out_proj.bias))
        init(f"l{i}.norm1_g", _np(blk.norm1.weight))
        init(f"l{i}.norm1_b", _np(blk.norm1.bias))
        init(f"l{i}.ff1_w", _np(blk.linear1.weight).T.copy())
        init(f"l{i}.ff1_b", _np(blk.linear1.bias))
        init(f"l{i}.ff2_w", _np(blk.linear2.weight).T.copy())
        init(f"l{i}.ff2_b", _np(blk.linear2.bias))
        init(f"l{i}.norm2_g", _np(blk.norm2.weight))
        init(f"l{i}.norm2_b", _np(blk.norm2.bias))
        node("MatMul", [x, f"l{i}.qkv_w"], [f"l{i}.qkv_mm"])
        node("Add", [f"l{i}.qkv_mm", f"l{i}.qkv_b"], [f"l{i}.qkv"])
        node("Reshape", [f"l{i}.qkv", "shape_qkv"], [f"l{i}.qkv3"])
        node("GroupQueryAttention",
             [f"l{i}.qkv3", "", "", f"past_k_{i}", f"past_v_{i}", "seqlens_k", "total_len"],
             [f"l{i}.att3", f"present_k_{i}", f"present_v_{i}"], domain="com.microsoft",
             num_heads=heads, kv_num_heads=heads, scale=1.0 / math.sqrt(dh))
        node("Reshape", [f"l{i}.att3", "shape_att"], [f"l{i}.att"])
        node("MatMul", [f"l{i}.att", f"l{i}.out_w"], [f"l{i}.att_out"])
        node("SkipLayerNormalization", [x, f"l{i}.att_out", f"l{i}.norm1_g", f"l{i}.norm1_b", f"l{i}.out_b"],
             [f"l{i}.x1"], domain="com.microsoft", epsilon=1e-5)
        node("MatMul", [f"l{i}.x1", f"l{i}.ff1_w"], [f"l{i}.ff1_mm"])
        node("Add", [f"l{i}.ff1_mm", f"l{i}.ff1_b"], [f"l{i}.ff1"])
        node("Relu", [f"l{i}.ff1"], [f"l{i}.ff1_relu"])
        node("MatMul", [f"l{i}.ff1_relu", f"l{i}.ff2_w"], [f"l{i}.ff2"])
        x = node("SkipLayerNormalization", [f"l{i}.x1", f"l{i}.ff2", f"l{i}.norm2_g", f"l{i}.norm2_b", f"l{i}.ff2_b"],
                 [f"x_{i + 1}"], domain="com.microsoft", epsilon=1e-5)
    init("predict_w", _np(t2s.ar_predict_layer.weight).T.copy())              # [D,V]
    node("MatMul", [x, "predict_w"], ["logits"])

    def kv(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, heads, "C", dk])

    inputs = [helper.make_tensor_value_info("token", TensorProto.INT64, [1, 1]),
              helper.make_tensor_value_info("position", TensorProto.INT64, [1]),
              helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
              helper.make_tensor_value_info("total_len", TensorProto.INT32, [])]
    inputs += [kv(f"past_k_{i}") for i in range(n_layer)] + [kv(f"past_v_{i}") for i in range(n_layer)]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, vocab])]
    outputs += [kv(f"present_k_{i}") for i in range(n_layer)] + [kv(f"present_v_{i}") for i in range(n_layer)]
    # element types of the intermediate values: tools that run ONNX shape inference (the int8 quantizer) cannot
    # infer through the contrib ops without them
    out_names = {o.name for o in outputs}
    value_info = [helper.make_tensor_value_info(o, TensorProto.INT64 if o == "tok_flat" else TensorProto.FLOAT, None)
                  for n in nodes for o in n.output if o and o not in out_names]
    graph = helper.make_graph(nodes, "gpt_step", inputs, outputs, inits, value_info=value_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def input_names(n_layer: int) -> list:
    return ["token", "position", "seqlens_k", "total_len", *[f"past_k_{i}" for i in range(n_layer)],
            *[f"past_v_{i}" for i in range(n_layer)]]


def output_names(n_layer: int) -> list:
    return ["logits", *[f"present_k_{i}" for i in range(n_layer)], *[f"present_v_{i}" for i in range(n_layer)]]


def rows_to_heads(rows: np.ndarray, heads: int, dk: int) -> np.ndarray:
    """[T, D] (a layer's K or V as the prefill returns it) -> [H, T, Dk], the cache layout (zero padded)."""
    t, d = rows.shape
    dh = d // heads
    out = np.zeros((heads, t, dk), dtype=rows.dtype)
    out[:, :, :dh] = rows.reshape(t, heads, dh).transpose(1, 0, 2)
    return out


class ReferenceStep(torch.nn.Module):
    """Torch twin of the graph's I/O for the export check: unpacks the head-major caches into `T2S.step`'s
    [1,T,D] past, runs it, and returns the caches with the new row written at T (rows past T+1 kept as given)."""

    def __init__(self, t2s):
        super().__init__()
        self.t2s = t2s

    def forward(self, token, position, seqlens_k, total_len, *caches):
        t2s = self.t2s
        h, dh = t2s.heads, t2s.d // t2s.heads
        t = int(seqlens_k.reshape(-1)[0])
        past = [c[0, :, :t, :dh].transpose(0, 1).reshape(1, t, t2s.d) for c in caches]
        out = t2s.step(token, position, *past)
        logits, new = out[0], out[1:]
        presents = []
        for c, row in zip(caches, new):
            p = c.clone()
            p[0, :, t, :dh] = row.reshape(h, dh)
            presents.append(p)
        return (logits, *presents)


def example(t2s, t: int, capacity: int, pos: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    dh = t2s.d // t2s.heads
    dk = kv_head_dim(t2s.d, t2s.heads)
    caches = []
    for _ in range(2 * t2s.n_layer):
        c = torch.zeros(1, t2s.heads, capacity, dk)
        c[0, :, :t, :dh] = torch.randn(t2s.heads, t, dh, generator=g)
        caches.append(c)
    return (torch.randint(0, t2s.vocab - 1, (1, 1), generator=g), torch.tensor([pos], dtype=torch.int64),
            torch.tensor([t], dtype=torch.int32), torch.tensor(t + 1, dtype=torch.int32), *caches)
