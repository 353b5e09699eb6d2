"""`python -m bench.memory [--bundle DIR] [--workers 1,2,4] [--json] [-- EXTRA gsv FLAGS]`: resident memory of
`gsv serve` per number of workers (issue 15, item 4).

Each count N starts `gsv serve -s BUNDLE --workers N -p 0` with the bundle's (else onnx/demo's) default reference,
so that every worker loads its engine and runs the start-up warm-up synthesis (20 tokens through BERT, GPT prefill
and steps, HuBERT and the vocoder): every graph has run once and ONNX Runtime's arenas hold their first request's
buffers. Once the server prints its address it is asked /health, then the script reads /proc/PID/status: VmHWM
(peak resident set), VmRSS, RssAnon (heap: arenas, unpacked weights) and RssFile (file pages mapped: the binary,
libraries, weights ONNX Runtime maps from the .onnx files). Extra flags after `--` go to every server (e.g.
`-- --gpt-precision fp32`). Runs one server at a time; the 1-minute load average is printed with each row.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from .__main__ import FULLSIZE, ROOT, child_env, find_gsv, load_manifest, log


def status_kib(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def default_reference(bundle: str) -> tuple[str, str, str]:
    for b in (bundle, os.path.join(ROOT, "onnx", "demo")):
        m = load_manifest(b)
        r = (m.get("demo") or {}).get("reference")
        if r:
            return os.path.join(b, r["file"]), r["text"], r["language"]
    raise SystemExit("memory: no default reference (onnx/demo is missing)")


def measure(exe: str, bundle: str, workers: int, threads: int, extra: list, timeout: float = 900.0) -> dict:
    ref, text, lang = default_reference(bundle)
    cmd = [exe, "serve", "-s", bundle, "-p", "0", "--workers", str(workers), "--intra-threads", str(threads),
           "--inter-threads", "1", "-dr", ref, "-dt", text, "-dl", lang, *extra]
    log(" ".join(cmd))
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(threads))
    try:
        addr = None
        while time.perf_counter() - t0 < timeout:
            line = p.stdout.readline()
            if not line:
                break
            if "listening on " in line:
                addr = line.split("listening on ", 1)[1].strip()
                break
        if addr is None:
            p.kill()
            raise SystemExit(f"memory: the server did not start: {p.stderr.read()[-2000:]}")
        start_s = time.perf_counter() - t0
        with urllib.request.urlopen(addr + "/health", timeout=30) as r:
            health = json.loads(r.read())
        st = status_kib(p.pid)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    mib = {k: v / 1024.0 for k, v in st.items()}
    return {"workers": workers, "peak_rss_mib": mib["VmHWM"], "rss_mib": mib["VmRSS"],
            "anon_mib": mib.get("RssAnon"), "file_mib": mib.get("RssFile"), "start_s": start_s,
            "precision": health.get("precision"), "loadavg_1min": load, "flags": extra}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default=FULLSIZE)
    p.add_argument("--workers", default="1,2,4", help="comma list of --workers values")
    p.add_argument("--threads", type=int, default=1, help="--intra-threads of each worker")
    p.add_argument("--gsv", help="gsv binary (default $GSV_BIN, target/release/gsv)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    a.bundle = os.path.abspath(a.bundle)
    exe = find_gsv(a.gsv)
    if exe is None:
        raise SystemExit("memory: no gsv binary (cargo build --release)")
    rows = [measure(exe, a.bundle, int(n), a.threads, extra) for n in a.workers.split(",")]
    base = rows[0]["peak_rss_mib"]
    for r in rows:
        r["per_extra_worker_mib"] = (r["peak_rss_mib"] - base) / (r["workers"] - rows[0]["workers"]) \
            if r["workers"] != rows[0]["workers"] else None
    rep = {"bundle": a.bundle, "threads": a.threads, "flags": extra, "rows": rows}
    if a.json:
        print(json.dumps(rep))
        return 0
    pr = rows[0].get("precision") or {}
    print(f"gsv serve -s {a.bundle} {' '.join(extra)} (precision: {', '.join(f'{k} {v}' for k, v in pr.items())}); "
          f"after every worker's warm-up synthesis")
    print(f"{'workers':>7s} {'peak RSS MiB':>12s} {'RSS MiB':>8s} {'anon MiB':>9s} {'file MiB':>9s} "
          f"{'+MiB/worker':>11s} {'start s':>8s} {'load':>5s}")
    for r in rows:
        per = f"{r['per_extra_worker_mib']:11.0f}" if r["per_extra_worker_mib"] is not None else f"{'-':>11s}"
        print(f"{r['workers']:7d} {r['peak_rss_mib']:12.0f} {r['rss_mib']:8.0f} {r['anon_mib'] or 0:9.0f} "
              f"{r['file_mib'] or 0:9.0f} {per} {r['start_s']:8.1f} {r['loadavg_1min']:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
