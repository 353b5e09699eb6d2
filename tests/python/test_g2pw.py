"""`python -m export convert --g2pw DIR` and the Python re-implementation of upstream's g2pW code that
tests/g2pw.rs compares the Rust runner with (tests/python/g2pw_reference.py, g2pw_standin.py)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import g2pw_reference as ref  # noqa: E402
import g2pw_standin  # noqa: E402


def export(*args):
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO, capture_output=True, text=True)


class Toy:
    """Each character is a token, `[UNK]` for `?`; words of letters split as `w`, `##o`, ..."""
    vocab = {"[UNK]": 100, "[CLS]": 101, "[SEP]": 102}

    def tokenize(self, w):
        if w == "?":
            return ["[UNK]"]
        return [c if i == 0 else "##" + c for i, c in enumerate(w)]

    def convert_tokens_to_ids(self, toks):
        return [self.vocab.get(t, 1000 + ord(t[-1])) for t in toks]


def test_reference_follows_upstream_on_hand_worked_cases():
    # utils.wordize_and_map: spaces map to None, [a-zA-Z0-9]+ runs are one word
    assert ref.wordize_and_map("ab1 行,") == (["ab1", "行", ","], [0, 0, 0, None, 1, 2], [(0, 3), (4, 5), (5, 6)])
    tokens, t2t, tok2t = ref.tokenize_and_map(Toy(), "ab 行?")
    assert tokens == ["a", "##b", "行", "[UNK]"] and t2t == [0, 1, None, 2, 3] and tok2t == [(0, 1), (1, 2), (3, 4), (4, 5)]
    # dataset.get_phoneme_labels: sorted labels, per-char indices in file order
    labels, c2p = ref.get_labels([["行", "ㄒㄧㄥ2"], ["行", "ㄏㄤ2"], ["長", "ㄔㄤ2"]], False)
    assert labels == ["ㄏㄤ2", "ㄒㄧㄥ2", "ㄔㄤ2"] and c2p == {"行": [1, 0], "長": [2]}
    x = ref.prepare_onnx_input(Toy(), labels, c2p, ["行", "長"], ["AB 行", "長"], [3, 0])
    assert x["input_ids"].tolist() == [[101, 1097, 1098, 1000 + ord("行"), 102], [101, 1000 + ord("長"), 102, 0, 0]]
    assert x["attention_masks"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert x["position_ids"].tolist() == [3, 1] and x["char_ids"].tolist() == [0, 1]
    assert x["phoneme_masks"].tolist() == [[1, 1, 0], [0, 0, 1]]
    # _truncate: 600 one-token characters, queries at both ends
    long = "行" * 600
    y = ref.prepare_onnx_input(Toy(), labels, c2p, ["行", "長"], [long, long], [0, 599])
    assert y["input_ids"].shape == (2, 512) and y["position_ids"].tolist() == [1, 510]
    # _predict_with_sentence_dedup's plan
    assert ref.Converter.plan(["a"]) == [([0], False)]
    assert ref.Converter.plan(["a", "b"]) == [([0, 1], False)]
    assert ref.Converter.plan(["a", "b", "a"]) == [([0, 2], True), ([1], False)]


def test_bert_tokenizer_reimplementation(tmp_path):
    t = json.loads((REPO / "onnx" / "demo" / "tokenizer.json").read_text(encoding="utf-8"))
    for p in ("caf", "##e", "ip", "##hone"):
        t["model"]["vocab"].setdefault(p, len(t["model"]["vocab"]))
    (tmp_path / "t.json").write_text(json.dumps(t), encoding="utf-8")
    tok = ref.BertWordPiece(str(tmp_path / "t.json"))
    assert tok.tokenize("Café") == ["caf", "##e"]  # lower case, accents stripped
    assert tok.tokenize("iPhone") == ["ip", "##hone"]
    assert tok.tokenize("\t") == [] and tok.tokenize("\u200b") == []
    assert tok.tokenize("行,長") == ["行", ",", "長"]
    assert tok.tokenize("q") == ["q"] and tok.tokenize("qq") == ["[UNK]"]  # no `##q` piece: the word is unknown


def test_standin_has_the_real_interface(tmp_path):
    import onnx
    import onnxruntime

    d = g2pw_standin.make_model_dir(tmp_path / "G2PWModel")
    m = onnx.load(str(d / "g2pW.onnx"))
    ins = {i.name: (i.type.tensor_type.elem_type, len(i.type.tensor_type.shape.dim)) for i in m.graph.input}
    assert ins == {"input_ids": (7, 2), "token_type_ids": (7, 2), "attention_mask": (7, 2), "phoneme_mask": (1, 2),
                   "char_ids": (7, 1), "position_ids": (7, 1)}
    s = onnxruntime.InferenceSession(str(d / "g2pW.onnx"), providers=["CPUExecutionProvider"])
    c = m.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    mask = np.zeros((2, c), np.float32)
    mask[:, 3:5] = 1
    feed = lambda ids, am: {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": am,
                            "phoneme_mask": mask, "char_ids": np.array([0, 1]), "position_ids": np.array([1, 2])}
    ids = np.array([[101, 15117, 18488, 102]], np.int64)
    one = s.run([], feed(ids, np.ones_like(ids)))[0]
    assert one.shape == (2, c) and set(np.argmax(one, 1)) <= {3, 4}
    # padding under a zero attention mask changes nothing; B = 1 broadcasts like B = N
    pad = np.concatenate([ids, np.zeros((1, 3), np.int64)], 1)
    am = np.array([[1, 1, 1, 1, 0, 0, 0]])
    assert np.allclose(s.run([], feed(pad, am))[0], one, atol=1e-6)
    assert np.allclose(s.run([], feed(np.repeat(ids, 2, 0), np.ones((2, 4), np.int64)))[0], one, atol=1e-6)


def test_convert_g2pw_into_an_existing_bundle(tmp_path):
    exp = g2pw_standin.make(tmp_path)
    b = tmp_path / "bundle"
    m = json.loads((b / "manifest.json").read_text())
    g = m["g2pw"]
    assert g["file"] == "g2pw.onnx" and g["labels"] == exp["labels"] and g["use_mask"] is True
    assert g["use_char_phoneme"] is False
    from export.ckpt import sha256_file
    assert sha256_file(str(b / "g2pw.onnx")) == g["sha256"] == sha256_file(str(tmp_path / "G2PWModel" / "g2pW.onnx"))
    for k in ("polyphonic_chars", "monophonic_chars", "bopomofo_to_pinyin"):
        assert (b / g[k]).is_file()
    # every sentence batch asks the model something, and the readings are pinyin with a tone
    assert all(b_["readings"] and all(r and r[-1] in "12345" for r in b_["readings"]) for b_ in exp["batches"])
    # re-adding is idempotent; the rest of the manifest is untouched
    r = export("convert", "--g2pw", str(tmp_path / "G2PWModel"), "--out", str(b))
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    m2 = json.loads((b / "manifest.json").read_text())
    assert m2 == m


def test_convert_g2pw_errors(tmp_path):
    d = g2pw_standin.make_model_dir(tmp_path / "G2PWModel")
    b = tmp_path / "b"
    shutil.copytree(REPO / "onnx" / "demo", b)
    # not a bundle
    r = export("convert", "--g2pw", str(d), "--out", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "not a bundle" in r.stderr
    # neither checkpoints nor --g2pw
    r = export("convert", "--out", str(b))
    assert r.returncode == 2 and "--g2pw" in r.stderr
    # a v1 bundle never uses g2pW
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "manifest.json").write_text(json.dumps({"model_version": "v1"}))
    r = export("convert", "--g2pw", str(d), "--out", str(v1))
    assert r.returncode == 2 and "v1" in r.stderr
    # tables that do not belong to the model: the output width is checked
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    lines = (bad / "POLYPHONIC_CHARS.txt").read_text(encoding="utf-8").splitlines()
    (bad / "POLYPHONIC_CHARS.txt").write_text("\n".join(lines[:100]) + "\n", encoding="utf-8")
    r = export("convert", "--g2pw", str(bad), "--out", str(b))
    assert r.returncode == 2 and "do not belong" in r.stderr, r.stderr
    # a missing table
    (bad / "MONOPHONIC_CHARS.txt").unlink()
    r = export("convert", "--g2pw", str(bad), "--out", str(b))
    assert r.returncode == 2 and "MONOPHONIC_CHARS.txt" in r.stderr
    # a graph with other inputs
    import onnx
    m = onnx.load(str(d / "g2pW.onnx"))
    m.graph.input[5].name = "positions"
    for n in m.graph.node:
        n.input[:] = ["positions" if i == "position_ids" else i for i in n.input]
    onnx.save(m, str(d / "g2pW.onnx"))
    r = export("convert", "--g2pw", str(d), "--out", str(b))
    assert r.returncode == 2 and "inputs" in r.stderr
    assert "g2pw" not in json.loads((b / "manifest.json").read_text())


def test_full_convert_with_g2pw_keeps_graphs_and_the_model(tmp_path, golden_bundle, golden_dir):
    """convert --gpt ... --g2pw DIR: the graphs of an up-to-date bundle are reused, the model is added, and a
    later convert without --g2pw keeps it."""
    from test_bundle_golden import model_paths
    d = g2pw_standin.make_model_dir(tmp_path / "G2PWModel")
    out = tmp_path / "bundle"
    shutil.copytree(golden_bundle, out)
    p = model_paths(golden_dir)
    args = ["convert", "--gpt", str(p["gpt"]), "--sovits", str(p["sovits"]), "--hubert", str(p["hubert"]),
            "--bert", str(p["bert"]), "--out", str(out)]
    r = export(*args)  # brings the copy up to date with this exporter (a no-op after test_bundle_golden)
    assert r.returncode == 0, r.stdout + r.stderr
    r = export(*args, "--g2pw", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("up to date, reused") == 7, r.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["g2pw"]["file"] == "g2pw.onnx" and (out / "g2pw.onnx").is_file()
    r = export(*args)
    assert r.returncode == 0 and "kept" in r.stdout, r.stdout + r.stderr
    assert json.loads((out / "manifest.json").read_text())["g2pw"] == m["g2pw"]
