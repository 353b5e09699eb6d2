"""SoVITS (GPT-SoVITS `SynthesizerTrn`) inference networks, v1, v2, v2Pro and v2ProPlus, written for ONNX export.

Only what inference needs: the prompt encoder (`ssl_proj` + codebook search), the reference encoder
(`MelStyleEncoder`) and the decoder (codebook lookup, `TextEncoder` with MRTE, speed resampling, reverse flow,
HiFi-GAN generator). No dropout, no posterior encoder, no training code. Batch 1, so every mask is all ones and
is left out.

Parameter names follow the checkpoint's state dict (`enc_p.*`, `dec.*`, `flow.*`, `ref_enc.*`, `ssl_proj.*`,
`quantizer.vq.layers.0._codebook.embed`) so that `strict_load` can check every key.

v2Pro / v2ProPlus (file heads `05` / `06`): v2 plus three layers that fuse a speaker-verification embedding into the
speaker vector, `sv_emb` = Linear(20480, gin), `prelu` = PReLU(gin), `ge_to512` = Linear(gin, 512):
`ge = prelu(ref_enc(spec) + sv_emb(embedding))` conditions the flow and the generator, `ge_to512(ge)` is what the
text encoder's MRTE adds (its width is 512 whatever gin is). v2ProPlus differs from v2Pro only in the generator's
config (wider first upsampling), which the config gives. The ref_enc graph of such a model takes the embedding and
returns the fused `ge` (plus its two terms, for parity); the decode graph takes the fused `ge` (averaged over
references by the caller, as upstream averages the fused per-reference `ge`s) and applies `ge_to512` itself.

Posterior encoder: `enc_q.*` (training only; inference never runs it) is absent from the files GPT-SoVITS writes for
trained voices (`savee` drops it) but present in the official pretrained generators (s2G2333k.pth, s2Gv2ProPlus.pth
are training initialisations; their sizes match the generator plus enc_q). Upstream's loaders skip it
(`strict=False`). Here it is optional but never taken on trust: when present it must be the complete posterior
encoder of this config (`PosteriorEncoderKeys`, every key and shape checked), then it is dropped.

Codebook buffers: the file carries `quantizer.vq.layers.0._codebook.{inited,cluster_size,embed,embed_avg}`.
Only `embed` is used at inference. `cluster_size` and `embed_avg` are the EMA statistics of k-means training;
they are checked for shape (so a file with a different codebook is refused) and then dropped, see
`CODEBOOK_TRAINING_KEYS`. `inited` must be 1: upstream would run k-means on the first input of an uninitialised
codebook, which no exported graph can reproduce, so such a file is refused.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from export.ckpt import Checkpoint, CheckpointError, fold_weight_norm, strict_load
from export.graph_spec import GraphSpec

SYMBOL_COUNTS = {322: "v1", 732: "v2"}
# Versions GPT-SoVITS marks by the file's first two bytes (process_ckpt.py `my_save2`); both have the v2 symbols.
V2PRO_HEADS = {b"05": "v2Pro", b"06": "v2ProPlus"}
V2PRO_VERSIONS = ("v2Pro", "v2ProPlus")
SV_EMB_DIM = 20480  # ERes2NetV2.forward3 output (2048 channels x 10 frequency rows), hard-coded upstream
V2_REF_BINS = 704
SSL_DIM = 768
CODEBOOK_PREFIX = "quantizer.vq.layers.0._codebook."
# Training-only codebook buffers present in every SoVITS file; checked, then not loaded (see module docstring).
CODEBOOK_TRAINING_KEYS = tuple(CODEBOOK_PREFIX + n for n in ("inited", "cluster_size", "embed_avg"))
# The training-only posterior encoder a SoVITS file may carry (see module docstring): checked, then dropped.
ENC_Q_PREFIX = "enc_q."
LRELU_SLOPE = 0.1


# ----------------------------------------------------------------------------------------------------------
# building blocks


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of [B, C, T] (parameters named gamma/beta as in the checkpoints)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        y = F.layer_norm(x.transpose(1, 2), (x.shape[1],), self.gamma, self.beta, self.eps)
        return y.transpose(1, 2)


class RelPosSelfAttention(nn.Module):
    """Multi-head attention of the VITS text encoder; with `window` set, adds relative-position key/value
    embeddings shared by all heads for offsets -window..window (zero contribution beyond)."""

    def __init__(self, channels: int, n_heads: int, window: int | None):
        super().__init__()
        assert channels % n_heads == 0
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window = window
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        if window is not None:
            self.emb_rel_k = nn.Parameter(torch.zeros(1, 2 * window + 1, self.head_dim))
            self.emb_rel_v = nn.Parameter(torch.zeros(1, 2 * window + 1, self.head_dim))

    def _heads(self, t):  # [1, C, T] -> [1, H, T, Dh]
        return t.reshape(t.shape[0], self.n_heads, self.head_dim, t.shape[2]).transpose(2, 3)

    def forward(self, x, c):
        q = self._heads(self.conv_q(x)) / math.sqrt(self.head_dim)
        k = self._heads(self.conv_k(c))
        v = self._heads(self.conv_v(c))
        scores = torch.matmul(q, k.transpose(-2, -1))  # [1, H, Tq, Tk]
        if self.window is not None:
            w = self.window
            length = q.shape[2]
            pos = torch.arange(length, device=x.device)
            rel = pos.unsqueeze(0) - pos.unsqueeze(1)  # rel[i, j] = j - i
            inside = (rel.abs() <= w).to(scores.dtype)
            rel_idx = (rel.clamp(-w, w) + w).expand(scores.shape[0], scores.shape[1], length, length)
            # q_i . e_k[j - i] for |j - i| <= window, 0 elsewhere
            rel_logits = torch.matmul(q, self.emb_rel_k.transpose(1, 2).unsqueeze(0))  # [1, H, T, 2w+1]
            scores = scores + torch.gather(rel_logits, 3, rel_idx) * inside
        p = torch.softmax(scores, dim=-1)
        out = torch.matmul(p, v)
        if self.window is not None:
            # sum_j p[i, j] e_v[j - i]: gather p[i, i + r - w] for r in 0..2w (zero outside the sequence)
            p_pad = F.pad(p, (w, w))  # [1, H, T, T + 2w]; column j + w holds p[:, :, :, j]
            offs = torch.arange(2 * w + 1, device=x.device)
            band_idx = (pos.unsqueeze(1) + offs.unsqueeze(0)).expand(p.shape[0], p.shape[1], length, 2 * w + 1)
            band = torch.gather(p_pad, 3, band_idx)  # [1, H, T, 2w+1]
            out = out + torch.matmul(band, self.emb_rel_v.unsqueeze(0))
        out = out.transpose(2, 3).reshape(out.shape[0], self.n_heads * self.head_dim, out.shape[2])
        return self.conv_o(out)


class ConvFFN(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x):
        x = torch.relu(self.conv_1(F.pad(x, self.pad)))
        return self.conv_2(F.pad(x, self.pad))


class AttnEncoder(nn.Module):
    """Post-norm transformer encoder with relative-position self-attention (window 4)."""

    def __init__(self, channels, filter_channels, n_heads, n_layers, kernel_size, window=4):
        super().__init__()
        self.attn_layers = nn.ModuleList([RelPosSelfAttention(channels, n_heads, window) for _ in range(n_layers)])
        self.norm_layers_1 = nn.ModuleList([ChannelLayerNorm(channels) for _ in range(n_layers)])
        self.ffn_layers = nn.ModuleList([ConvFFN(channels, filter_channels, kernel_size) for _ in range(n_layers)])
        self.norm_layers_2 = nn.ModuleList([ChannelLayerNorm(channels) for _ in range(n_layers)])

    def forward(self, x):
        for attn, n1, ffn, n2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            x = n1(x + attn(x, x))
            x = n2(x + ffn(x))
        return x


class MRTE(nn.Module):
    """Cross attention from content (SSL) frames to phones, plus the speaker vector, at width 512."""

    def __init__(self, content_channels=192, hidden=512, out_channels=192, n_heads=4):
        super().__init__()
        self.cross_attention = RelPosSelfAttention(hidden, n_heads, None)
        self.c_pre = nn.Conv1d(content_channels, hidden, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden, 1)
        self.c_post = nn.Conv1d(hidden, out_channels, 1)

    def forward(self, ssl_enc, text, ge):
        ssl_enc = self.c_pre(ssl_enc)
        text_enc = self.text_pre(text)
        x = self.cross_attention(ssl_enc, text_enc) + ssl_enc + ge
        return self.c_post(x)


def resample_linear(y, out_len_like):
    """Linear resampling of y [B, C, Tin] to Tout = out_len_like.shape[-1] frames, with the index math of
    PyTorch's CPU `F.interpolate(mode="linear", align_corners=False)` given an output size (scale Tin/Tout in
    float32, source = max(scale*(i+0.5)-0.5, 0), i0 = floor, i1 = min(i0+1, Tin-1)). Tout == Tin is exact."""
    t_in = y.shape[-1]
    ones_out = torch.ones_like(out_len_like[0, 0], dtype=torch.float32)  # [Tout]
    t_out_f = ones_out.sum()
    t_in_f = torch.ones_like(y[0, 0], dtype=torch.float32).sum()
    scale = t_in_f / t_out_f
    idx = torch.cumsum(ones_out, 0) - 1.0  # 0..Tout-1 as float32
    src = torch.clamp(scale * (idx + 0.5) - 0.5, min=0.0)
    i0 = torch.floor(src).to(torch.int64)
    i0 = torch.minimum(i0, torch.full_like(i0, 0) + (t_in - 1))
    lam1 = torch.clamp(src - i0.to(torch.float32), 0.0, 1.0)
    lam0 = 1.0 - lam1
    i1 = torch.minimum(i0 + 1, torch.full_like(i0, 0) + (t_in - 1))
    y0 = torch.index_select(y, 2, i0)
    y1 = torch.index_select(y, 2, i1)
    return y0 * lam0 + y1 * lam1


class TextEncoder(nn.Module):
    def __init__(self, out_channels, hidden_channels, filter_channels, n_heads, n_layers, kernel_size, n_symbols,
                 ssl_dim=SSL_DIM, mrte_hidden=512, mrte_heads=4):
        super().__init__()
        self.out_channels = out_channels
        self.ssl_proj = nn.Conv1d(ssl_dim, hidden_channels, 1)
        self.encoder_ssl = AttnEncoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size)
        self.encoder_text = AttnEncoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size)
        self.text_embedding = nn.Embedding(n_symbols, hidden_channels)
        self.mrte = MRTE(hidden_channels, mrte_hidden, hidden_channels, mrte_heads)
        self.encoder2 = AttnEncoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, y, text, ge, noise):
        y = self.encoder_ssl(self.ssl_proj(y))
        t = self.encoder_text(self.text_embedding(text).transpose(1, 2))
        y = self.encoder2(self.mrte(y, t, ge))
        y = resample_linear(y, noise)
        stats = self.proj(y)
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return y, m, logs


class WaveNet(nn.Module):
    """Gated dilated conv stack (VITS `WN`), conditioned on the speaker vector."""

    def __init__(self, hidden, kernel_size, dilation_rate, n_layers, gin_channels):
        super().__init__()
        self.hidden = hidden
        self.n_layers = n_layers
        self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            d = dilation_rate ** i
            self.in_layers.append(nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=d,
                                            padding=(kernel_size * d - d) // 2))
            self.res_skip_layers.append(nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1))

    def forward(self, x, g):
        g = self.cond_layer(g)
        out = None
        h = self.hidden
        for i in range(self.n_layers):
            a = self.in_layers[i](x) + g[:, 2 * h * i: 2 * h * (i + 1), :]
            acts = torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:])
            rs = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = x + rs[:, :h]
                skip = rs[:, h:]
            else:
                skip = rs
            out = skip if out is None else out + skip
        return out


class CouplingLayer(nn.Module):
    """Mean-only residual coupling layer (reverse direction only)."""

    def __init__(self, channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels):
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden, self.half, 1)

    def reverse(self, x, g):
        x0, x1 = x[:, : self.half], x[:, self.half:]
        m = self.post(self.enc(self.pre(x0), g))
        return torch.cat([x0, x1 - m], 1)


class _NoParams(nn.Module):
    """Placeholder for the parameter-free Flip modules so that indices match `flow.flows.<i>`."""


class CouplingFlow(nn.Module):
    def __init__(self, channels, hidden, kernel_size, dilation_rate, n_layers, n_flows, gin_channels):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(CouplingLayer(channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels))
            self.flows.append(_NoParams())

    def reverse(self, x, g):
        for f in reversed(self.flows):
            if isinstance(f, CouplingLayer):
                x = f.reverse(x, g)
            else:
                x = torch.flip(x, [1])
        return x


class ResBlock1(nn.Module):
    def __init__(self, ch, k, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList([nn.Conv1d(ch, ch, k, 1, dilation=d, padding=(k * d - d) // 2) for d in dilations])
        self.convs2 = nn.ModuleList([nn.Conv1d(ch, ch, k, 1, dilation=1, padding=(k - 1) // 2) for _ in dilations])

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            t = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = t + x
        return x


class Generator(nn.Module):
    def __init__(self, in_ch, resblock_kernel_sizes, resblock_dilation_sizes, upsample_rates,
                 upsample_initial_channel, upsample_kernel_sizes, gin_channels):
        super().__init__()
        self.n_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(in_ch, upsample_initial_channel, 7, 1, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            cin, ch = upsample_initial_channel // (2 ** i), upsample_initial_channel // (2 ** (i + 1))
            self.ups.append(nn.ConvTranspose1d(cin, ch, k, u, padding=(k - u) // 2))
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch, k, d))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def forward(self, x, g):
        x = self.conv_pre(x) + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            xs = None
            for j in range(self.n_kernels):
                r = self.resblocks[i * self.n_kernels + j](x)
                xs = r if xs is None else xs + r
            x = xs / self.n_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


# ---- reference encoder (MelStyleEncoder)


class _Linear(nn.Module):  # "LinearNorm": a Linear stored under `.fc`
    def __init__(self, i, o):
        super().__init__()
        self.fc = nn.Linear(i, o)

    def forward(self, x):
        return self.fc(x)


class _ConvNorm(nn.Module):  # a Conv1d stored under `.conv`
    def __init__(self, i, o, k):
        super().__init__()
        self.conv = nn.Conv1d(i, o, k, padding=(k - 1) // 2)

    def forward(self, x):
        return self.conv(x)


class _GLU(nn.Module):
    def __init__(self, ch, k):
        super().__init__()
        self.ch = ch
        self.conv1 = _ConvNorm(ch, 2 * ch, k)

    def forward(self, x):
        y = self.conv1(x)
        return x + y[:, : self.ch] * torch.sigmoid(y[:, self.ch:])


class _Mish(nn.Module):
    def forward(self, x):
        return x * torch.tanh(F.softplus(x))


class _StyleAttention(nn.Module):
    def __init__(self, n_head, d_model):
        super().__init__()
        self.n_head = n_head
        self.d_k = d_model // n_head
        self.temperature = float(np.power(d_model, 0.5))
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)

    def forward(self, x):  # [1, T, D]
        b, t, _ = x.shape
        q = self.w_qs(x).reshape(b, t, self.n_head, self.d_k).permute(2, 0, 1, 3).reshape(-1, t, self.d_k)
        k = self.w_ks(x).reshape(b, t, self.n_head, self.d_k).permute(2, 0, 1, 3).reshape(-1, t, self.d_k)
        v = self.w_vs(x).reshape(b, t, self.n_head, self.d_k).permute(2, 0, 1, 3).reshape(-1, t, self.d_k)
        attn = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / self.temperature, dim=2)
        o = torch.bmm(attn, v).reshape(self.n_head, b, t, self.d_k).permute(1, 2, 0, 3).reshape(b, t, -1)
        return self.fc(o) + x


class MelStyleEncoder(nn.Module):
    def __init__(self, in_dim, out_dim, hidden=128, kernel_size=5, n_head=2):
        super().__init__()
        self.spectral = nn.Sequential(_Linear(in_dim, hidden), _Mish(), nn.Identity(),
                                      _Linear(hidden, hidden), _Mish(), nn.Identity())
        self.temporal = nn.Sequential(_GLU(hidden, kernel_size), _GLU(hidden, kernel_size))
        self.slf_attn = _StyleAttention(n_head, hidden)
        self.fc = _Linear(hidden, out_dim)

    def forward(self, spec):  # [1, bins, F] -> [1, out_dim, 1]
        x = self.spectral(spec.transpose(1, 2))
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        x = self.fc(self.slf_attn(x))
        n = torch.ones_like(x[:, :, :1]).sum(dim=1, keepdim=True)  # number of frames, as float
        w = (x / n).sum(dim=1)
        return w.unsqueeze(-1)


# ----------------------------------------------------------------------------------------------------------
# the weight container (names = checkpoint keys) and the three exported graphs


class _Codebook(nn.Module):
    def __init__(self, bins, dim):
        super().__init__()
        self.register_buffer("embed", torch.zeros(bins, dim))


def _nested(name_path, leaf):
    """nn.Module chain so that `leaf` sits at `<name_path>` (dot-separated, digits become ModuleList indices)."""
    parts = name_path.split(".")
    mod = leaf
    for p in reversed(parts[1:]):
        if p.isdigit():
            ml = nn.ModuleList([mod])
            assert p == "0"
            mod = ml
        else:
            wrapper = nn.Module()
            wrapper.add_module(p, mod)
            mod = wrapper
    return parts[0], mod


class SynthesizerWeights(nn.Module):
    def __init__(self, version: str, n_symbols: int, spec_channels: int, m: dict):
        super().__init__()
        self.version = version
        self.inter_channels = int(m["inter_channels"])
        self.gin_channels = int(m["gin_channels"])
        self.ref_bins = spec_channels if version == "v1" else V2_REF_BINS
        # Dimensions upstream hard-codes. Real checkpoints never carry the `gsv_*` keys; only the demo bundle's
        # random checkpoints set them, to shrink the model (see export/random_ckpt.py).
        self.ssl_dim = int(m.get("gsv_ssl_dim", SSL_DIM))
        codebook_size = int(m.get("gsv_codebook_size", 1024))
        self.enc_p = TextEncoder(self.inter_channels, int(m["hidden_channels"]), int(m["filter_channels"]),
                                 int(m["n_heads"]), int(m["n_layers"]), int(m["kernel_size"]), n_symbols,
                                 ssl_dim=self.ssl_dim, mrte_hidden=int(m.get("gsv_mrte_hidden", 512)),
                                 mrte_heads=int(m.get("gsv_mrte_heads", 4)))
        self.dec = Generator(self.inter_channels, m["resblock_kernel_sizes"], m["resblock_dilation_sizes"],
                             m["upsample_rates"], int(m["upsample_initial_channel"]), m["upsample_kernel_sizes"],
                             self.gin_channels)
        self.flow = CouplingFlow(self.inter_channels, int(m["hidden_channels"]), 5, 1, 4, 4, self.gin_channels)
        self.ref_enc = MelStyleEncoder(self.ref_bins, self.gin_channels, hidden=int(m.get("gsv_ref_hidden", 128)))
        self.ssl_proj = nn.Conv1d(self.ssl_dim, self.ssl_dim, 2, stride=2)
        top, mod = _nested("quantizer.vq.layers.0._codebook", _Codebook(codebook_size, self.ssl_dim))
        self.add_module(top, mod)
        self.is_v2pro = version in V2PRO_VERSIONS
        if self.is_v2pro:
            self.sv_dim = int(m.get("gsv_sv_dim", SV_EMB_DIM))
            self.sv_emb = nn.Linear(self.sv_dim, self.gin_channels)
            self.prelu = nn.PReLU(num_parameters=self.gin_channels)
            self.ge_to512 = nn.Linear(self.gin_channels, int(m.get("gsv_mrte_hidden", 512)))

    @property
    def codebook(self):
        return self.quantizer.vq.layers[0]._codebook.embed


class PosteriorEncoderKeys(nn.Module):
    """The key layout of upstream's training-only `enc_q` (PosteriorEncoder(spec_channels, inter, hidden, kernel 5,
    dilation 1, 16 layers, gin)): only used to check a file's enc_q.* keys and shapes; never run, never exported."""

    def __init__(self, spec_channels: int, inter: int, hidden: int, gin: int):
        super().__init__()
        enc_q = nn.Module()
        enc_q.pre = nn.Conv1d(spec_channels, hidden, 1)
        enc_q.enc = WaveNet(hidden, 5, 1, 16, gin)
        enc_q.proj = nn.Conv1d(hidden, inter * 2, 1)
        self.enc_q = enc_q


class VqEncoder(nn.Module):
    """ssl [1,768,T50] -> (codes i64 [1,T25], ssl_proj [1,768,T25])"""

    def __init__(self, w: SynthesizerWeights):
        super().__init__()
        self.ssl_proj = w.ssl_proj
        self.codebook = w.quantizer.vq.layers[0]._codebook

    def forward(self, ssl):
        p = self.ssl_proj(ssl)
        x = p[0].transpose(0, 1)  # [T25, 768]
        e = self.codebook.embed.t()  # [768, bins]
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ e + e.pow(2).sum(0, keepdim=True))
        codes = torch.argmax(dist, dim=-1).unsqueeze(0)
        return codes, p


class RefEncoder(nn.Module):
    """spec [1,1025,F] -> ge [1,gin,1] (v2: first 704 bins, v1: all)"""

    def __init__(self, w: SynthesizerWeights):
        super().__init__()
        self.ref_enc = w.ref_enc
        self.bins = w.ref_bins

    def forward(self, spec):
        return self.ref_enc(spec[:, : self.bins])


class RefEncoderPro(nn.Module):
    """v2Pro: spec [1,1025,F], sv_emb [1,20480] -> (ge [1,gin,1] fused, ge_refenc [1,gin,1], sv_proj [1,gin]):
    ge = prelu(ref_enc(spec[:, :704]) + sv_emb(sv_emb)), per reference (upstream `get_ge`)."""

    def __init__(self, w: SynthesizerWeights):
        super().__init__()
        self.ref_enc = w.ref_enc
        self.bins = w.ref_bins
        self.sv_emb = w.sv_emb
        self.prelu = w.prelu

    def forward(self, spec, sv_emb):
        ge_refenc = self.ref_enc(spec[:, : self.bins])
        sv_proj = self.sv_emb(sv_emb)
        ge = self.prelu(ge_refenc + sv_proj.unsqueeze(-1))
        return ge, ge_refenc, sv_proj


class Decoder(nn.Module):
    """codes [1,1,T25], text [1,N], ge [1,G,1], noise_scale [1], noise [1,C,Ty] ->
    (audio [1,1,Ty*hop], z, m_p, logs_p [1,C,Ty], enc_p_x [1,192,Ty], quantized [1,768,T25])"""

    def __init__(self, w: SynthesizerWeights):
        super().__init__()
        self.codebook = w.quantizer.vq.layers[0]._codebook
        self.enc_p = w.enc_p
        self.flow = w.flow
        self.dec = w.dec
        self.ge_to512 = w.ge_to512 if w.is_v2pro else None

    def forward(self, codes, text, ge, noise_scale, noise):
        quantized = F.embedding(codes[0], self.codebook.embed).transpose(1, 2)  # [1, 768, T25]
        # nearest x2 upsampling to 50 Hz: every frame twice
        q50 = quantized.unsqueeze(-1).expand(-1, -1, -1, 2).reshape(1, quantized.shape[1], -1)
        # v2Pro: the text encoder's MRTE gets ge_to512(ge), the flow and the generator the gin-wide ge
        ge_text = self.ge_to512(ge.transpose(1, 2)).transpose(1, 2) if self.ge_to512 is not None else ge
        x, m_p, logs_p = self.enc_p(q50, text, ge_text, noise)
        z_p = m_p + noise * torch.exp(logs_p) * noise_scale
        z = self.flow.reverse(z_p, ge)
        audio = self.dec(z, ge)
        if self.ge_to512 is not None:
            return audio, z, m_p, logs_p, x, quantized, ge_text
        return audio, z, m_p, logs_p, x, quantized


class SovitsModel:
    def __init__(self, weights: SynthesizerWeights, config: dict):
        self.weights = weights.eval()
        self.version = weights.version
        self.config = config
        self.inter_channels = weights.inter_channels
        self.gin_channels = weights.gin_channels
        self.upsample_rates = [int(u) for u in config["model"]["upsample_rates"]]
        self.samples_per_frame = int(np.prod(self.upsample_rates))
        self.ref_bins = weights.ref_bins
        self.n_symbols = weights.enc_p.text_embedding.weight.shape[0]
        self.is_v2pro = weights.is_v2pro
        self.vq_encoder = VqEncoder(weights).eval()
        self.ref_encoder = (RefEncoderPro(weights) if self.is_v2pro else RefEncoder(weights)).eval()
        self.decoder = Decoder(weights).eval()

    def onnx_specs(self) -> list:
        g = torch.Generator().manual_seed(7)
        C, G = self.inter_channels, self.gin_channels
        E, bins = self.weights.ssl_dim, self.weights.codebook.shape[0]
        vq = GraphSpec(
            name="vq_encode", module=self.vq_encoder, input_names=["ssl"], output_names=["codes", "ssl_proj"],
            examples=[(torch.randn(1, E, 13, generator=g),), (torch.randn(1, E, 8, generator=g),)],
            dynamic_axes={"ssl": {2: "T50"}},
        )
        spec_bins = int(self.config["data"]["filter_length"]) // 2 + 1
        if self.is_v2pro:
            D = self.weights.sv_dim
            ref = GraphSpec(
                name="ref_enc", module=self.ref_encoder, input_names=["spec", "sv_emb"],
                output_names=["ge", "ge_refenc", "sv_proj"],
                examples=[(torch.rand(1, spec_bins, 12, generator=g) * 3, torch.rand(1, D, generator=g) * 4),
                          (torch.rand(1, spec_bins, 21, generator=g) * 3, torch.rand(1, D, generator=g) * 4)],
                dynamic_axes={"spec": {2: "F"}},
            )
        else:
            ref = GraphSpec(
                name="ref_enc", module=self.ref_encoder, input_names=["spec"], output_names=["ge"],
                examples=[(torch.rand(1, 1025, 12, generator=g) * 3,), (torch.rand(1, 1025, 21, generator=g) * 3,)],
                dynamic_axes={"spec": {2: "F"}},
            )

        def dec_example(t25, n, ty, ns):
            return (torch.randint(0, bins, (1, 1, t25), generator=g),
                    torch.randint(0, self.n_symbols, (1, n), generator=g),
                    torch.randn(1, G, 1, generator=g) * 0.1,
                    torch.tensor([ns], dtype=torch.float32),
                    torch.randn(1, C, ty, generator=g))

        dec = GraphSpec(
            name="sovits_decode", module=self.decoder,
            input_names=["codes", "text", "ge", "noise_scale", "noise"],
            output_names=["audio", "z", "m_p", "logs_p", "enc_p_x", "quantized"] + (["ge512"] if self.is_v2pro else []),
            # first example: Ty != 2*T25 (speed resampling); second: Ty == 2*T25 (identity), other N
            examples=[dec_example(6, 5, 10, 0.5), dec_example(4, 9, 8, 0.0)],
            dynamic_axes={"codes": {2: "T25"}, "text": {1: "N"}, "noise": {2: "Ty"}},
        )
        return [vq, ref, dec]


def detect_version(weights: dict, head: bytes = b"PK", config: dict | None = None) -> str:
    """v1 / v2 by the text-embedding row count (as upstream's loaders), v2Pro / v2ProPlus by the file head `05` /
    `06` (upstream's `head2version`). A `PK` file that carries the v2Pro layers (re-saved by other tools) is taken at
    its config's word (`model.version`); without it, it is refused rather than guessed."""
    key = "enc_p.text_embedding.weight"
    if key not in weights:
        raise CheckpointError(f"SoVITS weights have no {key}: not a SoVITS SynthesizerTrn state dict")
    rows = int(weights[key].shape[0])
    if rows not in SYMBOL_COUNTS:
        raise CheckpointError(f"{key} has {rows} rows; expected 322 (v1) or 732 (v2) symbols "
                              "(v3/v4 models are not supported)")
    if head in V2PRO_HEADS:
        if rows != 732:
            raise CheckpointError(f"file head {head.decode()!r} marks a {V2PRO_HEADS[head]} model, but {key} has "
                                  f"{rows} rows (v2Pro models use the 732 v2 symbols)")
        return V2PRO_HEADS[head]
    if any(k.startswith(("sv_emb.", "ge_to512.", "prelu.")) for k in weights):
        cfg_version = ((config or {}).get("model") or {}).get("version") or (config or {}).get("version")
        if cfg_version in V2PRO_VERSIONS and rows == 732:
            return cfg_version
        raise CheckpointError(f"the weights have v2Pro layers (sv_emb/ge_to512/prelu) but neither the file head "
                              f"({head!r}; GPT-SoVITS writes 05/06) nor the config (version {cfg_version!r}) says "
                              f"v2Pro or v2ProPlus")
    return SYMBOL_COUNTS[rows]


def _check_codebook_extras(state: dict, source: str):
    embed = state.get(CODEBOOK_PREFIX + "embed")
    if embed is None:
        raise CheckpointError(f"{source}: missing key {CODEBOOK_PREFIX}embed")
    bins = embed.shape[0]
    expected = {"inited": (1,), "cluster_size": (bins,), "embed_avg": tuple(embed.shape)}
    for name, shape in expected.items():
        k = CODEBOOK_PREFIX + name
        if k not in state:
            raise CheckpointError(f"{source}: missing key {k}")
        if tuple(state[k].shape) != shape:
            raise CheckpointError(f"{source}: key {k} has shape {tuple(state[k].shape)}, expected {shape}")
    if float(state[CODEBOOK_PREFIX + "inited"][0]) != 1.0:
        raise CheckpointError(f"{source}: codebook was never initialised ({CODEBOOK_PREFIX}inited != 1)")


def build_sovits(ckpt: Checkpoint) -> SovitsModel:
    source = f"SoVITS {getattr(ckpt, 'path', '')}".strip()
    cfg = ckpt.config
    version = detect_version(ckpt.weights, getattr(ckpt, "head", b"PK"), cfg)
    if not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("data"), dict):
        raise CheckpointError(f"{source}: config lacks the 'model'/'data' sections")
    m, d = cfg["model"], cfg["data"]
    needed = ["inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
              "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes", "upsample_rates",
              "upsample_initial_channel", "upsample_kernel_sizes", "gin_channels"]
    missing = [k for k in needed if k not in m]
    if missing or "filter_length" not in d:
        raise CheckpointError(f"{source}: config is missing {missing or ['data.filter_length']}")
    if str(m["resblock"]) != "1":
        raise CheckpointError(f"{source}: resblock type {m['resblock']!r} is not supported (only '1')")
    if m.get("semantic_frame_rate", "25hz") != "25hz":
        raise CheckpointError(f"{source}: semantic_frame_rate {m.get('semantic_frame_rate')!r} not supported")
    spec_channels = int(d["filter_length"]) // 2 + 1
    n_symbols = int(ckpt.weights["enc_p.text_embedding.weight"].shape[0])
    with torch.device("cpu"):
        w = SynthesizerWeights(version, n_symbols, spec_channels, m)
    enc_q = {k: v for k, v in ckpt.weights.items() if k.startswith(ENC_Q_PREFIX)}
    if enc_q:
        with torch.device("cpu"):
            keys = PosteriorEncoderKeys(spec_channels, int(m["inter_channels"]), int(m["hidden_channels"]),
                                        int(m["gin_channels"]))
        strict_load(keys, fold_weight_norm(enc_q), f"{source} (training-only posterior encoder enc_q)")
        del keys
    state = fold_weight_norm({k: v for k, v in ckpt.weights.items() if not k.startswith(ENC_Q_PREFIX)})
    _check_codebook_extras(state, source)
    state = {k: v for k, v in state.items() if k not in CODEBOOK_TRAINING_KEYS}
    strict_load(w, state, source)
    for p in w.parameters():
        p.requires_grad_(False)
    return SovitsModel(w, cfg)
