"""GPT-SoVITS text-to-semantic GPT (AR/models/t2s_model.py), inference only, split into two graphs.

prefill: phone_ids i64 [1,N], bert f32 [1,1024,N], prompt i64 [1,P]
         -> logits f32 [1,V] (raw, last position), k_i / v_i f32 [1,N+P,D] for every layer i
step:    token i64 [1,1], position i64 [1], past K/V [1,T,D] per layer -> logits f32 [1,V], new K/V rows [1,1,D]
         (`T2S.step`, the reference; the exported `gpt_step` graph is built by models/gpt_onnx.py with a
         head-major cache updated in place and is checked against this; likewise `gpt_prefill`)

Upstream facts reproduced here: post-LayerNorm blocks (eps 1e-5) with one fused in_proj split q,k,v; ReLU MLP of
width 4*hidden_dim (config `linear_units` is ignored upstream too); text x = emb(phones) + bert_proj(bert) then
`x + alpha_text*pe[0..N)`; audio y = emb(codes) + alpha_audio*pe[0..P) (scale=False, so no sqrt(d) factor);
first-step mask: text rows see all text and no audio, audio rows see all text and audio causally; later steps see
the whole cache without a mask; the k-th generated token is fed at audio position P+k.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ckpt import Checkpoint, CheckpointError, strict_load
from ..graph_spec import GraphSpec


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """pe[pos, 2i] = sin(pos * 10000^(-2i/d)), pe[pos, 2i+1] = cos(...), float32 like upstream's table."""
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    ang = positions.to(torch.float32).unsqueeze(-1) * div  # [T, d/2]
    pe = torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1)  # [T, d/2, 2] -> interleave
    return pe.reshape(positions.shape[0], dim)


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.d, self.heads = d, heads
        self.self_attn = nn.Module()
        self.self_attn.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.self_attn.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        nn.init.xavier_uniform_(self.self_attn.in_proj_weight)  # as nn.MultiheadAttention; loading overwrites it
        self.self_attn.out_proj = nn.Linear(d, d)
        self.linear1 = nn.Linear(d, 4 * d)
        self.linear2 = nn.Linear(4 * d, d)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)

    def qkv(self, x):
        return F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias).chunk(3, dim=-1)

    def attend(self, x, q, k, v, mask):
        b, tq, _ = q.shape
        tk = k.shape[1]
        h = self.heads
        qh = q.view(b, tq, h, -1).transpose(1, 2)
        kh = k.view(b, tk, h, -1).transpose(1, 2)
        vh = v.view(b, tk, h, -1).transpose(1, 2)
        scores = torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(qh.shape[-1])
        if mask is not None:  # mask: True = may attend
            scores = scores.masked_fill(~mask, float("-inf"))
        att = torch.matmul(torch.softmax(scores, dim=-1), vh)
        att = att.transpose(1, 2).reshape(b, tq, self.d)
        x = self.norm1(x + self.self_attn.out_proj(att))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


    def attend_step(self, x, q, k_new, v_new, k_past, v_past):
        """One query row against the cache, without copying the cache: the per-head products are taken with a
        block-diagonal selector E [D,H] (E[j,h] = 1 when channel j belongs to head h), so K and V [T,D] are read once
        by a plain MatMul, never transposed or concatenated (that copy dominated long steps). Equal to `attend`
        up to float summation order."""
        d, h = self.d, self.heads
        dh = d // h
        e = (torch.arange(d).unsqueeze(1) // dh == torch.arange(h).unsqueeze(0)).to(x.dtype)  # [D,H]
        qb = e.transpose(0, 1) * q.reshape(1, d)  # [H,D]: head h's query in its own channels, zeros elsewhere
        # keep the batch axis (indexing [0] would export as a Gather copying the cache); K^T folds into the GEMM
        s_past = torch.matmul(qb, k_past.transpose(1, 2))  # [1,H,T]
        s_new = (qb * k_new).sum(dim=-1, keepdim=True)  # [1,H,1]
        s = torch.cat([s_past, s_new], dim=2) / math.sqrt(dh)
        p = torch.softmax(s, dim=2)  # over positions, per head
        t = k_past.shape[1]
        o_full = torch.matmul(p.narrow(2, 0, t), v_past) + p.narrow(2, t, 1) * v_new  # [1,H,D]
        o = (o_full * e.transpose(0, 1)).sum(dim=1)  # [1,D]: head h's output in its own channels
        att = o.view(1, 1, d)
        x = self.norm1(x + self.self_attn.out_proj(att))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class T2S(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        m = cfg["model"]
        self.d = int(m["hidden_dim"])
        if int(m["embedding_dim"]) != self.d:
            raise CheckpointError(f"GPT config: embedding_dim {m['embedding_dim']} != hidden_dim {m['hidden_dim']}")
        self.heads = int(m["head"])
        self.n_layer = int(m["n_layer"])
        self.vocab = int(m["vocab_size"])
        self.eos = int(m["EOS"])
        if self.eos != self.vocab - 1:
            raise CheckpointError(f"GPT config: EOS {self.eos} must be vocab_size-1 ({self.vocab - 1})")
        self.phoneme_vocab = int(m["phoneme_vocab_size"])
        # upstream hard-codes 1024 (chinese-roberta-wwm-ext-large); only the demo bundle sets `bert_dim`
        self.bert_dim = int(m.get("bert_dim", 1024))
        self.bert_proj = nn.Linear(self.bert_dim, self.d)
        self.ar_text_embedding = nn.Module()
        self.ar_text_embedding.word_embeddings = nn.Embedding(self.phoneme_vocab, self.d)
        self.ar_text_position = nn.Module()
        self.ar_text_position.alpha = nn.Parameter(torch.ones(1))
        self.ar_audio_embedding = nn.Module()
        self.ar_audio_embedding.word_embeddings = nn.Embedding(self.vocab, self.d)
        self.ar_audio_position = nn.Module()
        self.ar_audio_position.alpha = nn.Parameter(torch.ones(1))
        self.h = nn.Module()
        self.h.layers = nn.ModuleList([Block(self.d, self.heads) for _ in range(self.n_layer)])
        self.ar_predict_layer = nn.Linear(self.d, self.vocab, bias=False)

    def prefill(self, phone_ids, bert, prompt):
        n = phone_ids.shape[1]
        p = prompt.shape[1]
        x = self.ar_text_embedding.word_embeddings(phone_ids) + self.bert_proj(bert.transpose(1, 2))
        x = x + self.ar_text_position.alpha * sinusoid(torch.arange(n), self.d).unsqueeze(0)
        y = self.ar_audio_embedding.word_embeddings(prompt)
        y = y + self.ar_audio_position.alpha * sinusoid(torch.arange(p), self.d).unsqueeze(0)
        xy = torch.cat([x, y], dim=1)
        t = n + p
        i = torch.arange(t).unsqueeze(1)
        j = torch.arange(t).unsqueeze(0)
        # text rows (i < n): attend j < n; audio rows: attend j < n or j <= i
        allowed = (j < n) | ((i >= n) & (j <= i))
        mask = allowed.unsqueeze(0).unsqueeze(0)
        ks, vs = [], []
        for blk in self.h.layers:
            q, k, v = blk.qkv(xy)
            ks.append(k)
            vs.append(v)
            xy = blk.attend(xy, q, k, v, mask)
        logits = self.ar_predict_layer(xy[:, -1])
        return (logits, *ks, *vs)

    def step(self, token, position, *past):
        pk, pv = past[: self.n_layer], past[self.n_layer:]
        x = self.ar_audio_embedding.word_embeddings(token)
        x = x + self.ar_audio_position.alpha * sinusoid(position, self.d).unsqueeze(0)
        nks, nvs = [], []
        for i, blk in enumerate(self.h.layers):
            q, k, v = blk.qkv(x)
            nks.append(k)
            nvs.append(v)
            x = blk.attend_step(x, q, k, v, pk[i], pv[i])
        logits = self.ar_predict_layer(x[:, -1])
        return (logits, *nks, *nvs)


class _Prefill(nn.Module):
    def __init__(self, t2s):
        super().__init__()
        self.t2s = t2s

    def forward(self, phone_ids, bert, prompt):
        return self.t2s.prefill(phone_ids, bert, prompt)


class _Step(nn.Module):
    def __init__(self, t2s):
        super().__init__()
        self.t2s = t2s

    def forward(self, token, position, *past):
        return self.t2s.step(token, position, *past)


def build_gpt(ckpt: Checkpoint) -> T2S:
    cfg = ckpt.config
    if "model" not in cfg:
        raise CheckpointError(f"{ckpt.path}: GPT checkpoint config has no 'model' section; is this a SoVITS file?")
    w = ckpt.weights
    if any(k.startswith("enc_p.") for k in w):
        raise CheckpointError(f"{ckpt.path}: this is a SoVITS checkpoint, not a GPT one (pass it as --sovits)")
    state = {}
    for k, v in w.items():
        if not k.startswith("model."):
            raise CheckpointError(f"{ckpt.path}: unexpected GPT key {k} (keys start with 'model.')")
        state[k[len("model."):]] = v
    model = T2S(cfg)
    strict_load(model, state, f"GPT checkpoint {ckpt.path}")
    return model.eval()


def onnx_specs(model: T2S) -> list:
    from . import gpt_onnx

    L, D = model.n_layer, model.d
    kn = [f"k_{i}" for i in range(L)]
    vn = [f"v_{i}" for i in range(L)]
    g = torch.Generator().manual_seed(0)

    def ex_prefill(n, p):
        return (torch.randint(0, model.phoneme_vocab, (1, n), generator=g), torch.randn(1, model.bert_dim, n, generator=g),
                torch.randint(0, model.vocab - 1, (1, p), generator=g))

    prefill = GraphSpec(
        name="gpt_prefill", module=_Prefill(model).eval(), input_names=["phone_ids", "bert", "prompt"],
        output_names=["logits", *kn, *vn], examples=[ex_prefill(9, 7), ex_prefill(23, 15)],
        dynamic_axes={"phone_ids": {1: "N"}, "bert": {2: "N"}, "prompt": {1: "P"}},
        build=lambda: gpt_onnx.build_prefill_model(model),
    )

    # both graphs are built node by node (models/gpt_onnx.py); T2S.prefill / T2S.step are the references they are
    # checked against
    step = GraphSpec(
        name="gpt_step", module=gpt_onnx.ReferenceStep(model).eval(),
        input_names=gpt_onnx.input_names(L), output_names=gpt_onnx.output_names(L),
        examples=[gpt_onnx.example(model, 17, 24, 5, 1), gpt_onnx.example(model, 40, 41, 30, 2)],
        dynamic_axes={}, build=lambda: gpt_onnx.build_step_model(model),
        post_check=lambda path: gpt_onnx.batch_check(path, L, model.heads, gpt_onnx.kv_head_dim(D, model.heads),
                                                     model.vocab),
    )
    return [prefill, step]
