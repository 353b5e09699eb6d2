"""scripts/bench in a tiny mode on the golden bundle: JSON shape only, no timing assertions."""
import json
import os
import subprocess
import sys

import pytest  # noqa: F401

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


def test_bench_gpt_steps_and_bounds(repo_root, golden_dir, golden_bundle):
    """The GPT step section times fp32 and every registered GPT variant, and the bound of each variant is computed
    from the bytes its manifest record says a step reads."""
    env = dict(os.environ, PYTHONPATH=str(repo_root), GSV_GOLDEN_DIR=str(golden_dir))
    cmd = [sys.executable, "-m", "bench", "--bundle", str(golden_bundle), "--tokens", "3", "--threads", "1", "--json",
           "--systems", "onnxruntime-python", "--bandwidth-mb", "16"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo_root, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads(p.stdout)
    man = json.loads((golden_bundle / "manifest.json").read_text())
    registered = set(man["graphs"]["gpt_step"].get("variants", {}))
    assert "int8" in registered
    assert set(rep["gpt_steps"]["ms_per_step"]) == {"fp32"} | registered
    assert all(v > 0 for v in rep["gpt_steps"]["ms_per_step"].values())
    b = rep["gpt_bound"]
    v = b["variants"]["int8"]
    assert v["bytes"] == man["quantization"]["gpt"]["int8"]["weight_bytes_per_token"] < b["bytes_fp32"]
    assert v["max_tokens_per_s"] == pytest.approx(rep["bandwidth_gbps"] * 1e9 / v["bytes"])


def test_source_checkpoints_found_where_convert_recorded_them(tmp_path, monkeypatch, golden_bundle):
    """A bundle converted from checkpoints anywhere is found with them (the PyTorch and Genie-TTS rows need them):
    convert records each source's path; the benchmark checks the sha256 and uses it."""
    from bench.worker import find_checkpoints

    monkeypatch.setenv("GSV_GOLDEN_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("GSV_GOLDEN_V1_DIR", str(tmp_path / "none"))
    man = json.loads((golden_bundle / "manifest.json").read_text())
    got = find_checkpoints(man, str(tmp_path / "elsewhere"), None)
    assert got == {k: man["sources"][k]["path"] for k in ("gpt", "sovits", "hubert", "bert")}
    for k in man["sources"]:
        man["sources"][k].pop("path")
    with pytest.raises(FileNotFoundError):
        find_checkpoints(man, str(tmp_path / "elsewhere"), None)


def test_bench_concurrency_json_shape(repo_root):
    """`scripts/bench --concurrency` on the demo bundle (scripts/test builds target/debug/gsv first): one row per
    level and engine, the issue's fields; both engines produce the same number of tokens for the same requests."""
    exe = next((p for p in (repo_root / "target" / "debug" / "gsv", repo_root / "target" / "release" / "gsv")
                if p.is_file()), None)
    assert exe is not None, "build gsv first (cargo build)"
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    cmd = [sys.executable, "-m", "bench", "--bundle", str(repo_root / "onnx" / "demo"), "--concurrency", "1,3",
           "--tokens", "12", "--threads", "1", "--json", "--gsv", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo_root, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads(p.stdout)
    rows = rep["concurrency"]
    assert sorted((r["streams"], r["engine"]) for r in rows) == [(1, "batched"), (1, "pool"), (3, "batched"), (3, "pool")]
    for r in rows:
        assert "skipped" not in r, r
        for f in ("aggregate_tokens_per_s", "rtf_p50", "ttfa_p50_ms", "ttfa_p99_ms"):
            assert isinstance(r[f], (int, float)) and r[f] > 0, (r, f)
        assert r["ttfa_p50_ms"] <= r["ttfa_p99_ms"]
    tokens = {(r["streams"], r["engine"]): r["tokens"] for r in rows}
    assert tokens[(3, "batched")] == tokens[(3, "pool")] and tokens[(1, "batched")] == tokens[(1, "pool")]


def test_memory_reports_rss_per_worker_count(repo_root):
    """bench.memory starts `gsv serve` per worker count on the demo bundle and reads each server's RSS after the
    warm-up, with the precision each stage ran (the demo bundle has no variants: fp32); a second worker adds memory,
    less than the whole one-worker server (runtime, binary and shared models are not per worker)."""
    gsv = repo_root / "target" / "debug" / "gsv"
    assert gsv.exists(), "target/debug/gsv is not built (scripts/test runs cargo build first)"
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    cmd = [sys.executable, "-m", "bench.memory", "--bundle", str(repo_root / "onnx" / "demo"), "--workers", "1,2",
           "--json", "--gsv", str(gsv)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo_root, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads(p.stdout)
    one, two = rep["rows"]
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["precision"] == {"gpt": "fp32", "bert": "fp32", "vocoder": "fp32"}
    for r in (one, two):
        assert 0 < r["rss_mib"] <= r["peak_rss_mib"] and r["anon_mib"] > 0
    assert two["peak_rss_mib"] > one["peak_rss_mib"] - 5
    assert two["per_extra_worker_mib"] < one["peak_rss_mib"]


def test_v2pro_sources_include_the_sv_checkpoint(tmp_path, monkeypatch, repo_root, golden_v2proplus_bundle):
    """v2Pro/v2ProPlus bundles: the PyTorch row also needs the speaker-verification checkpoint; it is found where
    convert recorded it (or in `sv/` of a checkpoint folder), and without it the sources are not found."""
    from bench.worker import find_checkpoints

    monkeypatch.setenv("GSV_GOLDEN_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("GSV_GOLDEN_V1_DIR", str(tmp_path / "none"))
    man = json.loads((golden_v2proplus_bundle / "manifest.json").read_text())
    assert man["sources"]["sv"]["path"], "convert records the sv checkpoint's path"
    sv = tmp_path / "moved" / man["sources"]["sv"]["file"]
    sv.parent.mkdir()
    sv.write_bytes(b"stand-in: only gpt and sovits are checked by sha256")
    man["sources"]["sv"]["path"] = str(sv)
    got = find_checkpoints(man, str(tmp_path / "elsewhere"), None)
    assert got == {k: man["sources"][k]["path"] for k in ("gpt", "sovits", "hubert", "bert", "sv")}
    # a checkpoint folder with the others beside and the sv file in sv/ (random-checkpoint's layout)
    d = tmp_path / "ckpt"
    (d / "sv").mkdir(parents=True)
    for k in ("gpt", "sovits", "hubert", "bert"):
        (d / man["sources"][k]["file"]).symlink_to(man["sources"][k]["path"])
        man["sources"][k].pop("path")
    (d / "sv" / sv.name).symlink_to(sv)
    assert find_checkpoints(man, str(tmp_path / "elsewhere"), str(d))["sv"] == str(d / "sv" / sv.name)
    sv.unlink()
    with pytest.raises(FileNotFoundError):
        find_checkpoints(man, str(tmp_path / "elsewhere"), str(d))


def test_bench_v2proplus_rows(repo_root, golden_v2proplus_bundle):
    """The v2ProPlus bench rows on the tiny golden v2ProPlus bundle: onnxruntime-python runs the bundle's sv graph and
    feeds its embedding to ref_enc (the reference time includes it), and the gsv-v2proplus row (when a gsv binary is
    found) reports the voice's encoding time as ref_ms."""
    bundle = golden_v2proplus_bundle
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    cmd = [sys.executable, "-m", "bench", "--bundle", str(bundle), "--tokens", "4", "--threads", "1", "--json",
           "--systems", "gsv-v2proplus,onnxruntime-python", "--v2proplus", str(bundle), "--bandwidth-mb", "16",
           "--no-steps", "--no-variants"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo_root, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    by = {s["name"]: s for s in json.loads(p.stdout)["systems"]}
    assert list(by) == ["gsv-v2proplus", "onnxruntime-python"]
    o = by["onnxruntime-python"]
    assert "skipped" not in o, o
    assert o["ref_ms"] > 0 and o["tokens"] == 4
    g = by["gsv-v2proplus"]
    if "skipped" not in g:
        assert g["bundle"] == str(bundle) and g["ref_ms"] > 0, g
        for f in FIELDS:
            assert isinstance(g[f], (int, float)) and g[f] > 0, (f, g[f])
