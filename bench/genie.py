"""Genie-TTS (PyPI `genie-tts`) as a benchmark system.

Genie's converter does not trace the model: it copies the checkpoint's weights (rounded to fp16, widened back to
fp32) into template ONNX graphs shipped in the wheel, built for the production v2 sizes (GPT 24 layers x 512). So it
can only convert a full-size v2 checkpoint. Its runtime also needs "GenieData" (HuBERT, RoBERTa, G2P models) from
Hugging Face, which is not reachable offline; the benchmark therefore runs Genie's converted graphs (t2s encoder,
first-stage decoder, stage decoder, vits) with Genie's own loop order and feeds them the SSL features of this
bundle's hubert.onnx (reference processing is not timed in ttfa anyway) and the same synthetic request.

Nothing is installed into .venv: the wheel is fetched with `pip download --no-deps` into .cache/genie-venv/ and
unpacked there; conversion runs with the export environment's torch/onnx, importing only genie_tts.Converter (the
package __init__ would import Genie's G2P stack and ask on stdin to download GenieData). Its graphs run on the
export environment's onnxruntime, not the 1.22.1 Genie pins.
Differences kept as Genie does them: sampling is inside Genie's graphs (top-k and the stop test), the vocoder graph
recomputes the reference spectrogram and speaker vector on every call, the K/V cache is returned whole by each step.
A generated EOS id is clamped to 1023 before the vocoder (EOS is ignored to force the token count).
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.join(ROOT, ".cache", "genie-venv")
TEMPLATE = {"n_layer": 24, "hidden_dim": 512, "model_version": "v2"}


def _site(log) -> str:
    site = os.path.join(HOME, "site")
    if os.path.isdir(os.path.join(site, "genie_tts", "Converter")):
        return site
    wheels = glob.glob(os.path.join(HOME, "wheel", "genie_tts-*.whl"))
    if not wheels:
        log("genie-tts: pip download --no-deps genie-tts")
        p = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "genie-tts", "-d",
                            os.path.join(HOME, "wheel")], capture_output=True, text=True)
        wheels = glob.glob(os.path.join(HOME, "wheel", "genie_tts-*.whl"))
        if p.returncode != 0 or not wheels:
            tail = (p.stderr or p.stdout).strip().splitlines()
            raise RuntimeError("pip download genie-tts failed: " + (tail[-1] if tail else "no wheel"))
    with zipfile.ZipFile(sorted(wheels)[-1]) as z:
        z.extractall(site)
    return site


def prepare(a, man, log):
    """-> (True, folder of converted graphs) or (False, one-line reason)."""
    got = {"n_layer": man["gpt"]["n_layer"], "hidden_dim": man["gpt"]["hidden_dim"],
           "model_version": man["model_version"]}
    if got != TEMPLATE:
        return False, (f"Genie-TTS's converter only relinks weights into its fixed v2 template graphs "
                       f"(GPT 24x512); this bundle is {got['model_version']} GPT {got['n_layer']}x{got['hidden_dim']}")
    try:
        from .worker import find_checkpoints

        paths = find_checkpoints(man, a.bundle, a.checkpoints)
        site = _site(log)
    except Exception as e:  # noqa: BLE001 - reported as the skip reason
        return False, str(e).splitlines()[0][:300]
    out = os.path.join(HOME, "models", os.path.basename(os.path.normpath(a.bundle)))
    stamp = os.path.join(out, "gsv-source.json")
    want = {k: man["sources"][k]["sha256"] for k in ("gpt", "sovits")}
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == want:
                return True, out
    log(f"genie-tts: converting {paths['gpt']} + {paths['sovits']} with Genie's converter -> {out}")
    env = dict(os.environ, PYTHONPATH=site + os.pathsep + ROOT)
    p = subprocess.run([sys.executable, "-m", "bench.genie", "convert", site, paths["gpt"], paths["sovits"], out],
                       capture_output=True, text=True, env=env, cwd=HOME if os.path.isdir(HOME) else ROOT)
    need = ["t2s_encoder_fp32.onnx", "t2s_first_stage_decoder_fp32.onnx", "t2s_stage_decoder_fp32.onnx",
            "vits_fp32.onnx"]
    if p.returncode != 0 or not all(os.path.isfile(os.path.join(out, n)) for n in need):
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if "rror" in ln] or (p.stderr or "?").splitlines()
        return False, "Genie-TTS converter failed offline: " + lines[-1].strip()[:250]
    with open(stamp, "w") as f:
        json.dump(want, f)
    return True, out


def _convert(site, ckpt, pth, out):
    import importlib.util

    # the package object without running genie_tts/__init__.py (G2P stack, stdin prompt); resources still resolve
    d = os.path.join(site, "genie_tts")
    spec = importlib.util.spec_from_file_location("genie_tts", os.path.join(d, "__init__.py"),
                                                  submodule_search_locations=[d])
    sys.modules["genie_tts"] = importlib.util.module_from_spec(spec)
    from genie_tts.Converter.v2.Converter import convert

    os.makedirs(out, exist_ok=True)
    convert(ckpt, pth, out)


def _fp16_session(onnx_path, fp16_bin, threads):
    """Genie's loading scheme: the graph's external fp32 initialisers are read from the fp16 bin (offsets and
    lengths are in fp32 bytes) and widened in memory."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(onnx_path, load_external_data=False)
    data = np.fromfile(fp16_bin, dtype=np.float16)
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        off, n = int(info.get("offset", 0)) // 4, int(info["length"]) // 4
        t.raw_data = data[off:off + n].astype(np.float32).tobytes()
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_genie(a, man):
    from .common import Clock, reference_inputs, result, synthetic_request
    from .worker import ort_session

    d = a.genie_dir
    c = Clock()
    enc = ort_session(os.path.join(d, "t2s_encoder_fp32.onnx"), a.threads)
    t2s_bin = os.path.join(d, "t2s_shared_fp16.bin")
    first = _fp16_session(os.path.join(d, "t2s_first_stage_decoder_fp32.onnx"), t2s_bin, a.threads)
    stage = _fp16_session(os.path.join(d, "t2s_stage_decoder_fp32.onnx"), t2s_bin, a.threads)
    vits = _fp16_session(os.path.join(d, "vits_fp32.onnx"), os.path.join(d, "vits_fp16.bin"), a.threads)
    hubert = ort_session(os.path.join(a.bundle, man["graphs"]["hubert"]["file"]), a.threads)
    load_ms = c.ms()

    from .common import N_PROMPT, read_wav, resample

    w16, _spec = reference_inputs(a.ref, man)
    c = Clock()
    (ssl,) = hubert.run(["ssl"], {"wav16k": w16})
    x32, rate = read_wav(a.ref)
    audio_32k = resample(x32, rate, 32000)[None]
    ref_ms = c.ms()
    ssl = np.ascontiguousarray(ssl[:, :, : 2 * N_PROMPT])  # 100 prompt codes, as the other systems

    ids, bert, _prompt, _text = synthetic_request(man)
    half = ids.shape[1] // 2
    ref_seq, text_seq = ids[:, :half], ids[:, half:]
    enc_names = [i.name for i in enc.get_inputs()]
    bert_t = bert[0].T  # [N, 1024]
    feeds = {"ref_seq": ref_seq, "text_seq": text_seq, "ref_bert": np.ascontiguousarray(bert_t[:half]),
             "text_bert": np.ascontiguousarray(bert_t[half:]), "ssl_content": ssl}
    feeds = {k: v for k, v in feeds.items() if k in enc_names}
    stage_names = [i.name for i in stage.get_inputs()]

    def gpt(n):
        t0 = time.perf_counter()
        x, prompts = enc.run(None, feeds)
        y, y_emb, *kv = first.run(None, {"x": x, "prompts": prompts})
        pre = (time.perf_counter() - t0) * 1e3
        for _ in range(n - 1):  # Genie's loop, without its stop test (forced count)
            y, y_emb, _stop, *kv = stage.run(None, dict(zip(stage_names, [y, y_emb, *kv])))
        return pre, y[0, -n:].astype(np.int64)

    def vocode(tokens):
        sem = np.minimum(tokens, 1023).reshape(1, 1, -1)
        return vits.run(None, {"text_seq": text_seq, "pred_semantic": sem, "ref_audio": audio_32k})[0]

    gpt(2)
    vocode(np.zeros(10, dtype=np.int64))
    c = Clock()
    prefill_ms, toks = gpt(a.tokens)
    gpt_ms = c.ms()
    c = Clock()
    audio = vocode(toks)
    voc_ms = c.ms()
    audio_s = audio.size / 32000.0
    return result("genie-tts", a.tokens, prefill_ms, gpt_ms, voc_ms, audio_s, ref_ms, load_ms,
                  note="Genie graphs (fp16-rounded weights) on this onnxruntime; sampling in-graph")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "convert":
        _convert(*sys.argv[2:])
    else:
        sys.exit("usage: python -m bench.genie convert SITE GPT_CKPT SOVITS_PTH OUT")
