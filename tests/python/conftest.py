"""Shared pytest fixtures. Golden folders: env GSV_GOLDEN_DIR / GSV_GOLDEN_V1_DIR, else ../shared/golden(-v1)
next to the repository. A missing golden folder fails the test that asks for it (it is never a skip)."""
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
