"""One system, one process: `python -m bench.worker SYSTEM --bundle DIR --tokens N --threads T [--checkpoints DIR]
--ref WAV` prints one JSON object (see common.result) on its last stdout line. Run by bench/__main__.py, one
subprocess per system, so that each peak RSS (VmHWM) is that system's alone.

Systems:
  pytorch  the export's own PyTorch modules (proven equal to GPT-SoVITS by the golden parity tests), eager, with
           GPT-SoVITS's `infer_panel_naive` loop: per step and per layer the K/V cache is `torch.cat`-ed with the new
           row, as upstream does.
  ort      the bundle's graphs through Python onnxruntime, the same loop, with the K/V cache bound in place as gsv
           does (export.stepper.GptRunner).
  genie    Genie-TTS's converted graphs (see bench/genie.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from export.infer import SamplingParams, generate
from export.stepper import GptRunner

from .common import NOISE_SCALE, Clock, decode_noise, load_manifest, reference_inputs, result, sv_signal, synthetic_request


def sampling(tokens: int) -> SamplingParams:
    return SamplingParams(top_k=15, top_p=1.0, temperature=1.0, repetition_penalty=1.35, seed=0,
                          max_steps=tokens, ignore_eos=True)


def timed_run(name, man, prefill, step, vocode, tokens, ref_ms, load_ms, **extra):
    """Warm-up (2 tokens, 10-token decode, as `gsv bench`), then the measured generation and decode."""
    ids, bert, prompt, text = synthetic_request(man)
    eos = int(man["gpt"]["eos"])
    prefill_ms = []

    def timed_prefill(*a):
        c = Clock()
        out = prefill(*a)
        prefill_ms.append(c.ms())
        return out

    w = generate(timed_prefill, step, ids, bert, prompt, sampling(2), eos)
    vocode(np.array(w.tokens[:10], dtype=np.int64), text)
    c = Clock()
    g = generate(timed_prefill, step, ids, bert, prompt, sampling(tokens), eos)
    gpt_ms = c.ms()
    assert len(g.tokens) == tokens, (len(g.tokens), tokens)
    codes = np.array(g.tokens, dtype=np.int64)
    c = Clock()
    audio = vocode(codes, text)
    voc_ms = c.ms()
    audio_s = audio.size / float(man["sample_rate"])
    return result(name, tokens, prefill_ms[-1], gpt_ms, voc_ms, audio_s, ref_ms, load_ms, **extra)


# ------------------------------------------------------------------------------------------------ PyTorch


def checkpoint_dirs(bundle: str, given: str | None = None) -> list:
    """Folders where a bundle's source checkpoints may be, in the order tried: --checkpoints, `<bundle>-ckpt` next
    to the bundle (where scripts/bench writes the full-size random ones), .cache/<name>, the golden sets' models."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    b = os.path.normpath(os.path.abspath(bundle))
    cands = [given] if given else []
    cands += [b + "-ckpt", os.path.join(root, ".cache", os.path.basename(b))]
    for env, name in (("GSV_GOLDEN_DIR", "golden"), ("GSV_GOLDEN_V1_DIR", "golden-v1")):
        cands.append(os.path.join(os.environ.get(env, os.path.join(os.path.dirname(root), "shared", name)), "models"))
    return cands


def find_checkpoints(man: dict, bundle: str, given: str | None) -> dict:
    """The bundle's source files (names and sha256 from manifest `sources`): where convert recorded them
    (`sources.<k>.path`), else in checkpoint_dirs(); the GPT and SoVITS files must match the recorded sha256."""
    from export.ckpt import sha256_file

    src = man.get("sources", {})
    keys = [k for k in ("gpt", "sovits", "hubert", "bert") if k in src]
    sets = []
    if all(src[k].get("path") for k in keys):
        sets.append(("recorded in the manifest", {k: src[k]["path"] for k in keys}))
    cands = checkpoint_dirs(bundle, given)
    sets += [(d, {k: os.path.join(d, src[k]["file"]) for k in keys}) for d in cands if d]
    if "sv" in src:  # v2Pro/v2ProPlus: the speaker-verification checkpoint, where recorded, beside the others or in sv/
        for d, paths in sets:
            cand = [src["sv"].get("path")] if d == "recorded in the manifest" else \
                [os.path.join(d, src["sv"]["file"]), os.path.join(d, "sv", src["sv"]["file"])]
            paths["sv"] = next((p for p in cand if p and os.path.isfile(p)), os.path.join(d, "sv", src["sv"]["file"]))
    for _, paths in sets:
        if not all(os.path.exists(p) for p in paths.values()):
            continue
        if all(sha256_file(paths[k]) == src[k]["sha256"] for k in ("gpt", "sovits") if k in src):
            return paths
    raise FileNotFoundError("source checkpoints of this bundle not found (looked where the manifest recorded them and "
                            "in " + ", ".join(c for c in cands if c) + "; pass --checkpoints DIR)")


def run_pytorch(a, man):
    import torch

    from export.ckpt import load_checkpoint
    from export.models.gpt import build_gpt, sinusoid
    from export.models.hf import build_bert, build_hubert
    from export.models.sovits import build_sovits

    torch.set_num_threads(a.threads)
    paths = find_checkpoints(man, a.bundle, a.checkpoints)
    c = Clock()
    gpt = build_gpt(load_checkpoint(paths["gpt"], "GPT checkpoint"))
    sv = build_sovits(load_checkpoint(paths["sovits"], "SoVITS checkpoint"))
    hubert = build_hubert(paths["hubert"])
    bert = build_bert(paths["bert"])  # loaded like upstream does, not run (BERT features are given)
    load_ms = c.ms()
    del bert
    torch.set_grad_enabled(False)

    svm = None
    if "sv" in paths:  # v2Pro/v2ProPlus: upstream loads its SV model with the SoVITS weights
        from export.models.sv import build_sv

        c = Clock()
        svm = build_sv(paths["sv"], input_rate=int(man["sample_rate"]))
        load_ms += c.ms()

    w16, spec = reference_inputs(a.ref, man)
    with torch.inference_mode():
        c = Clock()
        ssl = hubert(torch.from_numpy(w16))
        _codes, _ = sv.vq_encoder(ssl)
        if svm is not None:  # the fused speaker vector: ref_enc(spec) + the SV embedding, PReLU
            emb = svm.graph(torch.from_numpy(sv_signal(a.ref, man)))[0]
            ge = sv.ref_encoder(torch.from_numpy(spec), emb)[0]
        else:
            ge = sv.ref_encoder(torch.from_numpy(spec))
        ref_ms = c.ms()

    layers = gpt.h.layers

    def prefill(ids, b, p):
        out = gpt.prefill(torch.from_numpy(ids), torch.from_numpy(b), torch.from_numpy(p))
        n = gpt.n_layer
        return out[0].numpy(), list(out[1:1 + n]), list(out[1 + n:])

    def step(tok, pos, ks, vs):  # infer_panel_naive: one torch.cat per layer and step
        x = gpt.ar_audio_embedding.word_embeddings(torch.from_numpy(tok))
        x = x + gpt.ar_audio_position.alpha * sinusoid(torch.from_numpy(pos), gpt.d).unsqueeze(0)
        for i, blk in enumerate(layers):
            q, k, v = blk.qkv(x)
            ks[i] = torch.cat([ks[i], k], dim=1)
            vs[i] = torch.cat([vs[i], v], dim=1)
            x = blk.attend(x, q, ks[i], vs[i], None)
        return gpt.ar_predict_layer(x[:, -1]).numpy(), ks, vs

    def vocode(codes, text):
        noise = torch.from_numpy(decode_noise(man, codes.size))
        audio = sv.decoder(torch.from_numpy(codes.reshape(1, 1, -1)), torch.from_numpy(text), ge,
                           torch.tensor([NOISE_SCALE], dtype=torch.float32), noise)[0]
        return audio.numpy()

    with torch.inference_mode():
        return timed_run("pytorch", man, prefill, step, vocode, a.tokens, ref_ms, load_ms,
                         torch_version=torch.__version__)


# ------------------------------------------------------------------------------------------- onnxruntime


def ort_session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run_ort(a, man):
    import onnxruntime as ort

    c = Clock()
    s = {name: ort_session(os.path.join(a.bundle, g["file"]), a.threads) for name, g in man["graphs"].items()}
    load_ms = c.ms()

    w16, spec = reference_inputs(a.ref, man)
    c = Clock()
    (ssl,) = s["hubert"].run(["ssl"], {"wav16k": w16})
    s["vq_encode"].run(["codes"], {"ssl": ssl})
    feeds = {"spec": spec}
    if "sv" in s:  # v2Pro/v2ProPlus: ref_enc fuses the reference's speaker-verification embedding
        (feeds["sv_emb"],) = s["sv"].run(["sv_emb"], {"wav32k": sv_signal(a.ref, man)})
    (ge,) = s["ref_enc"].run(["ge"], feeds)
    ref_ms = c.ms()

    runner = GptRunner(s["gpt_prefill"], s["gpt_step"], man, capacity=2048)
    prefill, step = runner.prefill_fn, runner.step_fn

    def vocode(codes, text):
        (audio,) = s["sovits_decode"].run(["audio"], {
            "codes": codes.reshape(1, 1, -1), "text": text, "ge": ge,
            "noise_scale": np.array([NOISE_SCALE], dtype=np.float32), "noise": decode_noise(man, codes.size)})
        return audio

    return timed_run("onnxruntime-python", man, prefill, step, vocode, a.tokens, ref_ms, load_ms,
                     onnxruntime_version=ort.__version__)


def run_steps(a, man):
    """The GPT step alone for fp32 and every GPT variant the bundle registers (Python onnxruntime, K/V cache bound
    in place, 140 cached rows, alternating rounds): ms per step of each, for the bandwidth-bound comparison (gsv can
    only load the int8 variant so far; int4 is measured here)."""
    from export.quantize import time_steps

    files = {"fp32": man["graphs"]["gpt_step"]["file"]}
    for v, e in sorted(man["graphs"]["gpt_step"].get("variants", {}).items()):
        files[v] = e["file"]
    sess = {v: ort_session(os.path.join(a.bundle, f), a.threads) for v, f in files.items()}
    ms = time_steps(man, sess, steps=50, rounds=5, stat=a.pick)
    del sess
    # the prefill of the synthetic request (140 positions), the same way: compute-bound, so int8 compute matters here
    pfiles = {"fp32": man["graphs"]["gpt_prefill"]["file"]}
    pfiles.update({v: e["file"] for v, e in man["graphs"]["gpt_prefill"].get("variants", {}).items() if v in files})
    pre = {v: ort_session(os.path.join(a.bundle, f), a.threads) for v, f in pfiles.items()}
    ids, bert, prompt, _ = synthetic_request(man)
    feeds = {"phone_ids": ids, "bert": bert, "prompt": prompt}
    runs = {v: [] for v in pre}
    for v, sp in pre.items():
        sp.run(["logits"], feeds)
    for _ in range(3):
        for v, sp in pre.items():
            c = Clock()
            sp.run(["logits"], feeds)
            runs[v].append(c.ms())
    prefill = {v: float(np.min(x) if a.pick == "min" else np.median(x)) for v, x in runs.items()}
    return {"name": "gpt-steps", "ms_per_step": ms, "prefill_ms": prefill, "threads": a.threads, "pick": a.pick}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.worker")
    p.add_argument("system", choices=["pytorch", "ort", "genie", "steps"])
    p.add_argument("--bundle", required=True)
    p.add_argument("--tokens", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--checkpoints")
    p.add_argument("--genie-dir")
    p.add_argument("--pick", choices=["median", "min"], default="median", help="steps: statistic over rounds")
    a = p.parse_args(argv)
    man = load_manifest(a.bundle)
    if a.system == "pytorch":
        r = run_pytorch(a, man)
    elif a.system == "ort":
        r = run_ort(a, man)
    elif a.system == "steps":
        r = run_steps(a, man)
    else:
        from .genie import run_genie

        r = run_genie(a, man)
    sys.stdout.write("\n" + json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
