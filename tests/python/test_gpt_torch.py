"""The export's own GPT definition against what GPT-SoVITS computed (golden arrays)."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from export.ckpt import load_checkpoint
from export.infer import SamplingParams, generate
from export.models.gpt import build_gpt

REPO = Path(__file__).resolve().parents[2]


def golden_dirs():
    return [Path(os.environ.get("GSV_GOLDEN_DIR", REPO.parent / "shared" / "golden")),
            Path(os.environ.get("GSV_GOLDEN_V1_DIR", REPO.parent / "shared" / "golden-v1"))]


def arr(g, name):
    import json
    m = json.loads((g / "manifest.json").read_text())
    return np.load(g / m["arrays"][name]["file"])


def gpt_file(g):
    import json
    m = json.loads((g / "manifest.json").read_text())
    return g / "models" / next(k for k in m["models"] if k.endswith(".ckpt"))


@pytest.mark.parametrize("g", golden_dirs(), ids=["golden", "golden-v1"])
def test_gpt_matches_golden(g):
    assert g.is_dir(), f"golden folder missing: {g}"
    import json
    manifest = json.loads((g / "manifest.json").read_text())
    model = build_gpt(load_checkpoint(str(gpt_file(g)), "GPT .ckpt"))
    ids = arr(g, "gpt_all_phoneme_ids").reshape(1, -1)
    bert = arr(g, "gpt_bert").reshape(1, 1024, -1)
    prompt = arr(g, "gpt_prompt_semantic").reshape(1, -1)

    def prefill(a, b, c):
        with torch.no_grad():
            out = model.prefill(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c))
        L = model.n_layer
        return out[0].numpy(), list(out[1:1 + L]), list(out[1 + L:])

    def step(tok, pos, ks, vs):
        with torch.no_grad():
            out = model.step(torch.from_numpy(tok), torch.from_numpy(pos), *ks, *vs)
        L = model.n_layer
        return (out[0].numpy(), [torch.cat([k, n], 1) for k, n in zip(ks, out[1:1 + L])],
                [torch.cat([v, n], 1) for v, n in zip(vs, out[1 + L:])])

    first = arr(g, "gpt_first_step_logits").reshape(-1)
    logits, _, _ = prefill(ids, bert, prompt)
    np.testing.assert_allclose(logits.reshape(-1), first, atol=1e-4, rtol=1e-3)

    inputs = manifest["inputs"]
    for rp_name, rp in (("rp135", 1.35), ("rp10", 1.0)):
        if f"gpt_{rp_name}_step_logits" not in manifest["arrays"]:
            continue
        params = SamplingParams(top_k=inputs["top_k"], top_p=inputs["top_p"], temperature=inputs["temperature"],
                                repetition_penalty=rp, early_stop_num=inputs["early_stop_num"])
        res = generate(prefill, step, ids, bert, prompt, params, model.eos)
        golden_steps = arr(g, f"gpt_{rp_name}_step_logits").reshape(len(res.step_logits), -1) \
            if arr(g, f"gpt_{rp_name}_step_logits").size == len(res.step_logits) * model.vocab else None
        assert golden_steps is not None, f"{rp_name}: step count differs from golden"
        np.testing.assert_allclose(np.stack(res.step_logits), golden_steps, atol=1e-4, rtol=1e-3)
        y_full = arr(g, f"gpt_{rp_name}_y_full").reshape(-1)
        assert res.tokens == [int(t) for t in y_full[prompt.shape[1]:]], rp_name
        assert res.idx == int(arr(g, f"gpt_{rp_name}_idx").item())
