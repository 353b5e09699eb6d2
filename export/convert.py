"""`python -m export convert`: GPT .ckpt + SoVITS .pth + HuBERT/BERT folders (+ the speaker-verification
checkpoint for v2Pro/v2ProPlus) -> ONNX bundle (see BUNDLE.md).

In:  paths to the sources, an output folder, options (--fp16).
Out: the bundle folder: manifest.json, tokenizer.json and the seven graphs (eight for v2Pro/v2ProPlus: `sv`; + g2pw.onnx
     and g2pw/ with --g2pw, see g2pw.py). Re-running with the same sources and options reuses every graph already
     exported (the manifest records the sources' sha256 and the options).

`--sv` with a v1/v2 model is ignored with a note (a script may pass it for every model it converts); a
v2Pro/v2ProPlus model without it is an error naming the file GPT-SoVITS ships.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

from .ckpt import Checkpoint, CheckpointError, HEAD_VERSIONS, load_checkpoint, read_head, sha256_file

FORMAT_VERSION = 2
EXPORTER_VERSION = "0.1.0"
GRAPHS = ["hubert", "vq_encode", "bert", "gpt_prefill", "gpt_step", "ref_enc", "sovits_decode"]
# v2Pro/v2ProPlus: the speaker-verification graph comes before ref_enc, which consumes its embedding.
GRAPHS_V2PRO = ["hubert", "vq_encode", "bert", "gpt_prefill", "gpt_step", "sv", "ref_enc", "sovits_decode"]
V2PRO_VERSIONS = ("v2Pro", "v2ProPlus")


def graphs_for(version: str) -> list:
    return GRAPHS_V2PRO if version in V2PRO_VERSIONS else GRAPHS
HERE = os.path.dirname(os.path.abspath(__file__))


class UnsupportedVersion(CheckpointError):
    pass


def symbols_version(model_version: str) -> str:
    """Phone symbol table of a model version: v1's 322, or v2's 732 (v2Pro and v2ProPlus use v2's)."""
    return "v1" if model_version == "v1" else "v2"


def symbols_for(version: str) -> list:
    with open(os.path.join(HERE, "symbols", f"{symbols_version(version)}.json"), encoding="utf-8") as f:
        return json.load(f)["symbols"]


def symbols_hash(symbols: list) -> str:
    return hashlib.sha256("\n".join(symbols).encode("utf-8")).hexdigest()


SUPPORTED = "only v1, v2, v2Pro and v2ProPlus models can be exported"


def detect_sovits_version(path: str, ckpt: Checkpoint | None = None) -> str:
    """v1 / v2 by the text-embedding row count, v2Pro / v2ProPlus by the file head (05 / 06); refuse v3/v4 (heads
    02/03/04, or a CFM decoder) with a message naming the version."""
    from .models.sovits import detect_version

    head = read_head(path)
    if head in HEAD_VERSIONS and head not in (b"00", b"01", b"05", b"06"):
        raise UnsupportedVersion(
            f"SoVITS {path} is a GPT-SoVITS {HEAD_VERSIONS[head]} model (file head {head.decode()!r}), which gsv "
            f"does not support yet: {SUPPORTED}")
    if ckpt is None:
        ckpt = load_checkpoint(path, "SoVITS .pth")
    w = ckpt.weights
    if any(k.startswith("cfm.") for k in w):
        v = "v4" if any("hifigan" in k or k.startswith("vocoder") for k in w) else "v3"
        raise UnsupportedVersion(f"SoVITS {path} is a full GPT-SoVITS {v} model (it has a CFM decoder), which gsv "
                                 f"does not support yet: {SUPPORTED}")
    emb = w.get("enc_p.text_embedding.weight")
    if emb is None:
        if any(k.startswith("model.") for k in w):
            raise CheckpointError(f"{path} is a GPT checkpoint, not a SoVITS one (pass it as --gpt)")
        raise CheckpointError(f"SoVITS {path}: missing key enc_p.text_embedding.weight; not a SoVITS generator")
    rows = emb.shape[0]
    if rows not in (322, 732):
        raise UnsupportedVersion(f"SoVITS {path}: enc_p.text_embedding has {rows} rows; known are 322 (v1) and "
                                 f"732 (v2)")
    try:
        return detect_version(w, head, ckpt.config)
    except CheckpointError as e:
        raise CheckpointError(f"SoVITS {path}: {e}") from None


def _graph_meta(name: str, version: str, extra: dict) -> dict:
    return {"gsv.format_version": FORMAT_VERSION, "gsv.graph": name, "gsv.model_version": version, **extra}


def convert(gpt: str, sovits: str, hubert: str, bert: str, out: str, fp16: bool = False, log=print,
            name: str | None = None, g2pw: str | None = None, sv: str | None = None, variants: bool = False,
            golden: str | None = None, ref: str | None = None) -> dict:
    """Export the four sources into `out` (see the module doc). variants=True (the CLI's default; --no-variants
    turns it off) then adds the gated precision variants (export/quantize.py quantize_all): GPT int8 and int4, BERT
    int8, vocoder int8, each registered only when it passes its gate; a re-run with the same sources reuses them."""
    import torch

    from .models.gpt import build_gpt, onnx_specs as gpt_specs
    from .models.gpt_onnx import kv_head_dim
    from .models.hf import build_bert, build_hubert
    from .models.sovits import build_sovits
    from .models.sv import UPSTREAM_SV_PATH, build_sv
    from .onnx_export import export_graph

    torch.manual_seed(0)
    t0 = time.time()
    for p, what in ((gpt, "GPT .ckpt"), (sovits, "SoVITS .pth")):
        if not os.path.isfile(p):
            raise CheckpointError(f"{what} not found: {p}")
    if sv is not None and not os.path.isfile(sv):
        raise CheckpointError(f"speaker-verification checkpoint (--sv) not found: {sv} (GPT-SoVITS ships it as "
                              f"{UPSTREAM_SV_PATH})")
    for p, what in ((hubert, "HuBERT folder (chinese-hubert-base)"), (bert, "BERT folder (chinese-roberta-wwm-ext-large)")):
        if not os.path.isdir(p):
            raise CheckpointError(f"{what} not found: {p}")
    tok = os.path.join(bert, "tokenizer.json")
    if not os.path.isfile(tok):
        raise CheckpointError(f"BERT folder {bert} has no tokenizer.json (the fast tokenizer file is needed)")

    log(f"[1/4] reading checkpoints")
    gpt_ck = load_checkpoint(gpt, "GPT .ckpt")
    if any(k.startswith("enc_p.") for k in gpt_ck.weights):
        raise CheckpointError(f"{gpt} is a SoVITS checkpoint, not a GPT one (pass it as --sovits)")
    sov_ck = load_checkpoint(sovits, "SoVITS .pth")
    version = detect_sovits_version(sovits, sov_ck)
    if g2pw:
        from .g2pw import check_version
        check_version(version)
    if version in V2PRO_VERSIONS and sv is None:
        raise CheckpointError(
            f"SoVITS {sovits} is a GPT-SoVITS {version} model: its speaker vector includes a speaker-verification "
            f"embedding, so the export also needs the speaker-verification model GPT-SoVITS ships as "
            f"{UPSTREAM_SV_PATH}; pass it with --sv PATH")
    if version not in V2PRO_VERSIONS and sv is not None:
        log(f"note: --sv {sv} ignored: SoVITS {sovits} is a {version} model; only v2Pro and v2ProPlus models use "
            f"the speaker-verification model")
        sv = None
    symbols = symbols_for(version)
    gm = gpt_ck.config.get("model", {})
    if int(gm.get("phoneme_vocab_size", 0)) < len(symbols):
        raise CheckpointError(f"GPT {gpt} has {gm.get('phoneme_vocab_size')} phone embeddings but the SoVITS model is "
                              f"{version} with {len(symbols)} symbols: the two checkpoints do not belong together")

    sources = {
        "gpt": {"file": os.path.basename(gpt), "sha256": gpt_ck.sha256, "info": str(gpt_ck.info)},
        "sovits": {"file": os.path.basename(sovits), "sha256": sov_ck.sha256, "info": str(sov_ck.info)},
        "hubert": {"file": os.path.basename(os.path.normpath(hubert)), "sha256": _dir_hash(hubert)},
        "bert": {"file": os.path.basename(os.path.normpath(bert)), "sha256": _dir_hash(bert)},
    }
    # where the sources were when this bundle was made: the benchmark's PyTorch and Genie-TTS systems need them and
    # look here first (checked by sha256); not part of the reuse test, so moving the sources re-exports nothing
    where = {k: os.path.abspath(p) for k, p in (("gpt", gpt), ("sovits", sovits), ("hubert", hubert), ("bert", bert))}
    sample_rate = int(sov_ck.config.get("data", {}).get("sampling_rate", 32000))
    svm = None
    if sv is not None:
        log(f"  reading the speaker-verification model {sv}")
        svm = build_sv(sv, input_rate=sample_rate)
        sources["sv"] = {"file": os.path.basename(sv), "sha256": svm.sha256}
        where["sv"] = os.path.abspath(sv)
    options = {"fp16": bool(fp16), "exporter_code": exporter_code_hash()}
    os.makedirs(out, exist_ok=True)
    old = _read_manifest(out)
    reuse = old is not None and _strip_paths(old.get("sources")) == sources and old.get("options") == options \
        and old.get("format_version") == FORMAT_VERSION

    log(f"[2/4] building models (SoVITS {version}, GPT {gm.get('n_layer')} layers x {gm.get('hidden_dim')})")
    t2s = build_gpt(gpt_ck)
    sov = build_sovits(sov_ck)
    if svm is not None and sov.weights.sv_dim != svm.embedding_dim:
        raise CheckpointError(f"SoVITS {sovits}: sv_emb takes {sov.weights.sv_dim}-d embeddings but the "
                              f"speaker-verification model {sv} gives {svm.embedding_dim}-d ones")
    hub = build_hubert(hubert)
    brt = build_bert(bert)
    specs = {}
    all_specs = list(hub.onnx_specs()) + list(brt.onnx_specs()) + list(gpt_specs(t2s)) + list(sov.onnx_specs())
    if svm is not None:
        all_specs += svm.onnx_specs()
    for s in all_specs:
        specs[s.name] = s
    graph_names = graphs_for(version)
    missing = [g for g in graph_names if g not in specs]
    if missing:
        raise RuntimeError(f"internal: no graph spec for {missing}")

    log(f"[3/4] exporting graphs to {out}")
    graphs, reused = {}, set()
    bar = _progress(graph_names, "graphs")
    # with a bar, lines go through it (printed above the bar instead of through it)
    glog = log if bar is graph_names else bar.write
    for gname in bar:
        if bar is not graph_names:
            bar.set_postfix_str(gname)
        spec = specs[gname]
        path = os.path.join(out, f"{gname}.onnx")
        if reuse and gname in old.get("graphs", {}) and os.path.isfile(path) \
                and sha256_file(path) == old["graphs"][gname].get("sha256"):
            glog(f"  {gname}.onnx: up to date, reused")
            graphs[gname] = {k: v for k, v in old["graphs"][gname].items() if k != "variants"}
            reused.add(gname)
            continue
        info = export_graph(spec, out, _graph_meta(gname, version, {"gsv.precision": "fp16" if fp16 else "fp32"}),
                            fp16=fp16, log=glog)
        info["sha256"] = sha256_file(path)
        graphs[gname] = info
    shutil.copyfile(tok, os.path.join(out, "tokenizer.json"))

    g2pw_entry = None
    if g2pw:
        from .g2pw import add_g2pw
        g2pw_entry = add_g2pw(g2pw, out, log=log)
    elif old and isinstance(old.get("g2pw"), dict) and old.get("model_version") == version \
            and os.path.isfile(os.path.join(out, old["g2pw"].get("file", ""))) \
            and sha256_file(os.path.join(out, old["g2pw"]["file"])) == old["g2pw"].get("sha256"):
        log("  g2pw.onnx: kept (added earlier with --g2pw)")
        g2pw_entry = old["g2pw"]

    all_reused = reuse and reused == set(graph_names)
    log(f"[4/4] writing manifest")
    sc = sov_ck.config
    smodel, sdata = sc.get("model", {}), sc.get("data", {})
    hop = int(sdata.get("hop_length", 640))
    ups = [int(u) for u in smodel["upsample_rates"]]
    prod = 1
    for u in ups:
        prod *= u
    if prod != hop:
        raise CheckpointError(f"SoVITS {sovits}: prod(upsample_rates)={prod} differs from hop_length={hop}")
    top_k = gpt_ck.config.get("inference", {}).get("top_k", 15) if isinstance(gpt_ck.config.get("inference"), dict) else 15
    manifest = {
        "format": "gsv-bundle",
        "format_version": FORMAT_VERSION,
        "name": name or os.path.basename(os.path.normpath(out)),
        "model_version": version,
        "sample_rate": sample_rate,
        "hop_length": hop,
        "filter_length": int(sdata.get("filter_length", 2048)),
        "win_length": int(sdata.get("win_length", 2048)),
        "token_rate_hz": 25,
        "ssl_rate_hz": 50,
        "hubert_rate": 16000,
        "ssl_dim": int(hub.hidden_size),
        "gpt": {
            "n_layer": t2s.n_layer, "n_head": t2s.heads, "hidden_dim": t2s.d, "vocab_size": t2s.vocab,
            "kv_head_dim": kv_head_dim(t2s.d, t2s.heads),
            # gpt_step (and every gpt_step variant) takes a batch of sequences: BUNDLE.md "Batched step"
            "batched_step": True,
            "eos": t2s.eos, "phoneme_vocab_size": t2s.phoneme_vocab,
            "max_sec": int(gpt_ck.config.get("data", {}).get("max_sec", 54)), "top_k": int(top_k),
        },
        "sovits": {
            "inter_channels": int(smodel["inter_channels"]), "hidden_channels": int(smodel["hidden_channels"]),
            "gin_channels": int(smodel["gin_channels"]), "upsample_rates": ups, "samples_per_frame": hop,
            "ref_enc_bins": 704 if version != "v1" else int(sdata.get("filter_length", 2048)) // 2 + 1,
            "semantic_frame_rate": smodel.get("semantic_frame_rate", "25hz"),
            "codebook_size": int(sov_ck.weights["quantizer.vq.layers.0._codebook.embed"].shape[0]),
        },
        "symbols": {"version": symbols_version(version), "count": len(symbols), "sha256": symbols_hash(symbols),
                    "list": symbols},
        "bert": {"hidden": int(brt.hidden_size), "layer": -3},
        "graphs": graphs,
        "sources": {k: dict(v, path=where[k]) for k, v in sources.items()},
        "options": options,
        "precision": "fp16" if fp16 else "fp32",
        **({"sv": svm.manifest_entry()} if svm is not None else {}),
        "exporter": {"gsv_export": EXPORTER_VERSION, "torch": torch.__version__.split("+")[0], "opset": 18},
    }
    if g2pw_entry:
        manifest["g2pw"] = g2pw_entry
    kept = _reusable_variants(out, old) if all_reused else None
    if kept is not None:
        for g, entries in kept["graphs"].items():
            manifest["graphs"][g]["variants"] = entries
        manifest["quantization"] = kept["quantization"]
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))
    if variants and kept is not None:
        log(f"variants: the earlier ones still apply, kept (preferred {manifest['quantization'].get('preferred')})")
    elif variants:
        from .quantize import quantize_all

        log("[variants] building and gating the precision variants (--no-variants skips this)")
        res = quantize_all(out, golden=golden, ref=ref, log=log)
        log("variants: " + ", ".join(f"{k} {('registered', 'refused', 'FAILED')[v]}" for k, v in res.items()))
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    log(f"done in {time.time() - t0:.0f}s: {out}")
    return manifest


def _reusable_variants(out: str, old: dict):
    """The variant records of the earlier manifest when every variant convert builds was tried and every registered
    file is still there unchanged (the graphs they were made from were all reused); else None."""
    from .quantize import GPT_VARIANTS

    q = old.get("quantization") or {}
    want = [("gpt", v) for v in GPT_VARIANTS] + [("bert", "int8"), ("vocoder", "int8")]
    if not all(v in q.get(stage, {}) for stage, v in want):
        return None
    graphs = {}
    for g, entry in old.get("graphs", {}).items():
        for v, e in (entry.get("variants") or {}).items():
            p = os.path.join(out, e.get("file", ""))
            if not os.path.isfile(p) or sha256_file(p) != e.get("sha256"):
                return None
            graphs.setdefault(g, {})[v] = e
    return {"graphs": graphs, "quantization": q}


def _strip_paths(sources):
    return {k: {f: x for f, x in v.items() if f != "path"} for k, v in sources.items()} if sources else sources


def _progress(items, unit: str):
    """A tqdm bar over `items` on stderr when stderr is a terminal; otherwise `items` itself (the log lines, one per
    graph, are the progress then: nothing is drawn into logs or CI output)."""
    import sys
    if not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, unit=unit[:-1] if unit.endswith("s") else unit, desc=unit, leave=False, file=sys.stderr)


def exporter_code_hash() -> str:
    """sha256 over the export package's Python sources: a bundle exported by other code is not reused."""
    h = hashlib.sha256()
    for sub in ("", "models"):
        d = os.path.join(HERE, sub)
        for n in sorted(os.listdir(d)):
            if n.endswith(".py"):
                h.update(f"{sub}/{n}".encode())
                with open(os.path.join(d, n), "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def _dir_hash(d: str) -> str:
    h = hashlib.sha256()
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if os.path.isfile(p):
            h.update(n.encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()


def _read_manifest(out: str):
    p = os.path.join(out, "manifest.json")
    if not os.path.isfile(p):
        return None
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
