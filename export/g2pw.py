"""`python -m export convert --g2pw DIR`: add g2pW's polyphone model to a bundle (BUNDLE.md, "g2pw").

In:  DIR = upstream's `GPT_SoVITS/text/G2PWModel` folder (from G2PWModel_1.1.zip): `g2pW.onnx` (or `g2pw.onnx`),
     POLYPHONIC_CHARS.txt, MONOPHONIC_CHARS.txt, bopomofo_to_pinyin_wo_tune_dict.json, config.py.
Out: in the bundle, `g2pw.onnx` (copied byte for byte), `g2pw/` with the three table files, and the manifest's
     `g2pw` entry: files, sha256, the config flags the runner needs (`use_mask`, `use_char_phoneme`; upstream's
     defaults for a flag config.py does not set) and the label count. The graph's inputs are checked against
     what upstream feeds it (names, element types, ranks) and its output width against the label count.
config.py is read without running it: top-level `name = literal` assignments only.
"""
from __future__ import annotations

import ast
import json
import os
import shutil

from .ckpt import CheckpointError, sha256_file

# (name, onnx element type, rank) as upstream's onnx_api.predict feeds them
INPUTS = [("input_ids", 7, 2), ("token_type_ids", 7, 2), ("attention_mask", 7, 2), ("phoneme_mask", 1, 2),
          ("char_ids", 7, 1), ("position_ids", 7, 1)]
TABLES = {"polyphonic_chars": "POLYPHONIC_CHARS.txt", "monophonic_chars": "MONOPHONIC_CHARS.txt",
          "bopomofo_to_pinyin": "bopomofo_to_pinyin_wo_tune_dict.json"}
# upstream's utils.default_config_dict, for the two flags the runner reads
DEFAULTS = {"use_mask": True, "use_char_phoneme": False}


class G2pwError(CheckpointError):
    pass


def read_config(path: str) -> dict:
    """The literal top-level assignments of config.py (upstream execs it; the flags used here are literals)."""
    cfg = dict(DEFAULTS)
    if not os.path.isfile(path):
        return cfg
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                cfg[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return cfg


def labels_of(polyphonic_text: str, use_char_phoneme: bool) -> list:
    """`get_phoneme_labels` / `get_char_phoneme_labels`."""
    pairs = [line.split("\t") for line in polyphonic_text.strip().split("\n")]
    bad = [i + 1 for i, p in enumerate(pairs) if len(p) != 2]
    if bad:
        raise G2pwError(f"POLYPHONIC_CHARS.txt: line {bad[0]} is not `char<TAB>bopomofo`")
    if use_char_phoneme:
        return sorted({f"{c} {p}" for c, p in pairs})
    return sorted({p for _, p in pairs})


def check_graph(path: str, n_labels: int) -> None:
    import onnx

    m = onnx.load(path, load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    got = {}
    for i in m.graph.input:
        if i.name in init:
            continue
        t = i.type.tensor_type
        got[i.name] = (t.elem_type, len(t.shape.dim))
    want = {n: (t, r) for n, t, r in INPUTS}
    if set(got) != set(want):
        raise G2pwError(f"{path}: inputs {sorted(got)} are not g2pW's {sorted(want)}")
    for n, (t, r) in want.items():
        if got[n] != (t, r):
            raise G2pwError(f"{path}: input {n} is (elem type {got[n][0]}, rank {got[n][1]}), expected "
                            f"(elem type {t}, rank {r})")
    if not m.graph.output:
        raise G2pwError(f"{path}: the graph has no output")
    o = m.graph.output[0].type.tensor_type
    if o.elem_type != 1 or len(o.shape.dim) != 2:
        raise G2pwError(f"{path}: first output must be float32 [N, labels]")
    width = o.shape.dim[1]
    if width.HasField("dim_value") and width.dim_value != n_labels:
        raise G2pwError(f"{path}: output width {width.dim_value} differs from the {n_labels} labels of "
                        f"POLYPHONIC_CHARS.txt: the tables do not belong to this model")


def add_g2pw(model_dir: str, out: str, log=print) -> dict:
    """Copy DIR's model and tables into bundle folder `out`; return the manifest entry."""
    if not os.path.isdir(model_dir):
        raise G2pwError(f"g2pW folder not found: {model_dir}")
    onnx_path = next((os.path.join(model_dir, n) for n in ("g2pW.onnx", "g2pw.onnx")
                      if os.path.isfile(os.path.join(model_dir, n))), None)
    if onnx_path is None:
        raise G2pwError(f"{model_dir} has no g2pW.onnx (upstream's G2PWModel folder is expected)")
    for f in TABLES.values():
        if not os.path.isfile(os.path.join(model_dir, f)):
            raise G2pwError(f"{model_dir} has no {f} (upstream's G2PWModel folder is expected)")
    cfg = read_config(os.path.join(model_dir, "config.py"))
    use_mask, use_char_phoneme = bool(cfg["use_mask"]), bool(cfg["use_char_phoneme"])
    with open(os.path.join(model_dir, TABLES["polyphonic_chars"]), encoding="utf-8") as f:
        labels = labels_of(f.read(), use_char_phoneme)
    with open(os.path.join(model_dir, TABLES["bopomofo_to_pinyin"]), encoding="utf-8") as f:
        if not isinstance(json.load(f), dict):
            raise G2pwError(f"{TABLES['bopomofo_to_pinyin']} is not a JSON object")
    check_graph(onnx_path, len(labels))

    dst = os.path.join(out, "g2pw.onnx")
    sha = sha256_file(onnx_path)
    if os.path.isfile(dst) and sha256_file(dst) == sha:
        log("  g2pw.onnx: up to date, reused")
    else:
        shutil.copyfile(onnx_path, dst + ".tmp")
        os.replace(dst + ".tmp", dst)
        log(f"  g2pw.onnx: copied from {onnx_path} ({os.path.getsize(dst) / 2**20:.1f} MiB)")
    os.makedirs(os.path.join(out, "g2pw"), exist_ok=True)
    entry = {"file": "g2pw.onnx", "sha256": sha}
    for key, name in TABLES.items():
        shutil.copyfile(os.path.join(model_dir, name), os.path.join(out, "g2pw", name))
        entry[key] = f"g2pw/{name}"
    entry.update({"use_mask": use_mask, "use_char_phoneme": use_char_phoneme, "labels": len(labels),
                  "source": os.path.basename(os.path.normpath(model_dir))})
    return entry


def add_to_bundle(model_dir: str, out: str, log=print) -> dict:
    """`convert --g2pw DIR --out BUNDLE` without checkpoints: add the model to an existing v2 bundle."""
    mp = os.path.join(out, "manifest.json")
    if not os.path.isfile(mp):
        raise G2pwError(f"{out} is not a bundle (no manifest.json); pass --gpt/--sovits/--hubert/--bert to "
                        f"export one, or --out an existing bundle")
    with open(mp, encoding="utf-8") as f:
        manifest = json.load(f)
    check_version(manifest.get("model_version"))
    log(f"adding g2pW from {model_dir} to {out}")
    manifest["g2pw"] = add_g2pw(model_dir, out, log=log)
    tmp = mp + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
    os.replace(tmp, mp)
    return manifest


def check_version(version) -> None:
    if version == "v1":
        raise G2pwError("a v1 model never uses g2pW (upstream's v1 Chinese frontend reads pypinyin only)")
