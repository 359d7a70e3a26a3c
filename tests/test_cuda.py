"""The CUDA path against the CPU one: the same model, image and method on both devices.

Marked ``cuda`` and skipped without a GPU; ``eval/gpu_check.sh`` runs them on a GPU machine
(``pytest -m cuda``). Tolerances allow for TF32/cuDNN kernels, not for a different computation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import gradient_photo  # noqa: E402  the same test photo as the other tests

from glmix_vis.assets import default_checkpoint
from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data.scenes import SceneConfig, generate_scenes
from glmix_vis.devices import resolve_precision
from glmix_vis.predictor import SlotPredictor

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def predictors() -> dict[str, SlotPredictor]:
    return {d: SlotPredictor.from_checkpoint(default_checkpoint(), device=d) for d in ("cpu", "cuda")}


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def test_auto_precision_on_a_gpu_is_a_half_type() -> None:
    dtype = resolve_precision("auto", "cuda")
    assert dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def test_predictor_maps_and_scores_match_the_cpu(predictors: dict[str, SlotPredictor]) -> None:
    photo = gradient_photo(120, 160)
    outs = {d: p.set_image(photo) for d, p in predictors.items()}
    torch.testing.assert_close(outs["cuda"].logits.cpu(), outs["cpu"].logits, atol=2e-3, rtol=2e-3)
    for block in range(predictors["cpu"].num_glmix_blocks):
        cpu, gpu = (predictors[d].hard_slots(block) for d in ("cpu", "cuda"))
        assert cpu.shape == gpu.shape
        assert _agreement(cpu, gpu) > 0.99, f"block {block}: hard slots differ"
        np.testing.assert_allclose(predictors["cuda"].soft_slots(block), predictors["cpu"].soft_slots(block),
                                   atol=5e-3)


@pytest.mark.parametrize("method", ["cam", "slot-cam", "gradcam", "layercam"])
def test_evidence_and_masks_match_the_cpu(predictors: dict[str, SlotPredictor], method: str) -> None:
    photo = gradient_photo(96, 128)
    labels = np.zeros(len(predictors["cpu"].info.class_names) - 1, np.float32)
    labels[:2] = 1
    masks = {}
    for device, predictor in predictors.items():
        predictor.set_image(photo)
        masks[device] = predictor.pseudo_mask(method, labels=labels, crf=False, bg_threshold=0.5)
        assert masks[device].dtype == np.uint8
    assert _agreement(masks["cpu"], masks["cuda"]) > 0.99


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_keeps_float32_outputs(precision: str) -> None:
    predictor = SlotPredictor.from_checkpoint(default_checkpoint(), device="cuda", precision=precision)
    out = predictor.set_image(gradient_photo(64, 64))
    assert out.logits.dtype == torch.float32
    assert all(m.logits.dtype == torch.float32 for m in out.maps)
    assert predictor.evidence("slot-cam").dtype == np.float32


def test_eval_on_cuda_scores_as_on_the_cpu(tmp_path: Path) -> None:
    root = tmp_path / "scenes"
    generate_scenes(root, n_train=1, n_val=6, config=SceneConfig(size=96, seed=11), workers=1, progress=False)
    metrics = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert wsss_main(["eval", "--root", str(root), "--split", "val", "--out", str(out), "--device", device,
                          "--workers", "1"]) == 0
        metrics[device] = json.loads((out / "metrics.json").read_text())
    assert metrics["cuda"]["settings"]["device"].startswith("cuda")
    assert metrics["cuda"]["miou"] == pytest.approx(metrics["cpu"]["miou"], abs=0.5)
