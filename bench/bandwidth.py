"""Memory bandwidth (numpy, one thread) and the bandwidth bound of one GPT step.

copy:  b[:] = a                    moves 2 arrays (read a, write b)
triad: a = b + s*c, done by numpy as two passes (a = c*s; a += b), which move 5 arrays in all; the figure counts
       the bytes actually moved, not STREAM's 3.
Arrays are float64 of `mb` MB each (default 256, far beyond any last-level cache); best of `repeat` runs.
"""
from __future__ import annotations

import time

import numpy as np


def measure(mb: int = 256, repeat: int = 3) -> dict:
    n = mb * 1024 * 1024 // 8
    a = np.ones(n)
    b = np.full(n, 2.0)
    c = np.full(n, 0.5)
    best_copy = best_triad = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.copyto(b, a)
        best_copy = min(best_copy, time.perf_counter() - t)
        t = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        best_triad = min(best_triad, time.perf_counter() - t)
    copy = 2 * n * 8 / best_copy / 1e9
    triad = 5 * n * 8 / best_triad / 1e9
    return {"copy_gbps": copy, "triad_gbps": triad, "array_mb": mb, "threads": 1,
            "bandwidth_gbps": max(copy, triad)}


def gpt_step_bytes(man: dict) -> dict:
    """Weights a GPT step must read once per token: every block (fused in_proj 3D^2, out_proj D^2, MLP 4D^2 + 4D^2,
    biases and 2 LayerNorms) plus the logits layer V*D and one embedding row. The K/V cache read (2 L T D floats at
    T cached positions) comes on top and is reported separately for T = 1 position."""
    L, D, V = int(man["gpt"]["n_layer"]), int(man["gpt"]["hidden_dim"]), int(man["gpt"]["vocab_size"])
    per_layer = 12 * D * D + (3 * D + D + 4 * D + D) + 4 * D
    params = L * per_layer + V * D + D
    return {"params": params, "bytes_fp32": 4 * params, "bytes_int8": params, "kv_bytes_per_position": 2 * L * D * 4}


def bound(man: dict, gbps: float) -> dict:
    """fp32 bound, the 1-byte-per-weight int8 figure, and per GPT variant the manifest records
    (`quantization.gpt.<v>.weight_bytes_per_token`: codes + block scales + zero points + the fp32 rest) its own."""
    b = gpt_step_bytes(man)
    b["max_tokens_per_s_fp32"] = gbps * 1e9 / b["bytes_fp32"]
    b["max_tokens_per_s_int8"] = gbps * 1e9 / b["bytes_int8"]
    b["variants"] = {}
    for v, rec in sorted((man.get("quantization") or {}).get("gpt", {}).items()):
        if rec.get("weight_bytes_per_token"):
            n = int(rec["weight_bytes_per_token"])
            b["variants"][v] = {"bytes": n, "max_tokens_per_s": gbps * 1e9 / n, "passed": bool(rec.get("passed"))}
    return b
