"""Segmentation metrics from a confusion matrix accumulated over a whole split.

Convention (the PASCAL VOC evaluation, also IRN's ``eval_cam`` and chainercv): one confusion
matrix for the split, ``int64``, rows = ground truth, columns = prediction, pixels labelled
``ignore_index`` (255: VOC's object boundaries and "void") skipped, and so are pixels *predicted*
``ignore_index`` (a pseudo-mask's confidence band leaves them unlabelled; the share of valid pixels
that got a label is the mask's ``coverage``). Per class:

* IoU = TP / (TP + FP + FN), precision = TP / (TP + FP), recall = TP / (TP + FN);
* a ratio with a zero denominator is NaN. In particular a class absent from both the ground
  truth and the predictions (TP + FP + FN = 0) has IoU NaN and is left out of the mean;
* mIoU = nanmean of the class IoUs. Reported values are percentages.

Confusion matrices of shards (data-parallel workers, resumed chunks) simply add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.base import IGNORE_INDEX

__all__ = [
    "DEFAULT_IGNORE_INDEX", "confusion_matrix", "iou_from_confusion", "mean_iou", "sum_confusions",
    "all_reduce_confusion", "ConfusionMatrix", "Metrics",
]

DEFAULT_IGNORE_INDEX = IGNORE_INDEX  # the datasets' "void" label (VOC object borders, COCO crowds)


def _numpy_int(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64, copy=False)


def confusion_matrix(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, num_classes: int,
                     ignore_index: int = DEFAULT_IGNORE_INDEX) -> np.ndarray:
    """``(C, C)`` int64 counts of (ground truth, prediction) pairs over the pixels neither ignored in
    the ground truth nor left unlabelled (``ignore_index``) in the prediction."""
    p, g = _numpy_int(pred), _numpy_int(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} does not match ground truth shape {g.shape}")
    valid = (g != ignore_index) & (p != ignore_index)
    p, g = p[valid], g[valid]
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"ground-truth labels must be in 0..{num_classes - 1} or {ignore_index}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted labels must be in 0..{num_classes - 1} where the ground truth is valid")
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU in [0, 1] (NaN for classes with TP + FP + FN = 0)."""
    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    return _ratio(tp, conf.sum(0) + conf.sum(1) - tp)


def _nanmean(values: np.ndarray) -> float:
    """Mean over the defined (non-NaN) entries; NaN if there are none (without a warning)."""
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def mean_iou(confusion: np.ndarray) -> float:
    """mIoU in percent: nanmean of :func:`iou_from_confusion` (NaN if no class is defined)."""
    return _nanmean(iou_from_confusion(confusion)) * 100


def sum_confusions(matrices: Iterable[np.ndarray]) -> np.ndarray:
    """Sum of same-shaped confusion matrices (e.g. one per shard)."""
    total: np.ndarray | None = None
    for m in matrices:
        m = np.asarray(m, dtype=np.int64)
        if total is not None and m.shape != total.shape:
            raise ValueError(f"cannot add confusion matrices of shapes {total.shape} and {m.shape}")
        total = m.copy() if total is None else total + m
    if total is None:
        raise ValueError("no confusion matrices to sum")
    return total


def all_reduce_confusion(confusion: np.ndarray) -> np.ndarray:
    """Sum a confusion matrix over the ranks of ``torch.distributed`` (identity when not initialised)."""
    import torch.distributed as dist

    conf = np.asarray(confusion, dtype=np.int64)
    if not (dist.is_available() and dist.is_initialized()):
        return conf.copy()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.from_numpy(conf.copy()).to(device or "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def _percent(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x) * 100, 4)


@dataclass(frozen=True)
class Metrics:
    """Metrics of one confusion matrix. ``iou``/``precision``/``recall`` are fractions (NaN:
    undefined); ``miou`` is a percentage."""

    confusion: np.ndarray
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    miou: float

    @classmethod
    def from_confusion(cls, confusion: np.ndarray) -> Metrics:
        conf = np.asarray(confusion, dtype=np.int64)
        if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
            raise ValueError(f"a confusion matrix is square, got shape {conf.shape}")
        tp = np.diag(conf).astype(np.float64)
        iou = iou_from_confusion(conf)
        return cls(conf, iou, _ratio(tp, conf.sum(0)), _ratio(tp, conf.sum(1)), _nanmean(iou) * 100)

    @property
    def num_classes(self) -> int:
        return self.confusion.shape[0]

    def _names(self, class_names: Sequence[str] | None) -> list[str]:
        if class_names is None:
            return [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        return list(class_names)

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, object]:
        """JSON-ready: ``miou`` and per-class ``iou``/``precision``/``recall`` in percent (``None``
        where undefined), ``confusion_matrix`` as lists of ints (rows = ground truth)."""
        names = self._names(class_names)
        return {
            "miou": _percent(self.miou / 100),
            "iou": {n: _percent(v) for n, v in zip(names, self.iou)},
            "precision": {n: _percent(v) for n, v in zip(names, self.precision)},
            "recall": {n: _percent(v) for n, v in zip(names, self.recall)},
            "confusion_matrix": self.confusion.astype(int).tolist(),
        }

    def to_markdown(self, class_names: Sequence[str] | None = None, digits: int = 1) -> str:
        """A Markdown table: one row per class (IoU, precision, recall in %) and the mean."""

        def fmt(v: float) -> str:
            return "n/a" if np.isnan(v) else f"{v * 100:.{digits}f}"

        rows = ["| class | IoU | precision | recall |", "|---|---:|---:|---:|"]
        for n, i, p, r in zip(self._names(class_names), self.iou, self.precision, self.recall):
            rows.append(f"| {n} | {fmt(i)} | {fmt(p)} | {fmt(r)} |")
        rows.append(f"| **mean** | **{fmt(self.miou / 100)}** | {fmt(_nanmean(self.precision))} | "
                    f"{fmt(_nanmean(self.recall))} |")
        return "\n".join(rows)


class ConfusionMatrix:
    """Accumulates a split's confusion matrix image by image (or shard by shard)."""

    def __init__(self, num_classes: int, ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.unlabelled = 0  # valid ground-truth pixels the predictions left unlabelled (ignore_index)

    def update(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> None:
        self.matrix += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        self.unlabelled += int(((_numpy_int(pred) == self.ignore_index) & (_numpy_int(gt) != self.ignore_index)).sum())

    @property
    def coverage(self) -> float:
        """Percent of the valid ground-truth pixels that the predictions labelled."""
        labelled = int(self.matrix.sum())
        return 100.0 * labelled / max(labelled + self.unlabelled, 1)

    def add(self, other: ConfusionMatrix | np.ndarray) -> ConfusionMatrix:
        """Add another accumulator's (or a plain matrix's) counts in place."""
        m = other.matrix if isinstance(other, ConfusionMatrix) else np.asarray(other, dtype=np.int64)
        if m.shape != self.matrix.shape:
            raise ValueError(f"cannot add a {m.shape} confusion matrix to a {self.matrix.shape} one")
        self.matrix += m
        return self

    __iadd__ = add

    def all_reduce(self) -> ConfusionMatrix:
        """Sum over ``torch.distributed`` ranks, in place."""
        self.matrix = all_reduce_confusion(self.matrix)
        return self

    def compute(self) -> Metrics:
        return Metrics.from_confusion(self.matrix)
