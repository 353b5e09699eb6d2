"""`python -m bench.spin [--bundle DIR] [--threads 2,1] [--rounds 3] [--tokens 100]`: gsv with ONNX Runtime's intra-op
thread pool spinning on and off, on a quiet machine and with another process busy on one core (issue 15, item 7).

ONNX Runtime's worker threads spin (busy-wait) between parallel sections by default
(`session.intra_op.allow_spinning` = 1); on a machine whose cores are shared, a spinning thread can hold a core that
the other process, or gsv's own next parallel section, needs. Each condition runs `gsv bench --json` (the synthetic
request of scripts/bench, EOS ignored, `--tokens` tokens, CPU provider) with GSV_ORT_SPIN=1|0 (the runtime sets the
session option from it), `--intra-threads` from --threads, and either nothing else running or a single-threaded
busy loop (`while True: pass`) pinned to the last usable core. Conditions are interleaved within each round; each
reports its median over rounds of: GPT ms per step, prefill ms, vocoder ms per audio second, RTF, and gsv's CPU
time (user + system) per second of audio, which shows what spinning burns, and the 1-minute load average when the
run started (the machine's other tenants: a "quiet" row is only as quiet as that).
`--variants` passes the int8 variants that passed their gates (as scripts/bench's gsv-int8 row).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from .__main__ import FULLSIZE, ROOT, child_env, find_gsv, int8_variants, INT8_FLAGS, last_json, load_manifest, log

BUSY = "import os,sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


def run_once(exe, a, man, threads: int, spin: str) -> dict:
    cmd = [exe, "bench", "--bundle", a.bundle, "--tokens", str(a.tokens), "--json", "--device", "cpu",
           "--intra-threads", str(threads), "--inter-threads", "1"]
    if a.variants:
        for g in int8_variants(man):
            cmd += [INT8_FLAGS[g], "int8"]
    env = child_env(threads)
    env["GSV_ORT_SPIN"] = spin
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"spin: {' '.join(cmd)} failed: {p.stderr.strip()[-500:]}")
    j = last_json(p.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"ms_per_step": j["ms_per_step"], "prefill_ms": j["prefill_ms"],
            "vocoder_ms_per_audio_s": j["vocoder_ms_per_audio_s"], "rtf": j["rtf"],
            "cpu_s_per_audio_s": cpu / j["audio_s"], "process_wall_s": wall, "loadavg_1min": load}


def median(xs):
    xs = sorted(xs)
    return xs[(len(xs) - 1) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.spin", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default=FULLSIZE)
    p.add_argument("--threads", default="2,1", help="comma list of --intra-threads values")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--variants", action="store_true", help="with the int8 variants that passed their gates")
    p.add_argument("--gsv", help="gsv binary (default $GSV_BIN, target/release/gsv)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    a.bundle = os.path.abspath(a.bundle)
    exe = find_gsv(a.gsv)
    if exe is None:
        raise SystemExit("spin: no gsv binary (cargo build --release)")
    man = load_manifest(a.bundle)
    cores = sorted(os.sched_getaffinity(0))
    threads = [int(t) for t in a.threads.split(",")]
    conds = [(busy, t, spin) for busy in (False, True) for t in threads for spin in ("1", "0")]
    res = {c: [] for c in conds}
    for rnd in range(a.rounds):
        for c in conds:
            busy, t, spin = c
            hog = None
            if busy:
                hog = subprocess.Popen([sys.executable, "-c", BUSY, str(cores[-1])])
                time.sleep(0.5)
            try:
                log(f"spin round {rnd + 1}/{a.rounds}: {'busy core' if busy else 'quiet'}, {t} threads, spin {spin}")
                res[c].append(run_once(exe, a, man, t, spin))
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    rows = []
    for c in conds:
        busy, t, spin = c
        runs = res[c]
        row = {"other_process": "busy on one core" if busy else "none", "intra_threads": t,
               "allow_spinning": spin == "1", "runs": len(runs)}
        for k in runs[0]:
            row[k] = median([r[k] for r in runs])
        row["rtf_all"] = [round(r["rtf"], 3) for r in runs]
        rows.append(row)
    rep = {"bundle": a.bundle, "tokens": a.tokens, "usable_cores": len(cores), "variants": bool(a.variants),
           "busy_core": cores[-1], "rows": rows}
    if a.json:
        print(json.dumps(rep))
        return 0
    print(f"gsv bench --tokens {a.tokens} on {a.bundle}{' (int8 variants)' if a.variants else ''}; {len(cores)} usable "
          f"cores; busy loop pinned to core {cores[-1]}; median of {a.rounds} interleaved rounds")
    hdr = f"{'other process':18s} {'threads':>7s} {'spin':>5s} {'ms/step':>8s} {'prefill':>8s} {'voc ms/s':>9s} " \
          f"{'RTF':>6s} {'CPU s/audio s':>13s} {'load':>5s}  RTF of each round"
    print(hdr)
    for r in rows:
        print(f"{r['other_process']:18s} {r['intra_threads']:7d} {'on' if r['allow_spinning'] else 'off':>5s} "
              f"{r['ms_per_step']:8.2f} {r['prefill_ms']:8.1f} {r['vocoder_ms_per_audio_s']:9.1f} {r['rtf']:6.3f} "
              f"{r['cpu_s_per_audio_s']:13.2f} {r['loadavg_1min']:5.1f}  {r['rtf_all']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
