"""Precision variants: the MatMulNBits packing matches ONNX Runtime's kernel, the GPT gate measures what sampling sees
(it passes a faithful int8 GPT and refuses a damaged one, or any one under tightened thresholds, leaving nothing
registered), and the BERT / vocoder variants keep their own error bounds."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from export import gate, nbits  # noqa: E402
from export.infer import SamplingParams  # noqa: E402


def _matmul_model(w, b):
    k, n = w.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", n])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("bits,block", [(8, 128), (8, 32), (4, 32), (4, 64)])
def test_matmul_nbits_layout_matches_onnxruntime(bits, block):
    """Our block quantiser's codes, scales and zero points, run by ONNX Runtime's MatMulNBits (int8 compute and fp32
    compute), give x @ dequantize(W) + b: the packing is the one the kernel reads. The quantisation error of every
    weight is at most half a step."""
    import onnxruntime as ort

    rng = np.random.default_rng(bits * 1000 + block)
    k, n = 256, 96
    w = rng.standard_normal((k, n)).astype(np.float32)
    w[:, 3] = 0.0  # an all-zero column: exact
    w[:, 4] = np.abs(w[:, 4])  # one-signed columns: 0 must stay representable
    b = rng.standard_normal(n).astype(np.float32)
    packed, scales, zp, _ = nbits.quantize_blocks(w, bits, block)
    deq = nbits.dequantize_blocks(packed, scales, zp, bits, k)
    step = np.repeat(scales.T, block, axis=0)  # [K, N]
    assert np.all(np.abs(w - deq) <= 0.5 * step * (1 + 1e-5) + 1e-7)
    assert np.all(deq[:, 3] == 0.0)
    x = rng.standard_normal((5, k)).astype(np.float32)
    want = x.astype(np.float64) @ deq.astype(np.float64) + b
    for level in (0, 4):
        q, facts = nbits.to_matmul_nbits(_matmul_model(w, b), bits, block, level)
        assert [nd.op_type for nd in q.graph.node] == ["MatMulNBits"] and facts["bias_folded"] == 1
        assert {t.name for t in q.graph.initializer} == {"w_q%d" % bits, "w_scales", "w_zp", "b"}
        so = ort.SessionOptions()
        so.log_severity_level = 3
        s = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
        (y,) = s.run(["y"], {"x": x})
        # level 4 also quantises x to int8 per block: its error is relative to |x| |w|, well under 2% here
        tol = 1e-4 if level == 0 else 0.02 * np.abs(x) @ np.abs(deq) + 1e-3
        assert np.all(np.abs(y - want) <= tol), (level, float(np.max(np.abs(y - want))))


def test_block_size_adapts_to_small_models():
    assert nbits.block_for(512, 128) == 128 and nbits.block_for(64, 128) == 64 and nbits.block_for(96, 128) == 32
    assert nbits.block_for(40, 128) == 0  # no power of two >= 16 divides 40: stays fp32
    assert nbits.quantized_bytes(512, 1024, 8, 128) == 1024 * 512 + 4 * 1024 * 4 + 1024 * 4
    assert nbits.quantized_bytes(512, 1024, 4, 32) == 1024 * 256 + 4 * 1024 * 16 + 1024 * 8


def test_gate_step_figures():
    """tv / kl / clear set changes / greedy agreement of one step, on hand-made logits."""
    s = SamplingParams(top_k=3, top_p=1.0, temperature=1.0, repetition_penalty=1.0)
    prev = np.array([], dtype=np.int64)
    eos = 7
    p = np.array([2.0, 1.0, 0.50, 0.49, -1.0, -2.0, -3.0, -9.0], dtype=np.float32)
    r, _ = gate.compare(p, p.copy(), prev, s, 20, eos)
    assert r["tv"] == 0 and r["tv_full"] == 0 and r["kl"] == 0 and r["same"] and not r["set_changed"]
    # a near-tie at the top-k boundary swaps (0.50 vs 0.49): the kept set changes, but fp32 does not decide it
    q = p.copy()
    q[2], q[3] = 0.49, 0.50
    r, _ = gate.compare(p, q, prev, s, 20, eos)
    assert r["set_changed"] and not r["clear_set_change"] and r["tv_full"] > 0.05 and r["tv"] < 0.01
    # a token fp32 ranks clearly inside the top-k is dropped: a clear change
    q = p.copy()
    q[1] = 0.0
    r, _ = gate.compare(p, q, prev, s, 20, eos)
    assert r["clear_set_change"] and r["tv"] > 0.1 and r["kl"] > 0
    # greedy: margin 1.0 is clear; the candidate flips the top-1
    q = p.copy()
    q[1] = 2.5
    r, _ = gate.compare(p, q, prev, s, 20, eos)
    assert r["margin"] == pytest.approx(1.0) and not r["same"]
    # EOS is masked for the first 11 steps, as the runtime does
    q = p.copy()
    q[eos] = 5.0
    r, _ = gate.compare(p, q, prev, s, 3, eos)
    assert r["tv"] == 0 and r["same"]
    m = gate.summarise([{k: np.array([v]) for k, v in r.items()}])
    assert gate.verdict(m)[0] and m["steps"] == 1


def _quantize(b, *args):
    return subprocess.run([sys.executable, "-m", "export", "quantize", "--bundle", str(b), *args],
                          cwd=REPO, capture_output=True, text=True)


def _man(b):
    return json.loads((b / "manifest.json").read_text())


def test_gpt_int8_gate_accepts_faithful_and_refuses_damaged(tmp_path, golden_dir, golden_bundle):
    b = tmp_path / "b"
    shutil.copytree(golden_bundle, b)
    # faithful: 8-bit MatMulNBits passes on the bundle and on the golden request, fp32 keeps the golden tokens
    r = _quantize(b, "--golden", str(golden_dir), "--tokens", "150")
    assert r.returncode == 0, r.stdout + r.stderr
    man = _man(b)
    rec = man["quantization"]["gpt"]["int8"]
    assert rec["passed"] and rec["bits"] == 8 and rec["method"] == "MatMulNBits"
    assert rec["gate"]["golden"]["fp32_greedy_exact"] is True
    th = rec["thresholds"]
    for where in ("bundle", "golden"):
        m = rec["gate"][where]
        assert m["steps"] >= 150 and m["mean_tv"] <= th["mean_tv"] and m["p99_tv"] <= th["p99_tv"], m
        assert m["clear_set_changes"] <= th["clear_set_changes"] and m["greedy_agreement"] >= 0.99, m
    assert rec["sampling"]["top_k"] == man["gpt"]["top_k"] and rec["sampling"]["repetition_penalty"] == 1.35
    assert rec["weight_bytes_per_token"] < rec["fp32_weight_bytes_per_token"]
    for g in ("gpt_prefill", "gpt_step"):
        v = man["graphs"][g]["variants"]["int8"]
        q = onnx.load(str(b / v["file"]))
        fp = onnx.load(str(b / man["graphs"][g]["file"]))
        assert sum(nd.op_type == "MatMulNBits" for nd in q.graph.node) > 0
        assert not any(nd.op_type == "MatMul" and nd.input[1] in {t.name for t in q.graph.initializer}
                       for nd in q.graph.node)
        assert [i.name for i in q.graph.input] == [i.name for i in fp.graph.input]
        assert [o.name for o in q.graph.output] == [o.name for o in fp.graph.output]
    # damaged (0.5% of the codes replaced at random): refused, nothing left registered, the figures recorded
    r = _quantize(b, "--tokens", "150", "--damage", "0.005")
    assert r.returncode == 1 and "rejected" in r.stdout, r.stdout + r.stderr
    man = _man(b)
    rec = man["quantization"]["gpt"]["int8"]
    assert rec["passed"] is False and not gate.verdict(rec["gate"]["bundle"], rec["thresholds"])[0]
    assert "int8" not in man["graphs"]["gpt_step"].get("variants", {})
    assert not (b / "gpt_step.int8.onnx").exists() and not (b / "gpt_prefill.int8.onnx").exists()
    assert man["quantization"]["preferred"]["gpt"] != "int8"


def test_gpt_gate_tightened_thresholds_refuse_and_force_registers(tmp_path, golden_bundle):
    b = tmp_path / "b"
    shutil.copytree(golden_bundle, b)
    r = _quantize(b, "--tokens", "60", "--threshold", "mean_tv=0.00001")
    assert r.returncode == 1 and "mean TV" in r.stdout and "rejected" in r.stdout, r.stdout + r.stderr
    assert "int8" not in _man(b)["graphs"]["gpt_step"].get("variants", {})
    r = _quantize(b, "--tokens", "60", "--threshold", "nonsense=1")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    r = _quantize(b, "--tokens", "60", "--variant", "int4", "--threshold", "mean_tv=0.00001", "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    man = _man(b)
    rec = man["quantization"]["gpt"]["int4"]
    assert rec["passed"] is False and rec["forced"] is True and rec["bits"] == 4
    assert man["graphs"]["gpt_step"]["variants"]["int4"]["passed"] is False
    assert man["quantization"]["preferred"]["gpt"] != "int4"  # forced variants are never preferred
    gsv = REPO / "target" / "debug" / "gsv"
    if gsv.exists() and "int8" in man["graphs"]["gpt_step"].get("variants", {}):
        p = subprocess.run([str(gsv), "bench", "--bundle", str(b), "--tokens", "5", "--gpt-precision", "int8",
                            "--json"], cwd=REPO, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr


def test_gsv_runs_the_int8_gpt(tmp_path, golden_bundle):
    """The MatMulNBits graphs keep the fp32 I/O contract: gsv loads them by name and generates."""
    gsv = REPO / "target" / "debug" / "gsv"
    man = _man(golden_bundle)
    assert "int8" in man["graphs"]["gpt_step"]["variants"], "convert registers the int8 GPT on the golden model"
    assert gsv.exists(), "target/debug/gsv is not built (scripts/test runs cargo build first)"
    p = subprocess.run([str(gsv), "bench", "--bundle", str(golden_bundle), "--tokens", "8", "--gpt-precision",
                        "int8", "--json"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout.strip().splitlines()[-1])
    assert j["tokens"] == 8


def quantize_or_force(b, flag, graph, *extra):
    """`quantize --bundle b <flag> [extra]`: when its check accepts, returns (run, the registered variant); when it
    refuses, the refusal must leave no file and no manifest entry, and --force must then register it: (run, None)."""
    r = _quantize(b, flag, *extra)
    man = _man(b)
    stage = {"bert": "bert", "sovits_decode": "vocoder"}[graph]
    assert man["quantization"][stage]["int8"]["passed"] is (r.returncode == 0)
    if r.returncode == 0:
        return r, man["graphs"][graph]["variants"]["int8"]
    assert r.returncode == 1 and "rejected" in r.stdout, r.stdout + r.stderr
    assert "int8" not in man["graphs"][graph].get("variants", {}) and not (b / f"{graph}.int8.onnx").exists()
    forced = _quantize(b, flag, "--force")
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
        bare = tmp_path / "bare"
        shutil.copytree(golden_bundle, bare)
        man = _man(bare)
        man["graphs"]["bert"].pop("variants", None)
        (bare / "manifest.json").write_text(json.dumps(man))
        p = subprocess.run([str(gsv), "bench", "--bundle", str(bare), "--tokens", "5", "--bert-precision", "int8"],
                           cwd=REPO, capture_output=True, text=True)
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


def test_convert_records_variants(golden_bundle):
    """convert (variants on by default) tried every variant and says which passed, with the measured error, and which
    one per stage is preferred."""
    man = _man(golden_bundle)
    q = man["quantization"]
    for stage, v in (("gpt", "int8"), ("gpt", "int4"), ("bert", "int8"), ("vocoder", "int8")):
        rec = q[stage][v]
        assert isinstance(rec["passed"], bool) and rec["speedup_vs_fp32"] > 0, (stage, v)
        if rec["passed"]:
            g = {"gpt": "gpt_step", "bert": "bert", "vocoder": "sovits_decode"}[stage]
            assert man["graphs"][g]["variants"][v]["file"]
    assert set(q["preferred"]) == {"gpt", "bert", "vocoder"}
    for stage, v in q["preferred"].items():
        assert v == "fp32" or q[stage][v]["passed"]
