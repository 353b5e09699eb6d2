"""Export the golden checkpoints with `python -m export convert` and prove the bundle with `verify`.

The bundles are written to onnx/golden, onnx/golden-v1, onnx/golden-v2pro and onnx/golden-v2proplus (git-ignored)
and reused by the Rust tests. The v2Pro set holds two SoVITS files (v2Pro, v2ProPlus) sharing its GPT and its
speaker-verification checkpoint (decompressed by the `sv_checkpoint` fixture); verify picks each model's arrays by
the bundle's model version."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from golden_sets import BUNDLES, golden_path, model_paths

REPO = Path(__file__).resolve().parents[2]


def run_export(*args):
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("name", list(BUNDLES))
def test_convert_and_verify(name, request):
    set_name, version = BUNDLES[name]
    g = golden_path(set_name)
    assert (g / "manifest.json").is_file(), f"golden folder missing: {g}"
    p = model_paths(g, version)
    out = REPO / "onnx" / name
    args = ["convert", "--gpt", str(p["gpt"]), "--sovits", str(p["sovits"]), "--hubert", str(p["hubert"]),
            "--bert", str(p["bert"]), "--out", str(out)]
    if version is not None:
        args += ["--sv", str(request.getfixturevalue("sv_checkpoint"))]
    r = run_export(*args)
    print(r.stdout[-3000:], r.stderr[-3000:])
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    if version is not None:
        assert man["model_version"] == version and man["symbols"]["version"] == "v2"
        assert man["sv"]["input"] == "wav32k" and man["sources"]["sv"]["sha256"] == p["sv_entry"]["sha256"]
        assert "sv" in man["graphs"]
    r = run_export("verify", "--bundle", str(out), "--golden", str(g))
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.endswith(" 0 failed") and not last.startswith("0 passed"), last
    if version is not None:  # the v2Pro stages were checked, not skipped
        for check in ("sv kaldi fbank", "sv embedding", "ref_enc ge (fused)", "decode ge512",
                      "decode audio (speed 1.25)", "decode audio (noise 0.5"):
            assert f"PASS {check}" in r.stdout, check
    # re-running reuses every graph
    r = run_export(*args)
    assert r.returncode == 0 and r.stdout.count("up to date, reused") == len(man["graphs"]), r.stdout
    if version is not None:
        _check_v2pro_variants(out, man, g, version, request.getfixturevalue("tmp_path"))


def _check_v2pro_variants(out: Path, man: dict, g: Path, version: str, tmp: Path):
    """convert builds and gates the precision variants for v2Pro bundles too (every one tried and recorded), and the
    vocoder's calibration and SNR gate condition on the fused speaker vector: `quantize._reference_ge` on the golden
    32 kHz reference (written as PCM32 at the model rate, so export.audio's resampler is the identity) gives upstream's
    `decode_ge` = PReLU(ref_enc(spec) + Linear(sv_emb)) within verify's feature tolerance."""
    import wave

    import numpy as np

    from export.quantize import _reference_ge

    q = man["quantization"]
    for stage, v in (("gpt", "int8"), ("gpt", "int4"), ("bert", "int8"), ("vocoder", "int8")):
        assert v in q.get(stage, {}), f"{version}: variant {stage} {v} was not tried"
    assert q["vocoder"]["int8"]["snr_db"] > 0
    gm = json.loads((g / "manifest.json").read_text())
    arr = lambda name: np.load(g / gm["arrays"][name]["file"])
    w32 = arr("wav32k").reshape(-1).astype(np.float64)
    assert np.abs(w32).max() <= 1.0
    path = tmp / "wav32k_pcm32.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(4)
        w.setframerate(int(man["sample_rate"]))
        w.writeframes(np.round(w32 * 2147483647.0).astype("<i4").tobytes())
    ge = _reference_ge(str(out), man, str(path)).reshape(-1)
    want = arr(f"{version}/decode_ge").reshape(-1)
    err = np.abs(ge - want)
    assert np.all(err <= 1e-4 + 1e-3 * np.abs(want)), f"{version}: fused ge max err {err.max():.3e}"
