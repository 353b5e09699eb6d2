"""Shared pytest fixtures. Golden folders: env GSV_GOLDEN_DIR / GSV_GOLDEN_V1_DIR / GSV_GOLDEN_V2PRO_DIR, else
../shared/golden(-v1, -v2pro) next to the repository. A missing golden folder fails the test that asks for it (it
is never a skip)."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _golden(env: str, default_name: str) -> Path:
    path = Path(os.environ.get(env, REPO_ROOT.parent / "shared" / default_name))
    if not (path / "manifest.json").is_file():
        pytest.fail(f"golden folder {path} (env {env}) is missing or has no manifest.json")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _golden("GSV_GOLDEN_DIR", "golden")


@pytest.fixture(scope="session")
def golden_v1_dir() -> Path:
    return _golden("GSV_GOLDEN_V1_DIR", "golden-v1")


@pytest.fixture(scope="session")
def golden_v2pro_dir() -> Path:
    return _golden("GSV_GOLDEN_V2PRO_DIR", "golden-v2pro")


@pytest.fixture(scope="session")
def sv_checkpoint(golden_v2pro_dir, tmp_path_factory) -> Path:
    """The golden set's speaker-verification checkpoint, decompressed (it is stored .xz) into a session folder."""
    from golden_sets import decompress_sv

    return decompress_sv(golden_v2pro_dir, tmp_path_factory.mktemp("sv"))


@pytest.fixture(scope="session")
def golden_bundle(golden_dir) -> Path:
    """onnx/golden, exported from the golden checkpoints if it is not there yet (test_bundle_golden.py checks
    the export itself; tests that only need the bundle use this, whatever order pytest runs them in)."""
    import json
    import subprocess
    import sys

    out = REPO_ROOT / "onnx" / "golden"
    if not (out / "manifest.json").is_file():
        m = json.loads((golden_dir / "manifest.json").read_text())
        names = list(m["models"])
        pick = lambda pred: golden_dir / "models" / next(n for n in names if pred(n))
        r = subprocess.run([sys.executable, "-m", "export", "convert",
                            "--gpt", str(pick(lambda n: n.endswith(".ckpt"))),
                            "--sovits", str(pick(lambda n: n.endswith(".pth"))),
                            "--hubert", str(pick(lambda n: "hubert" in n)),
                            "--bert", str(pick(lambda n: "roberta" in n)),
                            "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"exporting {out} failed: {r.stderr[-2000:]}")
    return out


@pytest.fixture(scope="session")
def golden_v2proplus_bundle(golden_v2pro_dir, sv_checkpoint) -> Path:
    """onnx/golden-v2proplus, exported from the v2Pro golden set if it is not there yet (test_bundle_golden.py checks
    the export itself; the bench tests need the bundle whatever order pytest runs them in)."""
    import subprocess
    import sys

    from golden_sets import BUNDLES, model_paths

    out = REPO_ROOT / "onnx" / "golden-v2proplus"
    if not (out / "manifest.json").is_file():
        p = model_paths(golden_v2pro_dir, BUNDLES["golden-v2proplus"][1])
        r = subprocess.run([sys.executable, "-m", "export", "convert", "--gpt", str(p["gpt"]), "--sovits", str(p["sovits"]),
                            "--hubert", str(p["hubert"]), "--bert", str(p["bert"]), "--sv", str(sv_checkpoint),
                            "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"exporting {out} failed: {r.stderr[-2000:]}")
    return out
