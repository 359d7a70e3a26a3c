import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def _reference_dir() -> Path:
    """The authors' test vectors: $GLMIX_REFERENCE_DIR, ../shared/reference beside the checkout, or the
    copy in tests/reference (see its README.md)."""
    env = os.environ.get("GLMIX_REFERENCE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "reference", REPO / "shared" / "reference", REPO / "tests" / "reference"]
    for c in candidates:
        if (c / "official_state_dicts.json").is_file():
            return c
    return candidates[0] if candidates else REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    d = _reference_dir()
    if not (d / "official_state_dicts.json").is_file():
        pytest.skip(f"official reference vectors not found (looked in {d}); set GLMIX_REFERENCE_DIR")
    return d
