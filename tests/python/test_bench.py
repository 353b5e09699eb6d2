"""scripts/bench in a tiny mode on the golden bundle: JSON shape only, no timing assertions."""
import json
import os
import subprocess
import sys

import pytest

FIELDS = ["ttfa_ms", "prefill_ms", "tokens_per_s", "vocoder_ms_per_audio_s", "rtf", "peak_rss_mb"]


def test_bench_json_shape(repo_root, golden_dir, golden_bundle):
    bundle = golden_bundle
    env = dict(os.environ, PYTHONPATH=str(repo_root), GSV_GOLDEN_DIR=str(golden_dir))
    cmd = [sys.executable, "-m", "bench", "--bundle", str(bundle), "--tokens", "4", "--threads", "1", "--json",
           "--systems", "gsv,pytorch,genie-tts,onnxruntime-python", "--bandwidth-mb", "16",
           "--checkpoints", str(golden_dir / "models")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo_root, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads(p.stdout)  # exactly one JSON object on stdout
    assert {"machine", "bandwidth_gbps", "systems"} <= set(rep)
    assert rep["machine"]["threads"] == 1 and rep["machine"]["cores"] >= 1 and "cpu_model" in rep["machine"]
    assert rep["bandwidth_gbps"] > 0
    by = {s["name"]: s for s in rep["systems"]}
    assert list(by) == ["gsv", "pytorch", "genie-tts", "onnxruntime-python"]
    # the golden bundle is tiny: Genie's fixed-size templates cannot take it
    assert "skipped" in by["genie-tts"] and by["genie-tts"]["skipped"]
    for name in ("pytorch", "onnxruntime-python"):
        s = by[name]
        assert "skipped" not in s, s
        for f in FIELDS:
            assert isinstance(s[f], (int, float)) and s[f] > 0, (name, f, s[f])
        assert s["tokens"] == 4
        assert abs(s["audio_s"] - 4 * 0.04) < 1e-9  # 1280 samples at 32 kHz per token
    g = by["gsv"]
    if "skipped" not in g:
        for f in FIELDS:
            assert isinstance(g[f], (int, float)) and g[f] > 0, (f, g[f])
        assert by["pytorch"]["rtf_vs_gsv"] > 0
