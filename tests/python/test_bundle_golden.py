"""Export the golden checkpoints with `python -m export convert` and prove the bundle with `verify`.

The bundles are written to onnx/golden and onnx/golden-v1 (git-ignored) and reused by the Rust parity tests."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETS = {
    "golden": Path(os.environ.get("GSV_GOLDEN_DIR", REPO.parent / "shared" / "golden")),
    "golden-v1": Path(os.environ.get("GSV_GOLDEN_V1_DIR", REPO.parent / "shared" / "golden-v1")),
}


def model_paths(g: Path) -> dict:
    m = json.loads((g / "manifest.json").read_text())
    if "model_paths" in m:
        return {k: g / v for k, v in m["model_paths"].items()}
    names = list(m["models"])
    pick = lambda pred: g / "models" / next(n for n in names if pred(n))
    return {"gpt": pick(lambda n: n.endswith(".ckpt")), "sovits": pick(lambda n: n.endswith(".pth")),
            "hubert": pick(lambda n: "hubert" in n), "bert": pick(lambda n: "roberta" in n or ("bert" in n and "hubert" not in n))}


def run_export(*args):
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("name", list(SETS))
def test_convert_and_verify(name):
    g = SETS[name]
    assert g.is_dir(), f"golden folder missing: {g}"
    p = model_paths(g)
    out = REPO / "onnx" / name
    r = run_export("convert", "--gpt", str(p["gpt"]), "--sovits", str(p["sovits"]), "--hubert", str(p["hubert"]),
                   "--bert", str(p["bert"]), "--out", str(out))
    print(r.stdout[-3000:], r.stderr[-3000:])
    assert r.returncode == 0, r.stderr
    r = run_export("verify", "--bundle", str(out), "--golden", str(g))
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.endswith(" 0 failed") and not last.startswith("0 passed"), last
    # re-running reuses every graph
    r = run_export("convert", "--gpt", str(p["gpt"]), "--sovits", str(p["sovits"]), "--hubert", str(p["hubert"]),
                   "--bert", str(p["bert"]), "--out", str(out))
    assert r.returncode == 0 and r.stdout.count("up to date, reused") == 7, r.stdout
