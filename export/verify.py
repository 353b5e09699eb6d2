"""`python -m export verify --bundle DIR --golden DIR`: run every graph of a bundle with onnxruntime on a golden
set's inputs and compare, stage by stage, with what GPT-SoVITS computed.

Everything is read from the golden folder's manifest.json (array files, shapes, inputs such as early_stop_num and
the repetition penalties), so other golden sets of the same layout (other dimensions, seeds, inputs) work unchanged.
A set holding several SoVITS models keeps each model's arrays under `<model version>/` (golden-v2pro:
`v2Pro/decode_audio`, `v2ProPlus/decode_audio`); the bundle's `model_version` picks them, arrays without a prefix
are shared.
One line per check: `PASS|FAIL <check> max_err=<e> tol=<t>`; the last line is `N passed, M failed`.
Tolerances (issue #2): ids and codes exact; features, logits, the SV fbank and embedding, ge atol 1e-4 + rtol 1e-3;
audio max abs 1e-3.

v2Pro/v2ProPlus bundles add: the `sv` graph on the golden 32 kHz signal (its 16 kHz signal, Kaldi fbank and
embedding against `sv_wav16k`, `sv_fbank`, `sv_emb`), `ref_enc` on the golden spectrogram + embedding (`ge_refenc`,
`sv_proj`, the fused `ge`), the same with the graph's own embedding, and the decoder's `ge512`.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from .infer import SamplingParams, generate
from .stepper import GptRunner

FEAT_ATOL, FEAT_RTOL, AUDIO_ATOL = 1e-4, 1e-3, 1e-3


class Golden:
    def __init__(self, folder: str, model_version: str | None = None):
        self.dir = folder
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            self.m = json.load(f)
        self.arrays = self.m.get("arrays", {})
        self.inputs = self.m.get("inputs", {})
        # per-model arrays live under "<version>/" when the set holds several SoVITS models
        self.versions = sorted({k.split("/", 1)[0] for k in self.arrays if "/" in k})
        self.prefix = model_version + "/" if model_version in self.versions else ""

    def _key(self, name):
        return self.prefix + name if self.prefix + name in self.arrays else name

    def has(self, name):
        k = self._key(name)
        return k in self.arrays and os.path.isfile(os.path.join(self.dir, self.arrays[k]["file"]))

    def __getitem__(self, name):
        return np.load(os.path.join(self.dir, self.arrays[self._key(name)]["file"]))


class Checks:
    def __init__(self, out=print):
        self.passed = 0
        self.failed = 0
        self.out = out

    def record(self, name, ok, detail):
        self.out(f"{'PASS' if ok else 'FAIL'} {name} {detail}")
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def close(self, name, got, want, atol=FEAT_ATOL, rtol=FEAT_RTOL):
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            if got.size == want.size:
                got = got.reshape(want.shape)
            else:
                return self.record(name, False, f"shape {got.shape} != golden {want.shape}")
        err = float(np.max(np.abs(got - want))) if want.size else 0.0
        excess = float(np.max(np.abs(got - want) - (atol + rtol * np.abs(want)))) if want.size else -1.0
        self.record(name, excess <= 0, f"max_err={err:.3e} tol=atol {atol:g} + rtol {rtol:g}")

    def exact(self, name, got, want):
        got = np.asarray(got).reshape(-1)
        want = np.asarray(want).reshape(-1)
        if got.shape != want.shape:
            return self.record(name, False, f"length {got.size} != golden {want.size}")
        diff = int(np.sum(got != want))
        self.record(name, diff == 0, f"mismatches={diff}/{want.size} tol=exact")


def _session(bundle, name):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(os.path.join(bundle, f"{name}.onnx"), so, providers=["CPUExecutionProvider"])


def post_process_int16(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """api2/webui: a segment whose peak exceeds 1 is divided by it; 0.3 s of zeros follow; x*32767 -> int16."""
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak > 1:
        a = a / peak
    a = np.concatenate([a, np.zeros(int(sample_rate * 0.3), dtype=np.float32)])
    return np.clip(a * 32767, -32768, 32767).astype(np.int16)


def decode_frames(t25: int, speed: float) -> int:
    t50 = 2 * t25
    return t50 if speed == 1 else int(t50 / speed) + 1


def verify(bundle: str, golden: str, out=print) -> Checks:
    with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as f:
        man = json.load(f)
    version = man["model_version"]
    g = Golden(golden, version)
    c = Checks(out)
    gv = g.m.get("version") or g.inputs.get("version")
    if gv and gv != version:
        c.record("model_version", False, f"bundle {version} != golden {gv}")
    if g.versions and not g.prefix:
        c.record("model_version", False, f"the golden set holds arrays for {', '.join(g.versions)}, not for the "
                 f"bundle's {version}")
    is_v2pro = "sv" in man.get("graphs", {})

    # --- HuBERT -> SSL -> prompt codes -------------------------------------------------------------
    if g.has("wav16k_padded") and g.has("ssl_content"):
        s = _session(bundle, "hubert")
        (ssl,) = s.run(["ssl"], {"wav16k": g["wav16k_padded"].reshape(1, -1).astype(np.float32)})
        c.close("ssl (hubert)", ssl, g["ssl_content"])
    if g.has("ssl_content"):
        s = _session(bundle, "vq_encode")
        codes, proj = s.run(["codes", "ssl_proj"], {"ssl": g["ssl_content"].astype(np.float32)})
        if g.has("ssl_proj_out"):
            c.close("ssl_proj (vq_encode)", proj, g["ssl_proj_out"])
        if g.has("prompt_semantic"):
            c.exact("prompt codes (vq_encode)", codes, g["prompt_semantic"])

    # --- BERT --------------------------------------------------------------------------------------
    if g.has("prompt_bert_input_ids") and g.has("prompt_bert_hidden_state_m3"):
        s = _session(bundle, "bert")
        ids = g["prompt_bert_input_ids"].reshape(1, -1).astype(np.int64)
        (hid,) = s.run(["hidden"], {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                    "token_type_ids": np.zeros_like(ids)})
        want = g["prompt_bert_hidden_state_m3"]
        c.close("bert hidden_states[-3]", hid.reshape(want.shape), want)
        if g.has("prompt_word2ph") and g.has("prompt_bert_features"):
            w2p = g["prompt_word2ph"].reshape(-1)
            rows = hid.reshape(-1, hid.shape[-1])[1:-1]
            feats = np.repeat(rows, w2p, axis=0).T
            c.close("bert phone features (word2ph)", feats, g["prompt_bert_features"])

    # --- GPT ---------------------------------------------------------------------------------------
    if g.has("gpt_all_phoneme_ids"):
        pre = _session(bundle, "gpt_prefill")
        stp = _session(bundle, "gpt_step")
        L = man["gpt"]["n_layer"]
        eos = man["gpt"]["eos"]
        ids = g["gpt_all_phoneme_ids"].reshape(1, -1).astype(np.int64)
        bert = g["gpt_bert"].reshape(1, man["bert"]["hidden"], -1).astype(np.float32)
        prompt = g["gpt_prompt_semantic"].reshape(1, -1).astype(np.int64)
        def runner():
            return GptRunner(pre, stp, man, capacity=ids.shape[1] + prompt.shape[1] + 1501)

        if g.has("gpt_first_step_logits"):
            first = runner().prefill(ids, bert, prompt)
            c.close("gpt first-step logits", first, g["gpt_first_step_logits"])
        inp = g.inputs
        rps = inp.get("repetition_penalty", [1.35, 1.0])
        rps = rps if isinstance(rps, list) else [rps]
        for rp in rps:
            tag = "rp" + f"{rp:.2f}".replace(".", "").rstrip("0")
            if not g.has(f"gpt_{tag}_y_full"):
                tag = "rp" + str(rp).replace(".", "")
            if not g.has(f"gpt_{tag}_y_full"):
                c.record(f"gpt tokens rp={rp}", False, f"golden has no gpt_{tag}_y_full")
                continue
            params = SamplingParams(top_k=int(inp.get("top_k", 1)), top_p=float(inp.get("top_p", 1)),
                                    temperature=float(inp.get("temperature", 1)), repetition_penalty=float(rp),
                                    early_stop_num=int(inp.get("early_stop_num", -1)))
            r = runner()
            res = generate(r.prefill_fn, r.step_fn, ids, bert, prompt, params, eos)
            y_full = g[f"gpt_{tag}_y_full"].reshape(-1)
            c.exact(f"gpt tokens rp={rp} (greedy, {res.stopped_by})", res.tokens, y_full[prompt.shape[1]:])
            if g.has(f"gpt_{tag}_idx"):
                want_idx = int(g[f"gpt_{tag}_idx"].reshape(-1)[0])
                c.record(f"gpt stop step rp={rp}", res.idx == want_idx, f"idx={res.idx} golden={want_idx}")
            if g.has(f"gpt_{tag}_step_logits"):
                want = g[f"gpt_{tag}_step_logits"]
                got = np.stack(res.step_logits)
                if got.shape[0] != want.shape[0]:
                    c.record(f"gpt step logits rp={rp}", False, f"steps {got.shape[0]} != golden {want.shape[0]}")
                else:
                    c.close(f"gpt step logits rp={rp} ({got.shape[0]} steps)", got, want)

    # --- v2Pro: speaker verification (32 kHz signal -> 16 kHz -> Kaldi fbank -> ERes2NetV2) ----------------
    own_emb = None
    if is_v2pro:
        if not (g.has("wav32k") and g.has("sv_emb")):
            c.record("sv embedding (sv)", False, "the bundle is v2Pro but the golden set has no wav32k/sv_emb")
        else:
            s = _session(bundle, "sv")
            own_emb, w16, fb = s.run(["sv_emb", "wav16k", "fbank"],
                                     {"wav32k": g["wav32k"].reshape(1, -1).astype(np.float32)})
            if g.has("sv_wav16k"):
                c.close("sv 16 kHz signal (sv, torchaudio resample)", w16, g["sv_wav16k"])
            if g.has("sv_fbank"):
                c.close("sv kaldi fbank (sv)", fb, g["sv_fbank"])
            c.close("sv embedding (sv)", own_emb, g["sv_emb"])

    # --- SoVITS: ref_enc and decode ------------------------------------------------------------------
    ge = None
    if g.has("refer_spec") and not is_v2pro:
        s = _session(bundle, "ref_enc")
        (ge,) = s.run(["ge"], {"spec": g["refer_spec"].astype(np.float32)})
        if g.has("decode_ge"):
            c.close("ref_enc ge", ge, g["decode_ge"])
    if g.has("refer_spec") and is_v2pro and g.has("sv_emb"):
        s = _session(bundle, "ref_enc")
        spec = g["refer_spec"].astype(np.float32)
        names = ["ge", "ge_refenc", "sv_proj"]
        o = dict(zip(names, s.run(names, {"spec": spec, "sv_emb": g["sv_emb"].reshape(1, -1).astype(np.float32)})))
        ge = o["ge"]
        for n, gname in (("ge_refenc", "decode_ge_refenc"), ("sv_proj", "decode_sv_proj"), ("ge", "decode_ge")):
            if g.has(gname):
                c.close(f"ref_enc {n}{' (fused)' if n == 'ge' else ''}", o[n], g[gname])
            elif n == "ge":
                c.record("ref_enc ge (fused)", False, f"golden set has no decode_ge for {version}")
        if own_emb is not None and g.has("decode_ge"):
            (ge_own,) = s.run(["ge"], {"spec": spec, "sv_emb": own_emb})
            c.close("ref_enc ge (fused, sv graph's own embedding)", ge_own, g["decode_ge"])
    if ge is not None and g.has("decode_codes") and g.has("decode_text"):
        s = _session(bundle, "sovits_decode")
        codes = g["decode_codes"].reshape(1, 1, -1).astype(np.int64)
        text = g["decode_text"].reshape(1, -1).astype(np.int64)
        C = man["sovits"]["inter_channels"]
        names = ["audio", "z", "m_p", "logs_p", "enc_p_x", "quantized"] + (["ge512"] if is_v2pro else [])

        def dec(noise_scale, noise):
            o = s.run(names, {"codes": codes, "text": text, "ge": ge.astype(np.float32),
                              "noise_scale": np.array([noise_scale], dtype=np.float32), "noise": noise})
            return dict(zip(names, o))

        t25 = codes.shape[-1]
        o = dec(0.0, np.zeros((1, C, decode_frames(t25, 1.0)), dtype=np.float32))
        for n, gname in (("ge512", "decode_ge512"), ("quantized", "decode_quantized"), ("enc_p_x", "decode_enc_p_x"),
                         ("m_p", "decode_m_p"), ("logs_p", "decode_logs_p"), ("z", "decode_z")):
            if n not in o:
                continue
            if g.has(gname):
                c.close(f"decode {n}", o[n], g[gname])
        if g.has("decode_audio"):
            c.close("decode audio (noise 0)", o["audio"], g["decode_audio"], atol=AUDIO_ATOL, rtol=0)
            if g.has("webui_output_int16"):
                got = post_process_int16(o["audio"], man["sample_rate"]).astype(np.int32)
                want = g["webui_output_int16"].reshape(-1).astype(np.int32)
                if got.shape != want.shape:
                    c.record("final int16 output", False, f"length {got.size} != golden {want.size}")
                else:
                    d = int(np.max(np.abs(got - want)))
                    c.record("final int16 output", d <= 2, f"max_err={d} LSB tol=2 LSB")
        if g.has("decode_audio_noise0p5") and g.has("decode_noise"):
            noise = g["decode_noise"].astype(np.float32)
            o5 = dec(0.5, noise.reshape(1, C, -1))
            c.close("decode audio (noise 0.5, injected)", o5["audio"], g["decode_audio_noise0p5"],
                    atol=AUDIO_ATOL, rtol=0)
        if g.has("decode_audio_speed1p25"):
            spd = 1.25
            o125 = dec(0.0, np.zeros((1, C, decode_frames(t25, spd)), dtype=np.float32))
            c.close("decode audio (speed 1.25)", o125["audio"], g["decode_audio_speed1p25"], atol=AUDIO_ATOL, rtol=0)
    out(f"{c.passed} passed, {c.failed} failed")
    return c


def main(args) -> int:
    c = verify(args.bundle, args.golden)
    return 0 if c.failed == 0 and c.passed > 0 else 1
