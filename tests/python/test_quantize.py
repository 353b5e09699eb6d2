"""The int8 GPT gate: on the golden set's tiny random GPT, int8 changes the greedy tokens, so `quantize` must refuse
the variant; with --force it is registered and `gsv` runs with --gpt-precision int8."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quantize_gate_and_variant(tmp_path, golden_dir, golden_bundle):
    src = golden_bundle
    b = tmp_path / "b"
    shutil.copytree(src, b)
    run = lambda *a: subprocess.run([sys.executable, "-m", "export", "quantize", "--bundle", str(b), *a],
                                    cwd=REPO, capture_output=True, text=True)
    r = run("--golden", str(golden_dir), "--tokens", "100")
    assert r.returncode == 1 and "rejected" in r.stdout, r.stdout + r.stderr
    assert not (b / "gpt_step.int8.onnx").exists()
    assert "variants" not in json.loads((b / "manifest.json").read_text())["graphs"]["gpt_step"]
    r = run("--tokens", "20", "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    man = json.loads((b / "manifest.json").read_text())
    v = man["graphs"]["gpt_step"]["variants"]["int8"]
    assert (b / v["file"]).is_file() and 0.0 <= v["agreement"] <= 1.0
    gsv = REPO / "target" / "debug" / "gsv"
    if gsv.exists():
        p = subprocess.run([str(gsv), "bench", "--bundle", str(b), "--tokens", "5", "--gpt-precision", "int8", "--json"],
                           cwd=REPO, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        p = subprocess.run([str(gsv), "bench", "--bundle", str(src), "--tokens", "5", "--gpt-precision", "int8"],
                           cwd=REPO, capture_output=True, text=True)
        assert p.returncode != 0 and "variants.int8" in p.stderr, p.stderr


def quantize_or_force(b, flag, graph, *extra):
    """`quantize --bundle b <flag> [extra]`: when its check accepts, returns (run, the registered variant); when it
    refuses, the refusal must leave no file and no manifest entry, and --force must then register it: (run, None)."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "export", "quantize", "--bundle", str(b), flag, *a],
                                    cwd=REPO, capture_output=True, text=True)
    r = run(*extra)
    man = json.loads((b / "manifest.json").read_text())
    if r.returncode == 0:
        return r, man["graphs"][graph]["variants"]["int8"]
    assert r.returncode == 1 and "rejected" in r.stdout, r.stdout + r.stderr
    assert "variants" not in man["graphs"][graph] and not (b / f"{graph}.int8.onnx").exists()
    forced = run("--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    return r, None


def test_quantize_bert_variant(tmp_path, golden_dir, golden_bundle):
    """int8 BERT: its error against fp32 is measured and stored; the variant is registered only within the bound,
    and gsv loads it with --bert-precision int8 (and refuses the flag on a bundle without it)."""
    b = tmp_path / "b"
    shutil.copytree(golden_bundle, b)
    r, v = quantize_or_force(b, "--bert", "bert", "--golden", str(golden_dir))
    if v is not None:
        assert (b / v["file"]).is_file() and 0.0 <= v["rel_l2_error"] <= 0.05, v
        assert "relative L2" in r.stdout
    gsv = REPO / "target" / "debug" / "gsv"
    if gsv.exists():
        p = subprocess.run([str(gsv), "synth", "--bundle", str(b), "--ref", str(b.parent.parent / "x.wav"),
                            "--text", "x", "--out", str(tmp_path / "o.wav"), "--bert-precision", "int9"],
                           cwd=REPO, capture_output=True, text=True)
        assert p.returncode != 0 and "int9" in p.stderr, p.stderr
        p = subprocess.run([str(gsv), "bench", "--bundle", str(b), "--tokens", "5", "--bert-precision", "int8",
                            "--text", "今天天气很好。"], cwd=REPO, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert "text request" in p.stdout
        p = subprocess.run([str(gsv), "bench", "--bundle", str(golden_bundle), "--tokens", "5", "--bert-precision",
                            "int8"], cwd=REPO, capture_output=True, text=True)
        assert p.returncode != 0 and "variants.int8" in p.stderr, p.stderr


def test_quantize_vocoder_variant(tmp_path, golden_bundle):
    """int8 SoVITS decoder: calibrated on the bundle's own graphs, audio SNR against fp32 on unseen decodes measured
    and stored, registered only at >= 30 dB; gsv synthesises with it."""
    b = tmp_path / "b"
    shutil.copytree(golden_bundle, b)
    r, v = quantize_or_force(b, "--vocoder", "sovits_decode")
    assert "SNR" in r.stdout, r.stdout + r.stderr
    if v is not None:
        assert (b / v["file"]).is_file() and v["worst_case_snr_db"] >= 30.0 and v["snr_db"] >= v["worst_case_snr_db"]
    gsv = REPO / "target" / "debug" / "gsv"
    if gsv.exists():
        p = subprocess.run([str(gsv), "bench", "--bundle", str(b), "--tokens", "30", "--vocoder-precision", "int8",
                            "--json"], cwd=REPO, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        j = json.loads(p.stdout.strip().splitlines()[-1])
        assert j["audio_s"] > 0 and j["vocoder_ms"] > 0
