"""Object-discovery metrics of one partition against one image's ground truth, as OCLF defines them.

The definitions follow OCLF's ``ocl/metrics`` (amazon-science/object-centric-learning-framework)
as SPOT's ``eval_spot.py`` calls them (``ignore_background=True``, ``ignore_overlaps=True``):

* **FG-ARI**: the adjusted Rand index between the partition and the ground-truth instances on the
  foreground pixels only (background and void pixels dropped). When the index is undefined (one
  cluster on both sides, or one point per cluster) it is 1, as OCLF returns.
* **best overlap** (mBO^i on instances, mBO^c on class regions): each ground-truth region takes the
  IoU of its best-overlapping predicted segment (one segment may serve several regions); the mean
  over the image's regions. Void pixels leave both the predicted segments and the regions; the
  background pixels stay in the predicted segments (a slot that spills onto the background pays).
* **mask CorLoc**: 1 when some ground-truth instance has a best-overlap IoU above 0.5, else 0.
* **Hungarian mIoU**: one-to-one matching maximising the summed IoU; unmatched regions count 0.

Every function returns None for an image with no region to score: the image then does not enter
that metric's average, as OCLF skips it. The dataset average is the mean of the per-image values.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..data.base import IGNORE_INDEX

__all__ = ["BEST_OVERLAP_HIT", "best_overlaps", "corloc", "fg_ari", "hungarian_miou", "mean_best_overlap",
           "partition_consistency"]

#: IoU above which a region counts as found (OCLF's ``discovery_threshold``).
BEST_OVERLAP_HIT = 0.5


def _contingency(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(counts[pred segment, region], region ids)`` over the valid pixels; column 0 = region 0."""
    if pred.shape != truth.shape:
        raise ValueError(f"partition {pred.shape} and ground truth {truth.shape} differ in size")
    p = pred[valid].astype(np.int64).ravel()
    t = truth[valid].astype(np.int64).ravel()
    regions, t_index = np.unique(t, return_inverse=True)
    n_pred = int(p.max()) + 1 if p.size else 1
    counts = np.bincount(p * len(regions) + t_index, minlength=n_pred * len(regions))
    return counts.reshape(n_pred, len(regions)), regions


def _iou_table(pred: np.ndarray, regions_map: np.ndarray, ignore: np.ndarray | None) -> np.ndarray:
    """``(segments, regions)`` IoU of every predicted segment with every non-zero region."""
    valid = regions_map != IGNORE_INDEX if ignore is None else ~ignore & (regions_map != IGNORE_INDEX)
    counts, regions = _contingency(pred, regions_map, valid)
    pred_size = counts.sum(axis=1, keepdims=True)
    inter = counts[:, regions != 0]
    union = pred_size + inter.sum(axis=0, keepdims=True) - inter
    return np.divide(inter, union, out=np.zeros(inter.shape, dtype=np.float64), where=union > 0)


def best_overlaps(pred: np.ndarray, regions_map: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """The best-overlap IoU of every non-empty region (ids other than 0 and 255) of ``regions_map``.

    ``pred``: ``(H, W)`` segment ids; ``ignore``: extra void pixels (e.g. the class mask's band).
    """
    iou = _iou_table(pred, regions_map, ignore)
    return iou.max(axis=0) if iou.size else np.zeros(0)


def mean_best_overlap(pred: np.ndarray, regions_map: np.ndarray, ignore: np.ndarray | None = None) -> float | None:
    """mBO of one image (instances: mBO^i; class regions: mBO^c); None without regions."""
    best = best_overlaps(pred, regions_map, ignore)
    return float(best.mean()) if best.size else None


def corloc(pred: np.ndarray, instances: np.ndarray, ignore: np.ndarray | None = None) -> float | None:
    """Mask CorLoc of one image: 1.0 when some instance's best overlap exceeds 0.5; None without instances."""
    best = best_overlaps(pred, instances, ignore)
    return float((best > BEST_OVERLAP_HIT).any()) if best.size else None


def hungarian_miou(pred: np.ndarray, regions_map: np.ndarray, ignore: np.ndarray | None = None) -> float | None:
    """Mean IoU under the one-to-one matching of segments to regions; None without regions."""
    iou = _iou_table(pred, regions_map, ignore)
    if not iou.shape[1]:
        return None
    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = np.zeros(iou.shape[1])
    matched[cols] = iou[rows, cols]
    return float(matched.mean())


def fg_ari(pred: np.ndarray, instances: np.ndarray, ignore: np.ndarray | None = None) -> float | None:
    """FG-ARI of one image; None when it has no instance at all (OCLF would count 1.0 there)."""
    valid = (instances != 0) & (instances != IGNORE_INDEX)
    if ignore is not None:
        valid &= ~ignore
    if not (instances[instances != IGNORE_INDEX] != 0).any():
        return None
    n_ij = _contingency(pred, instances, valid)[0].astype(np.float64)
    a, b = n_ij.sum(axis=0), n_ij.sum(axis=1)
    n = a.sum()
    rindex = (n_ij * (n_ij - 1)).sum()
    aindex, bindex = (a * (a - 1)).sum(), (b * (b - 1)).sum()
    expected = aindex * bindex / max(n * (n - 1), 1.0)
    denominator = (aindex + bindex) / 2 - expected
    return float((rindex - expected) / denominator) if denominator > 0 else 1.0


def partition_consistency(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two partitions of the same pixels are, with no ground truth: the segments are
    matched one-to-one by Hungarian IoU and the matched IoUs summed over the larger segment count
    (an unmatched segment counts 0), so 1 means the same partition and the score is symmetric."""
    counts, regions = _contingency(a, b, np.ones(a.shape, dtype=bool))
    counts = counts[counts.sum(axis=1) > 0]
    size_a, size_b = counts.sum(axis=1, keepdims=True), counts.sum(axis=0, keepdims=True)
    iou = counts / (size_a + size_b - counts)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].sum() / max(iou.shape))
