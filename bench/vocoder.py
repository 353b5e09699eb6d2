"""Vocoder cost per window length: how SoVITS decode time grows with the tokens of one call.

    .venv/bin/python -m bench.vocoder --bundle onnx/fullsize [--threads 2] [--precision int8|fp32|both]

Runs the bundle's sovits_decode graph (onnxruntime, CPU, spinning off as gsv runs it) on windows of 6, 30, 42, 66
and 100 tokens (6 = the first streamed chunk with its lookahead, 42 = a steady streaming window: 16 left + 24 + 2
lookahead) and prints the median ms per call and per token. A cost linear in tokens means batching the calls of
several requests would not make the vocoder cheaper on a CPU; the streaming overhead is (left + chunk + lookahead)
/ chunk decoded tokens per emitted one. README "Batching" uses it for its capacity model.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def measure(bundle: str, file: str, threads: int, windows=(6, 30, 42, 66, 100), reps: int = 5, phones: int = 30):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(os.path.join(bundle, file), so, providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in s.get_inputs()}
    g = ins["ge"].shape[1] if isinstance(ins["ge"].shape[1], int) else 512
    c = ins["noise"].shape[1] if isinstance(ins["noise"].shape[1], int) else 192
    rng = np.random.default_rng(0)
    out = []
    for t in windows:
        feeds = {"codes": rng.integers(0, 1024, (1, 1, t)).astype(np.int64),
                 "text": rng.integers(1, 300, (1, phones)).astype(np.int64),
                 "ge": (rng.standard_normal((1, g, 1)) * 0.1).astype(np.float32),
                 "noise_scale": np.array([0.5], np.float32),
                 "noise": rng.standard_normal((1, c, 2 * t)).astype(np.float32)}
        feeds = {k: v for k, v in feeds.items() if k in ins}
        first = [s.get_outputs()[0].name]
        for _ in range(2):
            s.run(first, feeds)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            s.run(first, feeds)
            ts.append(time.perf_counter() - t0)
        ms = 1e3 * float(np.median(ts))
        out.append({"tokens": t, "ms": ms, "ms_per_token": ms / t})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default="onnx/fullsize")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=["int8", "fp32", "both"], default="both")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    man = json.load(open(os.path.join(a.bundle, "manifest.json"), encoding="utf-8"))
    entry = man["graphs"]["sovits_decode"]
    files = {"fp32": entry["file"]}
    if "int8" in entry.get("variants", {}):
        files["int8"] = entry["variants"]["int8"]["file"]
    want = ["int8", "fp32"] if a.precision == "both" else [a.precision]
    rep = {k: measure(a.bundle, files[k], a.threads) for k in want if k in files}
    if a.json:
        print(json.dumps(rep))
        return
    for k, rows in rep.items():
        for r in rows:
            print(f"{k:>5} {r['tokens']:4d} tokens {r['ms']:8.1f} ms  {r['ms_per_token']:5.2f} ms/token")


if __name__ == "__main__":
    main()
