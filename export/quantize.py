"""`python -m export quantize --bundle DIR`: gated precision variants of a bundle's graphs.

In:  a bundle (its fp32 graphs), optionally a golden folder.
Out: variant files next to the fp32 graphs, each registered in the manifest only when its gate passes:
  GPT (`--variant int8|int4`, default int8): `gpt_prefill.<v>.onnx` + `gpt_step.<v>.onnx`, weight-only block
     quantisation of every weight MatMul into ONNX Runtime's com.microsoft.MatMulNBits (export/nbits.py: 8 or 4-bit
     codes, one fp32 scale and zero point per block, int8 compute with accuracy_level 4), same I/O as fp32 (the K/V
     cache stays bound in place). Gate (export/gate.py): fp32 and the variant teacher-forced side by side on
     `--tokens` (default 600) steps of seeded requests on the bundle itself, and 500 on the golden set's request
     with --golden; the request's own filtering (bundle top_k, api defaults top_p 1, temperature 1, repetition
     penalty 1.35); total variation, KL, clear top-k set changes and greedy agreement on clear-margin steps must stay
     within export.gate.THRESHOLDS. With --golden, fp32's greedy tokens must also equal the golden ones (else the
     bundle itself is wrong: error).
  BERT (`--bert`): `bert.int8.onnx` (dynamic int8 MatMul weights); hidden_states[-3] within 5% relative L2 of fp32.
  vocoder (`--vocoder`): `sovits_decode.int8.onnx` (static QDQ int8 convolutions calibrated through the bundle's
     graphs, speaker vector of `--ref`); audio SNR against fp32 >= 30 dB on unseen decodes.
  `--all`: all four (GPT int8 and int4, BERT, vocoder); `python -m export convert` runs it unless --no-variants.

A registered variant is `graphs.<graph>.variants.<v>` = {"file", "sha256", ...facts}; the runtime loads it with
`--gpt-precision`, `--bert-precision`, `--vocoder-precision`. Every variant tried, passed or not, is recorded with its
measured error and speed under `quantization.<stage>.<v>` (stage: gpt, bert, vocoder), and
`quantization.preferred.<stage>` names the fastest variant that passed (or "fp32"): the runtime's default.
A variant that fails is not registered and its files are deleted (exit status 1), unless --force.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .ckpt import sha256_file
from .stepper import GptRunner

GPT_GRAPHS = ("gpt_prefill", "gpt_step")
# The GPT variants `convert` builds. int8: 8-bit codes in blocks of 128 rows (scale + zero point cost 3.9% on top
# of the codes; 8-bit error is far inside the gate at any block size, and 128 reads fewer bytes than 32: 2.46x
# against 2.09x over fp32 in alternating step runs). int4: 4-bit in blocks of 32, the usual accuracy choice for
# 4-bit (the error grows with the block's range).
GPT_VARIANTS = {"int8": {"bits": 8, "block_size": 128, "accuracy_level": 4},
                "int4": {"bits": 4, "block_size": 32, "accuracy_level": 4}}
STAGE_OF = {"gpt_step": "gpt", "gpt_prefill": "gpt", "bert": "bert", "sovits_decode": "vocoder"}


def _session(path, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _load_manifest(bundle: str) -> dict:
    with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def gpt_step_bytes(man: dict, quantized_weight_bytes: int | None = None) -> int:
    """Bytes of weights one GPT step reads: the MatMul weights (fp32, or their quantised size) plus the fp32 biases,
    LayerNorm parameters and one embedding row (see bench/bandwidth.py)."""
    L, D, V = int(man["gpt"]["n_layer"]), int(man["gpt"]["hidden_dim"]), int(man["gpt"]["vocab_size"])
    matmul = L * 12 * D * D + V * D
    rest = L * 13 * D + D
    return 4 * rest + (4 * matmul if quantized_weight_bytes is None else quantized_weight_bytes)


def time_steps(man, sessions: dict, steps: int = 40, rounds: int = 5, cached: int = 140, stat: str = "median") -> dict:
    """ms per GPT step of each {name: step session}, alternating rounds of `steps` steps from `cached` cached rows
    (median, or with stat="min" the best, over rounds): fp32 and its variants measured side by side."""
    runs = {k: [] for k in sessions}
    runners = {k: GptRunner(None, s, man, capacity=cached + steps + 8) for k, s in sessions.items()}
    vocab = int(man["gpt"]["vocab_size"]) - 1
    for k, r in runners.items():  # first runs allocate and prepack
        r.t = cached
        for i in range(3):
            r.step(1, cached + i)
    for _ in range(rounds):
        for k, r in runners.items():
            r.t = cached
            t = time.perf_counter()
            for i in range(steps):
                r.step((i * 131) % vocab, cached + 1 + i)
            runs[k].append((time.perf_counter() - t) / steps * 1e3)
    return {k: float(np.min(v) if stat == "min" else np.median(v)) for k, v in runs.items()}


def quantize(bundle: str, golden: str | None = None, tokens: int = 600, force: bool = False, variant: str = "int8",
             thresholds: dict | None = None, damage: float = 0.0, settings: dict | None = None,
             golden_tokens: int = 500, log=print) -> int:
    """GPT variant `variant` (int8 / int4; `settings` overrides bits, block_size, accuracy_level): build, gate,
    time, register or refuse. Returns the exit status (0 registered, 1 refused)."""
    import onnx

    from . import gate
    from .nbits import to_matmul_nbits

    man = _load_manifest(bundle)
    cfg = dict(GPT_VARIANTS.get(variant, GPT_VARIANTS["int8"]), **(settings or {}))
    th = dict(gate.THRESHOLDS, **(thresholds or {}))
    fp32 = {g: man["graphs"][g]["file"] for g in GPT_GRAPHS}
    files = {g: f"{g}.{variant}.onnx" for g in GPT_GRAPHS}
    facts = {}
    for g in GPT_GRAPHS:
        log(f"quantizing {fp32[g]} -> {files[g]} (MatMulNBits, {cfg['bits']}-bit, blocks of {cfg['block_size']}, "
            f"accuracy_level {cfg['accuracy_level']}{f', damage {damage}' if damage else ''})")
        m, f = to_matmul_nbits(onnx.load(os.path.join(bundle, fp32[g])), cfg["bits"], cfg["block_size"],
                               cfg["accuracy_level"], damage=damage)
        for p in m.metadata_props:
            if p.key == "gsv.precision":
                p.value = variant
        onnx.save(m, os.path.join(bundle, files[g]))
        if g == "gpt_step" and man["gpt"].get("batched_step"):
            # the variant must keep the batched step exact per sequence, as the fp32 graph does (BUNDLE.md); a graph
            # that is exact only from two rows up is stamped so, and the runtime pads its one-sequence runs
            from .models.gpt_onnx import kv_head_dim, step_min_batch
            gd = man["gpt"]
            f["step_min_batch"], f["batch_max_err"] = step_min_batch(
                os.path.join(bundle, files[g]), gd["n_layer"], gd["n_head"],
                kv_head_dim(gd["hidden_dim"], gd["n_head"]), gd["vocab_size"])
            if f["step_min_batch"] > 1:
                log(f"  {files[g]}: a one-row step runs another MatMulNBits kernel than a batch; exact per sequence "
                    f"from {f['step_min_batch']} rows (max difference {f['batch_max_err']:.1e}): stamped "
                    f"gsv.step_min_batch={f['step_min_batch']}, the runtime pads single sequences")
                p = m.metadata_props.add()
                p.key, p.value = "gsv.step_min_batch", str(f["step_min_batch"])
                onnx.save(m, os.path.join(bundle, files[g]))
        facts[g] = f
    step_facts = facts["gpt_step"]
    record = {"method": "MatMulNBits", **cfg, "block_sizes": step_facts.get("block_sizes", []),
              "step_min_batch": step_facts.get("step_min_batch", 1),
              "matmuls_quantized": step_facts["matmuls"],
              "weight_bytes_per_token": gpt_step_bytes(man, step_facts["quantized_weight_bytes"]),
              "fp32_weight_bytes_per_token": gpt_step_bytes(man)}
    if damage:
        record["damage"] = damage

    s = gate.request_sampling(man)
    eos = int(man["gpt"]["eos"])
    fp_sess = gate.sessions(bundle, fp32["gpt_prefill"], fp32["gpt_step"])
    q_sess = gate.sessions(bundle, files["gpt_prefill"], files["gpt_step"])

    def forced(inputs, steps, seed):
        ids, bert, prompt = inputs
        cap = ids.shape[1] + prompt.shape[1] + steps + 2
        return gate.teacher_forced(GptRunner(*fp_sess, man, cap), GptRunner(*q_sess, man, cap), ids, bert, prompt,
                                   steps, s, eos, seed, th["clear_margin"])

    sequences = 3
    per = math.ceil(tokens / sequences)
    t0 = time.time()
    parts = [forced(gate.synthetic_inputs(man, seed), per, seed) for seed in range(sequences)]
    results = {"bundle": gate.summarise(parts, th)}
    log(f"  gate on the bundle ({results['bundle']['steps']} teacher-forced steps, {time.time() - t0:.0f}s): "
        + _fmt(results["bundle"]))
    ok, why = gate.verdict(results["bundle"], th)
    if golden:
        g_in = gate.golden_inputs(golden, man)
        half = math.ceil(golden_tokens / 2)
        results["golden"] = gate.summarise([forced(g_in, half, seed) for seed in (0, 1)], th)
        results["golden"].update(_golden_greedy(golden, man, fp_sess, q_sess, g_in))
        log(f"  gate on the golden request ({results['golden']['steps']} steps): " + _fmt(results["golden"])
            + f"; greedy tokens: fp32 {'exact' if results['golden']['fp32_greedy_exact'] else 'DIFFERENT'}, "
            f"{variant} {'identical' if results['golden']['greedy_identical'] else 'same up to'} "
            f"{results['golden']['greedy_same_prefix_tokens']} of {results['golden']['greedy_tokens']} (one flipped "
            f"near-tie changes every later greedy token; information, not gated)")
        if not results["golden"]["fp32_greedy_exact"]:
            raise RuntimeError("the bundle's fp32 GPT does not reproduce the golden greedy tokens: the bundle is "
                               "wrong, not the variant (python -m export verify says where)")
        g_ok, g_why = gate.verdict(results["golden"], th)
        ok &= g_ok
        why += [f"golden: {w}" for w in g_why]
    speed = time_steps(man, {"fp32": fp_sess[1], variant: q_sess[1]})
    record.update(gate=results, thresholds=th, sampling={
        "top_k": s.top_k, "top_p": s.top_p, "temperature": s.temperature, "repetition_penalty": s.repetition_penalty,
        "from": "top_k: the bundle's (GPT checkpoint config); top_p, temperature, repetition_penalty: api.py/api2 "
                "defaults"},
        step_ms=round(speed[variant], 3), fp32_step_ms=round(speed["fp32"], 3),
        speedup_vs_fp32=round(speed["fp32"] / speed[variant], 3))
    log(f"  step {speed[variant]:.2f} ms against fp32 {speed['fp32']:.2f} ms (x{speed['fp32'] / speed[variant]:.2f}); "
        f"{record['weight_bytes_per_token'] / 1e6:.1f} MB of weights per token against "
        f"{record['fp32_weight_bytes_per_token'] / 1e6:.1f} MB")
    if why:
        log("  gate failed: " + "; ".join(why))
    return _register(bundle, man, [(g, files[g]) for g in GPT_GRAPHS], ok, force, f"GPT {variant}",
                     "the sampled distributions move too much", "--gpt-precision", record, log, variant=variant)


def _fmt(m: dict) -> str:
    ga = "n/a" if m["greedy_agreement"] is None else f"{m['greedy_agreement']:.4f}"
    return (f"TV mean {m['mean_tv']:.4f} p99 {m['p99_tv']:.4f} max {m['max_tv']:.4f}; KL mean {m['mean_kl']:.2e}; "
            f"clear top-k set changes {m['clear_set_changes']:.4f} (any: {m['set_changes']:.3f}, TV with them "
            f"{m['mean_tv_with_set_changes']:.4f}); greedy agreement {ga} on {m['clear_steps']} clear steps")


def _golden_greedy(golden: str, man: dict, fp_sess, q_sess, g_in) -> dict:
    """Greedy decoding with the golden set's own settings (top_k 1, its repetition penalties and early stop), fp32
    and the variant: fp32 must reproduce the golden tokens exactly; the variant's differences are reported."""
    from .infer import SamplingParams, generate
    from .verify import Golden

    g = Golden(golden)
    ids, bert, prompt = g_in
    inp = g.inputs
    rps = inp.get("repetition_penalty", [1.35])
    rps = rps if isinstance(rps, list) else [rps]
    exact, identical, total, prefix = True, True, 0, 0
    for rp in rps:
        tag = "rp" + f"{rp:.2f}".replace(".", "").rstrip("0")
        if not g.has(f"gpt_{tag}_y_full"):
            tag = "rp" + str(rp).replace(".", "")
        want = g[f"gpt_{tag}_y_full"].reshape(-1)[prompt.shape[1]:]
        params = SamplingParams(top_k=int(inp.get("top_k", 1)), top_p=float(inp.get("top_p", 1)),
                                temperature=float(inp.get("temperature", 1)), repetition_penalty=float(rp),
                                early_stop_num=int(inp.get("early_stop_num", -1)))
        cap = ids.shape[1] + prompt.shape[1] + 1501
        outs = []
        for sess in (fp_sess, q_sess):
            r = GptRunner(*sess, man, cap)
            outs.append(generate(r.prefill_fn, r.step_fn, ids, bert, prompt, params, int(man["gpt"]["eos"])).tokens)
        want = [int(t) for t in want]
        exact &= list(outs[0]) == want
        same = next((i for i, (a, b) in enumerate(zip(want, outs[1])) if a != b), min(len(want), len(outs[1])))
        total += len(want)
        prefix += same
        identical &= list(outs[1]) == want
    # one flipped near-tie changes every later token of a greedy decode, so the shared prefix is what this measures
    return {"fp32_greedy_exact": bool(exact), "greedy_tokens": total, "greedy_same_prefix_tokens": prefix,
            "greedy_identical": bool(identical)}


# BERT: int8 weights cut the 1.2 GB read per call to ~0.3 GB and use the CPU's int8 dot products; what it costs in
# accuracy is measured and stored, and the variant is refused when the features move by more than this (relative L2
# over all features, fp32 as the reference).
BERT_MAX_REL_L2 = 0.05


def bert_error(bundle: str, man: dict, fp32_file: str, int8_file: str, golden: str | None = None) -> dict:
    """Relative L2 and max abs difference of hidden_states[-3] (int8 vs fp32) on the golden prompt's input ids when
    given, and on seeded random ids of 12 and 40 tokens (CLS ... SEP)."""
    a = _session(os.path.join(bundle, fp32_file))
    b = _session(os.path.join(bundle, int8_file))
    rng = np.random.default_rng(0)
    with open(os.path.join(bundle, "tokenizer.json"), encoding="utf-8") as f:
        vocab = len(json.load(f)["model"]["vocab"])
    inputs = []
    if golden:
        p = os.path.join(golden, "arrays", "prompt_bert_input_ids.npy")
        if os.path.isfile(p):
            inputs.append(np.load(p).reshape(1, -1).astype(np.int64))
    for n in (12, 40):
        ids = rng.integers(min(100, vocab - 1), vocab, size=(1, n)).astype(np.int64)
        ids[0, 0], ids[0, -1] = min(101, vocab - 1), min(102, vocab - 1)
        inputs.append(ids)
    num = den = 0.0
    worst = 0.0
    for ids in inputs:
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        (ra,) = a.run(["hidden"], feeds)
        (rb,) = b.run(["hidden"], feeds)
        num += float(np.sum((ra.astype(np.float64) - rb) ** 2))
        den += float(np.sum(ra.astype(np.float64) ** 2))
        worst = max(worst, float(np.max(np.abs(ra - rb))))
    return {"rel_l2": (num / max(den, 1e-30)) ** 0.5, "max_abs": worst, "inputs": len(inputs)}


def _time_pair(run_a, run_b, rounds: int = 3) -> tuple[float, float]:
    """Median wall ms of two callables run alternately (one warm-up each)."""
    run_a(), run_b()
    ta, tb = [], []
    for _ in range(rounds):
        for fn, acc in ((run_a, ta), (run_b, tb)):
            t = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ta)), float(np.median(tb))


def quantize_bert(bundle: str, golden: str | None = None, force: bool = False, log=print) -> int:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    man = _load_manifest(bundle)
    src, dst = man["graphs"]["bert"]["file"], "bert.int8.onnx"
    log(f"quantizing {src} -> {dst}")
    quantize_dynamic(os.path.join(bundle, src), os.path.join(bundle, dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])
    err = bert_error(bundle, man, src, dst, golden)
    log(f"  BERT features int8 vs fp32 over {err['inputs']} inputs: relative L2 {err['rel_l2']:.3e}, "
        f"max abs {err['max_abs']:.3e} (need relative L2 <= {BERT_MAX_REL_L2})")
    a, b = _session(os.path.join(bundle, src)), _session(os.path.join(bundle, dst))
    ids = np.array([[101] + [min(200 + 7 * i, 3000) for i in range(38)] + [102]], dtype=np.int64)
    ids = np.minimum(ids, _vocab_size(bundle) - 1)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    ms_a, ms_b = _time_pair(lambda: a.run(["hidden"], feeds), lambda: b.run(["hidden"], feeds))
    log(f"  40 tokens: {ms_b:.1f} ms against fp32 {ms_a:.1f} ms (x{ms_a / ms_b:.2f})")
    return _register(bundle, man, [("bert", dst)], err["rel_l2"] <= BERT_MAX_REL_L2, force, "BERT int8",
                     "the features move too much", "--bert-precision",
                     {"method": "dynamic int8 MatMul (onnxruntime quantize_dynamic)",
                      "rel_l2_error": round(err["rel_l2"], 6), "max_abs_error": round(err["max_abs"], 6),
                      "threshold_rel_l2": BERT_MAX_REL_L2, "ms_40_tokens": round(ms_b, 2),
                      "fp32_ms_40_tokens": round(ms_a, 2), "speedup_vs_fp32": round(ms_a / ms_b, 3)}, log)


def _vocab_size(bundle: str) -> int:
    with open(os.path.join(bundle, "tokenizer.json"), encoding="utf-8") as f:
        return len(json.load(f)["model"]["vocab"])


def preferred(man: dict) -> dict:
    """Per stage, the variant that passed its gate and ran fastest against fp32 in its own measurement (ties: the
    smaller file), or "fp32" when none passed or none was faster."""
    out = {}
    for stage in ("gpt", "bert", "vocoder"):
        best, best_speed = "fp32", 1.0
        for name, rec in sorted(man.get("quantization", {}).get(stage, {}).items()):
            sp = rec.get("speedup_vs_fp32") or 0.0
            if rec.get("passed") and sp > best_speed:
                best, best_speed = name, sp
        out[stage] = best
    return out


def _register(bundle, man, pairs, passed, force, what, why_not, flag, facts, log, variant: str = "int8") -> int:
    """Record the tried variant under `quantization.<stage>.<variant>` (passed or not, with `facts`), and add each
    `(graph, file)` of `pairs` as `graphs.<graph>.variants.<variant>` when it passed (or --force); otherwise delete
    its files (and any earlier registration of the same name). Recomputes `quantization.preferred`."""
    stage = STAGE_OF[pairs[0][0]]
    accept = bool(passed or force)
    q = man.setdefault("quantization", {})
    rec = dict(facts, passed=bool(passed))
    if accept and not passed:
        rec["forced"] = True
    q.setdefault(stage, {})[variant] = rec
    for graph, dst in pairs:
        entries = man["graphs"][graph].setdefault("variants", {})
        if accept:
            entries[variant] = {"file": dst, "sha256": sha256_file(os.path.join(bundle, dst)), "passed": bool(passed),
                                **{k: v for k, v in facts.items() if isinstance(v, (int, float, str))}}
        else:
            entries.pop(variant, None)
            if os.path.exists(os.path.join(bundle, dst)):
                os.remove(os.path.join(bundle, dst))
        if not entries:
            del man["graphs"][graph]["variants"]
    q["preferred"] = preferred(man)
    mpath = os.path.join(bundle, "manifest.json")
    with open(mpath + ".tmp", "w", encoding="utf-8") as f:
        json.dump(man, f, ensure_ascii=False, indent=1)
    os.replace(mpath + ".tmp", mpath)
    if not accept:
        log(f"{what} rejected: {why_not}; the variant was not added (use --force to keep it anyway); its figures "
            f"are in {mpath} under quantization.{stage}.{variant}")
        return 1
    log(f"{what} variant {'registered' if passed else 'FORCED in although it failed its gate'} in {mpath}; use "
        f"`gsv ... {flag} {variant}`; preferred per stage now {q['preferred']}")
    return 0


# SoVITS decoder: int8 convolutions (static QDQ quantisation, per-channel int8 weights, uint8 activations whose
# ranges are calibrated on the bundle's own graphs). The audio error against fp32 is measured as SNR on inputs not
# used for calibration and stored; the variant is refused below this.
VOCODER_MIN_SNR_DB = 30.0


def _decoder_inputs(man: dict, ge: np.ndarray, seed: int, tokens: int, phones: int, noise_scale: float) -> dict:
    rng = np.random.default_rng(seed)
    s = man["sovits"]
    return {
        "codes": rng.integers(0, int(s["codebook_size"]), size=(1, 1, tokens)).astype(np.int64),
        "text": rng.integers(1, int(man["symbols"]["count"]), size=(1, phones)).astype(np.int64),  # v1: 322
        "ge": ge.astype(np.float32),
        "noise_scale": np.array([noise_scale], dtype=np.float32),
        "noise": rng.standard_normal((1, int(s["inter_channels"]), 2 * tokens)).astype(np.float32),
    }


def _reference_ge(bundle: str, man: dict, ref: str) -> np.ndarray:
    """Speaker vector of a real recording through the bundle's ref_enc (calibration sees realistic conditioning)."""
    from .audio import read_wav, resample, spectrogram

    x, rate = read_wav(ref)
    w32 = resample(x, rate, int(man["sample_rate"]))
    spec = spectrogram(w32, int(man["filter_length"]), int(man["hop_length"]), int(man["win_length"]))
    sess = _session(os.path.join(bundle, man["graphs"]["ref_enc"]["file"]))
    feeds = {"spec": spec}
    if "sv" in man["graphs"]:  # v2Pro: the fused speaker vector needs the reference's speaker-verification embedding
        peak = float(np.abs(w32).max())
        w32n = (w32 / min(2.0, peak) if peak > 1 else w32).reshape(1, -1).astype(np.float32)
        (feeds["sv_emb"],) = _session(os.path.join(bundle, man["graphs"]["sv"]["file"])).run(["sv_emb"],
                                                                                           {"wav32k": w32n})
    (ge,) = sess.run(["ge"], feeds)
    return ge


def vocoder_snr(bundle: str, man: dict, fp32_file: str, int8_file: str, ge: np.ndarray) -> dict:
    """SNR of int8 audio against fp32 over inputs unseen by the calibration (3 lengths, noise 0 and 0.5)."""
    a = _session(os.path.join(bundle, fp32_file))
    b = _session(os.path.join(bundle, int8_file))
    sig = err = 0.0
    worst = float("inf")
    cases = [(1000, 13, 9, 0.0), (1001, 50, 20, 0.5), (1002, 120, 40, 0.5)]
    for seed, tokens, phones, ns in cases:
        f = _decoder_inputs(man, ge, seed, tokens, phones, ns)
        (ra,) = a.run(["audio"], f)
        (rb,) = b.run(["audio"], f)
        ra = ra.astype(np.float64)
        s, e = float(np.sum(ra ** 2)), float(np.sum((ra - rb) ** 2))
        sig, err = sig + s, err + e
        worst = min(worst, 10 * np.log10(s / max(e, 1e-30)))
    return {"snr_db": 10 * np.log10(sig / max(err, 1e-30)), "worst_case_snr_db": worst, "cases": len(cases)}


def quantize_vocoder(bundle: str, ref: str | None = None, force: bool = False, log=print) -> int:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    man = _load_manifest(bundle)
    if ref is None:
        demo = (man.get("demo") or {}).get("reference")
        ref = os.path.join(bundle, demo["file"]) if demo else os.path.join(os.path.dirname(__file__), "..", "onnx",
                                                                            "demo", "ref.wav")
    ge = _reference_ge(bundle, man, ref)
    src, dst = man["graphs"]["sovits_decode"]["file"], "sovits_decode.int8.onnx"
    calib = [_decoder_inputs(man, ge, seed, tokens, phones, 0.5) for seed, tokens, phones in
             ((0, 25, 12), (1, 40, 20), (2, 25, 30), (3, 60, 16))]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    log(f"quantizing {src} -> {dst} (int8 convolutions, calibrated on {len(calib)} decodes with the speaker vector "
        f"of {os.path.basename(ref)})")
    quantize_static(os.path.join(bundle, src), os.path.join(bundle, dst), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    q = vocoder_snr(bundle, man, src, dst, ge)
    log(f"  audio int8 vs fp32 over {q['cases']} unseen decodes: SNR {q['snr_db']:.1f} dB (worst case "
        f"{q['worst_case_snr_db']:.1f} dB; need >= {VOCODER_MIN_SNR_DB:.0f} dB)")
    a, b = _session(os.path.join(bundle, src)), _session(os.path.join(bundle, dst))
    f = _decoder_inputs(man, ge, 2000, 50, 20, 0.5)
    ms_a, ms_b = _time_pair(lambda: a.run(["audio"], f), lambda: b.run(["audio"], f), rounds=2)
    log(f"  2 s of audio: {ms_b:.1f} ms against fp32 {ms_a:.1f} ms (x{ms_a / ms_b:.2f})")
    return _register(bundle, man, [("sovits_decode", dst)], q["worst_case_snr_db"] >= VOCODER_MIN_SNR_DB, force,
                     "vocoder int8", "the audio moves too much", "--vocoder-precision",
                     {"method": "static QDQ int8 Conv (per-channel weights, calibrated uint8 activations)",
                      "snr_db": round(q["snr_db"], 2), "worst_case_snr_db": round(q["worst_case_snr_db"], 2),
                      "threshold_snr_db": VOCODER_MIN_SNR_DB, "ms_2s_audio": round(ms_b, 2),
                      "fp32_ms_2s_audio": round(ms_a, 2), "speedup_vs_fp32": round(ms_a / ms_b, 3)}, log)


def quantize_all(bundle: str, golden: str | None = None, ref: str | None = None, tokens: int = 600, log=print) -> dict:
    """Every variant `convert` builds: GPT int8 and int4, BERT int8, vocoder int8; each gated on its own. Returns
    {variant label: exit status} (0 registered, 1 refused)."""
    jobs = [(f"gpt {v}", lambda v=v: quantize(bundle, golden=golden, tokens=tokens, variant=v, log=log))
            for v in GPT_VARIANTS]
    jobs += [("bert int8", lambda: quantize_bert(bundle, golden=golden, log=log)),
             ("vocoder int8", lambda: quantize_vocoder(bundle, ref=ref, log=log))]
    out = {}
    for label, job in jobs:
        try:
            out[label] = job()
        except Exception as e:  # noqa: BLE001 - a variant is optional: the bundle stays valid without it
            log(f"{label}: building the variant failed ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                f"the bundle is complete without it")
            out[label] = 2
    return out
