"""v2Pro / v2ProPlus export: version detection by file head, the speaker-verification checkpoint (--sv) and each
way it can be wrong, and `random-checkpoint --version v2pro|v2proplus` writing files our strict loaders accept."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from export.ckpt import CheckpointError, load_checkpoint
from export.convert import UnsupportedVersion, detect_sovits_version
from export.models.sovits import build_sovits
from export.models.sv import UPSTREAM_SV_PATH, build_sv, load_sv_state
from golden_sets import golden_path, model_paths

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def pro_paths(golden_v2pro_dir):
    return {v: model_paths(golden_v2pro_dir, v) for v in ("v2Pro", "v2ProPlus")}


def test_heads_05_06_detected(pro_paths):
    assert detect_sovits_version(str(pro_paths["v2Pro"]["sovits"])) == "v2Pro"
    assert detect_sovits_version(str(pro_paths["v2ProPlus"]["sovits"])) == "v2ProPlus"
    for v, p in pro_paths.items():
        raw = Path(p["sovits"]).read_bytes()
        assert raw[:2] == {"v2Pro": b"05", "v2ProPlus": b"06"}[v] and raw[2:4] == b"\x03\x04"


def test_head_decides_like_upstream(tmp_path, pro_paths):
    """The head is what upstream trusts: a v2ProPlus file relabelled 05 is built as v2Pro (same layers; the
    config gives the generator's sizes), and a v2 file labelled 05 is a v2Pro missing its sv layers."""
    raw = Path(pro_paths["v2ProPlus"]["sovits"]).read_bytes()
    p = tmp_path / "relabelled.pth"
    p.write_bytes(b"05" + raw[2:])
    assert detect_sovits_version(str(p)) == "v2Pro"
    v2 = golden_path("golden") / "models" / "sovits_v2_tiny.pth"
    q = tmp_path / "v2_as_05.pth"
    q.write_bytes(b"05" + v2.read_bytes()[2:])
    assert detect_sovits_version(str(q)) == "v2Pro"
    with pytest.raises(CheckpointError, match=r"missing key.*sv_emb"):
        build_sovits(load_checkpoint(str(q)))


def test_pk_head_with_v2pro_layers(tmp_path, pro_paths):
    """A v2Pro file re-saved with a plain zip head is taken at its config's word; without that it is refused."""
    raw = Path(pro_paths["v2Pro"]["sovits"]).read_bytes()
    p = tmp_path / "resaved.pth"
    p.write_bytes(b"PK" + raw[2:])
    assert detect_sovits_version(str(p)) == "v2Pro"
    ck = load_checkpoint(str(p))
    cfg = dict(ck.config, version="v2", model=dict(ck.config["model"], version="v2"))
    from export.models.sovits import detect_version
    with pytest.raises(CheckpointError, match=r"v2Pro layers.*neither the file head"):
        detect_version(ck.weights, b"PK", cfg)


@pytest.mark.parametrize("head,name", [(b"02", "v3"), (b"03", r"v3 \(LoRA\)"), (b"04", r"v4 \(LoRA\)")])
def test_v3_v4_still_refused_by_name(tmp_path, pro_paths, head, name):
    p = tmp_path / "marked.pth"
    p.write_bytes(head + Path(pro_paths["v2Pro"]["sovits"]).read_bytes()[2:])
    with pytest.raises(UnsupportedVersion, match=r"GPT-SoVITS " + name + r" model.*v2Pro and v2ProPlus"):
        detect_sovits_version(str(p))


def _convert_args(p, out, sv=None):
    args = ["convert", "--gpt", str(p["gpt"]), "--sovits", str(p["sovits"]), "--hubert", str(p["hubert"]),
            "--bert", str(p["bert"]), "--out", str(out)]
    return args + (["--sv", str(sv)] if sv is not None else [])


def test_missing_sv_is_a_clear_error(tmp_path, pro_paths):
    r = _cli(*_convert_args(pro_paths["v2ProPlus"], tmp_path / "b"))
    assert r.returncode == 2, r.stderr
    assert "v2ProPlus" in r.stderr and UPSTREAM_SV_PATH in r.stderr and "--sv" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = _cli(*_convert_args(pro_paths["v2Pro"], tmp_path / "b", sv=tmp_path / "nope.ckpt"))
    assert r.returncode == 2 and "speaker-verification checkpoint (--sv) not found" in r.stderr, r.stderr


def test_truncated_sv_checkpoint(tmp_path, sv_checkpoint, pro_paths):
    raw = sv_checkpoint.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 100, 1000):
        p = tmp_path / f"cut{cut}.ckpt"
        p.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=r"speaker-verification checkpoint.*truncated"):
            build_sv(str(p))
    r = _cli(*_convert_args(pro_paths["v2Pro"], tmp_path / "b", sv=tmp_path / f"cut{len(raw) // 2}.ckpt"))
    assert r.returncode == 2 and "truncated" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_wrong_files_as_sv(tmp_path, sv_checkpoint, pro_paths):
    with pytest.raises(CheckpointError, match=r"GPT/SoVITS checkpoint, not the speaker-verification model"):
        build_sv(str(pro_paths["v2Pro"]["sovits"]))
    t = tmp_path / "notes.ckpt"
    t.write_text("not a model")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint"):
        build_sv(str(t))
    # strict: a state dict without one BN buffer, or with one extra key
    state, _ = load_sv_state(str(sv_checkpoint))
    for edit, pattern in ((lambda s: s.pop("layer4.2.bn3.running_var"), r"missing key.*layer4\.2\.bn3\.running_var"),
                          (lambda s: s.__setitem__("pool.weight", torch.zeros(3, dtype=torch.float16)), r"unexpected key.*pool")):
        s = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
        edit(s)
        p = tmp_path / "edited.ckpt"
        torch.save(s, p)
        with pytest.raises(CheckpointError, match=pattern):
            build_sv(str(p))


def test_v2_model_given_sv_is_ignored_with_a_note(golden_bundle, golden_dir, sv_checkpoint):
    """Documented choice: --sv with a v1/v2 model is ignored (not read, not recorded) with a note; the bundle is the
    same one (every graph reused)."""
    p = model_paths(golden_dir)
    r = _cli(*_convert_args(p, golden_bundle, sv=sv_checkpoint))
    assert r.returncode == 0, r.stderr
    assert "note: --sv" in r.stdout and "ignored" in r.stdout and "v2 model" in r.stdout, r.stdout
    assert r.stdout.count("up to date, reused") == 7, r.stdout
    import json
    man = json.loads((golden_bundle / "manifest.json").read_text())
    assert "sv" not in man and "sv" not in man["sources"] and man["model_version"] == "v2"


def test_verify_refuses_a_golden_set_without_the_bundles_version(golden_bundle, golden_v2pro_dir):
    r = _cli("verify", "--bundle", str(golden_bundle), "--golden", str(golden_v2pro_dir))
    assert r.returncode == 1
    assert "FAIL model_version the golden set holds arrays for v2Pro, v2ProPlus, not for the bundle's v2" in r.stdout


@pytest.mark.parametrize("version,head", [("v2pro", b"05"), ("v2proplus", b"06")])
def test_random_checkpoints_v2pro(tmp_path, version, head):
    """random-checkpoint --version v2pro|v2proplus: the real formats (head 05/06 over a zip with root archive/,
    HParams config; the SV file a plain state-dict torch.save with int64 num_batches_tracked), loaded strictly."""
    import zipfile

    from export.models.hf import build_bert, build_hubert
    from export.models.gpt import build_gpt
    from export.random_ckpt import tiny_dims, write_random_checkpoints

    dims = tiny_dims()
    dims["bert"] = dict(dims["bert"], vocab_size=300, hidden_size=64, num_attention_heads=4)
    dims["gpt"] = dict(dims["gpt"], n_layer=1)
    p = write_random_checkpoints(str(tmp_path), seed=5, dims=dims, log=lambda *_: None, version=version)
    raw = open(p["sovits"], "rb").read()
    assert raw[:2] == head
    import io
    names = zipfile.ZipFile(io.BytesIO(b"PK" + raw[2:])).namelist()
    assert all(n.startswith("archive/") for n in names)
    want = {"v2pro": "v2Pro", "v2proplus": "v2ProPlus"}[version]
    assert detect_sovits_version(p["sovits"]) == want
    sov = build_sovits(load_checkpoint(p["sovits"]))
    assert sov.version == want and sov.gin_channels == 128
    ups = sov.config["model"]["upsample_initial_channel"]
    assert ups == (96 if want == "v2ProPlus" else 64)
    assert Path(p["sv"]).name == "pretrained_eres2netv2w24s4ep4.ckpt"
    sd = torch.load(p["sv"], weights_only=True)
    assert sd["bn1.num_batches_tracked"].dtype == torch.int64 and sd["conv1.weight"].dtype == torch.float16
    svm = build_sv(p["sv"])
    assert svm.embedding_dim == sov.weights.sv_dim == 20480
    build_gpt(load_checkpoint(p["gpt"]))
    build_hubert(p["hubert"])
    build_bert(p["bert"])


def test_fp16_keeps_signal_constants_float32():
    """--fp16 stores weights as float16 but keeps the sv graph's resampling kernel, window and mel bank float32
    (GraphSpec.keep_fp32): a float16 mel bank or window would move the log-mel features by ~1e-3."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from export.onnx_export import _to_fp16

    a = numpy_helper.from_array(np.ones((32, 32), np.float32), "fbank.mel_t")
    b = numpy_helper.from_array(np.ones((32, 32), np.float32), "net.conv1.weight")
    node = helper.make_node("Add", ["fbank.mel_t", "net.conv1.weight"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 32])],
                              initializer=[a, b])
    m = _to_fp16(helper.make_model(graph), keep=("resample.", "fbank."))
    types = {i.name: i.data_type for i in m.graph.initializer}
    assert types["fbank.mel_t"] == TensorProto.FLOAT
    assert types["net.conv1.weight__fp16"] == TensorProto.FLOAT16 and "net.conv1.weight" not in types
    assert [n.op_type for n in m.graph.node] == ["Cast", "Add"]


def test_pretrained_generators_with_posterior_encoder_load(tmp_path, pro_paths):
    """Official pretrained generators (s2Gv2ProPlus.pth, ...) keep the training-only posterior encoder `enc_q.*`
    (weight-normed, as saved); upstream skips it (strict=False). We accept it only complete and well-shaped, and
    drop it; a partial enc_q or any other stray key is an error."""
    import io

    from export.models.sovits import PosteriorEncoderKeys
    from export.random_ckpt import _unfold_weight_norm

    ck = load_checkpoint(str(pro_paths["v2ProPlus"]["sovits"]))
    base = build_sovits(ck)
    m = ck.config["model"]
    enc_q = PosteriorEncoderKeys(1025, m["inter_channels"], m["hidden_channels"], m["gin_channels"]).state_dict()
    enc_q = _unfold_weight_norm(dict(enc_q),
                                pattern=r"^enc_q\.enc\.(in_layers\.\d+|res_skip_layers\.\d+|cond_layer)$")
    assert "enc_q.enc.cond_layer.weight_g" in enc_q and "enc_q.pre.weight" in enc_q

    def save(w):
        buf = io.BytesIO()
        torch.save({"weight": w, "config": ck.config, "info": "pretrained"}, buf)
        p = tmp_path / "pretrained_like.pth"
        p.write_bytes(b"06" + buf.getvalue()[2:])
        return str(p)

    w = {k: torch.from_numpy(v).half() for k, v in ck.weights.items()}
    w.update({k: v.half() for k, v in enc_q.items()})
    model = build_sovits(load_checkpoint(save(w)))
    assert model.version == "v2ProPlus"
    for (k, a), (_, b) in zip(model.weights.state_dict().items(), base.weights.state_dict().items()):
        assert torch.equal(a, b), k
    partial = dict(w)
    del partial["enc_q.proj.bias"]
    with pytest.raises(CheckpointError, match=r"posterior encoder enc_q.*missing key.*enc_q\.proj\.bias"):
        build_sovits(load_checkpoint(save(partial)))
    w["flow.extra.weight"] = torch.zeros(3, dtype=torch.float16)
    with pytest.raises(CheckpointError, match=r"unexpected key.*flow\.extra\.weight"):
        build_sovits(load_checkpoint(save(w)))
