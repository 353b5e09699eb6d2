"""Reference-free GPT decoding with the export's PyTorch model, written the way upstream's ref_free path runs it.

Used by tests/ref_free.rs (run with the export venv): reads a JSON request on stdin
    {"ckpt": path of the GPT .ckpt, "phone_ids": [N ints], "bert": [[N floats] x 1024],
     "top_k": int, "top_p": float, "temperature": float, "repetition_penalty": float, "early_stop_num": int,
     "ignore_eos": bool (optional: never stop on EOS, as `gsv bench` forces a length)}
and prints {"tokens": [...], "first_logits": [V floats], "steps": int}.

Upstream (`AR/models/t2s_model.py` `infer_panel_naive`, GPT-SoVITS 48b1a01), with `prompts=None`:
  x = ar_text_embedding(phones) + bert_proj(bert^T), then ar_text_position (x + alpha * pe[0..N));
  y_emb = None, y_len = 0, xy_pos = x, the first-step mask is the text's own all-visible mask;
  y starts empty (the repetition penalty sees only generated tokens);
  the token sampled at step idx is fed back with ar_audio_position's pe[:, y_len + idx] = pe[idx].
Here the first step is written out from the model's layers (no prompt tensor at all, unlike `T2S.prefill`, whose
P=0 case is what the ONNX graph runs), the steps use `T2S.step`, and the loop/sampler is export/infer.py's (the golden
data proves it equal to upstream's for prompted decoding). The model weights come from the export's own loader,
which the golden data proves equal to GPT-SoVITS.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from export.ckpt import load_checkpoint  # noqa: E402
from export.infer import SamplingParams, generate  # noqa: E402
from export.models.gpt import build_gpt, sinusoid  # noqa: E402


def ref_free_first_step(model, phone_ids: np.ndarray, bert: np.ndarray):
    """Upstream's first step with `prompts=None`: the text alone, every text row sees every text row."""
    ids = torch.from_numpy(phone_ids)
    b = torch.from_numpy(bert)
    n = ids.shape[1]
    with torch.no_grad():
        x = model.ar_text_embedding.word_embeddings(ids) + model.bert_proj(b.transpose(1, 2))
        x = x + model.ar_text_position.alpha * sinusoid(torch.arange(n), model.d).unsqueeze(0)
        ks, vs = [], []
        for blk in model.h.layers:
            q, k, v = blk.qkv(x)
            ks.append(k)
            vs.append(v)
            x = blk.attend(x, q, k, v, None)
        logits = model.ar_predict_layer(x[:, -1])
    return logits.numpy(), ks, vs


def main():
    req = json.load(sys.stdin)
    model = build_gpt(load_checkpoint(req["ckpt"], "GPT .ckpt"))
    ids = np.asarray(req["phone_ids"], dtype=np.int64).reshape(1, -1)
    bert = np.asarray(req["bert"], dtype=np.float32).reshape(1, model.bert_dim, ids.shape[1])
    prompt = np.zeros((1, 0), dtype=np.int64)  # no prompt codes: only sets P = 0 in the loop's positions

    def prefill(a, b, c):
        assert c.shape[1] == 0
        return ref_free_first_step(model, a, b)

    def step(tok, pos, ks, vs):
        with torch.no_grad():
            out = model.step(torch.from_numpy(tok), torch.from_numpy(pos), *ks, *vs)
        L = model.n_layer
        return (out[0].numpy(), [torch.cat([k, n], 1) for k, n in zip(ks, out[1:1 + L])],
                [torch.cat([v, n], 1) for v, n in zip(vs, out[1 + L:])])

    params = SamplingParams(top_k=req["top_k"], top_p=req["top_p"], temperature=req["temperature"],
                            repetition_penalty=req["repetition_penalty"], early_stop_num=req["early_stop_num"],
                            ignore_eos=bool(req.get("ignore_eos", False)))
    res = generate(prefill, step, ids, bert, prompt, params, model.eos)
    json.dump({"tokens": [int(t) for t in res.tokens], "first_logits": [float(v) for v in res.step_logits[0]],
               "steps": len(res.step_logits)}, sys.stdout)


if __name__ == "__main__":
    main()
