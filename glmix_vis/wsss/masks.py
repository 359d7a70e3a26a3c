"""Pseudo-masks from class evidence: the standard WSSS protocol (IRN's ``eval_cam``).

* Evidence is restricted to the image's ground-truth classes (the image-level label): other
  classes can never win a pixel.
* Background is a constant score plane, ``bg_threshold``: a pixel takes the argmax over
  ``[bg_threshold, score_1, ..., score_K]``, i.e. its best class if that class's normalised
  score exceeds the threshold, else background (label 0; class ``k`` is label ``k + 1``).
* :func:`sweep_confusions` builds, in one pass over an image, the confusion matrices of many
  thresholds at once, so an evaluation loop can accumulate them and :func:`best_threshold`
  reports the best threshold and its mIoU at the end.
* :func:`unary_probabilities` turns the same thresholded scores into the ``(K+1, H, W)``
  probabilities used as the dense-CRF unary.
* :func:`in_band` marks the pixels a confidence band leaves out (written 255, :data:`IGNORE`);
  :func:`argmax_mask` is a segmenter's mask: the argmax over every class of its probabilities.

Masks are computed on numpy arrays or torch tensors; confusion matrices are numpy int64 with
rows = ground truth, columns = prediction (as :mod:`glmix_vis.wsss.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.meta import CheckpointMeta
from .metrics import DEFAULT_IGNORE_INDEX, mean_iou

__all__ = [
    "DEFAULT_BG_THRESHOLD", "checkpoint_bg_threshold", "DEFAULT_THRESHOLDS", "DEFAULT_POWER_ALPHA", "restrict_to_labels",
    "scores_to_mask", "sweep_confusions", "ThresholdSweep", "best_threshold", "unary_probabilities",
    "in_band", "argmax_mask", "IGNORE",
]

#: The label a pixel gets when it is not to be learnt (the datasets' ignore index).
IGNORE = DEFAULT_IGNORE_INDEX

#: IRN's default CAM evaluation threshold (``--cam_eval_thres 0.15``).
DEFAULT_BG_THRESHOLD = 0.15
#: The thresholds a sweep tries by default: 0.05, 0.10, ..., 0.95.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: PSA's "low alpha" for the background ``(1 - max score) ** alpha`` (Ahn & Kwak, CVPR 2018).
DEFAULT_POWER_ALPHA = 4.0

Array = np.ndarray | torch.Tensor


def _numpy(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _label_mask(labels: Array, scores_shape: Sequence[int]) -> np.ndarray:
    """Multi-hot labels ``(K,)`` or ``(B, K)`` as a bool mask broadcastable to the scores."""
    lab = _numpy(labels).astype(bool)
    k = scores_shape[-3]
    if lab.shape[-1] != k:
        raise ValueError(f"labels must be multi-hot over the {k} score classes, got shape {lab.shape}")
    return lab.reshape(*lab.shape, 1, 1)


def restrict_to_labels(scores: Array, labels: Array) -> Array:
    """Zero the maps of classes not in the image-level ``labels`` (multi-hot ``(K,)``/``(B, K)``).

    ``scores`` is ``(K, H, W)`` or ``(B, K, H, W)``; the result has its type (numpy or torch).
    """
    keep = _label_mask(labels, scores.shape)
    if isinstance(scores, torch.Tensor):
        return scores * torch.from_numpy(keep).to(scores.device, scores.dtype)
    return np.where(keep, scores, 0).astype(scores.dtype, copy=False)


def _best_class(scores: Array, labels: Array | None) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the best allowed class's score (``-inf`` if none is allowed) and its index."""
    s = _numpy(scores).astype(np.float32, copy=False)
    if s.ndim not in (3, 4):
        raise ValueError(f"scores must be (K, H, W) or (B, K, H, W), got shape {s.shape}")
    if labels is not None:
        s = np.where(_label_mask(labels, s.shape), s, -np.inf)
    if s.shape[-3] == 0:
        empty = np.full(s.shape[:-3] + s.shape[-2:], -np.inf, np.float32)
        return empty, np.zeros(empty.shape, np.int64)
    return s.max(axis=-3), s.argmax(axis=-3)


def checkpoint_bg_threshold(meta: CheckpointMeta | Mapping[str, Any] | None, method: str) -> float:
    """The background threshold a checkpoint's metadata records for ``method``, else IRN's 0.15.

    How far a normalised evidence map spreads beyond the object depends on the model and the
    method, so one literature value fits few of them; a checkpoint may carry values tuned on
    its training split (never on the split being scored; eval/tune_bg_thresholds.py writes them).
    The field and its validation belong to :class:`~glmix_vis.models.meta.CheckpointMeta`.
    """
    if not isinstance(meta, CheckpointMeta):
        meta = CheckpointMeta.from_mapping(meta)
    tuned = meta.tuned_bg_threshold(method)
    return DEFAULT_BG_THRESHOLD if tuned is None else tuned


def scores_to_mask(scores: Array, bg_threshold: float = DEFAULT_BG_THRESHOLD,
                   labels: Array | None = None) -> np.ndarray:
    """``(H, W)`` / ``(B, H, W)`` int64 label map: 0 background, ``k + 1`` for class ``k``.

    A pixel is background unless its best allowed class scores strictly above ``bg_threshold``
    (ties go to background, as ``argmax`` over ``[bg, scores]`` does).
    """
    best, arg = _best_class(scores, labels)
    return np.where(best > bg_threshold, arg + 1, 0).astype(np.int64)


def in_band(scores: Array, band: tuple[float, float] | None, labels: Array | None = None) -> np.ndarray:
    """``(H, W)`` bool: pixels whose best allowed class scores in ``(low, high]`` (ToCo's band
    between its low and high CAM thresholds); all False without a band."""
    best, _ = _best_class(scores, labels)
    if band is None:
        return np.zeros(best.shape, bool)
    low, high = band
    return (best > low) & (best <= high)


def argmax_mask(probabilities: Array) -> np.ndarray:
    """``(H, W)`` int64: the argmax over every class of ``(K, H, W)`` foreground probabilities, the
    background's being the rest (a segmenter's own mask: no labels, no threshold)."""
    p = _numpy(probabilities).astype(np.float32, copy=False)
    background = np.clip(1.0 - p.sum(axis=-3, keepdims=True), 0.0, None)
    return np.concatenate([background, p], axis=-3).argmax(axis=-3).astype(np.int64)


def sweep_confusions(scores: Array, gt: Array, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                     labels: Array | None = None, ignore_index: int = DEFAULT_IGNORE_INDEX) -> np.ndarray:
    """Confusion matrices of the masks at every threshold, ``(T, K+1, K+1)`` int64, in one pass.

    ``scores`` is ``(K, H, W)`` or ``(B, K, H, W)``, ``gt`` the matching ``(H, W)``/``(B, H, W)``
    labels in ``0..K`` (``ignore_index`` skipped). Equal to computing :func:`scores_to_mask` and a
    confusion matrix per threshold, but with a single ``bincount``: a pixel is foreground for
    exactly the thresholds below its best score, so counts binned by "how many thresholds lie
    below" give every threshold's matrix by cumulative sums.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size == 0:
        raise ValueError("thresholds must be a non-empty 1-d sequence")
    order = np.argsort(thr, kind="stable")
    best, arg = _best_class(scores, labels)
    g = _numpy(gt).astype(np.int64)
    if g.shape != best.shape:
        raise ValueError(f"gt shape {g.shape} does not match the score maps {best.shape}")
    c = int(scores.shape[-3]) + 1
    valid = g != ignore_index
    g, best, pred = g[valid], best[valid], arg[valid] + 1
    if g.size and (g.min() < 0 or g.max() >= c):
        raise ValueError(f"gt labels must be in 0..{c - 1} or {ignore_index}")
    t = thr.size
    below = np.searchsorted(thr[order], best, side="left")  # foreground for sorted thresholds j < below
    hist = np.bincount((below * c + g) * c + pred, minlength=(t + 1) * c * c).reshape(t + 1, c, c)
    fg = np.cumsum(hist[::-1], axis=0)[::-1][1:]  # fg[j] = sum of hist[j+1:]
    bg = np.cumsum(hist.sum(axis=2), axis=0)[:-1]  # bg[j, gt] = pixels with below <= j
    conf = fg.copy()
    conf[:, :, 0] += bg
    out = np.empty_like(conf)
    out[order] = conf
    return out


@dataclass(frozen=True)
class ThresholdSweep:
    """mIoU (percent) per background threshold and the best one."""

    thresholds: tuple[float, ...]
    miou: tuple[float, ...]
    best_index: int

    @property
    def best_threshold(self) -> float:
        return self.thresholds[self.best_index]

    @property
    def best_miou(self) -> float:
        return self.miou[self.best_index]

    def to_dict(self) -> dict[str, object]:
        return {"thresholds": list(self.thresholds), "miou": list(self.miou),
                "best_threshold": self.best_threshold, "best_miou": self.best_miou}


def best_threshold(confusions: np.ndarray, thresholds: Sequence[float]) -> ThresholdSweep:
    """Pick the threshold whose accumulated confusion matrix has the highest mIoU.

    mIoU as IRN's ``eval_cam``: IoU per class over the whole split, ``nanmean`` over classes
    (classes absent from both ground truth and prediction do not count). Ties go to the first.
    """
    conf = np.asarray(confusions)
    if conf.ndim != 3 or conf.shape[0] != len(thresholds):
        raise ValueError(f"confusions must be (T, C, C) with T = {len(thresholds)}, got {conf.shape}")
    mious = [mean_iou(m) for m in conf]
    arr = np.asarray(mious)
    best = int(np.nanargmax(arr)) if np.isfinite(arr).any() else 0
    return ThresholdSweep(tuple(float(t) for t in thresholds), tuple(mious), best)


def unary_probabilities(scores: Array, labels: Array | None = None,
                        bg_threshold: float = DEFAULT_BG_THRESHOLD, bg_mode: str = "threshold",
                        alpha: float = DEFAULT_POWER_ALPHA) -> np.ndarray:
    """``(K+1, H, W)`` float32 probabilities (plane 0 background) for the dense-CRF unary.

    ``scores`` are normalised evidence maps ``(K, H, W)`` in [0, 1]; classes outside ``labels``
    get probability 0 (the CRF then leaves them out). The background plane is

    * ``bg_mode="threshold"`` (default): the constant ``bg_threshold``, the same plane
      :func:`scores_to_mask` uses, so the argmax of the unary is exactly the thresholded mask;
    * ``bg_mode="power"``: PSA's ``(1 - max_k score_k) ** alpha`` (alpha 4 or 32 there);
    * ``bg_mode="rest"``: ``1 - sum_k score_k``, for probabilities over every class (a segmenter's).

    The planes are then divided by their sum at every pixel. (A per-pixel constant factor does
    not change the CRF: ``-log`` turns it into a label-independent energy offset.)
    """
    s = np.clip(_numpy(scores).astype(np.float32), 0.0, None)
    if s.ndim != 3:
        raise ValueError(f"scores must be (K, H, W), got shape {s.shape}")
    if labels is not None:
        s = np.where(_label_mask(labels, s.shape), s, 0.0).astype(np.float32)
    if bg_mode == "threshold":
        bg = np.full((1, *s.shape[1:]), bg_threshold, np.float32)
    elif bg_mode == "power":
        top = s.max(axis=0, keepdims=True) if s.shape[0] else np.zeros((1, *s.shape[1:]), np.float32)
        bg = np.power(np.clip(1.0 - top, 0.0, 1.0), alpha).astype(np.float32)
    elif bg_mode == "rest":
        bg = np.clip(1.0 - s.sum(axis=0, keepdims=True), 0.0, None).astype(np.float32)
    else:
        raise ValueError(f"bg_mode must be 'threshold', 'power' or 'rest', got {bg_mode!r}")
    planes = np.concatenate([bg, s], axis=0)
    total = planes.sum(axis=0, keepdims=True)
    planes[0][total[0] <= 0] = 1.0  # nothing anywhere: background
    return planes / np.maximum(planes.sum(axis=0, keepdims=True), 1e-12)
