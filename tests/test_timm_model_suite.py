"""timm's own ``tests/test_models.py`` (from the installed timm's source distribution) passes for
every GLNet variant: the end-to-end check behind tests/test_timm_conventions.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NO_NETWORK = 3  # eval/timm_model_tests.py's exit status when PyPI cannot be reached


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_timm_model_suite_passes_for_every_glnet(tmp_path):
    pytest.importorskip("torchvision")
    proc = subprocess.run([sys.executable, str(REPO / "eval" / "timm_model_tests.py"), "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=1700)
    if proc.returncode == NO_NETWORK:
        pytest.skip("timm's source distribution could not be fetched from PyPI")
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if " passed" in line][-1]
    assert "failed" not in summary and int(summary.split(" passed")[0].split()[-1]) >= 80, summary
