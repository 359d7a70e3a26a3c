"""Confusion-matrix metrics, pseudo-masks, the background-threshold sweep and CRF unaries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from glmix_vis.wsss.masks import (
    best_threshold,
    restrict_to_labels,
    scores_to_mask,
    sweep_confusions,
    unary_probabilities,
)
from glmix_vis.wsss.metrics import (
    ConfusionMatrix,
    Metrics,
    all_reduce_confusion,
    confusion_matrix,
    iou_from_confusion,
    mean_iou,
    sum_confusions,
)

# ------------------------------------------------------------------------------ metrics
GT = np.array([[0, 0, 1, 1],
               [0, 255, 1, 1],
               [2, 2, 255, 0]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 1, 0],
                 [2, 0, 1, 0]])
# counted by hand over the 10 non-ignored pixels (rows = ground truth, columns = prediction)
HAND = np.array([[3, 1, 0, 0],
                 [1, 3, 0, 0],
                 [1, 0, 1, 0],
                 [0, 0, 0, 0]])


def test_confusion_matrix_by_hand() -> None:
    conf = confusion_matrix(PRED, GT, num_classes=4)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, HAND)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(GT), 4), HAND)


def test_confusion_matrix_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(PRED[:2], GT, 4)
    with pytest.raises(ValueError, match="predicted labels"):
        confusion_matrix(np.where(GT == 2, 7, PRED), GT, 4)
    with pytest.raises(ValueError, match="ground-truth labels"):
        confusion_matrix(PRED, np.where(GT == 2, 9, GT), 4)
    # a bad prediction at an ignored pixel is fine
    confusion_matrix(np.where(GT == 255, 200, PRED), GT, 4)


def test_metrics_by_hand_and_empty_classes() -> None:
    m = Metrics.from_confusion(HAND)
    # class 0: TP 3, FP 2, FN 1; class 1: TP 3, FP 1, FN 1; class 2: TP 1, FP 0, FN 1; class 3: empty
    np.testing.assert_allclose(m.iou[:3], [3 / 6, 3 / 5, 1 / 2])
    assert math.isnan(m.iou[3]) and math.isnan(m.precision[3]) and math.isnan(m.recall[3])
    np.testing.assert_allclose(m.precision[:3], [3 / 5, 3 / 4, 1 / 1])
    np.testing.assert_allclose(m.recall[:3], [3 / 4, 3 / 4, 1 / 2])
    assert m.miou == pytest.approx(100 * (0.5 + 0.6 + 0.5) / 3)  # class 3 excluded, not counted as 0
    assert mean_iou(HAND) == pytest.approx(m.miou)


def test_class_only_in_prediction_counts_as_zero() -> None:
    conf = np.array([[5, 2], [0, 0]])  # class 1 predicted but never in the ground truth
    m = Metrics.from_confusion(conf)
    np.testing.assert_allclose(m.iou, [5 / 7, 0.0])
    assert math.isnan(m.recall[1]) and m.precision[1] == 0
    assert m.miou == pytest.approx(100 * (5 / 7) / 2)


def test_all_empty_is_nan_without_warnings() -> None:
    with np.errstate(all="raise"):
        m = Metrics.from_confusion(np.zeros((3, 3), np.int64))
    assert math.isnan(m.miou)
    assert m.to_dict()["miou"] is None


def test_to_dict_and_markdown() -> None:
    m = Metrics.from_confusion(HAND)
    names = ["background", "cat", "dog", "cow"]
    d = m.to_dict(names)
    assert set(d) == {"miou", "iou", "precision", "recall", "confusion_matrix"}
    assert d["miou"] == pytest.approx(m.miou, abs=1e-3)
    assert d["iou"] == {"background": 50.0, "cat": 60.0, "dog": 50.0, "cow": None}
    assert d["recall"]["cat"] == 75.0 and d["precision"]["dog"] == 100.0
    assert d["confusion_matrix"] == HAND.tolist() and all(type(v) is int for r in d["confusion_matrix"] for v in r)
    json.dumps(d)  # JSON-ready: no NaN, no numpy scalars
    table = m.to_markdown(names)
    lines = table.splitlines()
    assert lines[0] == "| class | IoU | precision | recall |"
    assert "| cat | 60.0 | 75.0 | 75.0 |" in lines
    assert "| cow | n/a | n/a | n/a |" in lines
    assert lines[-1].startswith("| **mean** | **53.3** |")
    with pytest.raises(ValueError, match="class names"):
        m.to_dict(names[:2])


def test_shards_add_up() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, size=(6, 20, 20))
    gt[:, :2] = 255
    pred = rng.integers(0, 5, size=(6, 20, 20))
    whole = confusion_matrix(pred, gt, 5)
    shards = [ConfusionMatrix(5), ConfusionMatrix(5)]
    for i in range(6):
        shards[i % 2].update(pred[i], gt[i])
    total = ConfusionMatrix(5)
    total += shards[0]
    total.add(shards[1].matrix)
    np.testing.assert_array_equal(total.matrix, whole)
    np.testing.assert_array_equal(sum_confusions([s.matrix for s in shards]), whole)
    np.testing.assert_array_equal(all_reduce_confusion(whole), whole)  # no process group: identity
    np.testing.assert_array_equal(total.all_reduce().matrix, whole)
    assert total.compute().miou == pytest.approx(Metrics.from_confusion(whole).miou)
    with pytest.raises(ValueError):
        total.add(np.zeros((3, 3)))


# ------------------------------------------------------------------------------ masks
def _scores() -> np.ndarray:
    """Three classes on a 4x4 image; class 2 is strongest everywhere but not in the label."""
    s = np.zeros((3, 4, 4), np.float32)
    s[0, :, :2] = 0.8
    s[1, :, 2:] = 0.4
    s[1, 0, 3] = 0.15  # exactly the threshold: background wins ties
    s[2] = 0.9
    return s


def test_masks_restricted_to_image_labels() -> None:
    s = _scores()
    labels = np.array([1, 1, 0])
    mask = scores_to_mask(s, 0.15, labels)
    expected = np.array([[1, 1, 2, 0], [1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 2, 2]])
    np.testing.assert_array_equal(mask, expected)
    assert np.all(scores_to_mask(s, 0.15) == 3)  # unrestricted, class 2 would win everywhere
    assert np.all(scores_to_mask(s, 0.15, np.zeros(3)) == 0)  # no labels: all background
    restricted = restrict_to_labels(torch.from_numpy(s), torch.tensor([1, 1, 0]))
    assert isinstance(restricted, torch.Tensor) and torch.all(restricted[2] == 0)
    np.testing.assert_array_equal(restricted[:2].numpy(), s[:2])
    np.testing.assert_array_equal(restrict_to_labels(s, labels)[2], 0)
    # batched, torch in, per-image labels
    batch = torch.from_numpy(np.stack([s, s]))
    masks = scores_to_mask(batch, 0.15, np.array([[1, 1, 0], [0, 0, 1]]))
    np.testing.assert_array_equal(masks[0], expected)
    assert np.all(masks[1] == 3)
    with pytest.raises(ValueError, match="multi-hot"):
        scores_to_mask(s, 0.15, np.array([1, 0]))


def test_sweep_matches_per_threshold_masks() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((2, 4, 30, 40)).astype(np.float32)
    labels = rng.integers(0, 2, size=(2, 4))
    gt = rng.integers(0, 5, size=(2, 30, 40))
    gt[:, :3] = 255
    thresholds = [0.5, 0.1, 0.3, 0.95, 0.0, 0.7]  # unsorted on purpose
    conf = sweep_confusions(scores, gt, thresholds, labels)
    assert conf.shape == (6, 5, 5) and conf.dtype == np.int64
    for j, t in enumerate(thresholds):
        np.testing.assert_array_equal(conf[j], confusion_matrix(scores_to_mask(scores, t, labels), gt, 5))
    single = sweep_confusions(torch.from_numpy(scores[0]), gt[0], thresholds, labels[0])
    np.testing.assert_array_equal(single, sweep_confusions(scores[:1], gt[:1], thresholds, labels[:1]))


def test_threshold_sweep_picks_the_right_threshold() -> None:
    """Objects score 0.5-0.6, background 0.1-0.35: only thresholds in [0.35, 0.5) are perfect."""
    rng = np.random.default_rng(1)
    thresholds = [0.05, 0.2, 0.3, 0.4, 0.55, 0.7, 0.9]
    total = np.zeros((len(thresholds), 3, 3), np.int64)
    for _ in range(4):
        gt = np.zeros((32, 32), np.int64)
        gt[4:20, 4:20] = 1
        gt[22:30, 10:30] = 2
        gt[20, :] = 255
        scores = np.zeros((2, 32, 32), np.float32)
        for k in (0, 1):
            obj = gt == k + 1
            scores[k] = np.where(obj, rng.uniform(0.5, 0.6, obj.shape), rng.uniform(0.1, 0.35, obj.shape))
        total += sweep_confusions(scores, gt, thresholds, labels=np.array([1, 1]))
    sweep = best_threshold(total, thresholds)
    assert sweep.best_threshold == 0.4 and sweep.best_miou == pytest.approx(100.0)
    assert sweep.miou[0] < sweep.miou[3] and sweep.miou[-1] < sweep.miou[3]
    assert sweep.to_dict()["best_threshold"] == 0.4
    np.testing.assert_allclose(sweep.miou, [np.nanmean(iou_from_confusion(c)) * 100 for c in total])
    with pytest.raises(ValueError):
        best_threshold(total, thresholds[:3])


def test_unary_probabilities() -> None:
    s = _scores()
    labels = np.array([1, 1, 0])
    probs = unary_probabilities(s, labels, bg_threshold=0.15)
    assert probs.shape == (4, 4, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-6)
    assert np.all(probs[3] == 0)  # not in the image: probability 0
    # bg plane = threshold before normalising, so the unary's argmax is the thresholded mask
    np.testing.assert_allclose(probs[0, 0, 0], 0.15 / 0.95, rtol=1e-6)
    off_tie = np.ones((4, 4), bool)
    off_tie[0, 3] = False
    np.testing.assert_array_equal(probs.argmax(0)[off_tie], scores_to_mask(s, 0.15, labels)[off_tie])
    # PSA's power background: (1 - max score) ** alpha
    power = unary_probabilities(s, labels, bg_mode="power", alpha=4)
    raw_bg = (1 - 0.8) ** 4
    np.testing.assert_allclose(power[0, 0, 0], raw_bg / (raw_bg + 0.8), rtol=1e-5)
    # no evidence at all and a zero threshold: background
    empty = unary_probabilities(np.zeros((2, 3, 3)), bg_threshold=0.0)
    assert np.all(empty[0] == 1)
    with pytest.raises(ValueError, match="bg_mode"):
        unary_probabilities(s, bg_mode="softmax")
