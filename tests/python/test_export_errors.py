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


@pytest.mark.parametrize("head,name", [(b"03", "v3 (LoRA)"), (b"04", "v4 (LoRA)"), (b"05", "v2Pro"),
                                       (b"06", "v2ProPlus"), (b"02", "v3")])
def test_sovits_version_headers_refused(tmp_path, head, name):
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
