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
read just before the run. `--json` prints `{"concurrency": [{"streams", "engine", "aggregate_tokens_per_s",
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
    return {"concurrency": rows, "tokens": a.tokens, "pool_workers": a.pool_workers, "threads": a.threads,
            "bundle": a.bundle}


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
    return "\n".join(out)
