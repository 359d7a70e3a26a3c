"""SlotPredictor: one image cached, the WSSS pipeline on it, and the mask ``glmix-wsss eval`` writes.

The acceptance test of issue 13: for the same image and settings, ``SlotPredictor.pseudo_mask``
returns the very mask eval writes (single scale and with ``--scales/--flip``, with and without
the CRF), because both call :mod:`glmix_vis.wsss.pipeline`.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from glmix_vis.assets import default_checkpoint
from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import open_dataset
from glmix_vis.io import load_image
from glmix_vis.models.slots import SlotOutput
from glmix_vis.predictor import SlotPredictor
from glmix_vis.wsss.crf import CRFParams
from glmix_vis.wsss.masks import checkpoint_bg_threshold
from glmix_vis.wsss.pipeline import (
    SIGMOID_LABEL_THRESHOLD,
    SOFTMAX_LABEL_THRESHOLD,
    image_labels,
    label_threshold,
    predicted_labels,
)
from glmix_vis.wsss.recipe import MaskRecipe

SIZE = 96


@pytest.fixture(scope="module")
def scenes(make_scenes) -> Path:
    return make_scenes(2, 2, size=SIZE, seed=3)


@pytest.fixture(scope="module")
def predictor() -> SlotPredictor:
    return SlotPredictor.from_checkpoint(default_checkpoint(), device="cpu")


@pytest.fixture()
def image(scenes: Path) -> np.ndarray:
    return open_dataset("voc", scenes, "val").load_image(0)


# ------------------------------------------------------------------ the object itself
def test_everything_asks_for_an_image_first() -> None:
    fresh = SlotPredictor.from_checkpoint(default_checkpoint(), device="cpu")
    for call in (lambda: fresh.maps(), lambda: fresh.image_size, lambda: fresh.num_glmix_blocks,
                 lambda: fresh.hard_slots(0), lambda: fresh.class_scores(), lambda: fresh.predicted_labels(),
                 lambda: fresh.evidence("cam"), lambda: fresh.pseudo_mask("cam"),
                 lambda: fresh.pseudo_mask("slot-cam", crf=True, scales=(1.0, 0.5), flip=True)):
        with pytest.raises(RuntimeError, match="set_image"):
            call()


def test_set_image_runs_one_pass_and_serves_maps(predictor: SlotPredictor, image: np.ndarray) -> None:
    out = predictor.set_image(image, input_size=SIZE)
    assert isinstance(out, SlotOutput) and predictor.output is out
    assert predictor.image_size == (SIZE, SIZE) and tuple(predictor.batch.shape) == (1, 3, SIZE, SIZE)
    n = predictor.num_glmix_blocks
    assert n == len(out.maps) > 0
    assert [m.block for m in predictor.maps([0, -1])] == [out.maps[0].block, out.maps[-1].block]
    assert len(predictor.maps()) == n
    with pytest.raises(IndexError, match="GLMix block"):
        predictor.maps([n])
    hard = predictor.hard_slots(-1)
    soft = predictor.soft_slots(0)
    assert hard.shape == (SIZE, SIZE) and soft.shape[1:] == (SIZE, SIZE)
    np.testing.assert_allclose(soft.sum(0), 1.0, atol=1e-4)
    # another input size: the same image, another grid
    predictor.set_image(image, input_size=2 * SIZE)
    assert tuple(predictor.batch.shape[-2:]) == (2 * SIZE, 2 * SIZE) and predictor.image_size == (SIZE, SIZE)


def test_evidence_plain_augmented_and_options(predictor: SlotPredictor, image: np.ndarray) -> None:
    predictor.set_image(image, input_size=SIZE)
    k = len(predictor.info.foreground_names)
    for method in ("cam", "slot-cam"):
        plain = predictor.evidence(method)
        assert plain.shape == (k, SIZE, SIZE) and plain.dtype == np.float32
        assert plain.min() >= 0 and plain.max() <= 1
        np.testing.assert_allclose(predictor.evidence(method, classes=[1, 0]), plain[[1, 0]], atol=1e-6)
        tta = predictor.evidence(method, scales=(1.0, 0.5, 1.5), flip=True)
        assert tta.shape == plain.shape and not np.allclose(tta, plain, atol=1e-3)
        # (1.0,) without flip is no augmentation: the cached forward pass, bit for bit
        np.testing.assert_array_equal(predictor.evidence(method, scales=[1.0], flip=False), plain)
    last = predictor.evidence("slot-cam", method_options={"blocks": "-1"})
    recipe = MaskRecipe("slot-cam", method_options={"blocks": "-1"})
    np.testing.assert_array_equal(predictor.evidence(recipe), last)  # a recipe or its fields: the same
    assert not np.array_equal(last, predictor.evidence("slot-cam"))
    with pytest.raises(ValueError, match="no setting no_such_option"):
        predictor.evidence("cam", no_such_option=1)
    with pytest.raises(ValueError, match="cam takes no option blocks"):
        predictor.evidence("cam", method_options={"blocks": "-1"})
    with pytest.raises(ValueError, match="unknown method"):
        predictor.evidence("grad-cam++")


def test_pseudo_mask_options(predictor: SlotPredictor, image: np.ndarray) -> None:
    predictor.set_image(image, input_size=SIZE)
    k = len(predictor.info.foreground_names)
    mask = predictor.pseudo_mask("slot-cam")
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8 and mask.max() <= k
    # default labels and threshold: the predicted labels and the checkpoint's tuned threshold, "pred" the same
    np.testing.assert_array_equal(mask, predictor.pseudo_mask("slot-cam", labels=predictor.predicted_labels(),
                                                              bg_threshold=checkpoint_bg_threshold(
                                                                  predictor.info.meta, "slot-cam")))
    np.testing.assert_array_equal(mask, predictor.pseudo_mask("slot-cam", labels="pred"))
    # labels restrict the classes a pixel may take
    only = np.zeros(k, np.float32)
    only[2] = 1
    assert set(np.unique(predictor.pseudo_mask("cam", labels=only, bg_threshold=0.0))) <= {0, 3}
    assert not predictor.pseudo_mask("cam", labels=np.zeros(k)).any()
    assert not predictor.pseudo_mask("cam", bg_threshold=1.0).any()  # a class must score above it
    # test-time augmentation and the CRF
    tta = predictor.pseudo_mask("cam", scales=(1.0, 0.5), flip=True, bg_threshold=0.3)
    assert tta.shape == mask.shape
    crf = predictor.pseudo_mask("slot-cam", crf=True)
    assert crf.shape == mask.shape and crf.dtype == np.uint8
    assert set(np.unique(crf)) <= set(np.unique(mask)) | {0}
    short = predictor.pseudo_mask("slot-cam", crf=True, crf_params=CRFParams(iterations=1, bilateral_compat=0.0))
    assert short.shape == mask.shape
    with pytest.raises(ValueError, match="ground truth"):
        predictor.pseudo_mask("cam", labels="gt")
    with pytest.raises(ValueError, match="slot-oracle"):
        predictor.pseudo_mask("slot-oracle")
    with pytest.raises(ValueError, match="multi-hot"):
        predictor.pseudo_mask("cam", labels=np.ones(k + 1))


# ------------------------------------------------------------------ the label rule
def test_the_label_rule_is_at_least_the_threshold_and_nothing_below_it() -> None:
    assert label_threshold(multilabel=True) == SIGMOID_LABEL_THRESHOLD == 0.5
    assert label_threshold(multilabel=False) == SOFTMAX_LABEL_THRESHOLD == 0.1
    np.testing.assert_array_equal(image_labels(np.array([0.5, 0.49, 0.9]), 0.5), [1, 0, 1])  # >=, not >
    np.testing.assert_array_equal(image_labels(np.array([0.2, 0.3, 0.1]), 0.5), [0, 0, 0])  # no best-class fiction
    assert image_labels(np.zeros(0), 0.5).shape == (0,)
    # a softmax head read through a class map: the groups' mass against 0.1; no group reaches it: no class
    head = SimpleNamespace(multilabel=False, class_scores=lambda logits: logits.softmax(-1).numpy()[[0, 1]])
    logits = torch.log(torch.tensor([0.12, 0.05, 0.83]))
    np.testing.assert_array_equal(predicted_labels(head, logits), [1, 0])
    np.testing.assert_array_equal(predicted_labels(head, torch.log(torch.tensor([0.02, 0.05, 0.93]))), [0, 0])


def test_predictor_and_eval_share_the_label_rule(predictor: SlotPredictor, image: np.ndarray) -> None:
    predictor.set_image(image, input_size=SIZE)
    scores = predictor.class_scores()
    np.testing.assert_array_equal(predictor.predicted_labels(), image_labels(scores, 0.5))
    np.testing.assert_array_equal(predictor.predicted_labels(threshold=1.1), image_labels(scores, 1.1))
    assert predictor.predicted_labels(threshold=1.1).sum() == 0
    assert not predictor.pseudo_mask("cam", labels=predictor.predicted_labels(threshold=1.1)).any()


# ------------------------------------------------------------------ the acceptance test
def _png(path: Path) -> np.ndarray:
    img = Image.open(path)
    assert img.mode == "P"
    return np.asarray(img)


@pytest.mark.parametrize("extra", [
    [],
    ["--no-crf", "--method", "cam"],
    ["--scales", "1.0,0.5,1.5", "--flip"],
    ["--scales", "1.0,0.5,1.5", "--flip", "--no-crf", "--method", "cam"],
    ["--labels", "pred", "--input-size", "128", "--bg-threshold", "0.3", "--workers", "2",
     "--crf-iterations", "5", "--crf-bilateral-srgb", "20", "--slot-blocks", "0,-1"],
], ids=["slot-cam+crf", "cam", "tta+crf", "tta-cam", "pred-labels+options+pool"])
def test_the_predictor_returns_the_mask_eval_writes(scenes: Path, predictor: SlotPredictor, tmp_path: Path,
                                                     extra: list[str]) -> None:
    out = tmp_path / "eval"
    args = ["eval", "--root", str(scenes), "--split", "val", "--out", str(out), "--workers", "1", *extra]
    assert wsss_main(args) == 0
    opt = dict(zip(extra[::1], extra[1::1]))
    method = opt.get("--method", "slot-cam")
    crf = "--no-crf" not in extra
    scales = tuple(float(s) for s in opt.get("--scales", "1.0").split(","))
    params = CRFParams(iterations=int(opt.get("--crf-iterations", 10)),
                       bilateral_srgb=float(opt.get("--crf-bilateral-srgb", 13.0)))
    options = {"blocks": opt["--slot-blocks"]} if "--slot-blocks" in opt else {}
    dataset = open_dataset("voc", scenes, "val")
    for i, image_id in enumerate(dataset.image_ids):
        image = load_image(dataset.image_path(i), exif_transpose=False)  # as eval reads a dataset image
        predictor.set_image(image, input_size=int(opt.get("--input-size", min(image.shape[:2]))))
        labels = "pred" if opt.get("--labels") == "pred" else dataset.image_labels(i)
        settings = dict(labels=labels, scales=scales, flip="--flip" in extra, crf_params=params,
                        bg_threshold=float(opt["--bg-threshold"]) if "--bg-threshold" in opt else None,
                        method_options=options)
        before = predictor.pseudo_mask(method, crf=False, **settings)
        if crf:
            np.testing.assert_array_equal(_png(out / "masks_nocrf" / f"{image_id}.png"), before)
            np.testing.assert_array_equal(_png(out / "masks" / f"{image_id}.png"),
                                          predictor.pseudo_mask(method, crf=True, **settings))
        else:
            np.testing.assert_array_equal(_png(out / "masks" / f"{image_id}.png"), before)
        assert before.any() or opt.get("--labels") == "pred"  # a real mask, not an empty one matching by luck
