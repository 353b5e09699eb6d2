"""The export's own HuBERT / BERT definitions (export/models/hf.py) against what GPT-SoVITS computed."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export.ckpt import CheckpointError
from export.models.hf import build_bert, build_hubert, load_hf_folder

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(os.environ.get("GSV_GOLDEN_DIR", REPO.parent / "shared" / "golden"))
GOLDEN_V1 = Path(os.environ.get("GSV_GOLDEN_V1_DIR", REPO.parent / "shared" / "golden-v1"))
HUBERT_DIR = GOLDEN / "models" / "chinese-hubert-base-tiny"
BERT_DIR = GOLDEN / "models" / "chinese-roberta-wwm-ext-large-tiny"
ATOL, RTOL = 1e-4, 1e-3


def _arr(g, name):
    assert g.is_dir(), f"golden folder missing: {g}"
    m = json.loads((g / "manifest.json").read_text())
    entry = m["arrays"][name]
    a = np.load(g / entry["file"])
    assert list(a.shape) == entry["shape"], (name, a.shape, entry["shape"])
    return a


def _close(got, want, what):
    err = float(np.abs(got - want).max())
    print(f"{what}: max |err| = {err:.3e}")
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL, err_msg=f"{what} (max err {err:.3e})")
    return err


@pytest.fixture(scope="module")
def hubert():
    assert HUBERT_DIR.is_dir(), f"golden folder missing: {HUBERT_DIR}"
    return build_hubert(str(HUBERT_DIR))


@pytest.fixture(scope="module")
def bert():
    assert BERT_DIR.is_dir(), f"golden folder missing: {BERT_DIR}"
    return build_bert(str(BERT_DIR))


def test_hubert_matches_golden(hubert):
    # GPT-SoVITS inference: HubertModel(wav16k_padded[None]).last_hidden_state.transpose(1,2), no normalisation
    wav = _arr(GOLDEN, "wav16k_padded")
    want = _arr(GOLDEN, "ssl_content")
    with torch.no_grad():
        got = hubert(torch.from_numpy(wav)[None]).numpy()
    assert got.shape == want.shape
    assert hubert.frames(wav.shape[0]) == want.shape[2]
    _close(got, want, "hubert ssl_content")
    # the same model on the feature-extractor-normalised input (CNHubert.forward, training-data path)
    fe = _arr(GOLDEN, "hubert_fe_input_values")
    with torch.no_grad():
        got2 = hubert(torch.from_numpy(fe)).numpy()
    _close(got2, _arr(GOLDEN, "ssl_content_cnhubert_forward"), "hubert ssl_content_cnhubert_forward")


@pytest.mark.parametrize("g", [GOLDEN, GOLDEN_V1], ids=["golden", "golden-v1"])
def test_bert_matches_golden(bert, g):
    ids = _arr(g, "prompt_bert_input_ids")  # [1, L]: [CLS] ... [SEP]
    want = _arr(g, "prompt_bert_hidden_state_m3")  # [L, 1024]
    # The golden array has one row per token id, [CLS] and [SEP] included (the manifest says so and its
    # length equals the id count), so the whole [1, L, 1024] output is compared, not rows 1..L-2.
    assert want.shape[0] == ids.shape[1]
    assert ids[0, 0] == 101 and ids[0, -1] == 102
    t = torch.from_numpy(ids)
    with torch.no_grad():
        got = bert(t, torch.ones_like(t), torch.zeros_like(t)).numpy()
    assert got.shape == (1, ids.shape[1], 1024)
    _close(got[0], want, f"bert hidden_states[-3] ({g.name})")
    # the bundle's hidden has the rows GPT-SoVITS keeps after dropping [CLS]/[SEP]: rows 1..L-2
    assert bert.n_run == bert.n_total_layers - 2


def test_bert_attention_mask_hides_padding(bert):
    # HF semantics of the extended mask: masked keys do not influence the other positions
    ids = torch.from_numpy(_arr(GOLDEN, "prompt_bert_input_ids"))
    n = ids.shape[1]
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, n, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)], 1)
    with torch.no_grad():
        a = bert(ids, torch.ones_like(ids), torch.zeros_like(ids))
        b = bert(padded, mask, torch.zeros_like(padded))
    assert float((a - b[:, :n]).abs().max()) < 1e-4


def _copy_folder(src, dst, edit):
    """Copy an HF folder, rewriting model.safetensors with `edit(state) -> state` (float16 like the real files)."""
    from safetensors.numpy import save_file

    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    _, state = load_hf_folder(str(src))
    state = edit(dict(state))
    save_file({k: np.ascontiguousarray(v.astype(np.float16)) for k, v in state.items()}, str(dst / "model.safetensors"))
    return dst


def test_missing_and_wrong_shape_keys_are_named(tmp_path):
    key = "encoder.layers.0.attention.k_proj.weight"

    def drop(s):
        del s[key]
        return s

    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        build_hubert(str(_copy_folder(HUBERT_DIR, tmp_path / "h_missing", drop)))

    key2 = "feature_projection.projection.bias"

    def reshape(s):
        s[key2] = s[key2][:-1]
        return s

    with pytest.raises(CheckpointError, match=key2.replace(".", r"\.")):
        build_hubert(str(_copy_folder(HUBERT_DIR, tmp_path / "h_shape", reshape)))

    key3 = "bert.embeddings.word_embeddings.weight"

    def bert_shape(s):
        s[key3] = s[key3][:, :512]
        return s

    with pytest.raises(CheckpointError, match=r"embeddings\.word_embeddings\.weight"):
        build_bert(str(_copy_folder(BERT_DIR, tmp_path / "b_shape", bert_shape)))

    def bert_extra(s):
        s["bert.encoder.extra.weight"] = np.zeros(3, np.float32)
        return s

    with pytest.raises(CheckpointError, match=r"encoder\.extra\.weight"):
        build_bert(str(_copy_folder(BERT_DIR, tmp_path / "b_extra", bert_extra)))


def test_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_hf_folder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_hf_folder(str(tmp_path / "empty"))
    (tmp_path / "noweights").mkdir()
    shutil.copy(HUBERT_DIR / "config.json", tmp_path / "noweights" / "config.json")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load_hf_folder(str(tmp_path / "noweights"))


def test_pytorch_model_bin_and_prefixes(tmp_path, hubert, bert):
    """pytorch_model.bin (torch.save zip, fp16) with `hubert.`/no-`bert.` prefixes and new weight-norm names."""
    _, hs = load_hf_folder(str(HUBERT_DIR))
    renamed = {}
    for k, v in hs.items():
        k = k.replace("conv.weight_g", "conv.parametrizations.weight.original0")
        k = k.replace("conv.weight_v", "conv.parametrizations.weight.original1")
        renamed["hubert." + k] = torch.from_numpy(v).half()
    d = tmp_path / "hubert_bin"
    d.mkdir()
    shutil.copy(HUBERT_DIR / "config.json", d / "config.json")
    torch.save(renamed, d / "pytorch_model.bin")
    h2 = build_hubert(str(d))
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        assert torch.equal(h2(wav), hubert(wav))

    _, bs = load_hf_folder(str(BERT_DIR))
    d = tmp_path / "bert_bin"
    d.mkdir()
    shutil.copy(BERT_DIR / "config.json", d / "config.json")
    stripped = {k[len("bert."):] if k.startswith("bert.") else k: torch.from_numpy(v).half() for k, v in bs.items()}
    stripped["embeddings.position_ids"] = torch.arange(128)[None]  # buffer older transformers saved
    torch.save(stripped, d / "pytorch_model.bin")
    b2 = build_bert(str(d))
    ids = torch.tensor([[101, 150, 160, 102]])
    with torch.no_grad():
        assert torch.equal(b2(ids, torch.ones_like(ids), torch.zeros_like(ids)),
                           bert(ids, torch.ones_like(ids), torch.zeros_like(ids)))


def _export_and_check(spec, path):
    import onnxruntime as ort

    from export.onnx_export import export_graph

    # the exporter `python -m export convert` runs (dynamo, dynamic_shapes from the spec's axes, metadata, its own
    # onnxruntime check), then the checks below on the file it wrote
    export_graph(spec, str(path.parent), {"test": "1"}, log=lambda *_: None)
    assert path.name == f"{spec.name}.onnx"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == spec.input_names
    assert [o.name for o in sess.get_outputs()] == spec.output_names
    errs = []
    shapes = set()
    for ex in spec.examples:
        with torch.no_grad():
            want = spec.module(*ex).numpy()
        got = sess.run(None, {n: x.numpy() for n, x in zip(spec.input_names, ex)})[0]
        assert got.shape == want.shape
        shapes.add(got.shape)
        errs.append(float(np.abs(got - want).max()))
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert len(shapes) == len(spec.examples) >= 2  # really different lengths through one graph
    print(f"{spec.name}: onnxruntime vs torch max |err| per length: {errs}")
    return sess


def test_onnx_export_matches_torch(tmp_path, hubert, bert):
    hspec = hubert.onnx_specs()[0]
    assert hspec.name == "hubert" and hspec.input_names == ["wav16k"] and hspec.output_names == ["ssl"]
    sess = _export_and_check(hspec, tmp_path / "hubert.onnx")
    # and the golden input through the graph
    wav = _arr(GOLDEN, "wav16k_padded")[None]
    _close(sess.run(None, {"wav16k": wav})[0], _arr(GOLDEN, "ssl_content"), "hubert.onnx ssl_content")
    # the longest reference GPT-SoVITS accepts (10 s + 9600 pad samples), odd length
    long = torch.randn(1, 160000 + 9600 + 37, generator=torch.Generator().manual_seed(2)) * 0.1
    with torch.no_grad():
        want = hubert(long).numpy()
    got = sess.run(None, {"wav16k": long.numpy()})[0]
    assert got.shape == want.shape == (1, 768, hubert.frames(long.shape[1]))
    _close(got, want, "hubert.onnx vs torch, 169637 samples")

    bspec = bert.onnx_specs()[0]
    assert bspec.name == "bert"
    assert bspec.input_names == ["input_ids", "attention_mask", "token_type_ids"] and bspec.output_names == ["hidden"]
    sess = _export_and_check(bspec, tmp_path / "bert.onnx")
    ids = _arr(GOLDEN, "prompt_bert_input_ids")
    got = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})[0]
    _close(got[0], _arr(GOLDEN, "prompt_bert_hidden_state_m3"), "bert.onnx hidden_states[-3]")
