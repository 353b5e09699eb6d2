"""Speaker verification for v2Pro / v2ProPlus: the signal chain of GPT-SoVITS's `sv.py` and ERes2NetV2
(3D-Speaker, `baseWidth=24, scale=4, expansion=4`), written for ONNX export.

The `sv` graph takes the same signal the reference spectrogram is computed from and does everything upstream does
between it and the embedding:

    wav32k f32 [1, S]   the normalised SoVITS-rate reference (32 kHz: `TTS._get_ref_spec` after its /min(2, max))
      -> SincResample   torchaudio `Resample(32000, 16000)` defaults (sinc_interp_hann, width 6, rolloff 0.99)
    wav16k f32 [1, S16] S16 = ceil(S * 16000 / 32000)      (NOT the librosa signal HuBERT gets)
      -> KaldiFbank     `kaldi.fbank(w, num_mel_bins=80, sample_frequency=16000, dither=0)`, other arguments default
    fbank  f32 [1, T, 80]  T = 1 + (S16 - 400) // 160  (snip_edges; S16 >= 400 needed)
      -> ERes2NetV2.forward3: stem, layer1..4, layer3_ds, fuse34 (AFF), flatten(channel, freq), mean over time
    sv_emb f32 [1, 20480]  (2048 channels x 10 frequency rows)

`sv_emb` only depends on the reference, so the runtime computes it once per voice and caches it (BUNDLE.md).

ERes2NetV2 facts that are easy to get wrong (`../shared/golden-v2pro/README.md`): the activation upstream names
`ReLU` in the residual blocks is `Hardtanh(0, 20)`; only the stem uses a plain ReLU; AFF fuses with
`x * (1 + tanh(a)) + y * (1 - tanh(a))`; blocks of layer3/4 fuse their splits with AFF, layer1/2 add them; BatchNorm
runs with its running statistics (eval). The pooling head and `seg_1` are not used by `forward3`; `seg_1` is still
a key of every checkpoint (upstream loads strictly), so it is loaded and checked here, then left out of the graph.

Kaldi fbank (torchaudio.compliance.kaldi semantics, float32 throughout): frames of 400 samples every 160, each frame
minus its mean, pre-emphasis `x[j] - 0.97 x[max(j-1, 0)]`, Povey window (`hann(400, periodic=False) ** 0.85`),
zero-padded to 512, |rFFT|^2, 80 triangular mel bins on the Kaldi mel scale `1127 ln(1 + f/700)` from 20 Hz to
Nyquist (bank computed in float32 as torchaudio does), `log(max(x, float32 eps))`. The FFT is the ONNX `DFT` op.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..ckpt import CheckpointError, load_torch_zip, strict_load
from ..graph_spec import GraphSpec

# Where GPT-SoVITS looks for the model (sv.py); named in errors so users know which file to pass.
UPSTREAM_SV_PATH = "GPT_SoVITS/pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt"
SV_RATE = 16000
# sv.py: ERes2NetV2(baseWidth=24, scale=4, expansion=4); everything else at the class defaults.
ARCH = {"m_channels": 64, "num_blocks": (3, 4, 6, 3), "base_width": 24, "scale": 4, "expansion": 4,
        "feat_dim": 80, "embedding_size": 192, "aff_layers": (3, 4)}
FBANK = {"num_mel_bins": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "preemphasis": 0.97,
         "low_freq": 20.0, "high_freq": 0.0, "window": "povey", "dither": 0.0, "remove_dc_offset": True,
         "snip_edges": True, "round_to_power_of_two": True, "use_power": True, "use_log_fbank": True}


# --------------------------------------------------------------------------------------------- signal chain
def sinc_resample_kernel(orig: int, new: int, lowpass_filter_width: float = 6.0, rolloff: float = 0.99):
    """torchaudio's default polyphase kernel: (kernel f32 [n, taps], width, o, n) for the gcd-reduced rates o:n.

    Arithmetic as torchaudio does it with `dtype=None`: tap positions in float64, the phase `-p / n` in float32,
    the finished kernel cast to float32 (src/reference/sinc.rs documents the same recipe for the Rust side)."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    base = min(o, n) * rolloff
    width = math.ceil(lowpass_filter_width * o / base)
    idx = np.arange(-width, width + o, dtype=np.float64) / o
    phase = (-np.arange(n, dtype=np.int64)).astype(np.float32) / np.float32(n)
    t = (phase.astype(np.float64)[:, None] + idx[None, :]) * base
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    kernel = sinc * (window * (base / o))
    return kernel.astype(np.float32), width, o, n


class SincResample(nn.Module):
    """x [1, S] at `orig` Hz -> [1, ceil(S * n / o)] at `new` Hz (torchaudio.transforms.Resample defaults)."""

    def __init__(self, orig: int, new: int):
        super().__init__()
        kernel, self.width, self.o, self.n = sinc_resample_kernel(orig, new)
        self.register_buffer("kernel", torch.from_numpy(kernel).unsqueeze(1))  # [n, 1, taps]

    def forward(self, x):
        length = x.shape[-1]
        y = F.conv1d(F.pad(x, (self.width, self.width + self.o)).unsqueeze(1), self.kernel, stride=self.o)
        y = y.transpose(1, 2).reshape(x.shape[0], -1)  # [1, blocks * n]: output b*n + p = phase p of block b
        return y[:, : (length * self.n + self.o - 1) // self.o]


def kaldi_mel_banks(num_bins: int, padded: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    """[num_bins, padded // 2 + 1] triangular bank (last column zero), float32 arithmetic as torchaudio's
    `get_mel_banks` (vtln_warp 1): the mel-scale ends in float64 (Python math), the rest in float32 tensors."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + b * delta  # int64 tensor * Python float -> float32
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    freqs = (sample_rate / padded) * torch.arange(padded / 2)  # float arange -> float32, 0 .. nyquist - bin
    mel = (1127.0 * (1.0 + freqs / 700.0).log()).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    bank = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(bank, (0, 1)).to(torch.float32)


class KaldiFbank(nn.Module):
    """wav [1, S16] at 16 kHz -> log mel filterbank [1, T, 80], see the module docstring."""

    def __init__(self, sample_rate: int = SV_RATE, num_mel_bins: int = 80):
        super().__init__()
        self.window_size = int(sample_rate * FBANK["frame_length_ms"] * 0.001)
        self.shift = int(sample_rate * FBANK["frame_shift_ms"] * 0.001)
        self.padded = 1 << (self.window_size - 1).bit_length()
        self.preemph = FBANK["preemphasis"]
        self.register_buffer("window", torch.hann_window(self.window_size, periodic=False,
                                                         dtype=torch.float32).pow(0.85))
        bank = kaldi_mel_banks(num_mel_bins, self.padded, float(sample_rate), FBANK["low_freq"], FBANK["high_freq"])
        self.register_buffer("mel_t", bank.t().contiguous())  # [padded/2 + 1, bins]
        self.register_buffer("offsets", torch.arange(self.window_size, dtype=torch.int64))
        self.eps = float(torch.finfo(torch.float32).eps)

    def frames(self, wav):
        x = wav[0]
        n_frames = (x.shape[0] - self.window_size) // self.shift + 1
        starts = torch.arange(n_frames, dtype=torch.int64, device=x.device) * self.shift
        return x[starts.unsqueeze(1) + self.offsets.unsqueeze(0)]  # [T, 400]

    def forward(self, wav):
        f = self.frames(wav)
        f = f - f.mean(dim=1, keepdim=True)
        prev = torch.cat([f[:, :1], f[:, :-1]], dim=1)
        f = (f - self.preemph * prev) * self.window
        f = F.pad(f, (0, self.padded - self.window_size))
        power = torch.fft.rfft(f).abs().pow(2.0)  # [T, padded/2 + 1]
        mel = torch.matmul(power, self.mel_t)
        return torch.clamp(mel, min=self.eps).log().unsqueeze(0)


# --------------------------------------------------------------------------------------------- ERes2NetV2
class AFF(nn.Module):
    """Attentional feature fusion: a = local_att(cat(x, y)); x (1 + tanh a) + y (1 - tanh a)."""

    def __init__(self, channels: int, r: int = 4):
        super().__init__()
        inter = channels // r
        self.local_att = nn.Sequential(
            nn.Conv2d(2 * channels, inter, 1), nn.BatchNorm2d(inter), nn.SiLU(),
            nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x, y):
        w = 1.0 + torch.tanh(self.local_att(torch.cat([x, y], dim=1)))
        return x * w + y * (2.0 - w)


def _act(x):
    """The residual blocks' activation: upstream's `ReLU` class is Hardtanh(0, 20)."""
    return torch.clamp(x, 0.0, 20.0)


class Block(nn.Module):
    """ERes2NetV2 bottleneck: 1x1 (stride) -> `scale` 3x3 branches over channel splits (added, or AFF-fused) ->
    1x1, plus the shortcut (1x1 conv + BN when the shape changes)."""

    def __init__(self, in_planes, planes, stride, base_width, scale, expansion, fuse):
        super().__init__()
        width = int(math.floor(planes * (base_width / 64.0)))
        self.width, self.scale, self.fuse = width, scale, fuse
        self.conv1 = nn.Conv2d(in_planes, width * scale, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(scale)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(width) for _ in range(scale)])
        if fuse:
            self.fuse_models = nn.ModuleList([AFF(width, 4) for _ in range(scale - 1)])
        self.conv3 = nn.Conv2d(width * scale, planes * expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes * expansion:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes * expansion, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes * expansion))

    def forward(self, x):
        parts = torch.split(_act(self.bn1(self.conv1(x))), self.width, dim=1)
        outs = []
        sp = parts[0]
        for i in range(self.scale):
            if i > 0:
                sp = self.fuse_models[i - 1](sp, parts[i]) if self.fuse else sp + parts[i]
            sp = _act(self.bns[i](self.convs[i](sp)))
            outs.append(sp)
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        return _act(out + self.shortcut(x))


class ERes2NetV2(nn.Module):
    """Parameter names = the checkpoint's keys (conv1, bn1, layer1..4, layer3_ds, fuse34, seg_1)."""

    def __init__(self, m_channels=64, num_blocks=(3, 4, 6, 3), base_width=24, scale=4, expansion=4, feat_dim=80,
                 embedding_size=192, aff_layers=(3, 4)):
        super().__init__()
        self.feat_dim = feat_dim
        self.conv1 = nn.Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        in_planes = m_channels
        for li, (mult, n, stride) in enumerate(zip((1, 2, 4, 8), num_blocks, (1, 2, 2, 2)), start=1):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(Block(in_planes, m_channels * mult, s, base_width, scale, expansion, li in aff_layers))
                in_planes = m_channels * mult * expansion
            self.add_module(f"layer{li}", nn.Sequential(*blocks))
        self.layer3_ds = nn.Conv2d(m_channels * 4 * expansion, m_channels * 8 * expansion, 3, padding=1, stride=2,
                                   bias=False)
        self.fuse34 = AFF(m_channels * 8 * expansion, 4)
        self.out_channels = m_channels * 8 * expansion
        self.out_freq = feat_dim
        for _ in range(3):  # layer2, layer3, layer4 halve the frequency axis (kernel 1, stride 2: ceil)
            self.out_freq = (self.out_freq - 1) // 2 + 1
        self.embedding_dim = self.out_channels * self.out_freq
        # The pooling head (TSTP mean+std -> seg_1) is not part of forward3; seg_1 stays for strict loading.
        stats = int(feat_dim / 8) * m_channels * 8 * expansion * 2
        self.seg_1 = nn.Linear(stats, embedding_size)

    def stages(self, fbank):
        """fbank [B, T, F] -> dict of every stage output (the golden `sv_dbg_*` hooks) and `emb` [B, C*F']."""
        x = fbank.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        s = {"conv1": self.conv1(x)}
        s["bn1"] = self.bn1(s["conv1"])
        out = torch.relu(s["bn1"])
        for li in range(1, 5):
            out = getattr(self, f"layer{li}")(out)
            s[f"layer{li}"] = out
        s["layer3_ds"] = self.layer3_ds(s["layer3"])
        s["fuse34"] = self.fuse34(s["layer4"], s["layer3_ds"])
        s["emb"] = s["fuse34"].flatten(1, 2).mean(-1)
        return s

    def forward(self, fbank):
        x = fbank.transpose(1, 2).unsqueeze(1)
        out = torch.relu(self.bn1(self.conv1(x)))
        out3 = self.layer3(self.layer2(self.layer1(out)))
        fused = self.fuse34(self.layer4(out3), self.layer3_ds(out3))
        return fused.flatten(1, 2).mean(-1)


class SvGraph(nn.Module):
    """wav32k [1, S] -> (sv_emb [1, D], wav16k [1, S16], fbank [1, T, 80]): the exported `sv` graph."""

    def __init__(self, net: ERes2NetV2, input_rate: int):
        super().__init__()
        self.resample = SincResample(input_rate, SV_RATE)
        self.fbank = KaldiFbank(SV_RATE, net.feat_dim)
        self.net = net

    def forward(self, wav32k):
        wav16k = self.resample(wav32k)
        feats = self.fbank(wav16k)
        return self.net(feats), wav16k, feats


# --------------------------------------------------------------------------------------------- loading
def load_sv_state(path: str) -> tuple:
    """The SV checkpoint: a plain `torch.save` of `ERes2NetV2.state_dict()` (OrderedDict of tensors, float16 or
    float32 weights, int64 `num_batches_tracked`). Returns ({key: numpy array}, sha256 of the file)."""
    kind = "speaker-verification checkpoint (--sv)"
    obj, _, digest = load_torch_zip(path, kind)
    if isinstance(obj, dict) and "weight" in obj and ("config" in obj or "info" in obj):
        raise CheckpointError(f"{kind} {path} is a GPT-SoVITS GPT/SoVITS checkpoint, not the speaker-verification "
                              f"model; --sv takes {UPSTREAM_SV_PATH}")
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{kind} {path}: expected a state dict of tensors (what torch.save(model.state_dict()) "
                              f"writes), got {type(obj).__name__}; --sv takes {UPSTREAM_SV_PATH}")
    if "conv1.weight" not in obj or "fuse34.local_att.0.weight" not in obj:
        raise CheckpointError(f"{kind} {path}: not an ERes2NetV2 state dict (no conv1.weight / fuse34.*); --sv takes "
                              f"{UPSTREAM_SV_PATH}")
    return obj, digest


class SvModel:
    def __init__(self, net: ERes2NetV2, path: str, sha256: str, input_rate: int):
        self.net = net.eval()
        self.path = path
        self.sha256 = sha256
        self.input_rate = input_rate
        self.graph = SvGraph(self.net, input_rate).eval()
        self.embedding_dim = net.embedding_dim
        self.fbank_bins = net.feat_dim

    def min_input_samples(self) -> int:
        """Shortest wav32k giving one fbank frame (S16 >= 400)."""
        rs = self.graph.resample
        return (self.graph.fbank.window_size - 1) * rs.o // rs.n + 1

    def manifest_entry(self) -> dict:
        fb = self.graph.fbank
        return {
            "graph": "sv", "input": "wav32k", "input_rate": self.input_rate, "rate": SV_RATE,
            "embedding_dim": self.embedding_dim, "min_input_samples": self.min_input_samples(),
            "model": "ERes2NetV2(baseWidth=24, scale=4, expansion=4).forward3",
            "fbank": dict(FBANK, num_mel_bins=self.fbank_bins, sample_frequency=SV_RATE,
                          frame_length=fb.window_size, frame_shift=fb.shift, fft_size=fb.padded),
        }

    def onnx_specs(self) -> list:
        g = torch.Generator().manual_seed(11)
        examples = []
        for seconds in (1.2031, 0.8117):  # odd and even lengths: ceil(S/2) and different frame remainders
            s = int(self.input_rate * seconds)
            examples.append((torch.randn(1, s, generator=g) * 0.2,))
        return [GraphSpec(name="sv", module=self.graph, input_names=["wav32k"],
                          output_names=["sv_emb", "wav16k", "fbank"], examples=examples,
                          dynamic_axes={"wav32k": {1: "S"}}, keep_fp32=("resample.", "fbank."))]


def build_sv(path: str, input_rate: int = 32000) -> SvModel:
    state, digest = load_sv_state(path)
    with torch.device("cpu"):
        net = ERes2NetV2(**ARCH)
    strict_load(net, state, f"speaker-verification checkpoint {path} (ERes2NetV2 w24 s4 e4, as sv.py builds it)")
    for p in net.parameters():
        p.requires_grad_(False)
    return SvModel(net, os.path.abspath(path), digest, input_rate)
