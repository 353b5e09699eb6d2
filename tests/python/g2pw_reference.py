"""A Python re-implementation of upstream's g2pW preprocessing and prediction, written from GPT-SoVITS's
`text/g2pw/onnx_api.py`, `dataset.py` and `utils.py` (commit 48b1a01) for tests; nothing is imported from
GPT-SoVITS. The tokenizer is a plain re-implementation of the BERT fast tokenizer's pipeline (BertNormalizer,
BertPreTokenizer, WordPiece) over the vocabulary of a `tokenizer.json`, so the Rust side's use of the
`tokenizers` crate is checked by independent code.

Also: `build_standin`, a tiny random-weight graph with the real model's input/output names, dtypes and shapes.
"""
from __future__ import annotations

import json
import re
import unicodedata

import numpy as np

NON_POLYPHONIC = set("一不和咋嗲剖差攢倒難奔勁拗肖瘙誒泊听噢")
NON_MONOPHONIC = set("似攢")
CONTEXT_CHARS = 16  # g2pw_polyphonic_context_chars default
MAX_LEN = 512


# --- tokenizer (BertTokenizerFast's pipeline, by hand) ------------------------------------------------------

def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def _is_whitespace(c: str) -> bool:
    return c in "\t\n\r\x0b\x0c\x85\u2028\u2029" or unicodedata.category(c) == "Zs"


def _is_control(c: str) -> bool:
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _is_punct(c: str) -> bool:
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


class BertWordPiece:
    def __init__(self, tokenizer_json: str):
        with open(tokenizer_json, encoding="utf-8") as f:
            t = json.load(f)
        m = t["model"]
        assert m["type"] == "WordPiece", m["type"]
        self.vocab = m["vocab"]
        self.unk = m.get("unk_token", "[UNK]")
        self.prefix = m.get("continuing_subword_prefix", "##")
        self.max_chars = m.get("max_input_chars_per_word", 100)
        n = t["normalizer"]
        self.lowercase = n.get("lowercase", True)
        self.strip_accents = n.get("strip_accents")
        if self.strip_accents is None:
            self.strip_accents = self.lowercase

    def normalize(self, text: str) -> str:
        out = []
        for c in text:
            if c == "\0" or c == "\ufffd" or _is_control(c):
                continue
            out.append(" " if _is_whitespace(c) else c)
        text = "".join(" " + c + " " if _is_cjk(ord(c)) else c for c in out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = text.lower()
        return text

    def pre_tokenize(self, text: str) -> list:
        words, cur = [], ""
        for c in text:
            if _is_whitespace(c):
                if cur:
                    words.append(cur)
                cur = ""
            elif _is_punct(c):
                if cur:
                    words.append(cur)
                words.append(c)
                cur = ""
            else:
                cur += c
        if cur:
            words.append(cur)
        return words

    def wordpiece(self, word: str) -> list:
        if len(word) > self.max_chars:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end]
                if start > 0:
                    sub = self.prefix + sub
                if sub in self.vocab:
                    found = sub
                    break
                end -= 1
            if found is None:
                return [self.unk]
            pieces.append(found)
            start = end
        return pieces

    def tokenize(self, text: str) -> list:
        return [p for w in self.pre_tokenize(self.normalize(text)) for p in self.wordpiece(w)]

    def convert_tokens_to_ids(self, tokens: list) -> list:
        return [self.vocab.get(t, self.vocab[self.unk]) for t in tokens]


# --- utils.py -------------------------------------------------------------------------------------------------

def wordize_and_map(text: str):
    words, text2word, word2text = [], [], []
    while len(text) > 0:
        m = re.match(r"^ +", text)
        if m:
            text2word += [None] * len(m.group(0))
            text = text[len(m.group(0)):]
            continue
        m = re.match(r"^[a-zA-Z0-9]+", text)
        w = m.group(0) if m else text[0]
        start = len(text2word)
        word2text.append((start, start + len(w)))
        text2word += [len(words)] * len(w)
        words.append(w)
        text = text[len(w):]
    return words, text2word, word2text


def tokenize_and_map(tokenizer, text: str):
    words, text2word, word2text = wordize_and_map(text)
    tokens, token2text = [], []
    for word, (ws, we) in zip(words, word2text):
        wt = tokenizer.tokenize(word)
        if len(wt) == 0 or wt == ["[UNK]"]:
            token2text.append((ws, we))
            tokens.append("[UNK]")
        else:
            cur = ws
            for t in wt:
                n = len(re.sub(r"^##", "", t))
                token2text.append((cur, cur + n))
                cur += n
                tokens.append(t)
    text2token = text2word
    for i, (s, e) in enumerate(token2text):
        for p in range(s, e):
            text2token[p] = i
    return tokens, text2token, token2text


# --- dataset.py -----------------------------------------------------------------------------------------------

def get_labels(polyphonic_chars: list, use_char_phoneme: bool):
    key = (lambda c, p: f"{c} {p}") if use_char_phoneme else (lambda c, p: p)
    labels = sorted({key(c, p) for c, p in polyphonic_chars})
    char2phonemes = {}
    for c, p in polyphonic_chars:
        char2phonemes.setdefault(c, []).append(labels.index(key(c, p)))
    return labels, char2phonemes


def _truncate(text, query_id, tokens, text2token, token2text):
    n = MAX_LEN - 2
    if len(tokens) <= n:
        return text, query_id, tokens, text2token
    pos = text2token[query_id]
    ts = pos - n // 2
    te = ts + n
    front, back = -ts, te - len(tokens)
    if front > 0:
        ts, te = ts + front, te + front
    elif back > 0:
        ts, te = ts - back, te - back
    start, end = token2text[ts][0], token2text[te - 1][1]
    return (text[start:end], query_id - start, tokens[ts:te],
            [i - ts if i is not None else None for i in text2token[start:end]])


def prepare_onnx_input(tokenizer, labels, char2phonemes, chars, texts, query_ids, use_mask=True):
    char2id = {c: i for i, c in enumerate(chars)}
    rows, masks, char_ids, position_ids, cache = [], [], [], [], {}
    for text, query_id in zip(texts, query_ids):
        text = text.lower()
        if text not in cache:
            cache[text] = tokenize_and_map(tokenizer, text)
        tokens, text2token, token2text = cache[text]
        t_text, t_qid, t_tokens, t_t2t = _truncate(text, query_id, tokens, text2token, token2text)
        rows.append(tokenizer.convert_tokens_to_ids(["[CLS]"] + t_tokens + ["[SEP]"]))
        qc = t_text[t_qid]
        masks.append([1 if i in char2phonemes[qc] else 0 for i in range(len(labels))] if use_mask else [1] * len(labels))
        char_ids.append(char2id[qc])
        position_ids.append(t_t2t[t_qid] + 1)
    width = max(len(r) for r in rows)
    pad = lambda seqs: [s + [0] * (width - len(s)) for s in seqs]
    return {
        "input_ids": np.array(pad(rows), dtype=np.int64),
        "token_type_ids": np.zeros((len(rows), width), dtype=np.int64),
        "attention_masks": np.array(pad([[1] * len(r) for r in rows]), dtype=np.int64),
        "phoneme_masks": np.array(masks, dtype=np.float32),
        "char_ids": np.array(char_ids, dtype=np.int64),
        "position_ids": np.array(position_ids, dtype=np.int64),
    }


# --- onnx_api.py ----------------------------------------------------------------------------------------------

class Converter:
    """_G2PWBaseOnnxConverter without OpenCC and without the non-polyphonic readings (pypinyin): what the
    model is asked, and what it answers. `sentences` are traditional already."""

    def __init__(self, model_dir: str, tokenizer, use_mask=True, use_char_phoneme=False):
        read = lambda n: open(f"{model_dir}/{n}", encoding="utf-8").read()
        self.polyphonic = [line.split("\t") for line in read("POLYPHONIC_CHARS.txt").strip().split("\n")]
        self.labels, self.char2phonemes = get_labels(self.polyphonic, use_char_phoneme)
        self.chars = sorted(self.char2phonemes)
        self.poly_new = set(self.chars) - NON_POLYPHONIC
        self.bopomofo = json.loads(read("bopomofo_to_pinyin_wo_tune_dict.json"))
        self.tokenizer = tokenizer
        self.use_mask, self.use_char_phoneme = use_mask, use_char_phoneme

    def prepare_data(self, sentences):
        texts, mq, rq, sids = [], [], [], []
        for sid, sent in enumerate(sentences):
            idx = [i for i, c in enumerate(sent) if c in self.poly_new]
            if not idx:
                continue
            left = max(0, idx[0] - CONTEXT_CHARS)
            right = min(len(sent), idx[-1] + CONTEXT_CHARS + 1)
            for i in idx:
                texts.append(sent[left:right])
                mq.append(i - left)
                rq.append(i)
                sids.append(sid)
        return texts, mq, rq, sids

    @staticmethod
    def plan(texts):
        """_predict_with_sentence_dedup's runs: [(rows, shared_text)]."""
        if len(texts) <= 1:
            return [(list(range(len(texts))), False)]
        groups = {}
        for i, t in enumerate(texts):
            groups.setdefault(t, []).append(i)
        if all(len(g) == 1 for g in groups.values()):
            return [(list(range(len(texts))), False)]
        return [(g, len(g) > 1) for g in groups.values()]

    def to_pinyin(self, bopomofo):
        tone = bopomofo[-1]
        assert tone in "12345"
        c = self.bopomofo.get(bopomofo[:-1])
        return c + tone if c else None

    def __call__(self, sentences, session):
        texts, mq, rq, sids = self.prepare_data(sentences)
        out = {"texts": texts, "model_query_ids": mq, "result_query_ids": rq, "sent_ids": sids}
        if not texts:
            return out
        inp = prepare_onnx_input(self.tokenizer, self.labels, self.char2phonemes, self.chars, texts, mq, self.use_mask)
        plan = self.plan(texts)
        preds = [None] * len(texts)
        for rows, shared in plan:
            part = {k: v[rows] for k, v in inp.items()}
            if shared:
                for k in ("input_ids", "token_type_ids", "attention_masks"):
                    part[k] = part[k][:1]
            probs = session.run([], {"input_ids": part["input_ids"], "token_type_ids": part["token_type_ids"],
                                     "attention_mask": part["attention_masks"], "phoneme_mask": part["phoneme_masks"],
                                     "char_ids": part["char_ids"], "position_ids": part["position_ids"]})[0]
            for r, a in zip(rows, np.argmax(probs, axis=1).tolist()):
                preds[r] = a
        labels = [self.labels[p] for p in preds]
        if self.use_char_phoneme:
            labels = [l.split(" ")[1] for l in labels]
        out.update({k: v.tolist() for k, v in inp.items()})
        out["plan"] = [[rows, shared] for rows, shared in plan]
        out["label_ids"] = preds
        out["readings"] = [self.to_pinyin(l) for l in labels]
        return out


# --- the stand-in graph ---------------------------------------------------------------------------------------

def build_standin(path: str, n_labels: int, n_chars: int, seed: int = 0, dim: int = 16, vocab_mod: int = 211):
    """Random weights, the real interface: ids/masks [B, L] int64 (B = 1 or N), phoneme_mask [N, C] float32,
    char_ids/position_ids [N] int64 -> probs [N, C] = softmax(W tanh(h[pos] + mean_L(h) + E_char)) * mask, where
    h = E_tok[input_ids mod M] + E_type[token_type_ids] (the mean over attention_mask, so padding is neutral)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = lambda *s: rng.normal(0, 1, s).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("E_tok", w(vocab_mod, dim)), ("E_type", w(2, dim)), ("E_char", w(n_chars, dim)),
        ("W", w(dim, n_labels) * 2), ("b", w(n_labels)),
        ("M", np.array(vocab_mod, dtype=np.int64)), ("ax1", np.array([1], dtype=np.int64)),
        ("ax2", np.array([2], dtype=np.int64)),
        ("onehot_values", np.array([0.0, 1.0], dtype=np.float32)), ("one_idx", np.array([1], dtype=np.int64)),
    ]]
    N = helper.make_node
    nodes = [
        N("Mod", ["input_ids", "M"], ["ids_m"]),
        N("Gather", ["E_tok", "ids_m"], ["h_tok"]),
        N("Gather", ["E_type", "token_type_ids"], ["h_type"]),
        N("Add", ["h_tok", "h_type"], ["h"]),  # [B, L, D]
        N("Cast", ["attention_mask"], ["am"], to=TensorProto.FLOAT),
        N("Unsqueeze", ["am", "ax2"], ["am3"]),  # [B, L, 1]
        N("Mul", ["h", "am3"], ["hm"]),
        N("ReduceSum", ["hm", "ax1"], ["hsum"], keepdims=0),  # [B, D]
        N("ReduceSum", ["am3", "ax1"], ["cnt"], keepdims=0),  # [B, 1]
        N("Div", ["hsum", "cnt"], ["ctx"]),
        N("Shape", ["input_ids"], ["shape_ids"]),
        N("Gather", ["shape_ids", "one_idx"], ["depth"]),  # [1] = L
        N("OneHot", ["position_ids", "depth", "onehot_values"], ["oh"], axis=-1),  # [N, L]
        N("Unsqueeze", ["oh", "ax2"], ["oh3"]),  # [N, L, 1]
        N("Mul", ["oh3", "h"], ["sel3"]),  # [N, L, D] (B broadcasts)
        N("ReduceSum", ["sel3", "ax1"], ["sel"], keepdims=0),  # [N, D]
        N("Gather", ["E_char", "char_ids"], ["hc"]),
        N("Add", ["sel", "ctx"], ["z0"]),
        N("Add", ["z0", "hc"], ["z1"]),
        N("Tanh", ["z1"], ["z"]),
        N("MatMul", ["z", "W"], ["lw"]),
        N("Add", ["lw", "b"], ["logits"]),
        N("Softmax", ["logits"], ["p"], axis=-1),
        N("Mul", ["p", "phoneme_mask"], ["probs"]),
    ]
    ins = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "len"]),
           helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "len"]),
           helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "len"]),
           helper.make_tensor_value_info("phoneme_mask", TensorProto.FLOAT, ["n", n_labels]),
           helper.make_tensor_value_info("char_ids", TensorProto.INT64, ["n"]),
           helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["n"])]
    outs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", n_labels])]
    g = helper.make_graph(nodes, "g2pw_standin", ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="gsv-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
