"""The committed demo bundle is small, self-consistent and reproducible by its command."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "onnx" / "demo"


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_demo_is_small_and_consistent():
    files = list(DEMO.iterdir())
    assert sum(f.stat().st_size for f in files) <= 5 * 1024 * 1024
    man = json.loads((DEMO / "manifest.json").read_text())
    assert man["format_version"] == 2 and man["demo"]["reference"]["file"] == "ref.wav"
    for name, g in man["graphs"].items():
        assert sha(DEMO / g["file"]) == g["sha256"], name
    assert man["symbols"]["count"] == len(man["symbols"]["list"])


def test_demo_reproducible(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "export", "demo", "--out", str(out)], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((DEMO / "manifest.json").read_text())
    b = json.loads((out / "manifest.json").read_text())
    assert a["sources"] == b["sources"], "random checkpoints differ"
    for name in a["graphs"]:
        assert a["graphs"][name]["sha256"] == b["graphs"][name]["sha256"], f"{name}.onnx differs"
    assert sha(DEMO / "ref.wav") == sha(out / "ref.wav")
    assert sha(DEMO / "tokenizer.json") == sha(out / "tokenizer.json")
