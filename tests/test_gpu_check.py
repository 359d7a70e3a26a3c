"""eval/gpu_check.sh, the GPU machine's one command, kept working: CI runs it on the CPU, quick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_quick_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(REPO / "eval" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"] == "cpu" and report["quick"]
    assert all(r["max_abs_logit_diff"] == 0.0 for r in report["parity"].values())  # CPU against itself
    assert {"glnet_stl", "glnet_4g", "convnext_tiny", "swin_tiny"} <= set(report["throughput"]["images_per_s"])
    assert set(report["eval"]["runs"]) == {"fp32", "bf16"}
    assert all(r["images"] == 4 for r in report["eval"]["runs"].values())
    log = (tmp_path / "cuda_tests.log").read_text()
    assert "skipped" in log and "error" not in log.lower()  # the CUDA tests collected, skipped without a GPU
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check")


def test_gpu_check_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    sys.path.insert(0, str(REPO / "eval"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "eval"))
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
