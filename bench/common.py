"""Inputs, reference processing and timing shared by the Python systems of the benchmark.

The synthetic request is the one `gsv bench` builds (src/main.rs), so that every system does the same work:
40 target phones `1 + (37 i) mod (phoneme_vocab - 1)`, zero BERT features, 100 prompt codes `131 i mod codebook`,
decoder text = the first 20 phones, noise_scale 0.5, speed 1, sampling top_k 15 / top_p 1 / temperature 1 /
repetition penalty 1.35 / seed 0, EOS ignored so that exactly `tokens` tokens are generated.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from export.audio import read_wav, resample, spectrogram  # noqa: F401 (re-exported for the workers)

N_PHONES = 40
N_PROMPT = 100
NOISE_SCALE = 0.5


def load_manifest(bundle: str) -> dict:
    with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def synthetic_request(man: dict):
    pv = int(man["gpt"]["phoneme_vocab_size"])
    cb = int(man["sovits"]["codebook_size"])
    ids = np.array([[1 + (i * 37) % (pv - 1) for i in range(N_PHONES)]], dtype=np.int64)
    prompt = np.array([[(i * 131) % cb for i in range(N_PROMPT)]], dtype=np.int64)
    bert = np.zeros((1, int(man["bert"]["hidden"]), N_PHONES), dtype=np.float32)
    text = ids[:, : N_PHONES // 2].copy()
    return ids, bert, prompt, text


def reference_inputs(wav_path: str, man: dict):
    """ref wav -> (wav16k with GPT-SoVITS's 0.3 s of trailing zeros [1,S], spectrogram of the 32 kHz wav)."""
    x, rate = read_wav(wav_path)
    w16 = resample(x, rate, int(man.get("hubert_rate", 16000)))
    w16 = np.concatenate([w16, np.zeros(int(0.3 * man["sample_rate"]), dtype=np.float32)])[None]
    w32 = resample(x, rate, int(man["sample_rate"]))
    spec = spectrogram(w32, int(man["filter_length"]), int(man["hop_length"]), int(man["win_length"]))
    return w16, spec


def sv_signal(wav_path: str, man: dict) -> np.ndarray:
    """v2Pro/v2ProPlus: the speaker-verification graph's input [1, S]: the reference at the model rate, divided by
    min(2, peak) when the peak exceeds 1 (upstream's `_get_ref_spec` signal)."""
    x, rate = read_wav(wav_path)
    w32 = resample(x, rate, int(man["sample_rate"]))
    peak = float(np.abs(w32).max()) if w32.size else 0.0
    if peak > 1:
        w32 = w32 / min(2.0, peak)
    return np.asarray(w32, dtype=np.float32).reshape(1, -1)


def decode_noise(man: dict, t25: int, seed: int = 0) -> np.ndarray:
    c = int(man["sovits"]["inter_channels"])
    return np.random.default_rng(seed).standard_normal((1, c, 2 * t25)).astype(np.float32)


def peak_rss_mb() -> float:
    """VmHWM of this process (Linux); falls back to ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Clock:
    def __init__(self):
        self.t = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self.t) * 1e3


def result(name, tokens, prefill_ms, gpt_ms, vocoder_ms, audio_s, ref_ms, load_ms, **extra):
    """One system's row. ttfa: non-streaming, so the first sample exists once the GPT and the vocoder are done."""
    d = {
        "name": name,
        "tokens": tokens,
        "ttfa_ms": gpt_ms + vocoder_ms,
        "prefill_ms": prefill_ms,
        "ms_per_step": (gpt_ms - prefill_ms) / max(tokens - 1, 1),
        "tokens_per_s": tokens / (gpt_ms / 1e3),
        "vocoder_ms": vocoder_ms,
        "audio_s": audio_s,
        "vocoder_ms_per_audio_s": vocoder_ms / audio_s,
        "rtf": (gpt_ms + vocoder_ms) / 1e3 / audio_s,
        "ref_ms": ref_ms,
        "load_ms": load_ms,
        "peak_rss_mb": peak_rss_mb(),
    }
    d.update(extra)
    return d
