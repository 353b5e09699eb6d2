"""`python -m bench.profile [--bundle DIR] [--threads T] [--cached 200] [--tokens 50]`: where the time of a GPT step
and of a SoVITS decode goes, by operator type, from ONNX Runtime's own profiler.

gpt_step runs through export.stepper.GptRunner (the K/V cache bound in place, as gsv runs it) after a prefill of
the benchmark's synthetic request, with `--cached` rows in the cache; sovits_decode decodes `--tokens` tokens.
Each graph runs 5 times after 3 warm-ups; per-run milliseconds are printed per operator type, with the share of the
run. Profiling adds a little time to every node; compare shares, not absolute figures, with `gsv bench`.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

import numpy as np

from export.stepper import GptRunner

from .common import decode_noise, load_manifest, synthetic_request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _session(path, threads, prefix=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if prefix:
        so.enable_profiling = True
        so.profile_file_prefix = prefix
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def summarize(profile_file: str, runs: int) -> dict:
    with open(profile_file, encoding="utf-8") as f:
        ev = json.load(f)
    os.remove(profile_file)
    per_op = collections.Counter()
    count = collections.Counter()
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
    model = [e["dur"] for e in ev if e.get("cat") == "Session" and e["name"] == "model_run"]
    run_ms = float(np.median(model[-runs:])) / 1e3 if model else 0.0
    ops = [{"op": op, "ms": us / runs / 1e3, "nodes": count[op] // max(runs, 1)} for op, us in per_op.most_common()]
    return {"run_ms": run_ms, "ops": ops}


def profile_step(bundle, man, threads, cached, warm=3, runs=5):
    pre = _session(os.path.join(bundle, man["graphs"]["gpt_prefill"]["file"]), threads)
    tmp = tempfile.mkdtemp()
    stp = _session(os.path.join(bundle, man["graphs"]["gpt_step"]["file"]), threads, os.path.join(tmp, "step"))
    ids, bert, prompt, _ = synthetic_request(man)
    r = GptRunner(pre, stp, man, capacity=ids.shape[1] + prompt.shape[1] + cached + warm + runs + 1)
    r.prefill(ids, bert, prompt)
    while r.t < cached:
        r.t += 1  # the rows' values do not change the cost
    for k in range(warm + runs):
        r.step(5, prompt.shape[1] + k)
    return summarize(stp.end_profiling(), warm + runs) | {"cached_rows": r.t}


def profile_decode(bundle, man, threads, tokens, warm=3, runs=5):
    tmp = tempfile.mkdtemp()
    s = _session(os.path.join(bundle, man["graphs"]["sovits_decode"]["file"]), threads, os.path.join(tmp, "dec"))
    _, _, _, text = synthetic_request(man)
    codes = (np.arange(tokens) * 7 % int(man["sovits"]["codebook_size"])).astype(np.int64)
    feeds = {"codes": codes.reshape(1, 1, -1), "text": text,
             "ge": np.full((1, int(man["sovits"]["gin_channels"]), 1), 0.1, np.float32),
             "noise_scale": np.array([0.5], np.float32), "noise": decode_noise(man, tokens)}
    for _ in range(warm + runs):
        s.run(["audio"], feeds)
    out = summarize(s.end_profiling(), warm + runs)
    out["audio_s"] = tokens / 25.0
    return out


def show(title, rep):
    print(f"{title}: {rep['run_ms']:.2f} ms per run (median, profiled)")
    total = sum(o["ms"] for o in rep["ops"]) or 1.0
    for o in rep["ops"][:10]:
        print(f"  {o['op']:28s} {o['ms']:8.2f} ms  {100 * o['ms'] / total:5.1f}%  ({o['nodes']} nodes)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default=os.path.join(ROOT, "onnx", "fullsize"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cached", type=int, default=200, help="K/V rows in the cache during the profiled steps")
    p.add_argument("--tokens", type=int, default=50, help="tokens decoded by the profiled sovits_decode")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    man = load_manifest(a.bundle)
    rep = {"bundle": os.path.abspath(a.bundle), "threads": a.threads,
           "gpt_step": profile_step(a.bundle, man, a.threads, a.cached),
           "sovits_decode": profile_decode(a.bundle, man, a.threads, a.tokens)}
    if a.json:
        print(json.dumps(rep))
        return 0
    show(f"gpt_step ({rep['gpt_step']['cached_rows']} cached rows, {a.threads} threads)", rep["gpt_step"])
    d = rep["sovits_decode"]
    show(f"sovits_decode ({a.tokens} tokens = {d['audio_s']:.1f} s of audio, {a.threads} threads)", d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
