"""Own PyTorch definitions of the two Hugging Face models GPT-SoVITS uses, loaded from HF folders.

* `HubertEncoder` - chinese-hubert-base (`HubertModel`): wav16k [1,S] -> ssl [1,768,T50] =
  `HubertModel(input_values).last_hidden_state.transpose(1,2)` with no attention mask and no
  feature-extractor normalisation (GPT-SoVITS inference calls the HF model directly).
* `BertHidden` - chinese-roberta-wwm-ext-large (`BertForMaskedLM`): ids [1,L] -> hidden_states[-3] [1,L,H],
  [CLS]/[SEP] rows included. Only the layers that feed hidden_states[-3] are built and run.

Every size comes from the folder's config.json; weights come from model.safetensors or pytorch_model.bin
(read without transformers, without running arbitrary pickles) and are loaded strictly.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from torch import nn

from ..ckpt import CheckpointError, fold_weight_norm, load_torch_zip, strict_load
from ..graph_spec import GraphSpec


# --------------------------------------------------------------------------------------------- loading
def load_hf_folder(path: str):
    """Read an HF model folder -> (config dict, {key: float32 numpy array}).

    Weights: `model.safetensors` if present, else `pytorch_model.bin` (safe torch.save unpickler).
    Keys are returned as stored (prefixes such as `bert.`/`hubert.` untouched, weight-norm pairs unfolded)."""
    if not os.path.isdir(path):
        raise CheckpointError(f"HF model folder not found: {path}")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{path}: no config.json in the HF model folder")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: cannot read config: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: config is not a JSON object")

    st_path = os.path.join(path, "model.safetensors")
    bin_path = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(st_path):
        from safetensors.numpy import load_file

        try:
            raw = load_file(st_path)
        except Exception as e:  # malformed header, truncated file, unsupported dtype
            raise CheckpointError(f"{st_path}: cannot read safetensors file: {e}") from None
        source = st_path
    elif os.path.isfile(bin_path):
        raw, _, _ = load_torch_zip(bin_path, "HF weights")
        if not isinstance(raw, dict):
            raise CheckpointError(f"{bin_path}: expected a state dict, got {type(raw).__name__}")
        source = bin_path
    else:
        raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in the HF model folder")

    state = {}
    for k, v in raw.items():
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f"{source}: entry {k} is not a tensor")
        if v.dtype.kind == "f":
            v = v.astype(np.float32)
        state[k] = v
    return config, state


def _strip_prefix(state: dict, prefix: str) -> dict:
    """Drop `prefix` from keys that carry it (an HF head model stores the base model under it)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _cfg(config: dict, key: str, source: str):
    if key not in config:
        raise CheckpointError(f"{source}: config.json lacks '{key}'")
    return config[key]


def _act(name: str, source: str):
    # HF "gelu" is the exact (erf) GELU; "gelu_new"/"gelu_pytorch_tanh" are the tanh approximation.
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise CheckpointError(f"{source}: unsupported activation '{name}'")


# --------------------------------------------------------------------------------------------- HuBERT
class _ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride, bias, group_norm, act):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, bias=bias)
        # HF calls the GroupNorm "layer_norm"; one group per channel (= instance norm with affine)
        self.layer_norm = nn.GroupNorm(cout, cout, affine=True) if group_norm else None
        self.activation = act

    def forward(self, x):
        x = self.conv(x)
        if self.layer_norm is not None:
            # GroupNorm with one channel per group (per-channel statistics over time), written out with the
            # statistics in float64: onnxruntime sums ReduceMean/InstanceNormalization sequentially in float32,
            # which on the 5 s golden input gives ~1e-5 relative error in the variance and ~8e-5 absolute error after
            # this layer (torch: 2.5e-6), growing with the length; with float64 statistics ORT matches torch (2e-6).
            gn = self.layer_norm
            x64 = x.to(torch.float64)
            xc = x64 - x64.mean(dim=-1, keepdim=True)
            var = (xc * xc).mean(dim=-1, keepdim=True)
            x = (xc / torch.sqrt(var + gn.eps)).to(x.dtype) * gn.weight[:, None] + gn.bias[:, None]
        return self.activation(x)


class _FeatureExtractor(nn.Module):
    def __init__(self, dims, kernels, strides, bias, act_name, source):
        super().__init__()
        layers = []
        cin = 1
        for i, (c, k, s) in enumerate(zip(dims, kernels, strides)):
            layers.append(_ConvLayer(cin, c, k, s, bias, group_norm=(i == 0), act=_act(act_name, source)))
            cin = c
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, wav):  # [B,S] -> [B,C,T]
        x = wav[:, None, :]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class _FeatureProjection(nn.Module):
    def __init__(self, cin, hidden, eps, use_ln):
        super().__init__()
        self.layer_norm = nn.LayerNorm(cin, eps=eps) if use_ln else None
        self.projection = nn.Linear(cin, hidden)

    def forward(self, x):
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.projection(x)


class _PosConv(nn.Module):
    def __init__(self, hidden, kernel, groups, act):
        super().__init__()
        # weight norm is folded at load time (weight_g/weight_v -> weight)
        self.conv = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=groups)
        self.remove = 1 if kernel % 2 == 0 else 0  # HF "same pad" layer: drop the extra last frame
        self.activation = act

    def forward(self, x):  # [B,T,H] -> [B,T,H]
        y = self.conv(x.transpose(1, 2))
        if self.remove:
            y = y[:, :, : -self.remove]
        return self.activation(y).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        if hidden % heads:
            raise CheckpointError(f"hidden size {hidden} is not divisible by {heads} attention heads")
        self.heads = heads
        self.head_dim = hidden // heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x, bias=None):  # x [B,T,H]; bias broadcastable to [B,heads,T,T]
        b, t, h = x.shape

        def split(y):
            return y.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

        q = split(self.q_proj(x)) * (self.head_dim ** -0.5)
        k = split(self.k_proj(x))
        v = split(self.v_proj(x))
        scores = torch.matmul(q, k.transpose(-1, -2))
        if bias is not None:
            scores = scores + bias
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, h)
        return self.out_proj(ctx)


class _FeedForward(nn.Module):
    def __init__(self, hidden, inter, act):
        super().__init__()
        self.intermediate_dense = nn.Linear(hidden, inter)
        self.intermediate_act_fn = act
        self.output_dense = nn.Linear(inter, hidden)

    def forward(self, x):
        return self.output_dense(self.intermediate_act_fn(self.intermediate_dense(x)))


class _HubertLayer(nn.Module):
    """Post-LN transformer layer (do_stable_layer_norm False)."""

    def __init__(self, hidden, heads, inter, eps, act):
        super().__init__()
        self.attention = _Attention(hidden, heads)
        self.layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.feed_forward = _FeedForward(hidden, inter, act)
        self.final_layer_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x):
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class _HubertEncoderStack(nn.Module):
    def __init__(self, c, source):
        super().__init__()
        hidden = c["hidden_size"]
        eps = c["layer_norm_eps"]
        self.pos_conv_embed = _PosConv(hidden, c["num_conv_pos_embeddings"], c["num_conv_pos_embedding_groups"],
                                       _act(c["feat_extract_activation"], source))
        self.layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _HubertLayer(hidden, c["num_attention_heads"], c["intermediate_size"], eps, _act(c["hidden_act"], source))
            for _ in range(c["num_hidden_layers"])
        )

    def forward(self, x):
        x = self.layer_norm(x + self.pos_conv_embed(x))
        for layer in self.layers:
            x = layer(x)
        return x


_HUBERT_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim",
                "conv_kernel", "conv_stride", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups",
                "layer_norm_eps", "hidden_act", "feat_extract_activation")


class HubertEncoder(nn.Module):
    """HF `HubertModel` (feat_extract_norm "group", post-LN encoder) without masking; forward -> ssl [B,H,T50]."""

    def __init__(self, config: dict, source: str = "chinese-hubert config"):
        super().__init__()
        c = dict(config)
        c.setdefault("conv_bias", False)
        c.setdefault("feat_proj_layer_norm", True)
        c.setdefault("hidden_act", "gelu")
        c.setdefault("feat_extract_activation", "gelu")
        c.setdefault("layer_norm_eps", 1e-5)
        for k in _HUBERT_KEYS:
            _cfg(c, k, source)
        # only the variant chinese-hubert-base uses is implemented; refuse the others instead of computing wrongly
        if c.get("feat_extract_norm", "group") != "group":
            raise CheckpointError(f"{source}: feat_extract_norm '{c['feat_extract_norm']}' unsupported (need 'group')")
        if c.get("do_stable_layer_norm", False):
            raise CheckpointError(f"{source}: do_stable_layer_norm=True (pre-LN HuBERT) is not supported")
        if c.get("conv_pos_batch_norm", False):
            raise CheckpointError(f"{source}: conv_pos_batch_norm=True is not supported")
        if not (len(c["conv_dim"]) == len(c["conv_kernel"]) == len(c["conv_stride"])):
            raise CheckpointError(f"{source}: conv_dim/conv_kernel/conv_stride lengths differ")
        self.config = c
        self.hidden_size = c["hidden_size"]
        self.conv_kernel = list(c["conv_kernel"])
        self.conv_stride = list(c["conv_stride"])
        self.feature_extractor = _FeatureExtractor(c["conv_dim"], c["conv_kernel"], c["conv_stride"],
                                                   c["conv_bias"], c["feat_extract_activation"], source)
        self.feature_projection = _FeatureProjection(c["conv_dim"][-1], self.hidden_size, c["layer_norm_eps"],
                                                     c["feat_proj_layer_norm"])
        self.encoder = _HubertEncoderStack(c, source)

    def frames(self, samples: int) -> int:
        """Number of output frames for `samples` input samples."""
        n = samples
        for k, s in zip(self.conv_kernel, self.conv_stride):
            n = (n - k) // s + 1
        return n

    def min_samples(self) -> int:
        """Shortest input giving one output frame."""
        n = 1
        for k, s in reversed(list(zip(self.conv_kernel, self.conv_stride))):
            n = (n - 1) * s + k
        return n

    def forward(self, wav16k):  # [B,S] f32 -> [B,H,T50]
        feats = self.feature_extractor(wav16k).transpose(1, 2)
        hidden = self.feature_projection(feats)
        hidden = self.encoder(hidden)
        return hidden.transpose(1, 2)

    def onnx_specs(self):
        g = torch.Generator().manual_seed(0)
        examples = []
        for seconds in (1.03, 1.61):  # two lengths with different remainders in the conv strides
            s = int(16000 * seconds) + 9600
            examples.append((torch.randn(1, s, generator=g) * 0.1,))
        return [GraphSpec(name="hubert", module=self.eval(), input_names=["wav16k"], output_names=["ssl"],
                          examples=examples, dynamic_axes={"wav16k": {1: "S"}, "ssl": {2: "T50"}})]


# Keys of a HubertModel file that inference never uses:
#   masked_spec_embed       - SpecAugment mask vector, training only (used only with mask_time_indices)
# Prefix `hubert.` is stripped if present (e.g. files saved from a HubertFor... head model); head keys
# (`lm_head.`, `projector.`, `classifier.`) of such files are ignored too.
HUBERT_IGNORE = ("masked_spec_embed", "lm_head.", "projector.", "classifier.", "final_proj.", "label_embs_concat")


def build_hubert(path: str) -> HubertEncoder:
    config, state = load_hf_folder(path)
    state = fold_weight_norm(_strip_prefix(state, "hubert."))
    model = HubertEncoder(config, source=os.path.join(path, "config.json"))
    strict_load(model, state, path, ignore_prefixes=HUBERT_IGNORE)
    return model.eval()


# --------------------------------------------------------------------------------------------- BERT
class _BertEmbeddings(nn.Module):
    def __init__(self, vocab, hidden, max_pos, type_vocab, eps):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_pos, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, input_ids, token_type_ids):
        length = input_ids.shape[1]
        pos = torch.arange(length, device=input_ids.device, dtype=torch.long)[None, :]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) \
            + self.position_embeddings(pos)
        return self.LayerNorm(x)


class _BertSelfAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        if hidden % heads:
            raise CheckpointError(f"BERT hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x, bias):
        b, t, h = x.shape

        def split(y):
            return y.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + bias
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        return ctx.transpose(1, 2).reshape(b, t, h)


class _DenseAddNorm(nn.Module):
    """BertSelfOutput / BertOutput: LayerNorm(dense(x) + residual)."""

    def __init__(self, cin, hidden, eps):
        super().__init__()
        self.dense = nn.Linear(cin, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _BertAttention(nn.Module):
    def __init__(self, hidden, heads, eps):
        super().__init__()
        self.self = _BertSelfAttention(hidden, heads)
        self.output = _DenseAddNorm(hidden, hidden, eps)

    def forward(self, x, bias):
        return self.output(self.self(x, bias), x)


class _BertIntermediate(nn.Module):
    def __init__(self, hidden, inter, act):
        super().__init__()
        self.dense = nn.Linear(hidden, inter)
        self.act = act

    def forward(self, x):
        return self.act(self.dense(x))


class _BertLayer(nn.Module):
    def __init__(self, hidden, heads, inter, eps, act):
        super().__init__()
        self.attention = _BertAttention(hidden, heads, eps)
        self.intermediate = _BertIntermediate(hidden, inter, act)
        self.output = _DenseAddNorm(inter, hidden, eps)

    def forward(self, x, bias):
        a = self.attention(x, bias)
        return self.output(self.intermediate(a), a)


class _BertEncoder(nn.Module):
    def __init__(self, n, hidden, heads, inter, eps, act_name, source):
        super().__init__()
        self.layer = nn.ModuleList(_BertLayer(hidden, heads, inter, eps, _act(act_name, source)) for _ in range(n))


_BERT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act")


class BertHidden(nn.Module):
    """BERT up to hidden_states[`layer`] (default -3); forward(ids, mask, types) -> [B,L,hidden]."""

    def __init__(self, config: dict, layer: int = -3, source: str = "chinese-roberta config"):
        super().__init__()
        c = dict(config)
        c.setdefault("type_vocab_size", 2)
        c.setdefault("layer_norm_eps", 1e-12)
        c.setdefault("hidden_act", "gelu")
        for k in _BERT_KEYS:
            _cfg(c, k, source)
        if c.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(f"{source}: position_embedding_type '{c['position_embedding_type']}' unsupported")
        n = c["num_hidden_layers"]
        # hidden_states has n+1 entries (embeddings, then each layer); entry i is the output of layer i (1-based)
        index = layer if layer >= 0 else n + 1 + layer
        if not 0 <= index <= n:
            raise CheckpointError(f"{source}: hidden_states[{layer}] does not exist with {n} layers")
        self.config = c
        self.n_total_layers = n
        self.n_run = index
        self.hidden_size = c["hidden_size"]
        self.max_positions = c["max_position_embeddings"]
        self.embeddings = _BertEmbeddings(c["vocab_size"], self.hidden_size, c["max_position_embeddings"],
                                          c["type_vocab_size"], c["layer_norm_eps"])
        self.encoder = _BertEncoder(index, self.hidden_size, c["num_attention_heads"], c["intermediate_size"],
                                    c["layer_norm_eps"], c["hidden_act"], source)

    def unused_layer_prefixes(self):
        return tuple(f"encoder.layer.{i}." for i in range(self.n_run, self.n_total_layers))

    def forward(self, input_ids, attention_mask, token_type_ids):
        x = self.embeddings(input_ids, token_type_ids)
        # HF extended attention mask: 0 where attended, dtype-min where masked, added to the scores
        m = attention_mask[:, None, None, :].to(x.dtype)
        bias = (1.0 - m) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x

    def onnx_specs(self):
        g = torch.Generator().manual_seed(0)
        vocab = self.config["vocab_size"]
        examples = []
        for length in (7, 19):
            ids = torch.randint(0, vocab, (1, length), generator=g, dtype=torch.long)
            ids[0, 0], ids[0, -1] = min(101, vocab - 1), min(102, vocab - 1)  # [CLS] ... [SEP] like the tokenizer
            examples.append((ids, torch.ones(1, length, dtype=torch.long), torch.zeros(1, length, dtype=torch.long)))
        return [GraphSpec(name="bert", module=self.eval(),
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["hidden"],
                          examples=examples,
                          dynamic_axes={"input_ids": {1: "L"}, "attention_mask": {1: "L"},
                                        "token_type_ids": {1: "L"}, "hidden": {1: "L"}})]


# Keys of a BertForMaskedLM / BertModel file that BertHidden does not use (after stripping `bert.`):
#   cls.*                       - masked-LM head (cls.predictions.*), and NSP head (cls.seq_relationship.*)
#   pooler.*                    - [CLS] pooler, not part of hidden_states
#   embeddings.position_ids     - non-persistent buffer (older transformers saved it)
#   embeddings.token_type_ids   - same (buffered default token types)
#   encoder.layer.{k}.* for k >= n_run - layers after hidden_states[-3] (the last two), never run
BERT_IGNORE = ("cls.", "pooler.", "embeddings.position_ids", "embeddings.token_type_ids")


def _rename_legacy_ln(state: dict) -> dict:
    """Very old BERT files name LayerNorm parameters gamma/beta (transformers renames them on load)."""
    out = {}
    for k, v in state.items():
        if k.endswith(".gamma"):
            k = k[: -len(".gamma")] + ".weight"
        elif k.endswith(".beta"):
            k = k[: -len(".beta")] + ".bias"
        out[k] = v
    return out


def build_bert(path: str, layer: int = -3) -> BertHidden:
    config, state = load_hf_folder(path)
    state = _rename_legacy_ln(_strip_prefix(state, "bert."))
    model = BertHidden(config, layer=layer, source=os.path.join(path, "config.json"))
    strict_load(model, state, path, ignore_prefixes=BERT_IGNORE + model.unused_layer_prefixes())
    return model.eval()
