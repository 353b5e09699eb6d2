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
import wave

import numpy as np

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


def read_wav(path: str):
    """PCM16/PCM32 mono or multi-channel WAV -> (float32 mono in [-1, 1], rate)."""
    with wave.open(path, "rb") as w:
        rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    dtype = {2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise ValueError(f"{path}: {8 * width}-bit WAV not supported")
    x = np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    return x.reshape(-1, ch).mean(axis=1), rate


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear-interpolation resampler (not librosa/torchaudio bit-exact; the benchmark only needs the shapes and
    a comparable amount of work)."""
    if src == dst:
        return x.astype(np.float32)
    n = int(round(len(x) * dst / src))
    t = np.arange(n, dtype=np.float64) * (src / dst)
    return np.interp(t, np.arange(len(x)), x).astype(np.float32)


def spectrogram(wav32k: np.ndarray, n_fft=2048, hop=640, win=2048) -> np.ndarray:
    """GPT-SoVITS `spectrogram_torch`: reflect pad (n_fft-hop)/2, hann window, center=False, |STFT| with +1e-6.
    -> [1, n_fft/2+1, F] float32."""
    pad = (n_fft - hop) // 2
    y = np.pad(wav32k.astype(np.float32), (pad, pad), mode="reflect")
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)  # periodic hann
    frames = 1 + (len(y) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.fft.rfft(y[idx] * window, n=n_fft, axis=1)
    mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-6).astype(np.float32)
    return mag.T[None]


def reference_inputs(wav_path: str, man: dict):
    """ref wav -> (wav16k with GPT-SoVITS's 0.3 s of trailing zeros [1,S], spectrogram of the 32 kHz wav)."""
    x, rate = read_wav(wav_path)
    w16 = resample(x, rate, int(man.get("hubert_rate", 16000)))
    w16 = np.concatenate([w16, np.zeros(int(0.3 * man["sample_rate"]), dtype=np.float32)])[None]
    w32 = resample(x, rate, int(man["sample_rate"]))
    spec = spectrogram(w32, int(man["filter_length"]), int(man["hop_length"]), int(man["win_length"]))
    return w16, spec


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
