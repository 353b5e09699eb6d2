"""Own v2Pro / v2ProPlus model definitions against what GPT-SoVITS computed (../shared/golden-v2pro):
the speaker-verification chain (torchaudio resample 32k -> 16k, Kaldi fbank, ERes2NetV2 stage by stage on the
`sv_dbg_*` run, the full embedding) and both SoVITS generators (fusion of the reference encoder's ge with the
projected embedding, ge512, decode intermediates and audio, speed 1.25, noise 0.5)."""
import numpy as np
import pytest
import torch

from export.ckpt import load_checkpoint
from export.models.sovits import build_sovits
from export.models.sv import KaldiFbank, SincResample, build_sv
from golden_sets import manifest, model_paths

FEAT = dict(atol=1e-4, rtol=1e-3)
AUDIO_ATOL = 1e-4

torch.set_num_threads(2)


class Golden:
    def __init__(self, folder, version=None):
        self.folder = folder
        self.arrays = manifest(folder)["arrays"]
        self.prefix = f"{version}/" if version else ""

    def __call__(self, name):
        key = self.prefix + name if self.prefix + name in self.arrays else name
        entry = self.arrays[key]
        arr = np.load(self.folder / entry["file"])
        assert list(arr.shape) == list(entry["shape"]), key
        return arr


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def close(got, want, atol, rtol, what):
    got = np.asarray(got, dtype=np.float64).reshape(np.shape(want))
    want = np.asarray(want, dtype=np.float64)
    err = np.abs(got - want)
    assert np.all(err <= atol + rtol * np.abs(want)), f"{what}: max abs err {err.max():.3e}"


@pytest.fixture(scope="module")
def g(golden_v2pro_dir):
    return Golden(golden_v2pro_dir)


@pytest.fixture(scope="module")
def sv(sv_checkpoint):
    return build_sv(str(sv_checkpoint))


def test_sv_signal_is_torchaudio_resample_of_wav32k(g):
    got = SincResample(32000, 16000)(_t(g("wav32k"))).numpy()
    assert got.shape == g("sv_wav16k").shape
    close(got, g("sv_wav16k"), 1e-6, 0, "sv_wav16k")
    # not the librosa signal HuBERT gets
    assert np.abs(got.reshape(-1) - g("wav16k")).max() > 1e-3


def test_kaldi_fbank(g):
    fb = KaldiFbank(16000, 80)
    for wav, name in ((g("sv_wav16k"), "sv_fbank"), (g("sv_wav16k")[:, :2400], "sv_dbg_fbank")):
        got = fb(_t(wav)).numpy()
        assert got.shape == g(name).shape, name
        close(got, g(name), what=name, **FEAT)


def test_eres2netv2_stages(g, sv):
    """Every hooked stage of the short debug run: a wrong activation (the Hardtanh(0, 20) cap), BN or AFF shows
    up at its own stage."""
    with torch.no_grad():
        s = sv.net.stages(_t(g("sv_dbg_fbank")))
    for k in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "layer3_ds", "fuse34"):
        close(s[k].numpy(), g(f"sv_dbg_{k}"), what=f"sv_dbg_{k}", **FEAT)
    close(s["emb"].numpy(), g("sv_dbg_emb"), what="sv_dbg_emb", **FEAT)
    # the blocks end in Hardtanh(0, 20): nothing above 20 or below 0 (the golden set pushes some channels to the
    # cap, so a plain ReLU fails the stage comparisons above)
    for k in ("layer1", "layer2", "layer3", "layer4"):
        assert 0.0 <= float(s[k].min()) and float(s[k].max()) <= 20.0, k


def test_sv_embedding_from_the_32k_signal(g, sv):
    with torch.no_grad():
        emb, w16, fb = sv.graph(_t(g("wav32k")))
    assert emb.shape == (1, sv.embedding_dim) == g("sv_emb").shape
    close(fb.numpy(), g("sv_fbank"), what="sv_fbank", **FEAT)
    close(emb.numpy(), g("sv_emb"), what="sv_emb", **FEAT)


@pytest.fixture(scope="module", params=["v2Pro", "v2ProPlus"])
def pro(request, golden_v2pro_dir):
    p = model_paths(golden_v2pro_dir, request.param)
    ckpt = load_checkpoint(str(p["sovits"]), "SoVITS .pth")
    return request.param, Golden(golden_v2pro_dir, request.param), ckpt, build_sovits(ckpt)


def test_version_from_file_head(pro):
    version, _, ckpt, model = pro
    assert ckpt.head == {"v2Pro": b"05", "v2ProPlus": b"06"}[version]
    assert model.version == version and model.is_v2pro
    assert model.n_symbols == 732 and model.ref_bins == 704


def test_reference_fusion(pro):
    _, g, _, model = pro
    with torch.no_grad():
        ge, ge_refenc, sv_proj = model.ref_encoder(_t(g("refer_spec")), _t(g("sv_emb")))
    close(ge_refenc.numpy(), g("decode_ge_refenc"), what="ge_refenc", **FEAT)
    close(sv_proj.numpy(), g("decode_sv_proj"), what="sv_proj", **FEAT)
    close(ge.numpy(), g("decode_ge"), what="ge (fused)", **FEAT)
    # both terms matter (the golden set scales them alike): without the embedding ge is far off
    with torch.no_grad():
        ge_without = model.weights.prelu(ge_refenc)
    assert np.abs(ge_without.numpy() - g("decode_ge")).max() > 1e-2


def test_decode(pro):
    _, g, _, model = pro
    codes, text, ge = _t(g("decode_codes")), _t(g("decode_text")), _t(g("decode_ge"))
    C, t25 = model.inter_channels, codes.shape[-1]
    with torch.no_grad():
        audio, z, m_p, logs_p, x, quantized, ge512 = model.decoder(codes, text, ge, torch.tensor([0.0]),
                                                                   torch.zeros(1, C, 2 * t25))
        close(ge512.numpy(), g("decode_ge512"), what="ge512", **FEAT)
        for got, name in ((quantized, "decode_quantized"), (x, "decode_enc_p_x"), (m_p, "decode_m_p"),
                          (logs_p, "decode_logs_p"), (z, "decode_z")):
            close(got.numpy(), g(name), what=name, **FEAT)
        close(audio.numpy(), g("decode_audio"), AUDIO_ATOL, 0, "decode_audio")
        a5 = model.decoder(codes, text, ge, torch.tensor([0.5]), _t(g("decode_noise")))[0]
        close(a5.numpy(), g("decode_audio_noise0p5"), AUDIO_ATOL, 0, "decode_audio_noise0p5")
        ty = int(2 * t25 / 1.25) + 1
        a125 = model.decoder(codes, text, ge, torch.tensor([0.0]), torch.zeros(1, C, ty))[0]
        close(a125.numpy(), g("decode_audio_speed1p25"), AUDIO_ATOL, 0, "decode_audio_speed1p25")
