"""Own SoVITS (SynthesizerTrn) inference modules vs the golden outputs of upstream GPT-SoVITS, v2 and v1,
plus ONNX export (dynamo) checked with onnxruntime."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from export.ckpt import CheckpointError, load_checkpoint
from export.models.sovits import CODEBOOK_PREFIX, build_sovits

FEAT = dict(atol=1e-4, rtol=1e-3)
AUDIO_ATOL = 1e-4

torch.set_num_threads(2)


class Golden:
    def __init__(self, folder):
        self.folder = folder
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.arrays = self.manifest["arrays"]

    def has(self, name):
        return name in self.arrays

    def __call__(self, name):
        entry = self.arrays[name]
        arr = np.load(self.folder / entry["file"])  # v1 entries may point into ../golden
        assert list(arr.shape) == list(entry["shape"]), name
        return arr

    def sovits_path(self):
        models = self.folder / "models"
        found = sorted(models.glob("sovits_*.pth"))
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module", params=["v2", "v1"])
def case(request, golden_dir, golden_v1_dir):
    g = Golden(golden_dir if request.param == "v2" else golden_v1_dir)
    ckpt = load_checkpoint(str(g.sovits_path()), "SoVITS .pth")
    return request.param, g, ckpt, build_sovits(ckpt)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _maxabs(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def _decode(model, g, noise, noise_scale, ge=None):
    codes, text = _t(g("decode_codes")), _t(g("decode_text"))
    if ge is None:
        ge = _t(g("decode_ge"))
    with torch.no_grad():
        out = model.decoder(codes, text, ge, torch.tensor([noise_scale], dtype=torch.float32), noise)
    return [o.numpy() for o in out]


def test_version_and_shapes(case):
    version, g, ckpt, model = case
    assert model.version == version
    assert model.ref_bins == (704 if version == "v2" else 1025)
    assert model.n_symbols == (732 if version == "v2" else 322)
    assert model.inter_channels == g("decode_m_p").shape[1]
    assert model.samples_per_frame == g("decode_audio").shape[-1] // g("decode_m_p").shape[-1]
    for mod in (model.vq_encoder, model.ref_encoder, model.decoder):
        assert not mod.training


def test_vq_encoder(case):
    _, g, _, model = case
    with torch.no_grad():
        codes, proj = model.vq_encoder(_t(g("ssl_content")))
    assert codes.dtype == torch.int64 and codes.shape == (1, g("prompt_semantic").shape[0])
    np.testing.assert_array_equal(codes[0].numpy(), g("prompt_semantic"))
    np.testing.assert_allclose(proj.numpy(), g("ssl_proj_out"), **FEAT)


def test_ref_encoder(case):
    _, g, _, model = case
    with torch.no_grad():
        ge = model.ref_encoder(_t(g("refer_spec")))
    np.testing.assert_allclose(ge.numpy(), g("decode_ge"), **FEAT)


def test_decode_noise0_intermediates(case):
    _, g, _, model = case
    with torch.no_grad():
        ge = model.ref_encoder(_t(g("refer_spec")))  # the whole chain from the reference spectrogram
    t50 = g("decode_m_p").shape[-1]
    assert t50 == 2 * g("decode_codes").shape[-1]
    audio, z, m_p, logs_p, x, quantized = _decode(model, g, torch.zeros(1, model.inter_channels, t50), 0.0, ge)
    np.testing.assert_array_equal(quantized, g("decode_quantized"))
    for name, got in (("decode_enc_p_x", x), ("decode_m_p", m_p), ("decode_logs_p", logs_p), ("decode_z", z)):
        np.testing.assert_allclose(got, g(name), **FEAT, err_msg=name)
    assert audio.shape == g("decode_audio").shape
    assert _maxabs(audio, g("decode_audio")) <= AUDIO_ATOL


def test_decode_noise_0p5(case):
    _, g, _, model = case
    noise = g("decode_noise")
    audio = _decode(model, g, _t(noise), 0.5)[0]
    assert audio.shape == g("decode_audio_noise0p5").shape
    assert _maxabs(audio, g("decode_audio_noise0p5")) <= AUDIO_ATOL
    # the noise really matters: the noiseless audio is far from it
    assert _maxabs(g("decode_audio"), g("decode_audio_noise0p5")) > 100 * AUDIO_ATOL


def test_decode_speed_1p25(case):
    _, g, _, model = case
    t50 = 2 * g("decode_codes").shape[-1]
    ty = int(t50 / 1.25) + 1
    audio = _decode(model, g, torch.zeros(1, model.inter_channels, ty), 0.0)[0]
    assert audio.shape == g("decode_audio_speed1p25").shape
    assert _maxabs(audio, g("decode_audio_speed1p25")) <= AUDIO_ATOL


@pytest.mark.parametrize("t_in,t_out", [(120, 120), (120, 97), (100, 81), (7, 3), (5, 12), (1, 4)])
def test_resample_matches_interpolate(t_in, t_out):
    from export.models.sovits import resample_linear

    y = torch.randn(1, 3, t_in, generator=torch.Generator().manual_seed(t_in * 1000 + t_out))
    got = resample_linear(y, torch.zeros(1, 1, t_out))
    ref = torch.nn.functional.interpolate(y, size=t_out, mode="linear", align_corners=False)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-6
    if t_in == t_out:
        assert torch.equal(got, y)


def _with_weights(ckpt, weights):
    return dataclasses.replace(ckpt, weights=weights)


def test_rejects_bad_checkpoints(case):
    _, _, ckpt, _ = case
    w = dict(ckpt.weights)
    w["enc_p.text_embedding.weight"] = np.zeros((500, w["enc_p.text_embedding.weight"].shape[1]), np.float32)
    with pytest.raises(CheckpointError, match="500 rows"):
        build_sovits(_with_weights(ckpt, w))

    w = dict(ckpt.weights)
    w[CODEBOOK_PREFIX + "inited"] = np.zeros((1,), np.float32)
    with pytest.raises(CheckpointError, match="inited"):
        build_sovits(_with_weights(ckpt, w))

    w = dict(ckpt.weights)
    del w[CODEBOOK_PREFIX + "embed_avg"]
    with pytest.raises(CheckpointError, match="embed_avg"):
        build_sovits(_with_weights(ckpt, w))

    w = dict(ckpt.weights)
    # the training-only posterior encoder is accepted only whole (official pretrained files), never partial
    w["enc_q.pre.weight"] = np.zeros((1,), np.float32)
    with pytest.raises(CheckpointError, match="enc_q"):
        build_sovits(_with_weights(ckpt, w))

    w = dict(ckpt.weights)
    del w["flow.flows.2.post.bias"]
    with pytest.raises(CheckpointError, match="flow.flows.2.post.bias"):
        build_sovits(_with_weights(ckpt, w))


# ---------------------------------------------------------------------------------------------- ONNX


def _export(spec, path):
    dims = {n: {ax: torch.export.Dim.DYNAMIC for ax in axes} for n, axes in spec.dynamic_axes.items()}
    torch.onnx.export(spec.module, spec.examples[0], str(path), dynamo=True, input_names=spec.input_names,
                      output_names=spec.output_names, dynamic_shapes=tuple(dims.get(n) for n in spec.input_names),
                      opset_version=18, external_data=False, verbose=False)
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_spec(spec, sess):
    assert [i.name for i in sess.get_inputs()] == spec.input_names
    assert [o.name for o in sess.get_outputs()] == spec.output_names
    for name, axes in spec.dynamic_axes.items():
        shape = next(i.shape for i in sess.get_inputs() if i.name == name)
        for ax in axes:
            assert not isinstance(shape[ax], int), (name, ax, shape)  # really dynamic
    sizes = set()
    for ex in spec.examples:
        sizes.add(tuple(tuple(x.shape) for x in ex))
        with torch.no_grad():
            ref = spec.module(*ex)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = sess.run(None, {n: x.numpy() for n, x in zip(spec.input_names, ex)})
        for n, a, r in zip(spec.output_names, got, ref):
            assert a.shape == tuple(r.shape) and a.dtype == r.numpy().dtype, n
            np.testing.assert_allclose(a, r.numpy(), atol=spec.atol, rtol=0, err_msg=n)
    assert len(sizes) >= 2


def test_onnx_export_v2_all_graphs(golden_dir, tmp_path):
    g = Golden(golden_dir)
    model = build_sovits(load_checkpoint(str(g.sovits_path()), "SoVITS .pth"))
    specs = {s.name: s for s in model.onnx_specs()}
    assert sorted(specs) == ["ref_enc", "sovits_decode", "vq_encode"]
    sessions = {}
    for name, spec in specs.items():
        sessions[name] = _export(spec, tmp_path / f"{name}.onnx")
        _check_spec(spec, sessions[name])
    # the exported graphs at the golden lengths, against upstream's numbers
    codes, ssl_proj = sessions["vq_encode"].run(None, {"ssl": g("ssl_content")})
    np.testing.assert_array_equal(codes[0], g("prompt_semantic"))
    np.testing.assert_allclose(ssl_proj, g("ssl_proj_out"), **FEAT)
    (ge,) = sessions["ref_enc"].run(None, {"spec": g("refer_spec")})
    np.testing.assert_allclose(ge, g("decode_ge"), **FEAT)
    t50 = 2 * g("decode_codes").shape[-1]
    feeds = {"codes": g("decode_codes"), "text": g("decode_text"), "ge": ge,
             "noise_scale": np.array([0.5], np.float32), "noise": g("decode_noise")}
    audio = sessions["sovits_decode"].run(["audio"], feeds)[0]
    assert _maxabs(audio, g("decode_audio_noise0p5")) <= AUDIO_ATOL
    feeds.update(noise_scale=np.zeros(1, np.float32),
                 noise=np.zeros((1, model.inter_channels, int(t50 / 1.25) + 1), np.float32))
    audio = sessions["sovits_decode"].run(["audio"], feeds)[0]
    assert audio.shape == g("decode_audio_speed1p25").shape
    assert _maxabs(audio, g("decode_audio_speed1p25")) <= AUDIO_ATOL


def test_onnx_export_v1_ref_enc(golden_v1_dir, tmp_path):
    """v1's only structural difference in an exported graph: ref_enc reads all 1025 bins."""
    g = Golden(golden_v1_dir)
    model = build_sovits(load_checkpoint(str(g.sovits_path()), "SoVITS .pth"))
    spec = next(s for s in model.onnx_specs() if s.name == "ref_enc")
    sess = _export(spec, tmp_path / "ref_enc.onnx")
    _check_spec(spec, sess)
    (ge,) = sess.run(None, {"spec": g("refer_spec")})
    np.testing.assert_allclose(ge, g("decode_ge"), **FEAT)
