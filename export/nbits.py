"""Weight-only block quantisation of an ONNX graph's constant-weight MatMuls into ONNX Runtime's
`com.microsoft.MatMulNBits` (what the GPT's `int8` / `int4` variants are made of).

In:  an onnx ModelProto (the fp32 gpt_prefill / gpt_step graphs of export/models/gpt_onnx.py), bits (8 or 4), block
     size (a power of two >= 16 dividing K), accuracy_level (4 = the CPU EP quantises the activations to int8 per block
     and runs int8 dot products: VNNI / AVX-512 / NEON; 0 = dequantise to fp32 and multiply in fp32).
Out: a ModelProto with the same inputs and outputs: every `MatMul(x, W)` whose W is a 2-D float initializer [K, N]
     becomes `MatMulNBits(x, Wq, scales, zero_points[, bias])` where Wq holds `bits`-bit codes of W in blocks of
     `block` consecutive rows of each column, with one fp32 scale (and one zero point) per block; a following
     `Add(·, b)` with a 1-D constant b of length N is folded into MatMulNBits' bias input. Everything else (the
     embedding Gathers, attention, norms, the K/V cache I/O) is untouched, so the runtime binds the quantised graphs
     exactly like the fp32 ones.

Quantisation (round to nearest, asymmetric, per block of one column): lo = min(0, min w), hi = max(0, max w),
scale = (hi - lo) / (2^bits - 1), zero point z = round(-lo / scale), code q = clip(round(w / scale) + z, 0,
2^bits - 1); the runtime reconstructs w' = (q - z) * scale, so |w - w'| <= scale / 2 and 0 is exact.
Layout (MatMulNBits' contract): B uint8 [N, K/block, block*bits/8], codes of one column's block in K order, packed
low bits first (4-bit: element 2i in the low nibble, 2i+1 in the high one); scales f32 [N, K/block]; zero points
uint8 [N, ceil(K/block * bits / 8)], packed the same way.

`damage` exists for the gate's tests only: it perturbs the codes so that a variant that must be refused can be made
on purpose (see export/quantize.py).
"""
from __future__ import annotations

import numpy as np
from onnx import ModelProto, helper, numpy_helper


def quantize_blocks(w: np.ndarray, bits: int, block: int):
    """w [K, N] float -> (packed uint8 [N, K/block, block*bits/8], scales f32 [N, K/block], zero points uint8
    [N, ceil(K/block*bits/8)], codes uint8 [N, K/block, block] unpacked)."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    k, n = w.shape
    if k % block:
        raise ValueError(f"K={k} is not a multiple of the block size {block}")
    qmax = (1 << bits) - 1
    blocks = w.astype(np.float64).T.reshape(n, k // block, block)           # [N, kb, block], K order inside
    lo = np.minimum(blocks.min(axis=2), 0.0)
    hi = np.maximum(blocks.max(axis=2), 0.0)
    scale = (hi - lo) / qmax
    scale = np.where(scale > 0, scale, 1.0)                                  # an all-zero block: any scale works
    scale32 = scale.astype(np.float32)
    zp = np.clip(np.rint(-lo / scale32), 0, qmax).astype(np.int64)
    codes = np.clip(np.rint(blocks / scale32[..., None]) + zp[..., None], 0, qmax).astype(np.uint8)
    return pack(codes, bits), scale32, pack(zp.astype(np.uint8), bits), codes


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 codes [..., M] -> [..., ceil(M*bits/8)], low bits first."""
    if bits == 8:
        return np.ascontiguousarray(codes, dtype=np.uint8)
    m = codes.shape[-1]
    if m % 2:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), np.uint8)], axis=-1)
    return np.ascontiguousarray((codes[..., 0::2] & 0xF) | ((codes[..., 1::2] & 0xF) << 4), dtype=np.uint8)


def unpack(packed: np.ndarray, bits: int, m: int) -> np.ndarray:
    if bits == 8:
        return packed[..., :m]
    out = np.empty((*packed.shape[:-1], packed.shape[-1] * 2), np.uint8)
    out[..., 0::2] = packed & 0xF
    out[..., 1::2] = packed >> 4
    return out[..., :m]


def dequantize_blocks(packed, scales, zp, bits: int, k: int) -> np.ndarray:
    """Inverse of quantize_blocks as MatMulNBits computes it -> w' [K, N] f32."""
    n, kb = scales.shape
    block = k // kb
    codes = unpack(packed, bits, block).astype(np.float32)                   # [N, kb, block]
    z = unpack(zp, bits, kb).astype(np.float32)                              # [N, kb]
    w = (codes - z[..., None]) * scales[..., None]
    return w.reshape(n, k).T.copy()


def block_for(k: int, block: int) -> int:
    """The block size used for a weight with K rows: `block`, or the largest power of two below it that divides K
    (small models: K = 32 or 64); 0 when none >= 16 does (the MatMul then stays fp32)."""
    b = block
    while b >= 16:
        if k % b == 0:
            return b
        b //= 2
    return 0


def quantized_bytes(k: int, n: int, bits: int, block: int) -> int:
    """Bytes MatMulNBits reads for one [K, N] weight: codes + fp32 scales + packed zero points."""
    kb = k // block
    return n * kb * block * bits // 8 + 4 * n * kb + n * ((kb * bits + 7) // 8)


def to_matmul_nbits(model: ModelProto, bits: int, block: int, accuracy_level: int, damage: float = 0.0,
                    seed: int = 0, include=None) -> tuple[ModelProto, dict]:
    """Rewrite `model` (a copy is returned) as described in the module doc. Returns (model, facts) with facts =
    {"matmuls": count, "fp32_weight_bytes", "quantized_weight_bytes", "bias_folded"}.

    damage > 0 (tests only): that fraction of each weight's codes is replaced by uniformly random codes, which
    stands for a broken quantiser (wrong scales, swapped blocks) that a gate must catch.
    include(weight_name) -> bool, when given, picks the MatMuls to quantise (a second call can then quantise the
    rest with other settings: MatMulNBits nodes are left alone)."""
    m = ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict = {}
    for nd in g.node:
        for i in nd.input:
            consumers.setdefault(i, []).append(nd)
    # fp16 bundles store a weight as an fp16 initializer cast to float inside the graph (onnx_export._to_fp16)
    casts = {nd.output[0]: nd for nd in g.node if nd.op_type == "Cast" and nd.input[0] in inits}

    def weight(name):
        """(array, initializer names, cast nodes to drop if this is the weight's only use) or None."""
        if name in inits:
            return numpy_helper.to_array(inits[name]), [name], []
        c = casts.get(name)
        if c is not None and len(consumers.get(c.input[0], [])) == 1:
            return numpy_helper.to_array(inits[c.input[0]]), [c.input[0]], [c]
        return None
    graph_outputs = {o.name for o in g.output}
    rng = np.random.default_rng(seed)
    new_nodes, drop_inits, add_inits = [], set(), []
    skip = set()
    facts = {"matmuls": 0, "fp32_weight_bytes": 0, "quantized_weight_bytes": 0, "bias_folded": 0}
    for nd in g.node:
        if id(nd) in skip:
            continue
        found = weight(nd.input[1]) if nd.op_type == "MatMul" and len(nd.input) == 2 else None
        w = found[0] if found is not None else None
        blk = block_for(w.shape[0], block) if w is not None and w.ndim == 2 else 0
        if not blk or w.dtype not in (np.float32, np.float16) or len(consumers.get(nd.input[1], [])) != 1 \
                or (include is not None and not include(nd.input[1])):
            new_nodes.append(nd)
            continue
        drop_inits.update(found[1])
        skip.update(id(c) for c in found[2])
        k, n = w.shape
        packed, scales, zp, codes = quantize_blocks(w.astype(np.float32), bits, blk)
        if damage > 0:
            hit = rng.random(codes.shape) < damage
            codes = np.where(hit, rng.integers(0, 1 << bits, codes.shape), codes).astype(np.uint8)
            packed = pack(codes, bits)
        base = nd.input[1]
        names = [f"{base}_q{bits}", f"{base}_scales", f"{base}_zp"]
        add_inits += [numpy_helper.from_array(packed, names[0]), numpy_helper.from_array(scales, names[1]),
                      numpy_helper.from_array(zp, names[2])]
        inputs = [nd.input[0], *names]
        out = nd.output[0]
        # fold a following Add of a constant [N] vector into the bias input
        users = consumers.get(out, [])
        if len(users) == 1 and users[0].op_type == "Add" and out not in graph_outputs:
            add = users[0]
            other = add.input[1] if add.input[0] == out else add.input[0]
            b = inits.get(other)
            if b is not None and tuple(b.dims) == (n,):
                inputs += ["", other]
                out = add.output[0]
                skip.add(id(add))
                facts["bias_folded"] += 1
        attrs = {"K": k, "N": n, "bits": bits, "block_size": blk}
        if accuracy_level:
            attrs["accuracy_level"] = accuracy_level
        new_nodes.append(helper.make_node("MatMulNBits", inputs, [out], domain="com.microsoft",
                                          name=f"{nd.name or base}_nbits", **attrs))
        facts["matmuls"] += 1
        facts["fp32_weight_bytes"] += 4 * k * n
        facts["quantized_weight_bytes"] += quantized_bytes(k, n, bits, blk)
        facts["block_sizes"] = sorted(set(facts.get("block_sizes", [])) | {blk})
    del g.node[:]
    g.node.extend(n for n in new_nodes if id(n) not in skip)
    kept = [t for t in g.initializer if t.name not in drop_inits]
    del g.initializer[:]
    g.initializer.extend(kept + add_inits)
    # value_info of folded Add outputs stays valid (same name, same type); drop entries of removed MatMul outputs
    produced = {o for nd in g.node for o in nd.output}
    vi = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(vi)
    return m, facts
