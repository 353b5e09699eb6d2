"""`python -m export random-checkpoint`: random GPT-SoVITS checkpoints in the real file formats.

Out (in --out): `gpt.ckpt` (s1 half-weight save: {"weight": fp16 OrderedDict with `model.` keys, "config": dict,
"info"}), `sovits.pth` (process_ckpt.savee format: fp16 state dict without `enc_q`, weight-normed convolutions as
`weight_g`/`weight_v` pairs, codebook buffers, "config" as a pickled `utils.HParams` object, "info"),
`chinese-hubert-base/` and `chinese-roberta-wwm-ext-large/` (Hugging Face folders: config.json, fp16
model.safetensors with the legacy `pos_conv_embed.conv.weight_g/_v` names, tokenizer.json for BERT).

--full-size uses the production dimensions (s1longer-v2.yaml, s2.json, chinese-hubert-base, chinese-roberta-wwm-ext-large):
benchmarks use it, since compute does not depend on weight values. Without it: tiny dimensions. `demo_dims()` gives
the even smaller, shrunken-beyond-upstream dimensions of the demo bundle (keys `gsv_*`, `bert_dim`).

--version v2pro / v2proplus: the SoVITS file is a v2Pro / v2ProPlus generator (s2v2Pro.json / s2v2ProPlus.json
dimensions with --full-size: gin 1024, ProPlus's 768-channel first upsampling with kernel 20) written as
`process_ckpt.savee` does for them (torch.save into memory, zip root `archive/`, first two bytes `05` / `06`), plus
`sv/pretrained_eres2netv2w24s4ep4.ckpt`: a random ERes2NetV2 (w24 s4 e4, its only size) saved like the real file,
a plain `torch.save` of the state dict (float16 weights, int64 `num_batches_tracked`).
"""
from __future__ import annotations

import collections
import io
import json
import os
import pickle
import re
import sys
import types

import numpy as np
import torch

from .models.gpt import T2S
from .models.hf import BertHidden, HubertEncoder
from .models.sovits import V2PRO_HEADS, SynthesizerWeights
from .models.sv import ARCH as SV_ARCH, ERes2NetV2

VERSIONS = {"v2": "v2", "v2pro": "v2Pro", "v2proplus": "v2ProPlus", "v2Pro": "v2Pro", "v2ProPlus": "v2ProPlus"}

WEIGHT_NORMED = re.compile(r"^(dec\.ups\.\d+|dec\.resblocks\.\d+\.convs[12]\.\d+|"
                           r"flow\.flows\.\d+\.enc\.(in_layers\.\d+|res_skip_layers\.\d+|cond_layer))$")

GPT_FULL = {"vocab_size": 1025, "phoneme_vocab_size": 732, "embedding_dim": 512, "hidden_dim": 512, "head": 16,
            "linear_units": 2048, "n_layer": 24, "dropout": 0, "EOS": 1024, "random_bert": 0}
SOVITS_FULL = {"inter_channels": 192, "hidden_channels": 192, "filter_channels": 768, "n_heads": 2, "n_layers": 6,
               "kernel_size": 3, "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
               "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2, 2],
               "upsample_initial_channel": 512, "upsample_kernel_sizes": [16, 16, 8, 2, 2], "n_layers_q": 3,
               "use_spectral_norm": False, "gin_channels": 512, "semantic_frame_rate": "25hz",
               "freeze_quantizer": True}
SOVITS_DATA = {"max_wav_value": 32768.0, "sampling_rate": 32000, "filter_length": 2048, "hop_length": 640,
               "win_length": 2048, "n_mel_channels": 128, "mel_fmin": 0.0, "mel_fmax": None, "add_blank": True,
               "n_speakers": 300, "cleaned_text": True}
HUBERT_FULL = {"architectures": ["HubertModel"], "model_type": "hubert", "hidden_size": 768, "num_hidden_layers": 12,
               "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
               "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
               "conv_bias": False, "feat_extract_norm": "group", "feat_extract_activation": "gelu",
               "feat_proj_layer_norm": True, "do_stable_layer_norm": False, "num_conv_pos_embeddings": 128,
               "num_conv_pos_embedding_groups": 16, "layer_norm_eps": 1e-5, "vocab_size": 32}
BERT_FULL = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 1024, "num_hidden_layers": 24,
             "num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "gelu", "vocab_size": 21128,
             "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
             "position_embedding_type": "absolute"}


def sovits_dims(base: dict, version: str, full_size: bool) -> dict:
    """SoVITS config of `version` from a v2 config: v2Pro = s2v2Pro.json (gin 1024 at full size, no dropout),
    v2ProPlus = s2v2ProPlus.json (first upsampling 1.5x wider, kernel 20); tiny sizes keep those ratios."""
    if version == "v2":
        return base
    sov = dict(base, p_dropout=0.0, gin_channels=1024 if full_size else 128)
    if version == "v2ProPlus":
        sov["upsample_initial_channel"] = base["upsample_initial_channel"] * 3 // 2
        sov["upsample_kernel_sizes"] = [20] + list(base["upsample_kernel_sizes"][1:])
    return sov


def tiny_dims() -> dict:
    gpt = dict(GPT_FULL, embedding_dim=64, hidden_dim=64, head=4, linear_units=256, n_layer=2)
    sov = dict(SOVITS_FULL, inter_channels=64, filter_channels=64, n_layers=2, upsample_initial_channel=64)
    hub = dict(HUBERT_FULL, num_hidden_layers=1, intermediate_size=256, conv_dim=[32] * 7, num_conv_pos_embeddings=16)
    bert = dict(BERT_FULL, num_hidden_layers=3, intermediate_size=128, max_position_embeddings=512, vocab_size=4000)
    return {"gpt": gpt, "sovits": sov, "hubert": hub, "bert": bert}


def demo_dims() -> dict:
    """Small enough that the fp16 demo bundle stays well under 5 MB; shrinks what upstream hard-codes too."""
    e, h = 32, 32
    gpt = dict(GPT_FULL, embedding_dim=32, hidden_dim=32, head=2, linear_units=128, n_layer=2, bert_dim=h)
    sov = dict(SOVITS_FULL, inter_channels=16, hidden_channels=32, filter_channels=32, n_heads=2, n_layers=2,
               upsample_initial_channel=32, gin_channels=32, gsv_ssl_dim=e, gsv_mrte_hidden=32, gsv_mrte_heads=2,
               gsv_ref_hidden=32, gsv_codebook_size=1024)
    hub = dict(HUBERT_FULL, hidden_size=e, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    bert = dict(BERT_FULL, hidden_size=h, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=512)
    return {"gpt": gpt, "sovits": sov, "hubert": hub, "bert": bert}


def _randomise(module: torch.nn.Module, gen: torch.Generator, std_scale: float = 1.0):
    """Default init is already random for weights; biases/norm gains get random values too (as the goldens do)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() <= 1 or torch.all(p == p.flatten()[0]):
                base = 1.0 if name.endswith(("weight", "gamma", "alpha")) and p.dim() <= 1 else 0.0
                p.copy_(base + 0.05 * torch.randn(p.shape, generator=gen))
            elif std_scale != 1.0:
                p.mul_(std_scale)


def _unfold_weight_norm(state: dict, pattern: str | None = None) -> dict:
    normed = re.compile(pattern) if pattern else WEIGHT_NORMED
    out = collections.OrderedDict()
    for k, v in state.items():
        if k.endswith(".weight") and normed.match(k[: -len(".weight")]):
            prefix = k[: -len(".weight")]
            axes = tuple(range(1, v.dim()))
            g = torch.sqrt((v.double() ** 2).sum(dim=axes, keepdim=True)).float()
            out[prefix + ".weight_g"] = g
            out[prefix + ".weight_v"] = v.clone()
        else:
            out[k] = v
    return out


def _hparams_module():
    """A stand-in `utils.HParams` so the config pickles exactly as GPT-SoVITS's own saves do."""
    mod = types.ModuleType("utils")

    class HParams:
        def __init__(self, **kw):
            for k, v in kw.items():
                setattr(self, k, HParams(**v) if isinstance(v, dict) else v)

    HParams.__module__ = "utils"
    HParams.__qualname__ = "HParams"
    mod.HParams = HParams
    return mod


def write_gpt(path: str, model_cfg: dict, gen: torch.Generator, info: str = "GPT-e15"):
    cfg = {"train": {"seed": 1234, "epochs": 15, "batch_size": 8, "precision": "16-mixed"},
           "data": {"max_sec": 54, "pad_val": 1024}, "model": dict(model_cfg), "inference": {"top_k": 15}}
    m = T2S(cfg)
    _randomise(m, gen)
    with torch.no_grad():
        m.ar_text_position.alpha.fill_(1.0)
        m.ar_audio_position.alpha.fill_(1.0)
    weight = collections.OrderedDict(("model." + k, v.detach().half()) for k, v in m.state_dict().items())
    torch.save({"weight": weight, "config": cfg, "info": info}, path)


def write_sovits(path: str, model_cfg: dict, gen: torch.Generator, version: str = "v2",
                 info: str = "8epoch_96iteration"):
    n_sym = 322 if version == "v1" else 732
    w = SynthesizerWeights(version, n_sym, SOVITS_DATA["filter_length"] // 2 + 1, model_cfg)
    _randomise(w, gen)
    state = collections.OrderedDict((k, v.detach().clone()) for k, v in w.state_dict().items())
    cb = "quantizer.vq.layers.0._codebook."
    embed = torch.randn(state[cb + "embed"].shape, generator=gen)
    state[cb + "embed"] = embed
    state = _unfold_weight_norm(state)
    state[cb + "inited"] = torch.ones(1)
    state[cb + "cluster_size"] = torch.ones(embed.shape[0])
    state[cb + "embed_avg"] = embed.clone()
    weight = collections.OrderedDict((k, v.half()) for k, v in state.items())
    mod = _hparams_module()
    saved = sys.modules.get("utils")
    sys.modules["utils"] = mod
    try:
        config = mod.HParams(train={"segment_size": 20480, "seed": 1234}, data=dict(SOVITS_DATA),
                             model=dict(model_cfg, version=version), version=version)
        head = {v: h for h, v in V2PRO_HEADS.items()}.get(version)
        if head is None:
            torch.save({"weight": weight, "config": config, "info": info}, path)
        else:  # process_ckpt.my_save2: save into memory (zip root "archive/"), then mark the version over "PK"
            buf = io.BytesIO()
            torch.save({"weight": weight, "config": config, "info": info}, buf)
            with open(path, "wb") as f:
                f.write(head + buf.getvalue()[2:])
    finally:
        if saved is None:
            del sys.modules["utils"]
        else:
            sys.modules["utils"] = saved


def write_sv(path: str, gen: torch.Generator):
    """A random ERes2NetV2 speaker-verification checkpoint in the format of the real one: torch.save of the
    state dict (OrderedDict, with its `_metadata`), float16 weights, int64 `num_batches_tracked`."""
    net = ERes2NetV2(**SV_ARCH)
    _randomise(net, gen)
    sd = net.state_dict()
    state = collections.OrderedDict(
        (k, v.detach().half() if v.is_floating_point() else v.detach().clone()) for k, v in sd.items())
    state._metadata = getattr(sd, "_metadata", None)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save(state, path)


def write_hubert(folder: str, cfg: dict, gen: torch.Generator):
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    m = HubertEncoder(cfg)
    _randomise(m, gen)
    state = collections.OrderedDict()
    for k, v in m.state_dict().items():
        if k == "encoder.pos_conv_embed.conv.weight":  # legacy weight norm over dim=2, as the real file stores it
            g = torch.sqrt((v.double() ** 2).sum(dim=(0, 1), keepdim=True)).float()
            state["encoder.pos_conv_embed.conv.weight_g"] = g.half().contiguous()
            state["encoder.pos_conv_embed.conv.weight_v"] = v.half().contiguous()
        else:
            state[k] = v.detach().half().contiguous()
    save_file(dict(state), os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(cfg, torch_dtype="float16"), f, indent=2)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                   "padding_side": "right", "padding_value": 0, "return_attention_mask": False,
                   "sampling_rate": 16000}, f, indent=2)


def write_bert(folder: str, cfg: dict, gen: torch.Generator, tokenizer_json: str):
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    m = BertHidden(cfg, layer=-1)  # every layer, as the real file has them
    _randomise(m, gen)
    state = {"bert." + k: v.detach().half().contiguous() for k, v in m.state_dict().items()}
    save_file(state, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(cfg, torch_dtype="float16"), f, indent=2)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tokenizer_json)


def bert_tokenizer_json(vocab_size: int) -> str:
    """A BERT WordPiece tokenizer.json with chinese-roberta's pipeline and special-token ids: [PAD]=0,
    [unused1..99], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, then printable ASCII, CJK punctuation and as many
    CJK ideographs (from U+4E00) as fit in `vocab_size` (one token per Chinese character, as the real vocab has)."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [chr(c) for c in range(0x21, 0x7F) if not chr(c).isupper()]
    vocab += list("，。！？、；：“”‘’（）《》【】…—～·")
    c = 0x4E00
    while len(vocab) < vocab_size and c <= 0x9FFF:
        vocab.append(chr(c))
        c += 1
    vocab = vocab[:vocab_size]
    special = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                "special": True} for i, t in enumerate(vocab) if t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [101], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [102], "tokens": ["[SEP]"]}},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(vocab)}},
    }
    return json.dumps(tok, ensure_ascii=False, separators=(",", ":"))


def write_random_checkpoints(out: str, full_size: bool = False, seed: int = 1, dims: dict | None = None,
                             log=print, version: str = "v2") -> dict:
    if version not in VERSIONS:
        raise ValueError(f"unknown version {version!r}; expected one of v2, v2pro, v2proplus")
    version = VERSIONS[version]
    dims = dims or ({"gpt": GPT_FULL, "sovits": SOVITS_FULL, "hubert": HUBERT_FULL, "bert": BERT_FULL}
                    if full_size else tiny_dims())
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    paths = {"gpt": os.path.join(out, "gpt.ckpt"), "sovits": os.path.join(out, "sovits.pth"),
             "hubert": os.path.join(out, "chinese-hubert-base"), "bert": os.path.join(out, "chinese-roberta-wwm-ext-large")}
    if version != "v2":
        paths["sv"] = os.path.join(out, "sv", "pretrained_eres2netv2w24s4ep4.ckpt")
    log(f"writing random {version} checkpoints ({'full size' if full_size else 'reduced size'}) to {out}")
    write_gpt(paths["gpt"], dims["gpt"], gen)
    write_sovits(paths["sovits"], sovits_dims(dims["sovits"], version, full_size), gen, version=version)
    write_hubert(paths["hubert"], dims["hubert"], gen)
    write_bert(paths["bert"], dims["bert"], gen, bert_tokenizer_json(int(dims["bert"]["vocab_size"])))
    if "sv" in paths:
        write_sv(paths["sv"], gen)
    for k, p in paths.items():
        size = os.path.getsize(p) if os.path.isfile(p) else sum(
            os.path.getsize(os.path.join(p, f)) for f in os.listdir(p))
        log(f"  {k}: {p} ({size / 1e6:.1f} MB)")
    log("next: python -m export convert --gpt {gpt} --sovits {sovits} --hubert {hubert} --bert {bert}".format(**paths)
        + (f" --sv {paths['sv']}" if "sv" in paths else "") + " --out onnx/NAME")
    return paths
