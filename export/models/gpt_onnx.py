"""The two GPT graphs, written node by node with onnx.helper (not traced), with ONNX Runtime's contrib attention and
normalisation ops. `T2S.prefill` / `T2S.step` (models/gpt.py) are the references; `convert` checks both graphs
against them at two sizes.

gpt_prefill
In:  phone_ids i64 [1,N], bert f32 [1,Hb,N], prompt i64 [1,P]
Out: logits f32 [1,V] (last position), k_i / v_i f32 [1,N+P,D] per layer (heads side by side, in_proj order)
Per layer: three MatMul+Add projections, com.microsoft.MultiHeadAttention with an additive bias [1,1,T,T] (0 where
allowed, -inf elsewhere: text rows see all text, audio rows see all text and the audio up to themselves; built
once from N and P), MatMul(out_proj), SkipLayerNormalization, ReLU MLP, SkipLayerNormalization. The traced graph
spent ~30% of the prefill outside its GEMMs (per-layer Transpose x4, Where over the scores, Softmax, Split); this
one is ~1.35x faster at 140 positions.

gpt_step (batched: B sequences step together; B = 1 is the single-request case)
In:  token i64 [B,1], position i64 [B] (each sequence's audio position), seqlens_k i32 [B] (= T_b, the valid cache
     rows of sequence b before this token), total_len i32 [] (= max_b T_b + 1),
     past_k_i / past_v_i f32 [B,H,C,Dk] per layer (C = cache capacity per sequence >= max_b T_b + 1)
Out: logits f32 [B,V]; present_k_i / present_v_i f32 [B,H,C,Dk]
Each sequence attends to its own rows 0..=T_b only (GroupQueryAttention's per-batch `seqlens_k`), so a sequence's
logits in a batch are its logits alone (up to the GEMM's rounding, checked at 1e-4 by `tests/python/test_batch_step.py`
and `convert`); a padding sequence (T_b = 0) costs one row of each GEMM and writes only its own row 0.

Dk = `kv_head_dim(D, H)`: the head size Dh = D/H rounded up to a multiple of 8, because ONNX Runtime's
GroupQueryAttention requires one. Production models have Dh = 32 (no padding); for the others the in_proj rows of
each head get zero rows appended (q and k channels of zeros add nothing to q.k; v channels of zeros produce output
channels that out_proj's zero columns drop), and the scale stays 1/sqrt(Dh).

The cache is head-major (`[H, C, Dk]`, the layout com.microsoft.GroupQueryAttention reads). When the caller binds
present_x_i to the same buffer as past_x_i (ONNX Runtime IoBinding), GroupQueryAttention writes only the new row
(at index T) and reads rows 0..=T in place: no copy, no concatenation, no per-step allocation of the cache. Bound to
separate buffers, it copies the T past rows into present first (slower, same values). Rows past T+1 are never read.

Per layer: MatMul(in_proj) + Add, Reshape, GroupQueryAttention (packed q|k|v, num_heads = kv_num_heads = H,
scale 1/sqrt(Dh)), Reshape, MatMul(out_proj), SkipLayerNormalization (residual + out_proj bias + norm1),
MatMul(linear1) + Add, Relu, MatMul(linear2), SkipLayerNormalization (residual + linear2 bias + norm2). ONNX
Runtime fuses MatMul+Add into Gemm and Gemm+Relu into FusedGemm at load; the traced graph had ~27 nodes per layer
and this one 11, which is what a step costs beyond reading the weights.
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


class _Builder:
    """Initializers and nodes of one graph, plus the pieces both GPT graphs share."""

    def __init__(self, t2s):
        self.t2s, self.inits, self.nodes = t2s, [], []
        d = t2s.d
        # the sinusoid of models.gpt.sinusoid: same float32 frequencies, sin/cos interleaved
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(math.log(10000.0) / d))
        self.init("pe_div", _np(div.reshape(1, d // 2)))
        self.init("axis_last", np.array([-1], np.int64))
        self.init("shape_pe", np.array([-1, d], np.int64))

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op, ins, outs, domain="", **attrs):
        self.nodes.append(helper.make_node(op, ins, outs, domain=domain, **attrs))
        return outs[0]

    def positions(self, pos_i64: str, alpha: str, tag: str) -> str:
        """alpha * sinusoid(positions) for a 1-D i64 tensor of positions -> [len, D]."""
        n = self.node
        n("Cast", [pos_i64], [f"{tag}_f"], to=TensorProto.FLOAT)
        n("Unsqueeze", [f"{tag}_f", "axis_last"], [f"{tag}_col"])                   # [L,1]
        n("Mul", [f"{tag}_col", "pe_div"], [f"{tag}_ang"])                          # [L,D/2]
        n("Sin", [f"{tag}_ang"], [f"{tag}_sin"])
        n("Cos", [f"{tag}_ang"], [f"{tag}_cos"])
        n("Unsqueeze", [f"{tag}_sin", "axis_last"], [f"{tag}_sin3"])
        n("Unsqueeze", [f"{tag}_cos", "axis_last"], [f"{tag}_cos3"])
        n("Concat", [f"{tag}_sin3", f"{tag}_cos3"], [f"{tag}_pairs"], axis=-1)      # [L,D/2,2]
        n("Reshape", [f"{tag}_pairs", "shape_pe"], [f"{tag}_pe"])                   # [L,D]
        return n("Mul", [f"{tag}_pe", alpha], [f"{tag}_scaled"])

    def block_tail(self, i: int, blk, x: str, att: str, out_w) -> str:
        """out_proj (weight `out_w`, [D_att, D]) + residual + norm1, ReLU MLP + residual + norm2 -> layer output."""
        init, n = self.init, self.node
        init(f"l{i}.out_w", out_w)
        init(f"l{i}.out_b", _np(blk.self_attn.out_proj.bias))
        init(f"l{i}.norm1_g", _np(blk.norm1.weight))
        init(f"l{i}.norm1_b", _np(blk.norm1.bias))
        init(f"l{i}.ff1_w", _np(blk.linear1.weight).T.copy())
        init(f"l{i}.ff1_b", _np(blk.linear1.bias))
        init(f"l{i}.ff2_w", _np(blk.linear2.weight).T.copy())
        init(f"l{i}.ff2_b", _np(blk.linear2.bias))
        init(f"l{i}.norm2_g", _np(blk.norm2.weight))
        init(f"l{i}.norm2_b", _np(blk.norm2.bias))
        n("MatMul", [att, f"l{i}.out_w"], [f"l{i}.att_out"])
        n("SkipLayerNormalization", [x, f"l{i}.att_out", f"l{i}.norm1_g", f"l{i}.norm1_b", f"l{i}.out_b"],
          [f"l{i}.x1"], domain="com.microsoft", epsilon=1e-5)
        n("MatMul", [f"l{i}.x1", f"l{i}.ff1_w"], [f"l{i}.ff1_mm"])
        n("Add", [f"l{i}.ff1_mm", f"l{i}.ff1_b"], [f"l{i}.ff1"])
        n("Relu", [f"l{i}.ff1"], [f"l{i}.ff1_relu"])
        n("MatMul", [f"l{i}.ff1_relu", f"l{i}.ff2_w"], [f"l{i}.ff2"])
        return n("SkipLayerNormalization", [f"l{i}.x1", f"l{i}.ff2", f"l{i}.norm2_g", f"l{i}.norm2_b", f"l{i}.ff2_b"],
                 [f"x_{i + 1}"], domain="com.microsoft", epsilon=1e-5)

    def model(self, name, inputs, outputs):
        # element types of the intermediate values: tools that run ONNX shape inference (the int8 quantizer) cannot
        # infer through the contrib ops without them
        out_names = {o.name for o in outputs}
        ints = {"tok_flat", "n_len", "p_len", "t_len", "t_last", "text_pos", "audio_pos", "rows", "row_i", "col_j"}
        bools = {"j_text", "i_audio", "causal", "audio_ok", "allowed"}
        value_info = [helper.make_tensor_value_info(
            o, TensorProto.INT64 if o in ints or o.endswith("_shape") else TensorProto.BOOL if o in bools
            else TensorProto.FLOAT, None) for nd in self.nodes for o in nd.output if o and o not in out_names]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits, value_info=value_info)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
        m.ir_version = 10
        return m


def build_prefill_model(t2s):
    d, heads, n_layer, vocab = t2s.d, t2s.heads, t2s.n_layer, t2s.vocab
    g = _Builder(t2s)
    init, n = g.init, g.node
    init("text_emb", _np(t2s.ar_text_embedding.word_embeddings.weight))
    init("audio_emb", _np(t2s.ar_audio_embedding.word_embeddings.weight))
    init("bert_w", _np(t2s.bert_proj.weight).T.copy())
    init("bert_b", _np(t2s.bert_proj.bias))
    init("alpha_text", _np(t2s.ar_text_position.alpha.reshape(1)))
    init("alpha_audio", _np(t2s.ar_audio_position.alpha.reshape(1)))
    init("zero", np.array(0, np.int64))
    init("one", np.array(1, np.int64))
    init("axis_0", np.array([0], np.int64))
    init("axes_01", np.array([0, 1], np.int64))
    init("bias_ok", np.array(0.0, np.float32))
    init("bias_masked", np.array(-np.inf, np.float32))
    n("Shape", ["phone_ids"], ["ids_shape"])
    n("Gather", ["ids_shape", "one"], ["n_len"], axis=0)
    n("Shape", ["prompt"], ["prompt_shape"])
    n("Gather", ["prompt_shape", "one"], ["p_len"], axis=0)
    n("Add", ["n_len", "p_len"], ["t_len"])
    # text: emb(phones) + bert_proj(bert^T) + alpha_text * pe[0..N)
    n("Gather", ["text_emb", "phone_ids"], ["text_tok"], axis=0)                 # [1,N,D]
    n("Transpose", ["bert"], ["bert_rows"], perm=[0, 2, 1])                        # [1,N,Hb]
    n("MatMul", ["bert_rows", "bert_w"], ["bert_mm"])
    n("Add", ["bert_mm", "bert_b"], ["bert_d"])
    n("Add", ["text_tok", "bert_d"], ["text_x0"])
    n("Range", ["zero", "n_len", "one"], ["text_pos"])
    n("Add", ["text_x0", g.positions("text_pos", "alpha_text", "text_pe")], ["text_x"])
    # audio: emb(codes) + alpha_audio * pe[0..P)
    n("Gather", ["audio_emb", "prompt"], ["audio_tok"], axis=0)                   # [1,P,D]
    n("Range", ["zero", "p_len", "one"], ["audio_pos"])
    n("Add", ["audio_tok", g.positions("audio_pos", "alpha_audio", "audio_pe")], ["audio_x"])
    x = n("Concat", ["text_x", "audio_x"], ["x_0"], axis=1)                        # [1,T,D]
    # attention bias [1,1,T,T]: row i may see column j when j < N, or when i >= N and j <= i
    n("Range", ["zero", "t_len", "one"], ["rows"])
    n("Unsqueeze", ["rows", "axis_last"], ["row_i"])
    n("Unsqueeze", ["rows", "axis_0"], ["col_j"])
    n("Less", ["col_j", "n_len"], ["j_text"])
    n("GreaterOrEqual", ["row_i", "n_len"], ["i_audio"])
    n("LessOrEqual", ["col_j", "row_i"], ["causal"])
    n("And", ["i_audio", "causal"], ["audio_ok"])
    n("Or", ["j_text", "audio_ok"], ["allowed"])
    n("Where", ["allowed", "bias_ok", "bias_masked"], ["bias_2d"])
    n("Unsqueeze", ["bias_2d", "axes_01"], ["att_bias"])
    for i, blk in enumerate(t2s.h.layers):
        w, b = _np(blk.self_attn.in_proj_weight), _np(blk.self_attn.in_proj_bias)
        for j, part in enumerate(("q", "k", "v")):
            init(f"l{i}.{part}_w", w[j * d:(j + 1) * d].T.copy())
            init(f"l{i}.{part}_b", b[j * d:(j + 1) * d])
            n("MatMul", [x, f"l{i}.{part}_w"], [f"l{i}.{part}_mm"])
            n("Add", [f"l{i}.{part}_mm", f"l{i}.{part}_b"], [f"l{i}.q" if part == "q" else f"{part}_{i}"])
        n("MultiHeadAttention", [f"l{i}.q", f"k_{i}", f"v_{i}", "", "", "att_bias"], [f"l{i}.att"],
          domain="com.microsoft", num_heads=heads, scale=1.0 / math.sqrt(d // heads))
        x = g.block_tail(i, blk, x, f"l{i}.att", _np(blk.self_attn.out_proj.weight).T.copy())
    n("Sub", ["t_len", "one"], ["t_last"])
    n("Gather", [x, "t_last"], ["x_last"], axis=1)                                 # [1,D]
    init("predict_w", _np(t2s.ar_predict_layer.weight).T.copy())
    n("MatMul", ["x_last", "predict_w"], ["logits"])
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("phone_ids", TensorProto.INT64, [1, "N"]),
              helper.make_tensor_value_info("bert", f, [1, t2s.bert_dim, "N"]),
              helper.make_tensor_value_info("prompt", TensorProto.INT64, [1, "P"])]
    outputs = [helper.make_tensor_value_info("logits", f, [1, vocab])]
    outputs += [helper.make_tensor_value_info(f"k_{i}", f, [1, "T", d]) for i in range(n_layer)]
    outputs += [helper.make_tensor_value_info(f"v_{i}", f, [1, "T", d]) for i in range(n_layer)]
    return g.model("gpt_prefill", inputs, outputs)


def build_step_model(t2s):
    d, heads, n_layer, vocab = t2s.d, t2s.heads, t2s.n_layer, t2s.vocab
    dh = d // heads
    dk = kv_head_dim(d, heads)
    g = _Builder(t2s)
    init, node = g.init, g.node
    init("audio_emb", _np(t2s.ar_audio_embedding.word_embeddings.weight))
    init("pe_alpha", _np(t2s.ar_audio_position.alpha.reshape(1)))
    init("shape_flat", np.array([-1], np.int64))
    init("shape_qkv", np.array([-1, 1, 3 * heads * dk], np.int64))
    init("shape_att", np.array([-1, heads * dk], np.int64))
    node("Reshape", ["token", "shape_flat"], ["tok_flat"])                      # [B]
    node("Gather", ["audio_emb", "tok_flat"], ["tok_emb"], axis=0)            # [B,D]
    x = node("Add", ["tok_emb", g.positions("position", "pe_alpha", "pos")], ["x_0"])  # [B,D]

    for i, blk in enumerate(t2s.h.layers):
        a = blk.self_attn
        init(f"l{i}.qkv_w", _pad_in_proj(_np(a.in_proj_weight), heads, dh, dk).T.copy())  # [D,3*H*Dk]
        init(f"l{i}.qkv_b", _pad_in_proj(_np(a.in_proj_bias), heads, dh, dk))
        node("MatMul", [x, f"l{i}.qkv_w"], [f"l{i}.qkv_mm"])
        node("Add", [f"l{i}.qkv_mm", f"l{i}.qkv_b"], [f"l{i}.qkv"])
        node("Reshape", [f"l{i}.qkv", "shape_qkv"], [f"l{i}.qkv3"])
        node("GroupQueryAttention",
             [f"l{i}.qkv3", "", "", f"past_k_{i}", f"past_v_{i}", "seqlens_k", "total_len"],
             [f"l{i}.att3", f"present_k_{i}", f"present_v_{i}"], domain="com.microsoft",
             num_heads=heads, kv_num_heads=heads, scale=1.0 / math.sqrt(dh))
        node("Reshape", [f"l{i}.att3", "shape_att"], [f"l{i}.att"])
        x = g.block_tail(i, blk, x, f"l{i}.att", _pad_out_proj(_np(a.out_proj.weight), heads, dh, dk).T.copy())
    init("predict_w", _np(t2s.ar_predict_layer.weight).T.copy())              # [D,V]
    node("MatMul", [x, "predict_w"], ["logits"])

    def kv(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", heads, "C", dk])

    inputs = [helper.make_tensor_value_info("token", TensorProto.INT64, ["B", 1]),
              helper.make_tensor_value_info("position", TensorProto.INT64, ["B"]),
              helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["B"]),
              helper.make_tensor_value_info("total_len", TensorProto.INT32, [])]
    inputs += [kv(f"past_k_{i}") for i in range(n_layer)] + [kv(f"past_v_{i}") for i in range(n_layer)]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", vocab])]
    outputs += [kv(f"present_k_{i}") for i in range(n_layer)] + [kv(f"present_v_{i}") for i in range(n_layer)]
    return g.model("gpt_step", inputs, outputs)


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


BATCH_ATOL = 1e-4


def batch_check(path: str, n_layer: int, heads: int, dk: int, vocab: int, seed: int = 0,
                lens=(5, 17, 1, 30), capacity: int = 33, min_batch: int = 1) -> float:
    """Run a step graph on B sequences together and on each alone, with onnxruntime (CPU): every sequence's logits
    in the batch must equal its logits alone within `BATCH_ATOL`, and its new K/V row (at its own T_b) must be the
    same; the rows of other sequences must be left untouched. Returns the largest logit difference; raises
    ValueError past the tolerance. `convert` runs it on every step graph it writes (fp32 and quantised variants).

    "Alone" is the smallest batch the runtime runs the graph at: `min_batch` rows, the sequence in row 0 and the
    others padding as the engine pads a free slot (token 0, position 0, `seqlens_k` 0, zero K/V). A graph whose
    one-row run takes another kernel than its many-row runs (ONNX Runtime's MatMulNBits with accuracy_level 4 on
    the CPU: see `step_min_batch`) is exact per sequence from two rows up, and is stamped to run at two."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    b = len(lens)
    caches = rng.standard_normal((2 * n_layer, b, heads, capacity, dk)).astype(np.float32)
    tokens = rng.integers(0, vocab - 1, (b, 1)).astype(np.int64)
    positions = rng.integers(0, 200, (b,)).astype(np.int64)
    seqlens = np.array(lens, np.int32)
    names = [f"past_k_{i}" for i in range(n_layer)] + [f"past_v_{i}" for i in range(n_layer)]

    def run(sel):
        pad = max(0, min_batch - len(sel))
        tok = np.concatenate([tokens[sel], np.zeros((pad, 1), np.int64)])
        pos = np.concatenate([positions[sel], np.zeros(pad, np.int64)])
        sl = np.concatenate([seqlens[sel], np.zeros(pad, np.int32)])
        feeds = {"token": tok, "position": pos, "seqlens_k": sl, "total_len": np.array(int(sl.max()) + 1, np.int32)}
        feeds.update({n: np.ascontiguousarray(np.concatenate([caches[j][sel], np.zeros((pad, heads, capacity, dk),
                                                                                         np.float32)]))
                      for j, n in enumerate(names)})
        out = sess.run(None, feeds)
        return out[0], out[1:]

    logits_all, presents_all = run(np.arange(b))
    worst = 0.0
    for s in range(b):
        logits_one, presents_one = run(np.array([s]))
        e = float(np.max(np.abs(logits_all[s] - logits_one[0])))
        worst = max(worst, e)
        if not e <= BATCH_ATOL:
            raise ValueError(f"{path}: sequence {s} (T={lens[s]}) logits in a batch of {b} differ from alone "
                             f"({min_batch} row{'s' if min_batch > 1 else ''}) by {e:.3e}")
        t = lens[s]
        for j in range(2 * n_layer):
            rows_b, rows_1 = presents_all[j][s, :, : t + 1], presents_one[j][0, :, : t + 1]
            e = float(np.max(np.abs(rows_b - rows_1)))
            if not e <= BATCH_ATOL:
                raise ValueError(f"{path}: sequence {s}: K/V rows in a batch differ from alone by {e:.3e}")
            if not np.array_equal(rows_b[:, :t], caches[j][s, :, :t]):
                raise ValueError(f"{path}: sequence {s}: the step changed a past K/V row")
    return worst


def step_min_batch(path: str, n_layer: int, heads: int, dk: int, vocab: int) -> tuple[int, float]:
    """The fewest rows a batched step graph must run with for every sequence's result not to depend on the batch
    (1 or 2), and the batch check's largest difference there. ONNX Runtime's CPU MatMulNBits with accuracy_level 4
    multiplies a one-row input with another kernel than two rows or more (measured on the full-size GPT: logits
    2e-2 apart; every batch of 2..16 rows identical to the bit), so a quantised step graph that fails at one row is
    checked again at two; the runtime then never runs it with fewer (a padding row, `gsv.step_min_batch`). Raises
    ValueError when it is not exact at two rows either."""
    try:
        return 1, batch_check(path, n_layer, heads, dk, vocab)
    except ValueError as one:
        try:
            return 2, batch_check(path, n_layer, heads, dk, vocab, min_batch=2)
        except ValueError as two:
            raise ValueError(f"{one}; with two rows too: {two}") from None
