"""`python -m export demo --out onnx/demo`: the small demo bundle committed with the repository.

Random weights in the real checkpoint formats, with every dimension shrunk (also the ones upstream hard-codes:
SSL 32 instead of 768, BERT 32 instead of 1024, MRTE/gin 32 instead of 512), exported through the same `convert`
path with float16 weights, plus a synthetic 4 s reference recording `ref.wav` and its transcript in the manifest.
It makes noise, not speech: it exists so that `gsv` runs right after a clone, without torch or real models.
Deterministic: the same seed and the same pinned torch/onnx versions give the same files.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import wave

import numpy as np

from .convert import convert
from .random_ckpt import demo_dims, write_random_checkpoints

DEMO_REF_TEXT = "今天天气很好，我们去公园散步。"
DEMO_REF_LANG = "zh"


def synth_reference(path: str, seed: int, sr: int = 16000, seconds: float = 4.0):
    """A voice-like test signal: a vibrato glottal-ish pulse train through moving formants, in syllable bursts."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    f0 = 180 + 25 * np.sin(2 * math.pi * 0.7 * t) + 8 * np.sin(2 * math.pi * 5.5 * t)
    phase = 2 * math.pi * np.cumsum(f0) / sr
    src = sum((0.8 ** k) * np.sin(k * phase) for k in range(1, 16))
    env = np.clip(np.sin(2 * math.pi * 3.2 * t) * 1.4, 0, 1) ** 0.6
    env *= np.minimum(1, np.minimum(t / 0.05, (seconds - t) / 0.05))
    x = src * env + 0.01 * rng.standard_normal(n)
    x = 0.5 * x / np.max(np.abs(x))
    pcm = (x * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def make_demo(out: str = "onnx/demo", seed: int = 20261125, log=print):
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_random_checkpoints(os.path.join(tmp, "ckpt"), seed=seed, dims=demo_dims(), log=log)
        convert(paths["gpt"], paths["sovits"], paths["hubert"], paths["bert"], out, fp16=True, log=log, name="demo")
    synth_reference(os.path.join(out, "ref.wav"), seed)
    mpath = os.path.join(out, "manifest.json")
    with open(mpath, encoding="utf-8") as f:
        man = json.load(f)
    man["demo"] = {
        "note": "random weights: makes noise, not speech; see README 'Exporting your own models'",
        "seed": seed,
        "reference": {"file": "ref.wav", "text": DEMO_REF_TEXT, "language": DEMO_REF_LANG},
    }
    for src in man["sources"].values():  # temp paths are not meaningful; keep names and hashes
        src["file"] = os.path.basename(src["file"])
        src.pop("path", None)
    with open(mpath, "w", encoding="utf-8") as f:
        json.dump(man, f, ensure_ascii=False, indent=1)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    log(f"demo bundle: {out} ({total / 1e6:.2f} MB)")
