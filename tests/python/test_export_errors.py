"""Each kind of bad checkpoint gets its own clear error (issue #2, "Done when")."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export.ckpt import CheckpointError, load_checkpoint
from export.convert import UnsupportedVersion, detect_sovits_version
from export.models.gpt import build_gpt

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(os.environ.get("GSV_GOLDEN_DIR", REPO.parent / "shared" / "golden"))
GPT = GOLDEN / "models" / "gpt_v2_tiny.ckpt"
SOVITS = GOLDEN / "models" / "sovits_v2_tiny.pth"


def test_golden_present():
    assert GOLDEN.is_dir(), f"golden folder missing: {GOLDEN}"


def _resave_gpt(tmp_path, edit):
    obj = torch.load(GPT, weights_only=True)
    edit(obj["weight"])
    p = tmp_path / "edited.ckpt"
    torch.save(obj, p)
    return p


def test_gpt_missing_key(tmp_path):
    p = _resave_gpt(tmp_path, lambda w: w.pop("model.h.layers.1.norm2.bias"))
    with pytest.raises(CheckpointError, match=r"missing key.*h\.layers\.1\.norm2\.bias"):
        build_gpt(load_checkpoint(str(p)))


def test_gpt_wrong_shape(tmp_path):
    def edit(w):
        w["model.bert_proj.bias"] = torch.zeros(w["model.bert_proj.bias"].shape[0] + 1, dtype=torch.float16)
    p = _resave_gpt(tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"bert_proj\.bias has shape"):
        build_gpt(load_checkpoint(str(p)))


def test_gpt_unexpected_key(tmp_path):
    def edit(w):
        w["model.extra.weight"] = torch.zeros(3, dtype=torch.float16)
    p = _resave_gpt(tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"unexpected key.*extra\.weight"):
        build_gpt(load_checkpoint(str(p)))


@pytest.mark.parametrize("head,name", [(b"03", "v3 (LoRA)"), (b"04", "v4 (LoRA)"), (b"02", "v3")])
def test_sovits_version_headers_refused(tmp_path, head, name):
    """v3/v4 stay refused by name (05/06, v2Pro/v2ProPlus, are exported: test_v2pro_export.py)."""
    p = tmp_path / "marked.pth"
    raw = SOVITS.read_bytes()
    p.write_bytes(head + raw[2:])
    with pytest.raises(UnsupportedVersion, match=r"GPT-SoVITS " + name.replace("(", r"\(").replace(")", r"\)")
                       + r" model.*not support"):
        detect_sovits_version(str(p))


def test_v2_detected_by_embedding_rows():
    assert detect_sovits_version(str(SOVITS)) == "v2"
    v1 = Path(os.environ.get("GSV_GOLDEN_V1_DIR", REPO.parent / "shared" / "golden-v1")) / "models" / "sovits_v1_tiny.pth"
    assert detect_sovits_version(str(v1)) == "v1"


def test_text_file_renamed_pth(tmp_path):
    p = tmp_path / "notes.pth"
    p.write_text("this is a text file, not a model\n")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint"):
        load_checkpoint(str(p), "SoVITS .pth")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"not found"):
        load_checkpoint(str(tmp_path / "nope.ckpt"), "GPT .ckpt")


def test_gpt_passed_as_sovits():
    with pytest.raises(CheckpointError, match=r"GPT checkpoint, not a SoVITS one"):
        detect_sovits_version(str(GPT))


def test_malicious_pickle_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    p = tmp_path / "evil.ckpt"
    torch.save({"weight": {}, "config": Evil()}, p)
    with pytest.raises(CheckpointError, match=r"refusing to load"):
        load_checkpoint(str(p))


def test_hparams_and_dict_configs_agree(tmp_path):
    a = load_checkpoint(str(SOVITS))
    assert isinstance(a.config, dict) and a.config["model"]["version"] == "v2"
    obj = {"weight": {k: torch.from_numpy(v).half() for k, v in list(a.weights.items())[:3]},
           "config": a.config, "info": a.info}
    p = tmp_path / "dict_config.pth"
    torch.save(obj, p)
    b = load_checkpoint(str(p))
    assert b.config == a.config
    k = next(iter(obj["weight"]))
    np.testing.assert_array_equal(b.weights[k], obj["weight"][k].float().numpy())


def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO, capture_output=True, text=True)


def test_cli_reports_errors_cleanly(tmp_path):
    txt = tmp_path / "model.pth"
    txt.write_text("hello")
    hub = GOLDEN / "models" / "chinese-hubert-base-tiny"
    bert = GOLDEN / "models" / "chinese-roberta-wwm-ext-large-tiny"
    r = _cli("convert", "--gpt", str(GPT), "--sovits", str(txt), "--hubert", str(hub), "--bert", str(bert),
             "--out", str(tmp_path / "b"))
    assert r.returncode == 2, r.stderr
    assert "not a PyTorch checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = _cli("convert", "--gpt", str(tmp_path / "missing.ckpt"), "--sovits", str(SOVITS), "--hubert", str(hub),
             "--bert", str(bert), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "GPT .ckpt not found" in r.stderr, r.stderr
    r = _cli("convert", "--gpt", str(SOVITS), "--sovits", str(GPT), "--hubert", str(hub), "--bert", str(bert),
             "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "is a SoVITS checkpoint, not a GPT one" in r.stderr, r.stderr


def test_random_checkpoints_load_strictly(tmp_path):
    """random-checkpoint writes the real formats (HParams config, weight_g/weight_v, legacy HuBERT names), and our
    strict loaders accept every key of them."""
    from export.models.hf import build_bert, build_hubert
    from export.models.sovits import build_sovits
    from export.random_ckpt import tiny_dims, write_random_checkpoints

    dims = tiny_dims()
    dims["bert"] = dict(dims["bert"], vocab_size=300, hidden_size=64, num_attention_heads=4)
    dims["gpt"] = dict(dims["gpt"], n_layer=1)
    p = write_random_checkpoints(str(tmp_path), seed=3, dims=dims, log=lambda *_: None)
    sv = load_checkpoint(p["sovits"])
    assert type(sv.config).__name__ == "dict" and sv.config["model"]["version"] == "v2"
    assert any(k.endswith(".weight_g") for k in sv.weights) and not any(k.startswith("enc_q") for k in sv.weights)
    raw = open(p["sovits"], "rb").read()
    assert raw[:2] == b"PK" and b"utils\nHParams" in raw or b"utilsq\x00" in raw or b"HParams" in raw
    build_sovits(sv)
    build_gpt(load_checkpoint(p["gpt"]))
    build_hubert(p["hubert"])
    build_bert(p["bert"])
    assert detect_sovits_version(p["sovits"]) == "v2"
