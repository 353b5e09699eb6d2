"""`scripts/bench --concurrency 1,2,4,8,16`: many concurrent requests, the batched engine against today's worker pool.

For each level N (streams), both engines run `gsv bench-streams` (src/streams.rs) in its own process, one after
the other (the order alternates from level to level, so a drift of the shared machine's load falls on both): N real
requests (text frontend, BERT, GPT, token-chunk streaming decode; different texts and seeds, the bundle's or
onnx/demo's reference, at most --tokens GPT tokens each) submitted at once after a warm-up round.

  batched  --scheduler batched with N places: one GPT stepping every running request's sequence together
  pool     --scheduler pool with --pool-workers workers (default 2), each its own copy of the model, one request
           at a time; the others wait in the queue (what the server does today)

Per level and engine: aggregate GPT tokens/s (all streams' tokens / wall time from the submissions to the last
answer), per-request RTF p50 and max (request wall time / its audio seconds; below 1 = faster than real time), and
time to first audio p50/p99 (submission to the first audio piece), plus the machine's load (1-minute load average)
read just before the run. Then the GPT step alone at each level's batch size (`step_scaling`: the bundle's batched
`gpt_step` from Python onnxruntime, caches bound in place, 100 cached rows per sequence, median of 15 steps): what
the batch does for the GPT without the frontend and vocoder work that each stream still does on its own. `--json` prints `{"concurrency": [{"streams", "engine", "aggregate_tokens_per_s",
"rtf_p50", "ttfa_p50_ms", "ttfa_p99_ms", ...}, ...], ...}`."""
from __future__ import annotations

import json
import os
import subprocess


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_one(exe: str, a, engine: str, streams: int, env: dict) -> dict:
    cmd = [exe, "bench-streams", "--bundle", a.bundle, "--scheduler", engine, "--streams", str(streams),
           "--tokens", str(a.tokens), "--workers", str(a.pool_workers), "--device", "cpu",
           "--intra-threads", str(a.threads), "--inter-threads", "1"]
    load = load_avg()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or "").splitlines() if ln.strip()]
        return {"streams": streams, "engine": engine, "skipped": (lines[-1] if lines else f"exit {p.returncode}")[:300],
                "load_1m": load}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["load_1m"] = load
    return r


def step_graph(man: dict) -> tuple[str, str]:
    """(precision, file) of the gpt_step graph gsv runs by default: the bundle's preferred GPT variant when it is
    there and passed its gate, else fp32."""
    pref = (man.get("quantization") or {}).get("preferred", {}).get("gpt", "fp32")
    entry = man["graphs"]["gpt_step"]
    v = entry.get("variants", {}).get(pref)
    if pref != "fp32" and v and v.get("passed", True):
        return pref, v["file"]
    return "fp32", entry["file"]


def step_scaling(bundle: str, sizes: list, threads: int, rows: int = 100, reps: int = 15) -> list:
    """Median ms per batched step of the bundle's gpt_step (the precision gsv runs by default, [`step_graph`]) at
    each batch size (CPU, `threads` intra-op threads). A graph stamped `gsv.step_min_batch` runs smaller batches
    with padding rows, as the engine does; tokens/s counts the real sequences only."""
    import time

    import numpy as np
    import onnxruntime as ort

    man = json.load(open(os.path.join(bundle, "manifest.json"), encoding="utf-8"))
    g = man["gpt"]
    L, H, Dk, V = g["n_layer"], g["n_head"], g["kv_head_dim"], g["vocab_size"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    precision, file = step_graph(man)
    s = ort.InferenceSession(os.path.join(bundle, file), so, providers=["CPUExecutionProvider"])
    min_b = max(1, int(s.get_modelmeta().custom_metadata_map.get("gsv.step_min_batch", "1")))
    out = []
    for real in sizes:
        b = max(real, min_b)
        c = rows + 8
        io = s.io_binding()
        rng = np.random.default_rng(0)
        caches = [ort.OrtValue.ortvalue_from_numpy((rng.standard_normal((b, H, c, Dk)) * 0.1).astype(np.float32))
                  for _ in range(2 * L)]
        feeds = {"token": np.ones((b, 1), np.int64), "position": np.arange(b, dtype=np.int64) + 50,
                 "seqlens_k": np.array([rows] * real + [0] * (b - real), np.int32),
                 "total_len": np.array(rows + 1, np.int32)}
        keep = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feeds.items()}
        for k, v in keep.items():
            io.bind_ortvalue_input(k, v)
        for i in range(L):
            io.bind_ortvalue_input(f"past_k_{i}", caches[i])
            io.bind_ortvalue_output(f"present_k_{i}", caches[i])
            io.bind_ortvalue_input(f"past_v_{i}", caches[L + i])
            io.bind_ortvalue_output(f"present_v_{i}", caches[L + i])
        logits = ort.OrtValue.ortvalue_from_numpy(np.zeros((b, V), np.float32))
        io.bind_ortvalue_output("logits", logits)
        for _ in range(3):
            s.run_with_iobinding(io)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            s.run_with_iobinding(io)
            ts.append(time.perf_counter() - t0)
        ms = 1e3 * float(np.median(ts))
        out.append({"batch": real, "rows": b, "precision": precision, "ms_per_step": ms,
                    "tokens_per_s": real / ms * 1e3, "load_1m": load_avg()})
    base = out[0]["tokens_per_s"] if out else 1.0
    for r in out:
        r["vs_batch_1"] = r["tokens_per_s"] / base
    return out


def run(a, exe: str, env: dict, log) -> dict:
    rows = []
    for i, n in enumerate(a.concurrency):
        order = ("batched", "pool") if i % 2 == 0 else ("pool", "batched")
        for engine in order:
            log(f"concurrency {n}: {engine}")
            rows.append(run_one(exe, a, engine, n, env))
    one = {r["engine"]: r for r in rows if r["streams"] == min(a.concurrency) and "skipped" not in r}
    for r in rows:
        base = one.get(r["engine"])
        if "skipped" not in r and base:
            r["tokens_per_s_vs_1_stream"] = r["aggregate_tokens_per_s"] / base["aggregate_tokens_per_s"]
    log("GPT step alone at each batch size")
    sizes = sorted(set([1] + list(a.concurrency)))
    steps = step_scaling(a.bundle, sizes, a.threads)
    return {"concurrency": rows, "gpt_step_scaling": steps, "tokens": a.tokens, "pool_workers": a.pool_workers,
            "threads": a.threads, "bundle": a.bundle}


def table(rep: dict) -> str:
    out = [f"bundle {rep['bundle']}, {rep['tokens']} GPT tokens per request at most, {rep['threads']} threads per "
           f"session, pool: {rep['pool_workers']} workers",
           f"{'streams':>7} {'engine':>8} {'tok/s':>8} {'vs 1':>5} {'rtf p50':>8} {'rtf max':>8} {'ttfa p50':>9} "
           f"{'ttfa p99':>9} {'load':>5}"]
    for r in rep["concurrency"]:
        if "skipped" in r:
            out.append(f"{r['streams']:>7} {r['engine']:>8} skipped: {r['skipped']}")
            continue
        out.append(f"{r['streams']:>7} {r['engine']:>8} {r['aggregate_tokens_per_s']:>8.1f} "
                   f"{r.get('tokens_per_s_vs_1_stream', float('nan')):>5.2f} {r['rtf_p50']:>8.3f} {r['rtf_max']:>8.3f} "
                   f"{r['ttfa_p50_ms']:>7.0f}ms {r['ttfa_p99_ms']:>7.0f}ms {r['load_1m']:>5.2f}")
    if rep.get("gpt_step_scaling"):
        first = rep["gpt_step_scaling"][0]
        pad = " (a single sequence runs with a padding row: the graph's gsv.step_min_batch)" \
            if first.get("rows", first["batch"]) > first["batch"] else ""
        out.append(f"GPT step alone (batched gpt_step, {first.get('precision', 'fp32')}, Python onnxruntime, 100 cached "
                   f"rows per sequence{pad}):")
        out.append(f"{'batch':>7} {'ms/step':>8} {'tok/s':>8} {'vs 1':>5} {'load':>5}")
        for r in rep["gpt_step_scaling"]:
            out.append(f"{r['batch']:>7} {r['ms_per_step']:>8.1f} {r['tokens_per_s']:>8.1f} {r['vs_batch_1']:>5.2f} "
                       f"{r['load_1m']:>5.2f}")
    return "\n".join(out)
