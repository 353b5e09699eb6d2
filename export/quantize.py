"""`python -m export quantize --bundle DIR`: an int8 variant of the GPT graphs, added to the bundle only if it keeps
the tokens.

In:  a bundle (fp32 GPT graphs), optionally a golden folder.
Out: `gpt_prefill.int8.onnx` and `gpt_step.int8.onnx` (onnxruntime dynamic quantization: MatMul weights int8, per
     tensor, activations quantized on the fly) registered in the manifest as `graphs.<name>.variants.int8`; the runtime
     uses them with `--gpt-precision int8`. The fp32 graphs stay; nothing changes unless the flag is given.

Gate (issue #6): with `--golden`, greedy decoding with the int8 graphs must give exactly the golden tokens for every
repetition penalty; and on the bundle itself, teacher-forced decoding of `--tokens` (default 500) tokens must pick the
same argmax as fp32 at >= 99% of the steps. Otherwise the variant is not registered (exit status 1), unless --force.

`--vocoder`: `sovits_decode.int8.onnx` (static QDQ quantisation of the convolutions, calibrated on decodes with
the speaker vector of `--ref`, default the demo reference); audio SNR against fp32 on unseen inputs is stored with
the variant (`--vocoder-precision int8`); refused below 30 dB in any case.

`--bert`: `bert.int8.onnx` likewise (`--bert-precision int8`); its relative L2 error on hidden_states[-3] is measured
(golden prompt ids when --golden is given, plus seeded random ids) and stored with the variant; refused above 5%.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .ckpt import sha256_file
from .stepper import GptRunner

GPT_GRAPHS = ("gpt_prefill", "gpt_step")


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def teacher_forced_agreement(bundle: str, man: dict, files: dict, tokens: int, seed: int = 0) -> float:
    """Run fp32 greedily for `tokens` steps (EOS ignored); feed the same tokens to int8; fraction of equal argmax."""
    rng = np.random.default_rng(seed)
    n, p = 40, 100
    ids = rng.integers(1, man["gpt"]["phoneme_vocab_size"] - 1, size=(1, n)).astype(np.int64)
    bert = np.zeros((1, man.get("bert", {}).get("hidden", 1024), n), dtype=np.float32)
    prompt = rng.integers(0, man["gpt"]["vocab_size"] - 1, size=(1, p)).astype(np.int64)
    runs = {}
    forced = None
    for variant in ("fp32", "int8"):
        pre = _session(os.path.join(bundle, files[variant]["gpt_prefill"]))
        stp = _session(os.path.join(bundle, files[variant]["gpt_step"]))
        r = GptRunner(pre, stp, man, capacity=n + p + tokens + 1)
        logits = r.prefill(ids, bert, prompt)
        picks = []
        for k in range(tokens):
            tok = int(np.argmax(logits[0, :-1]))
            picks.append(tok)
            fed = forced[k] if forced is not None else tok
            logits = r.step(fed, p + k)
        runs[variant] = picks
        if forced is None:
            forced = picks
    a, b = np.array(runs["fp32"]), np.array(runs["int8"])
    return float(np.mean(a == b))


def quantize(bundle: str, golden: str | None = None, tokens: int = 500, force: bool = False, log=print) -> int:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    mpath = os.path.join(bundle, "manifest.json")
    with open(mpath, encoding="utf-8") as f:
        man = json.load(f)
    files = {"fp32": {}, "int8": {}}
    for g in GPT_GRAPHS:
        src = man["graphs"][g]["file"]
        dst = f"{g}.int8.onnx"
        files["fp32"][g] = src
        files["int8"][g] = dst
        log(f"quantizing {src} -> {dst}")
        quantize_dynamic(os.path.join(bundle, src), os.path.join(bundle, dst), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])
    ok = True
    if golden:
        from .verify import verify

        lines = []
        # verify a temporary manifest view whose GPT graphs are the int8 files
        tmp_manifest = dict(man, graphs={**man["graphs"], **{g: dict(man["graphs"][g], file=files["int8"][g])
                                                              for g in GPT_GRAPHS}})
        tmpdir = os.path.join(bundle, ".int8-verify")
        os.makedirs(tmpdir, exist_ok=True)
        for name, entry in tmp_manifest["graphs"].items():
            link = os.path.join(tmpdir, f"{name}.onnx")
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.abspath(os.path.join(bundle, entry["file"])), link)
        with open(os.path.join(tmpdir, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(man, f)
        res = verify(tmpdir, golden, out=lines.append)
        for l in lines:
            if " gpt tokens" in l or " gpt stop" in l:
                log("  int8 " + l)
                ok &= l.startswith("PASS")
        for n in os.listdir(tmpdir):
            os.remove(os.path.join(tmpdir, n))
        os.rmdir(tmpdir)
    agree = teacher_forced_agreement(bundle, man, files, tokens)
    log(f"  teacher-forced argmax agreement int8 vs fp32 over {tokens} tokens: {agree * 100:.1f}% (need >= 99%)")
    ok &= agree >= 0.99
    return _register(bundle, man, [(g, files["int8"][g]) for g in GPT_GRAPHS], ok or force, "GPT", "tokens change",
                     "--gpt-precision", {"agreement": round(agree, 4), "tokens_checked": tokens}, log)


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


def quantize_bert(bundle: str, golden: str | None = None, force: bool = False, log=print) -> int:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    mpath = os.path.join(bundle, "manifest.json")
    with open(mpath, encoding="utf-8") as f:
        man = json.load(f)
    src, dst = man["graphs"]["bert"]["file"], "bert.int8.onnx"
    log(f"quantizing {src} -> {dst}")
    quantize_dynamic(os.path.join(bundle, src), os.path.join(bundle, dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])
    err = bert_error(bundle, man, src, dst, golden)
    log(f"  BERT features int8 vs fp32 over {err['inputs']} inputs: relative L2 {err['rel_l2']:.3e}, "
        f"max abs {err['max_abs']:.3e} (need relative L2 <= {BERT_MAX_REL_L2})")
    return _register(bundle, man, [("bert", dst)], err["rel_l2"] <= BERT_MAX_REL_L2 or force, "BERT",
                     "the features move too much", "--bert-precision",
                     {"rel_l2_error": round(err["rel_l2"], 6), "max_abs_error": round(err["max_abs"], 6)}, log)


def _register(bundle, man, pairs, accept, what, why_not, flag, facts, log) -> int:
    """Add each `(graph, file)` of `pairs` as `graphs.<graph>.variants.int8` (with the measured `facts`), or delete
    the files when not accepted."""
    if not accept:
        for _, dst in pairs:
            os.remove(os.path.join(bundle, dst))
        log(f"int8 {what} rejected: {why_not}; the variant was not added (use --force to keep it anyway)")
        return 1
    for graph, dst in pairs:
        man["graphs"][graph].setdefault("variants", {})["int8"] = {
            "file": dst, "sha256": sha256_file(os.path.join(bundle, dst)), **facts}
    mpath = os.path.join(bundle, "manifest.json")
    with open(mpath + ".tmp", "w", encoding="utf-8") as f:
        json.dump(man, f, ensure_ascii=False, indent=1)
    os.replace(mpath + ".tmp", mpath)
    log(f"int8 {what} variant registered in {mpath}; use `gsv ... {flag} int8`")
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
        "text": rng.integers(1, int(man["gpt"]["phoneme_vocab_size"]), size=(1, phones)).astype(np.int64),
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

    mpath = os.path.join(bundle, "manifest.json")
    with open(mpath, encoding="utf-8") as f:
        man = json.load(f)
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
    return _register(bundle, man, [("sovits_decode", dst)], q["worst_case_snr_db"] >= VOCODER_MIN_SNR_DB or force,
                     "vocoder", "the audio moves too much", "--vocoder-precision",
                     {"snr_db": round(q["snr_db"], 2), "worst_case_snr_db": round(q["worst_case_snr_db"], 2)}, log)
