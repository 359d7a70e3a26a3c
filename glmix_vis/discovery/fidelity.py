"""Concept importance and concept deletion / insertion, as CRAFT measures a concept bank's fidelity.

A *concept map* gives every pixel of an image one concept (a slot atlas: the concept of the
pixel's slot; CRAFT: the concept of largest NMF coefficient). Removing a concept replaces its
pixels by the dataset's mean colour (0 of the normalised image) and runs the classifier again:

* **importance** of concept ``c`` for class ``k``: the mean drop of class ``k``'s score when ``c``
  alone is removed, over the images holding ``c`` and class ``k`` (CRAFT's occlusion variant of
  its Sobol importance);
* **deletion**: the concepts of an image are removed one after the other, most important for the
  class first; the class score is plotted against the fraction of the image removed so far and
  integrated over [0, 1] (lower: the ranking finds what the class needs sooner);
* **insertion**: from the all-removed image, the concepts are put back in the same order (higher
  is better).

Pixel fractions, not concept counts, on the x-axis: two concept banks cut an image into different
numbers of pieces, and the area must compare them on the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..wsss.faithfulness import ScoreFn

__all__ = ["ImportanceSum", "concept_curves", "single_concept_drops"]


def _map_at(concept_map: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(concept_map)).to(device)[None, None].float()
    return F.interpolate(t, size=size, mode="nearest")[0, 0].long()


@torch.no_grad()
def _scores(model: nn.Module, x: torch.Tensor, keep: torch.Tensor, score_fn: ScoreFn, batch: int) -> np.ndarray:
    """``(n, K)`` class scores of ``x`` with the pixels where ``keep[i]`` is False set to the mean colour."""
    out = []
    for i in range(0, keep.shape[0], batch):
        k = keep[i:i + batch, None].to(x.dtype)
        out.append(score_fn(model(x * k)).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def single_concept_drops(model: nn.Module, x: torch.Tensor, concept_map: np.ndarray, score_fn: ScoreFn,
                         batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(concepts present, (n, K) score drops)``: each concept of the image removed alone."""
    cmap = _map_at(concept_map, tuple(x.shape[-2:]), x.device)
    present = torch.unique(cmap)
    keep = torch.cat([torch.ones_like(cmap)[None].bool(), cmap[None] != present[:, None, None]])
    scores = _scores(model, x, keep, score_fn, batch)
    return present.cpu().numpy(), scores[:1] - scores[1:]


class ImportanceSum:
    """Running means of the per-class score drop of each concept (the importance table)."""

    def __init__(self, concepts: int, classes: int) -> None:
        self.sums = np.zeros((concepts, classes))
        self.counts = np.zeros((concepts, classes))

    def add(self, present: np.ndarray, drops: np.ndarray, labels: np.ndarray) -> None:
        """``labels``: ``(K,)`` multi-hot of the classes the image holds (only those are counted)."""
        on = np.asarray(labels, dtype=bool)
        self.sums[np.ix_(present, on)] += drops[:, on]
        self.counts[np.ix_(present, on)] += 1

    def mean(self) -> np.ndarray:
        return np.divide(self.sums, self.counts, out=np.zeros_like(self.sums), where=self.counts > 0)


def _trapezoid(xs: np.ndarray, ys: np.ndarray) -> float:
    return float(((ys[1:] + ys[:-1]) * np.diff(xs)).sum() / 2)


def concept_curves(model: nn.Module, x: torch.Tensor, concept_map: np.ndarray, importance: np.ndarray,
                   classes: Sequence[int], score_fn: ScoreFn, batch: int = 16) -> list[dict[str, float]]:
    """Deletion and insertion AUC of one image for each class in ``classes`` (indices into the
    score), the image's concepts ranked by ``importance[:, class]``."""
    cmap = _map_at(concept_map, tuple(x.shape[-2:]), x.device)
    present, counts = torch.unique(cmap, return_counts=True)
    present_np = present.cpu().numpy()
    fraction = counts.cpu().numpy() / cmap.numel()
    rows = []
    for k in classes:
        order = np.argsort(-importance[present_np, k], kind="stable")
        ranked = present[torch.from_numpy(order).to(present.device)]
        xs = np.concatenate([[0.0], np.cumsum(fraction[order])])
        xs[-1] = 1.0
        removed = torch.stack([torch.isin(cmap, ranked[:j]) for j in range(len(ranked) + 1)])
        deletion = _scores(model, x, ~removed, score_fn, batch)[:, k]
        insertion = _scores(model, x, removed, score_fn, batch)[:, k]
        rows.append(dict(cls=int(k), deletion_auc=_trapezoid(xs, deletion), insertion_auc=_trapezoid(xs, insertion)))
    return rows
