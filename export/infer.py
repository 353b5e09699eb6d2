"""The GPT decoding loop of GPT-SoVITS (`infer_panel_naive`), backend-agnostic, in numpy.

Used by `verify` (graphs run by onnxruntime) and by the PyTorch eager benchmark (the export's own modules).
In:  prefill(phone_ids [1,N] i64, bert [1,1024,N] f32, prompt [1,P] i64) -> (logits [1,V], k list, v list)
     step(token [1,1] i64, position [1] i64, ks, vs) -> (logits [1,V], ks, vs)   (the caller owns the cache)
Out: GenerateResult(tokens: generated ids without EOS, step_logits: raw logits per step [steps,V], stopped_by)

Sampling order as upstream `sample()`: repetition penalty over every distinct previous token including the prompt
(negative * r, positive / r), top-p (only if < 1), / max(temperature, 1e-5), top-k, softmax, argmax(p / Exp(1)).
For steps idx < 11 the EOS column is dropped before sampling. Stop: argmax(penalised logits) == EOS or sample == EOS
(the EOS is dropped), or more than early_stop_num tokens generated (the token is kept), or 1500 steps.
Unlike upstream's callers we never drop the first generated token (see README, "Departures").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SamplingParams:
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    early_stop_num: int = -1
    max_steps: int = 1500
    min_steps_before_eos: int = 11
    seed: int = 0
    ignore_eos: bool = False   # benchmarks: force a token count


@dataclass
class GenerateResult:
    tokens: list
    step_logits: list = field(default_factory=list)
    stopped_by: str = ""
    idx: int = 0


def _softmax(x):
    m = np.max(x)
    e = np.exp(x - m)
    return e / e.sum()


def sample(logits: np.ndarray, previous: np.ndarray, p: SamplingParams, rng: np.random.Generator):
    """logits [V'] float32 (already EOS-trimmed when needed). Returns (token, penalised logits)."""
    x, penalised = filter_logits(logits, previous, p)
    probs = _softmax(x)
    q = rng.exponential(1.0, size=probs.shape).astype(np.float32)
    return int(np.argmax(probs / q)), penalised


def filter_logits(logits: np.ndarray, previous: np.ndarray, p: SamplingParams):
    """What sampling draws from: (repetition-penalised, top-p, temperature-scaled, top-k filtered logits with -inf
    outside the kept set, the penalised logits before filtering); softmax of the first is the sampled distribution."""
    x = logits.astype(np.float32).copy()
    if p.repetition_penalty != 1.0 and previous.size:
        idx = np.unique(previous)
        idx = idx[idx < x.shape[0]]
        s = x[idx]
        x[idx] = np.where(s < 0, s * np.float32(p.repetition_penalty), s / np.float32(p.repetition_penalty))
    penalised = x.copy()
    if p.top_p < 1.0:
        order = np.argsort(-x, kind="stable")
        sorted_logits = x[order]
        cum = np.cumsum(_softmax(sorted_logits))
        remove = cum > p.top_p
        remove[0] = False
        x[order[remove]] = -np.inf
    x = x / np.float32(max(p.temperature, 1e-5))
    if p.top_k is not None and 0 < p.top_k < x.shape[0]:
        kth = np.sort(x)[-p.top_k]
        x = np.where(x < kth, -np.inf, x)
    return x, penalised


def generate(prefill, step, phone_ids, bert, prompt, params: SamplingParams, eos: int) -> GenerateResult:
    rng = np.random.default_rng(params.seed)
    P = prompt.shape[1]
    logits, ks, vs = prefill(phone_ids, bert, prompt)
    y = [int(t) for t in prompt[0]]
    out = GenerateResult(tokens=[])
    for idx in range(params.max_steps):
        if idx > 0:
            token = np.array([[y[-1]]], dtype=np.int64)
            position = np.array([P + idx - 1], dtype=np.int64)
            logits, ks, vs = step(token, position, ks, vs)
        raw = np.asarray(logits, dtype=np.float32).reshape(-1)
        out.step_logits.append(raw.copy())
        trimmed = raw[:-1] if (idx < params.min_steps_before_eos or params.ignore_eos) else raw
        tok, penalised = sample(trimmed, np.array(y, dtype=np.int64), params, rng)
        y.append(tok)
        out.tokens.append(tok)
        out.idx = idx
        stop = ""
        if params.early_stop_num != -1 and len(out.tokens) > params.early_stop_num:
            stop = "early_stop_num"
        if not params.ignore_eos and (int(np.argmax(penalised)) == eos or tok == eos):
            out.tokens.pop()
            y.pop()
            stop = "eos"
        if stop:
            out.stopped_by = stop
            break
    else:
        out.stopped_by = "max_steps"
    return out
