"""Where the golden sets keep their model files, read from each set's manifest.json (shared by conftest.py and the
tests). Sets: ../shared/golden (v2), ../shared/golden-v1, ../shared/golden-v2pro (a v2Pro and a v2ProPlus SoVITS
file sharing one GPT, one speaker-verification checkpoint stored xz-compressed, HuBERT/BERT referenced from the v2
set). Environment overrides: GSV_GOLDEN_DIR, GSV_GOLDEN_V1_DIR, GSV_GOLDEN_V2PRO_DIR."""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {"golden": "GSV_GOLDEN_DIR", "golden-v1": "GSV_GOLDEN_V1_DIR", "golden-v2pro": "GSV_GOLDEN_V2PRO_DIR"}
# bundle name -> (golden folder name, SoVITS model version inside it or None for a single-model set)
BUNDLES = {"golden": ("golden", None), "golden-v1": ("golden-v1", None),
           "golden-v2pro": ("golden-v2pro", "v2Pro"), "golden-v2proplus": ("golden-v2pro", "v2ProPlus")}


def golden_path(set_name: str) -> Path:
    return Path(os.environ.get(ENV[set_name], REPO.parent / "shared" / set_name))


def manifest(g: Path) -> dict:
    return json.loads((g / "manifest.json").read_text())


def model_paths(g: Path, version: str | None = None) -> dict:
    """{gpt, sovits, hubert, bert} (+ "sv_stored": the compressed SV file, "sv_entry": its manifest entry) of a set.
    `version` picks the SoVITS file of a set holding several (its `model_version` in the manifest)."""
    m = manifest(g)
    if "model_paths" in m:
        return {k: g / v for k, v in m["model_paths"].items()}
    models = m["models"]

    def where(name):
        entry = models[name]
        if isinstance(entry, dict) and "referenced_not_copied" in entry:
            return (g / entry["referenced_not_copied"]).resolve()
        return g / "models" / name

    names = list(models)
    pth = [n for n in names if n.endswith(".pth")]
    if version is not None:
        pth = [n for n in pth if models[n].get("model_version") == version]
    if len(pth) != 1:
        raise AssertionError(f"{g}: expected one SoVITS .pth for version {version}, found {pth}")
    out = {"gpt": where(next(n for n in names if n.endswith(".ckpt") and "/" not in n)),
           "sovits": where(pth[0]),
           "hubert": where(next(n for n in names if "hubert" in n)),
           "bert": where(next(n for n in names if "roberta" in n or ("bert" in n and "hubert" not in n)))}
    sv = [n for n in names if n.startswith("sv/")]
    if sv:
        entry = m["files"]["models/" + sv[0]]
        out["sv_stored"] = g / entry.get("stored_as", "models/" + sv[0])
        out["sv_entry"] = entry
    return out


def decompress_sv(g: Path, folder: Path) -> Path:
    """The set's speaker-verification checkpoint as users have it (decompressed when stored as .xz), checked against
    the manifest's sha256 and size."""
    p = model_paths(g, "v2Pro")
    src, entry = p["sv_stored"], p["sv_entry"]
    dst = folder / src.name.removesuffix(".xz")
    if not dst.is_file():
        tmp = dst.with_suffix(".tmp")
        if src.suffix == ".xz":
            with lzma.open(src, "rb") as fi, open(tmp, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
        else:
            shutil.copyfile(src, tmp)
        tmp.replace(dst)
    h = hashlib.sha256()
    with open(dst, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    assert h.hexdigest() == entry["sha256"] and dst.stat().st_size == entry["bytes"], f"{dst} differs from manifest"
    return dst
