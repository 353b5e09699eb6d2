"""The distributional gate of a quantised GPT variant: does it change what sampling sees?

In:  a bundle's fp32 GPT sessions and a candidate's (same I/O contract), the request's sampling settings, inputs
     (seeded synthetic requests on the bundle itself; the golden set's own request when given).
Out: per-step figures and their summary (`summarise`), compared with THRESHOLDS by `verdict`.

Teacher forcing: fp32 and the candidate run side by side on the same token sequence. At every step both sets of
raw logits go through the request's own filtering (`export.infer.filter_logits`: repetition penalty over the prompt
and the tokens so far, top-p, temperature, top-k; EOS masked for the first 11 steps as the runtime does), giving
the two distributions sampling would draw from, P (fp32) and Q (candidate). The next token is then drawn from P
(seeded; EOS excluded so the sequence goes on) and fed to both, so the steps follow a trajectory fp32 itself would
sample and the cache grows to realistic lengths.

Per step:
  tv       total-variation distance 0.5 * sum |P - Q|: the most by which the candidate changes the probability of
           any event at this step (one token, a set of tokens, stopping); under the best coupling of the two draws
           they pick the same token with probability 1 - tv.
  kl       KL(P || Q'), nats, with Q' = the candidate's filtered logits renormalised over P's kept set (tokens the
           candidate filters out stay in, so KL is finite when the top-k sets differ by a boundary token; that
           change is in tv).
  margin   fp32's top-1 minus top-2 penalised logit (nats at temperature 1); a step is *clear* when margin >=
           THRESHOLDS["clear_margin"]; greedy agreement = share of clear steps whose argmax is the same for both.

Why these thresholds (THRESHOLDS):
  mean_tv <= 0.02   on average a sampled token's distribution moves by at most 2 points of probability: under a
                    shared random stream at most 2% of draws could come out differently, far inside the spread of
                    the sampler itself (two fp32 runs with different seeds differ at almost every step).
  p99_tv  <= 0.10   no more than 1% of steps where some event's probability moves by more than 10 points: a
                    quantisation that is fine on average but breaks specific contexts (a layer, a position range)
                    shows up here.
  mean_kl <= 0.01   nats per token inside fp32's kept set: over a 200-token utterance the log-likelihood ratio of
                    fp32's samples under the candidate stays around 2 nats (an ideal observer could barely tell
                    which model produced a sequence).
  greedy_agreement >= 0.99 on clear steps (fp32's top-1 at least e^0.1 = 1.105x as likely as its runner-up): where
                    fp32 has a real preference the candidate must keep it (greedy decoding, top_k 1, depends on
                    nothing else). Steps without a clear margin are excluded: random weights give flat logits, where
                    any perturbation at all reorders near-ties that sampling treats as equal anyway; tv covers them.
                    Needs at least `min_clear_steps` clear steps to be judged; with fewer it is reported, not gated.
The faithful 8-bit variant passes all of them on the random full-size model and both golden models, with 7x margin
on TV; a damaged one (export.nbits `damage`: 0.05-0.2% of the codes replaced at random) fails them: the figures are
in the README ("Precision variants and their gates").
"""
from __future__ import annotations

import os

import numpy as np

from .infer import SamplingParams, filter_logits

THRESHOLDS = {"mean_tv": 0.02, "p99_tv": 0.10, "mean_kl": 0.01, "clear_set_changes": 0.01,
              "greedy_agreement": 0.99, "clear_margin": 0.1, "min_clear_steps": 50}
MIN_EOS_STEPS = 11  # the runtime masks EOS before this step, as upstream does


def request_sampling(man: dict, top_k: int | None = None, top_p: float = 1.0, temperature: float = 1.0,
                     repetition_penalty: float = 1.35) -> SamplingParams:
    """The sampling a default request gets: the bundle's top_k (the GPT checkpoint's, as api2 reads it) and api.py /
    api2's defaults top_p 1.0, temperature 1.0, repetition penalty 1.35."""
    k = int(top_k if top_k is not None else man["gpt"].get("top_k", 15))
    return SamplingParams(top_k=k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x)
    z = x - m
    return z - np.log(np.sum(np.exp(z)))


def compare(raw_p: np.ndarray, raw_q: np.ndarray, previous: np.ndarray, s: SamplingParams, idx: int, eos: int,
            clear_margin: float = 0.1):
    """One step: raw logits [V] of fp32 and candidate -> dict of the step's figures, and fp32's filtered logits."""
    if idx < MIN_EOS_STEPS:
        raw_p, raw_q = raw_p[:eos], raw_q[:eos]
    fp, pen_p = filter_logits(raw_p, previous, s)
    fq, pen_q = filter_logits(raw_q, previous, s)
    lp, lq = _log_softmax(fp), _log_softmax(fq)
    p, q = np.exp(lp), np.exp(lq)
    keep_p, keep_q = np.isfinite(fp), np.isfinite(fq)
    # the candidate's logits (same penalty and temperature) over fp32's kept set, renormalised
    xq = pen_q / np.float32(max(s.temperature, 1e-5))
    lq_keep = np.full_like(lp, -np.inf)
    lq_keep[keep_p] = _log_softmax(xq[keep_p])
    q_keep = np.exp(lq_keep)
    kl = float(np.sum(p[keep_p] * (lp[keep_p] - lq_keep[keep_p])))
    # kept-set changes that fp32 decides clearly: a token the candidate drops although fp32 ranks it at least
    # clear_margin above fp32's best excluded token, or one it keeps although fp32 ranks it that far below fp32's
    # worst kept token
    clear_change = False
    if not np.array_equal(keep_p, keep_q) and keep_p.any() and (~keep_p).any():
        lo_in, hi_out = float(pen_p[keep_p].min()), float(pen_p[~keep_p].max())
        dropped, added = keep_p & ~keep_q, keep_q & ~keep_p
        clear_change = bool((dropped.any() and pen_p[dropped].max() >= hi_out + clear_margin)
                            or (added.any() and pen_p[added].min() <= lo_in - clear_margin))
    top2 = np.partition(pen_p, -2)[-2:]
    return {
        "tv": 0.5 * float(np.sum(np.abs(p - q_keep))),
        "tv_full": 0.5 * float(np.sum(np.abs(p - q))),
        "kl": max(kl, 0.0),
        "set_changed": not np.array_equal(keep_p, keep_q),
        "clear_set_change": clear_change,
        "margin": float(top2[1] - top2[0]),
        "same": int(np.argmax(pen_p)) == int(np.argmax(pen_q)),
    }, fp


def teacher_forced(run_p, run_q, ids, bert, prompt, steps: int, s: SamplingParams, eos: int, seed: int,
                   clear_margin: float = 0.1) -> dict:
    """run_p / run_q: export.stepper.GptRunner over fp32 / candidate sessions (fresh caches). Returns per-step arrays."""
    rng = np.random.default_rng(seed)
    P = prompt.shape[1]
    lp = run_p.prefill(ids, bert, prompt).reshape(-1)
    lq = run_q.prefill(ids, bert, prompt).reshape(-1)
    prev = [int(t) for t in prompt[0]]
    out = {}
    for idx in range(steps):
        row, fp = compare(lp, lq, np.array(prev, np.int64), s, idx, eos, clear_margin)
        for k, v in row.items():
            out.setdefault(k, []).append(v)
        if idx + 1 == steps:
            break
        draw = fp.copy()
        if draw.shape[0] > eos:
            draw[eos] = -np.inf
        if not np.any(np.isfinite(draw)):
            draw = np.where(np.arange(draw.shape[0]) == eos, -np.inf, 0.0)
        pr = np.exp(_log_softmax(draw))
        tok = int(np.argmax(pr / rng.exponential(1.0, size=pr.shape)))
        prev.append(tok)
        lp = run_p.step(tok, P + idx).reshape(-1)
        lq = run_q.step(tok, P + idx).reshape(-1)
    return {k: np.array(v) for k, v in out.items()}


def synthetic_inputs(man: dict, seed: int, n: int = 40, p: int = 100):
    """A request of n random phones with random BERT features and p random prompt codes (seeded)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, int(man["gpt"]["phoneme_vocab_size"]), size=(1, n)).astype(np.int64)
    bert = (0.5 * rng.standard_normal((1, int(man["bert"]["hidden"]), n))).astype(np.float32)
    prompt = rng.integers(0, int(man["gpt"]["vocab_size"]) - 1, size=(1, p)).astype(np.int64)
    return ids, bert, prompt


def golden_inputs(golden: str, man: dict):
    from .verify import Golden

    g = Golden(golden)
    ids = g["gpt_all_phoneme_ids"].reshape(1, -1).astype(np.int64)
    bert = g["gpt_bert"].reshape(1, int(man["bert"]["hidden"]), -1).astype(np.float32)
    prompt = g["gpt_prompt_semantic"].reshape(1, -1).astype(np.int64)
    return ids, bert, prompt


def summarise(parts: list, th: dict = THRESHOLDS) -> dict:
    cat = {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}
    tv, full, kl, same = cat["tv"], cat["tv_full"], cat["kl"], cat["same"]
    clear = cat["margin"] >= th["clear_margin"]
    return {
        "steps": int(tv.size),
        "mean_tv": float(tv.mean()), "p99_tv": float(np.quantile(tv, 0.99)), "max_tv": float(tv.max()),
        "mean_kl": float(kl.mean()), "p99_kl": float(np.quantile(kl, 0.99)),
        "clear_set_changes": float(cat["clear_set_change"].mean()),
        "set_changes": float(cat["set_changed"].mean()),
        "mean_tv_with_set_changes": float(full.mean()), "p99_tv_with_set_changes": float(np.quantile(full, 0.99)),
        "clear_steps": int(clear.sum()),
        "greedy_agreement": float(same[clear].mean()) if clear.any() else None,
        "argmax_agreement_all_steps": float(same.mean()),
    }


def verdict(m: dict, th: dict = THRESHOLDS) -> tuple[bool, list]:
    """(passed, reasons it failed) for a summary `m`."""
    why = []
    if m["mean_tv"] > th["mean_tv"]:
        why.append(f"mean TV {m['mean_tv']:.4f} > {th['mean_tv']}")
    if m["p99_tv"] > th["p99_tv"]:
        why.append(f"p99 TV {m['p99_tv']:.4f} > {th['p99_tv']}")
    if m["clear_set_changes"] > th["clear_set_changes"]:
        why.append(f"clear top-k set changes at {m['clear_set_changes']:.4f} of the steps > {th['clear_set_changes']}")
    if m["mean_kl"] > th["mean_kl"]:
        why.append(f"mean KL {m['mean_kl']:.4f} > {th['mean_kl']}")
    if m["clear_steps"] >= th["min_clear_steps"] and m["greedy_agreement"] < th["greedy_agreement"]:
        why.append(f"greedy agreement {m['greedy_agreement']:.4f} < {th['greedy_agreement']} on "
                   f"{m['clear_steps']} clear steps")
    return not why, why


def sessions(bundle: str, prefill_file: str, step_file: str, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    mk = lambda f: ort.InferenceSession(os.path.join(bundle, f), so, providers=["CPUExecutionProvider"])
    return mk(prefill_file), mk(step_file)
