"""The v2ProPlus row of the benchmark (issue 12): `gsv bench` on a full-size v2ProPlus bundle, next to the v2 one.

The bundle (default `onnx/fullsize-v2proplus`) is built when missing, from random full-size checkpoints in the real
formats: `python -m export random-checkpoint --full-size --version v2proplus --out .cache/fullsize-v2proplus` (GPT,
SoVITS `06` file, HuBERT, BERT and a random ERes2NetV2 speaker-verification checkpoint), then `python -m export
convert ... --sv`. About 5 minutes and 1.2 GB of disk once; later runs reuse it.

The GPT, HuBERT and BERT have the v2 bundle's dimensions, so the row's difference to `gsv` is the v2ProPlus decoder
(the wider first upsampling) and, per voice, the speaker-verification model: `voice_ms` is the first request's
reference time (decode, HuBERT, spectrogram, `sv`, `ref_enc`; cached afterwards), reported beside v2's.
"""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "gsv-v2proplus"
DEFAULT_BUNDLE = os.path.join(ROOT, "onnx", "fullsize-v2proplus")


def ensure_bundle(bundle: str, log) -> tuple[bool, str]:
    """(True, bundle) when `bundle` has a manifest or was just built; (False, why) otherwise."""
    if os.path.isfile(os.path.join(bundle, "manifest.json")):
        return True, bundle
    ck = os.path.join(ROOT, ".cache", os.path.basename(os.path.normpath(bundle)))
    py = sys.executable
    steps = [
        [py, "-m", "export", "random-checkpoint", "--full-size", "--version", "v2proplus", "--out", ck],
        [py, "-m", "export", "convert", "--gpt", os.path.join(ck, "gpt.ckpt"), "--sovits", os.path.join(ck, "sovits.pth"),
         "--hubert", os.path.join(ck, "chinese-hubert-base"), "--bert", os.path.join(ck, "chinese-roberta-wwm-ext-large"),
         "--sv", os.path.join(ck, "sv", "pretrained_eres2netv2w24s4ep4.ckpt"), "--out", bundle],
    ]
    if os.path.isfile(os.path.join(ck, "sovits.pth")) and os.path.isfile(os.path.join(ck, "sv", "pretrained_eres2netv2w24s4ep4.ckpt")):
        steps = steps[1:]
    for cmd in steps:
        log(f"{NAME}: building the full-size v2ProPlus bundle: {' '.join(cmd[1:])}")
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            lines = [ln for ln in (p.stderr or p.stdout or "").strip().splitlines() if ln.strip()]
            return False, f"building {bundle} failed: {(lines[-1] if lines else f'exit code {p.returncode}')[:300]}"
    return True, bundle
