"""`scripts/bench [--quick] [--json] [--tokens N] [--threads T] [--bundle DIR] [--concurrency 1,2,4,8,16]`: gsv against the original, on one
machine, in one run.

What it needs is built when missing: for `--bundle onnx/fullsize` (the README's table) the full-size random
checkpoints in onnx/fullsize-ckpt (`python -m export random-checkpoint --full-size`, seeded: always the same files),
the bundle (`convert`, which also builds and gates the variants) and, for a bundle made before variants existed,
its variants (`quantize --all`); `target/release/gsv` (`cargo build --release`). The PyTorch and Genie-TTS systems
find the source checkpoints where convert recorded them (`sources.<k>.path`), in `<bundle>-ckpt`, or --checkpoints.

Systems (each in its own subprocess, one after the other, same bundle/checkpoint, same request, same thread count):
  gsv                 `gsv bench --json` (CPU provider, --intra-threads T --inter-threads 1) with gsv's defaults:
                      what a user gets: per stage the bundle's `quantization.preferred` variant (the fastest that
                      passed its gate; fp32 in a bundle without one), ONNX Runtime's thread spinning off
  gsv-int8            the same with every int8 variant that passed its gate given by flag (GPT: MatMulNBits 8-bit,
                      BERT, vocoder; `python -m export quantize`, run by convert); skipped when there is none
  gsv-fp32            the same with every stage fp32 (`--*-precision fp32`): the opt-out, gsv's default before
                      issue 15
  gsv-v2proplus       `gsv bench` on a full-size v2ProPlus bundle (--v2proplus DIR, default onnx/fullsize-v2proplus,
                      built from random full-size checkpoints when missing: bench/v2pro.py), same request: its cost
                      next to v2 (not in the default systems of --quick)
  pytorch             the export's own PyTorch modules, eager, GPT-SoVITS's infer_panel_naive loop (K/V cache
                      torch.cat-ed per layer and step): the stand-in for GPT-SoVITS itself, proven equal to it by the
                      golden parity tests
  genie-tts           Genie-TTS (PyPI `genie-tts`) converted graphs, when its converter works offline on the checkpoint
  onnxruntime-python  this bundle's graphs from Python onnxruntime, same loop, K/V cache bound in place as gsv does
                      (export.stepper): graph cost without the Rust runtime
A system that cannot run is listed with "skipped": "<reason>".

Request: the synthetic one of `gsv bench` (40 phones, zero BERT features, 100 prompt codes, decoder text of 20
phones, noise_scale 0.5, speed 1, top_k 15, repetition penalty 1.35, seed 0), EOS ignored so that every system
generates exactly --tokens tokens (25 tokens = 1 s of audio). The text frontend (normalisation, G2P, BERT) is
excluded from every number. The Python systems process the reference wav (onnx/demo/ref.wav: wav16k + 0.3 s of
zeros -> HuBERT -> prompt codes; 32 kHz spectrogram -> ref_enc) once, before the timed request; its time is reported
as ref_ms but not counted in ttfa (the reference is cached, as in gsv's server); gsv bench uses a fixed speaker
vector.

Definitions (every figure is one measured run after one warm-up of 2 tokens + a 10-token decode; with --repeat N the
systems run N rounds, interleaved, and each reports its median run by RTF):
  prefill_ms              the GPT prefill call (text + prompt -> first logits and K/V)
  tokens_per_s            generated tokens / (prefill + all steps + sampling) wall time
  vocoder_ms_per_audio_s  SoVITS decode wall time / seconds of audio produced
  ttfa_ms                 time to first audio: from request start (reference cached, phones and BERT features
                          given) to the first audio sample available. No system here streams, so it is
                          prefill + steps + sampling + decode of the whole utterance.
  rtf                     (GPT + decode wall time) / audio duration (below 1 = faster than real time)
  peak_rss_mb             VmHWM of the system's process (gsv: its own peak RSS report): models, sessions, run
  vs_gsv                  this system's rtf / gsv's rtf (how many times slower than gsv)
gsv also reports, outside the side-by-side table (no other system streams or runs the text frontend here):
  ttfa_stream_ms          the synthetic request decoded by the default streaming chunks (first chunk 4 tokens + 2
                          of lookahead): prefill + 6 steps + one short decode
  text request            a real request for --text (default a 10-character Chinese sentence) through Engine::tts:
                          text frontend, BERT, GPT, streaming decode; reference and its
                          transcript cached (the server's state after a voice's first request); time to first audio
                          (each gsv row with its own BERT precision)
  step_vs_bound           the bound's ms per step / gsv's measured ms per step (1.0 = at the bandwidth bound), against
                          the bound of the GPT precision it ran (`precision.gpt` of its JSON: fp32, or the variant's own bytes)
  voice_ms (ref_ms)       gsv rows: the text request's first run encoding its reference (decode, HuBERT,
                          spectrogram, v2Pro's speaker-verification model, ref_enc), once per voice, then cached
Bandwidth: numpy copy and triad on 256 MB arrays, one thread (bench/bandwidth.py); the GPT bound is bandwidth /
bytes of GPT weights read per token = the most tokens/s a memory-bound step can reach: fp32, and per quantised
variant its recorded `weight_bytes_per_token` (codes + block scales + zero points + the fp32 biases and norms).
GPT step section (`python -m bench.worker steps`, --no-steps skips it): the step graph alone of fp32 and of every GPT
variant the bundle registers, Python onnxruntime, cache bound in place, 140 cached rows, alternating rounds: ms per
step, tokens/s and the share of its own bound (a variant that failed its gate, e.g. a forced int4, is measured here
only: gsv refuses to load it).
`--spin on|off` runs the gsv systems with `--ort-spin on|off` (ONNX Runtime's intra-op spinning; gsv's default is off,
see bench/spin.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys

from . import bandwidth
from .common import load_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = ["gsv", "gsv-int8", "gsv-fp32", "gsv-v2proplus", "pytorch", "genie-tts", "onnxruntime-python"]
WORKER = {"pytorch": "pytorch", "onnxruntime-python": "ort", "genie-tts": "genie", "steps": "steps"}
FIELDS = ["ttfa_ms", "prefill_ms", "tokens_per_s", "vocoder_ms_per_audio_s", "rtf", "peak_rss_mb"]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def machine(threads: int) -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            mem_gb = int(f.readline().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model, "cores": os.cpu_count(), "usable_cores": usable, "threads": threads,
            "memory_gb": mem_gb, "os": platform.platform(), "python": platform.python_version()}


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def why(proc) -> str:
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit code {proc.returncode}")[:300]


def find_gsv(given):
    for c in (given, os.environ.get("GSV_BIN"), os.path.join(ROOT, "target", "release", "gsv")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which("gsv") if given is None else None


INT8_FLAGS = {"bert": "--bert-precision", "sovits_decode": "--vocoder-precision", "gpt_step": "--gpt-precision"}


def int8_variants(man: dict) -> list:
    """Graphs whose int8 variant passed its gate (a --force'd one is not a default; manifests older than the gate
    records have no `passed` and were accepted)."""
    return [g for g in INT8_FLAGS if man["graphs"].get(g, {}).get("variants", {}).get("int8", {}).get("passed", True)
            and "int8" in man["graphs"].get(g, {}).get("variants", {})]


def gsv_gpt_precision(s: dict) -> str:
    """The GPT precision a gsv row ran: what its JSON reports (`precision.gpt`), else what its flags asked."""
    return ((s.get("precision") or {}).get("gpt")
            or ("int8" if "gpt_step" in (s.get("int8") or []) else "fp32"))


FULLSIZE = os.path.join(ROOT, "onnx", "fullsize")


def run_export(args: list) -> None:
    cmd = [sys.executable, "-m", "export", *args]
    log(" ".join(["python", "-m", "export", *args]))
    p = subprocess.run(cmd, cwd=ROOT, env=child_env(os.cpu_count() or 1))
    if p.returncode not in (0, 1):  # 1: some variant refused by its gate, which is a result, not a failure
        raise SystemExit(f"bench: `{' '.join(cmd)}` failed with exit status {p.returncode}")


def build_missing(a) -> None:
    """Build what the benchmark needs when it is missing: for onnx/fullsize (the README's table), the full-size
    random checkpoints in onnx/fullsize-ckpt, the bundle and its gated variants; for any bundle without variant
    records (made before convert built them), the variants; the release binary (cargo build --release) when no gsv is found."""
    full = os.path.normpath(a.bundle) == os.path.normpath(FULLSIZE)
    ck = FULLSIZE + "-ckpt"
    if full:
        names = {"gpt": "gpt.ckpt", "sovits": "sovits.pth", "hubert": "chinese-hubert-base",
                 "bert": "chinese-roberta-wwm-ext-large"}
        if not all(os.path.exists(os.path.join(ck, n)) for n in names.values()):
            log(f"no full-size random checkpoints in {ck}: writing them (seeded, always the same files)")
            run_export(["random-checkpoint", "--full-size", "--out", ck])
        if not os.path.isfile(os.path.join(a.bundle, "manifest.json")):
            log(f"no bundle in {a.bundle}: converting the full-size checkpoints (several minutes)")
            run_export(["convert", *sum((["--" + k, os.path.join(ck, n)] for k, n in names.items()), []),
                        "--out", a.bundle])
    if not os.path.isfile(os.path.join(a.bundle, "manifest.json")):
        raise SystemExit(f"bench: {a.bundle} is not a bundle (no manifest.json)")
    if full and a.variants and "quantization" not in load_manifest(a.bundle):
        log(f"{a.bundle} has no variant records: building and gating them (python -m export quantize --all)")
        run_export(["quantize", "--bundle", a.bundle, "--all"])
    if find_gsv(a.gsv) is None and a.gsv is None and shutil.which("cargo") and "gsv" in ",".join(a.systems):
        log("no gsv binary: cargo build --release")
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT)


def gsv_env(a) -> dict:
    env = child_env(a.threads)
    if "ORT_DYLIB_PATH" not in env and not os.path.isfile(os.path.join(ROOT, ".ort", "lib", "libonnxruntime.so")):
        import glob

        libs = glob.glob(os.path.join(ROOT, ".venv/lib/python*/site-packages/onnxruntime/capi/libonnxruntime.so.*"))
        if libs:
            env["ORT_DYLIB_PATH"] = libs[0]
    return env


def run_gsv(a, man, name="gsv", bundle=None) -> dict:
    bundle = bundle or a.bundle
    exe = find_gsv(a.gsv)
    if exe is None:
        return {"name": name, "skipped": "gsv binary not found (build it: cargo build --release; or pass --gsv PATH)"}
    int8 = int8_variants(man) if name == "gsv-int8" else []
    if name == "gsv-int8" and not int8:
        return {"name": name, "skipped": "the bundle has no int8 variant that passed its gate (python -m export "
                "quantize --all)"}
    env = gsv_env(a)
    cmd = [exe, "bench", "--bundle", bundle, "--tokens", str(a.tokens), "--json", "--device", "cpu",
           "--intra-threads", str(a.threads), "--inter-threads", "1"]
    for g in int8:
        cmd += [INT8_FLAGS[g], "int8"]
    if name == "gsv-fp32":
        cmd += ["--gpt-precision", "fp32", "--bert-precision", "fp32", "--vocoder-precision", "fp32"]
    if a.spin is not None:
        cmd += ["--ort-spin", a.spin]
    if a.text:
        cmd += ["--text", a.text, "--lang", a.lang]
    log(" ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"name": name, "skipped": f"gsv bench failed: {why(p)}"}
    j = last_json(p.stdout)
    gpt_ms = j["tokens"] / j["tokens_per_s"] * 1e3
    r = {"name": name, "tokens": j["tokens"], "ttfa_ms": j.get("ttfa_ms", gpt_ms + j["vocoder_ms"]),
         "prefill_ms": j["prefill_ms"], "ms_per_step": j.get("ms_per_step"), "tokens_per_s": j["tokens_per_s"],
         "vocoder_ms": j["vocoder_ms"], "audio_s": j["audio_s"],
         "vocoder_ms_per_audio_s": j["vocoder_ms_per_audio_s"], "rtf": j["rtf"],
         "peak_rss_mb": j["peak_rss_kib"] / 1024.0, "ref_ms": j.get("voice_ms"), "binary": exe, "bundle": bundle,
         "ttfa_stream_ms": j.get("ttfa_stream_ms"), "text_request": j.get("text"), "int8": int8,
         "precision": j.get("precision")}
    return r


def run_worker(name, a, extra=()) -> dict:
    cmd = [sys.executable, "-m", "bench.worker", WORKER[name], "--bundle", a.bundle, "--tokens", str(a.tokens),
           "--threads", str(a.threads), "--ref", a.ref, "--pick", a.pick, *extra]
    if a.checkpoints:
        cmd += ["--checkpoints", a.checkpoints]
    log(f"{name}: {' '.join(cmd[1:])}")
    p = subprocess.run(cmd, capture_output=True, text=True, env=child_env(a.threads), cwd=ROOT)
    if p.returncode != 0:
        return {"name": name, "skipped": why(p)}
    r = last_json(p.stdout)
    r["name"] = name
    return r


def fmt(x, nd=1):
    if x is None:
        return "-"
    return f"{x:.{nd}f}" if abs(x) < 1e5 else f"{x:.3g}"


def table(rep: dict) -> str:
    m = rep["machine"]
    b = rep["gpt_bound"]
    out = [f"machine: {m['cpu_model']}, {m['usable_cores']} usable cores, {m['threads']} threads used; "
           f"bundle {rep['bundle']}, {rep['tokens']} tokens forced (EOS ignored), text frontend excluded, "
           f"reference cached (not in ttfa)" + (f"; median of {rep['repeat']} interleaved rounds per system"
                                               if rep.get("repeat", 1) > 1 else "").replace(
               "median of", "best of" if rep.get("pick") == "min" else "median of"),
           f"memory bandwidth (numpy, 1 thread): copy {rep['bandwidth']['copy_gbps']:.1f} GB/s, "
           f"triad {rep['bandwidth']['triad_gbps']:.1f} GB/s; GPT step reads {b['bytes_fp32'] / 1e6:.1f} MB fp32 / "
           f"{b['bytes_int8'] / 1e6:.1f} MB int8 of weights -> bound {b['max_tokens_per_s_fp32']:.0f} tok/s fp32, "
           f"{b['max_tokens_per_s_int8']:.0f} tok/s int8", ""]
    hdr = ["system", "ttfa_ms", "prefill_ms", "tok/s", "voc ms/audio s", "RTF", "peak RSS MB", "RTF vs gsv"]
    rows = []
    for s in rep["systems"]:
        if "skipped" in s:
            rows.append([s["name"], f"skipped: {s['skipped']}"])
            continue
        rows.append([s["name"], fmt(s["ttfa_ms"]), fmt(s["prefill_ms"]), fmt(s["tokens_per_s"]),
                     fmt(s["vocoder_ms_per_audio_s"]), fmt(s["rtf"], 3), fmt(s["peak_rss_mb"], 0),
                     "-" if s.get("rtf_vs_gsv") is None else f"{s['rtf_vs_gsv']:.2f}x"])
    widths = [max(len(hdr[i]), *(len(r[i]) for r in rows if len(r) > 2)) for i in range(len(hdr))]
    out.append("  ".join(h.ljust(w) for h, w in zip(hdr, widths)))
    for r in rows:
        out.append(("  ".join(c.ljust(w) for c, w in zip(r, widths))) if len(r) > 2 else f"{r[0].ljust(widths[0])}  {r[1]}")
    if rep.get("repeat", 1) > 1:
        out.append("")
        for x in rep["systems"]:
            if x.get("rtf_all"):
                out.append(f"{x['name']} RTF of the {len(x['rtf_all'])} rounds {[round(v, 3) for v in x['rtf_all']]}")
    st = rep.get("gpt_steps")
    if st and "skipped" not in st:
        out += ["", f"GPT step alone (Python onnxruntime, {st['threads']} threads, 140 cached rows, "
                    f"{'best' if st.get('pick') == 'min' else 'median'} of 5 alternating rounds of 50 steps) against "
                    f"its bandwidth bound (bandwidth / weight bytes per token):"]
        for v, ms in st["ms_per_step"].items():
            nbytes = b["bytes_fp32"] if v == "fp32" else b["variants"].get(v, {}).get("bytes")
            if not nbytes:
                continue
            bound_tps = rep["bandwidth_gbps"] * 1e9 / nbytes
            gate = "" if v == "fp32" else (" (passed its gate)" if b["variants"][v]["passed"] else
                                           " (REFUSED by its gate, forced in for measurement)")
            out.append(f"  {v:5s} {ms:6.2f} ms = {1e3 / ms:6.1f} tok/s; reads {nbytes / 1e6:6.1f} MB -> bound "
                       f"{bound_tps:6.1f} tok/s; step at {1e3 / ms / bound_tps * 100:3.0f}% of its bound, "
                       f"x{st['ms_per_step']['fp32'] / ms:.2f} vs fp32{gate}")
        if st.get("prefill_ms"):
            out.append("  prefill of the synthetic request (140 positions), same way: " + ", ".join(
                f"{v} {ms:.1f} ms" for v, ms in st["prefill_ms"].items()))
    elif st:
        out += ["", f"GPT step alone: skipped: {st['skipped']}"]
    for g in rep["systems"]:
        if not g["name"].startswith("gsv") or "skipped" in g:
            continue
        out.append("")
        pr = g.get("precision")
        tag = (f"{g['name']} (gpt {pr['gpt']}, bert {pr['bert']}, vocoder {pr['vocoder']})" if pr
               else f"{g['name']} (int8: {', '.join(g['int8'])})" if g.get("int8") else g["name"])
        if g.get("ms_per_step"):
            v = gsv_gpt_precision(g)
            bms = 1e3 / (b["max_tokens_per_s_fp32"] if v == "fp32" else b["variants"][v]["max_tokens_per_s"])
            out.append(f"{tag}: GPT step {g['ms_per_step']:.2f} ms = {1e3 / g['ms_per_step']:.1f} tok/s; {v} "
                       f"bandwidth bound {bms:.2f} ms = {1e3 / bms:.1f} tok/s -> step at {bms / g['ms_per_step'] * 100:.0f}% "
                       f"of its bound")
        if g.get("ref_ms") is not None:
            out.append(f"{tag}: voice (reference) encoded in {g['ref_ms']:.1f} ms, once per voice ({g['bundle']})")
        if g.get("ttfa_stream_ms") is not None:
            out.append(f"{tag}: streaming, synthetic request: first audio {g['ttfa_stream_ms']:.1f} ms")
        t = g.get("text_request")
        if t:
            out.append(f"{tag}: text request {t['text']!r} ({t['chars']} characters, {t['lang']}): first audio "
                       f"{t['ttfa_text_stream_ms']:.1f} ms streaming (frontend {t['frontend_ms']:.1f} ms, "
                       f"prefill {t['prefill_ms']:.1f} ms)")
    return "\n".join(out)


def parse(argv):
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None, help="bundle folder (default onnx/fullsize if present, else onnx/demo)")
    p.add_argument("--tokens", type=int, default=None, help="tokens to generate, EOS ignored (default 200, --quick 50)")
    p.add_argument("--quick", action="store_true", help="50 tokens")
    p.add_argument("--threads", type=int, default=None, help="threads per system (default: usable cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--systems", default=None, help=f"comma list out of {','.join(ORDER)} (default: all; --quick: all "
                   f"but gsv-v2proplus)")
    p.add_argument("--v2proplus", default=None, help="full-size v2ProPlus bundle of the gsv-v2proplus row (default "
                   "onnx/fullsize-v2proplus, built when missing)")
    p.add_argument("--ref", default=os.path.join(ROOT, "onnx", "demo", "ref.wav"), help="reference wav")
    p.add_argument("--checkpoints", help="folder with the bundle's source checkpoints (default: searched)")
    p.add_argument("--gsv", help="gsv binary (default $GSV_BIN, target/release/gsv, PATH)")
    p.add_argument("--bandwidth-mb", type=int, default=256, help="array size of the bandwidth test")
    p.add_argument("--text", default="今天的天气真的很好。", help="gsv's real text request (10 characters); '' to skip")
    p.add_argument("--lang", default="zh")
    p.add_argument("--repeat", type=int, default=1, help="rounds over all systems, interleaved; each system reports "
                   "its median run by RTF (a shared machine's noise then falls on every system alike)")
    p.add_argument("--pick", choices=["median", "min"], default="median", help="with --repeat: report each system's "
                   "median run by RTF, or its best (min): on a machine whose other tenants come and go, the best of N "
                   "interleaved rounds is the closest to an unloaded machine, for every system alike")
    p.add_argument("--save-json", help="also write the JSON report to this file (the table goes to stdout)")
    p.add_argument("--no-variants", dest="variants", action="store_false", help="do not build missing variants")
    p.add_argument("--no-steps", dest="steps", action="store_false", help="skip the GPT step / bound section")
    p.add_argument("--concurrency", default=None, help="comma list of stream counts (e.g. 1,2,4,8,16): only the "
                   "concurrency section, batched engine vs worker pool (bench/concurrency.py); tokens default 100, "
                   "--quick 40")
    p.add_argument("--pool-workers", type=int, default=2, help="--concurrency: workers of the pool engine")
    p.add_argument("--spin", choices=["on", "off"], default=None, help="gsv systems: --ort-spin (ONNX Runtime "
                   "session.intra_op.allow_spinning; default: gsv's, off)")
    a = p.parse_args(argv)
    if a.bundle is None:
        full = os.path.join(ROOT, "onnx", "fullsize")
        a.bundle = full if os.path.isfile(os.path.join(full, "manifest.json")) else os.path.join(ROOT, "onnx", "demo")
    a.bundle = os.path.abspath(a.bundle)
    a.ref = os.path.abspath(a.ref)
    if a.concurrency is not None:
        try:
            a.concurrency = [int(x) for x in a.concurrency.split(",") if x.strip()]
        except ValueError:
            p.error("--concurrency takes a comma list of stream counts")
        if not a.concurrency or min(a.concurrency) < 1:
            p.error("--concurrency takes a comma list of stream counts of at least 1")
        if a.tokens is None:
            a.tokens = 40 if a.quick else 100
    if a.tokens is None:
        a.tokens = 50 if a.quick else 200
    if a.tokens < 2:
        p.error("--tokens must be at least 2")
    if a.threads is None:
        a.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if a.systems is None:
        a.systems = ",".join(s for s in ORDER if not (a.quick and s == "gsv-v2proplus"))
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    bad = [s for s in a.systems if s not in ORDER]
    if bad:
        p.error(f"unknown systems {bad}; choose from {ORDER}")
    return a


def main(argv=None) -> int:
    a = parse(argv)
    build_missing(a)
    man = load_manifest(a.bundle)
    if a.concurrency is not None:
        from . import concurrency

        exe = find_gsv(a.gsv)
        if exe is None:
            raise SystemExit("bench: gsv binary not found (cargo build --release, or --gsv PATH)")
        if not man["gpt"].get("batched_step"):
            raise SystemExit(f"bench: {a.bundle} has no batched step graph: re-export it (python -m export convert)")
        rep = concurrency.run(a, exe, gsv_env(a), log)
        rep["machine"] = machine(a.threads)
        if a.save_json:
            with open(a.save_json, "w", encoding="utf-8") as f:
                json.dump(rep, f, indent=1)
        print(json.dumps(rep) if a.json else concurrency.table(rep))
        return 0
    log("measuring memory bandwidth")
    bw = bandwidth.measure(a.bandwidth_mb)
    runs = {name: [] for name in ORDER if name in a.systems}
    genie_dir = None
    v2p = v2p_why = None
    for rnd in range(a.repeat):
        if a.repeat > 1:
            log(f"round {rnd + 1} of {a.repeat}")
        for name in runs:
            if runs[name] and "skipped" in runs[name][-1]:
                continue
            if name == "gsv-v2proplus":
                from . import v2pro

                if v2p is None:
                    ok, info = v2pro.ensure_bundle(os.path.abspath(a.v2proplus or v2pro.DEFAULT_BUNDLE), log)
                    v2p = info if ok else False
                    v2p_why = None if ok else info
                r = run_gsv(a, man, name, bundle=v2p) if v2p else {"name": name, "skipped": v2p_why}
            elif name.startswith("gsv"):
                r = run_gsv(a, man, name)
            elif name == "genie-tts":
                if genie_dir is None:
                    from .genie import prepare

                    ok, info = prepare(a, man, log)
                    genie_dir = info if ok else False
                    if not ok:
                        genie_why = info
                r = run_worker(name, a, ["--genie-dir", genie_dir]) if genie_dir else {"name": name, "skipped": genie_why}
            else:
                r = run_worker(name, a)
            if "skipped" in r:
                log(f"{name} skipped: {r['skipped']}")
            runs[name].append(r)
    systems = []
    for name, rs in runs.items():
        ok = sorted((r for r in rs if "skipped" not in r), key=lambda r: r["rtf"])
        if not ok:
            systems.append(rs[-1])
            continue
        # the median run by RTF (the lower middle for an even count), or the best one with --pick min
        pick = dict(ok[0] if a.pick == "min" else ok[(len(ok) - 1) // 2])
        pick["runs"] = len(ok)
        pick["rtf_all"] = [r["rtf"] for r in rs if "skipped" not in r]
        systems.append(pick)
    gsv = next((s for s in systems if s["name"] == "gsv" and "skipped" not in s), None)
    for s in systems:
        if "skipped" not in s:
            s["rtf_vs_gsv"] = s["rtf"] / gsv["rtf"] if gsv else None
            s["tokens_per_s_vs_gsv"] = s["tokens_per_s"] / gsv["tokens_per_s"] if gsv else None
    bound = bandwidth.bound(man, bw["bandwidth_gbps"])
    for s in systems:
        if s["name"].startswith("gsv") and s.get("ms_per_step"):
            v = gsv_gpt_precision(s)
            tps = bound["variants"][v]["max_tokens_per_s"] if v != "fp32" else bound["max_tokens_per_s_fp32"]
            s["step_vs_bound"] = (1e3 / tps) / s["ms_per_step"]
    steps = None
    if a.steps:
        log("GPT step of fp32 and every GPT variant (Python onnxruntime)")
        steps = run_worker("steps", a)
    rep = {"machine": machine(a.threads), "bandwidth_gbps": bw["bandwidth_gbps"], "bandwidth": bw,
           "gpt_bound": bound, "bundle": a.bundle, "tokens": a.tokens, "repeat": a.repeat, "pick": a.pick,
           "systems": systems, "gpt_steps": steps}
    if a.save_json:
        with open(a.save_json, "w", encoding="utf-8") as f:
            json.dump(rep, f, indent=1)
    if a.json:
        print(json.dumps(rep))
    else:
        print(table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
