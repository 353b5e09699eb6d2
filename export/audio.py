"""Plain numpy audio helpers for export-time tools (calibration inputs) and the benchmark: WAV reading, a linear
resampler, and GPT-SoVITS's spectrogram.

In:  WAV files (PCM16/PCM32), float32 samples. Out: float32 mono samples; spectrogram [1, n_fft/2+1, F].
Not bit-exact with librosa/torchaudio resampling (gsv's runtime is; see src/reference): good for shapes, timing
and calibration data.
"""
from __future__ import annotations

import wave

import numpy as np


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
