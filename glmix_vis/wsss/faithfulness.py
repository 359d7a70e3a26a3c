"""Faithfulness of class evidence: does the model's score follow the pixels the evidence ranks first?

Per image and target class, with the evidence map as a saliency ranking of the pixels:

* **ROAD** (Rong et al., ICML 2022), computed by pytorch-grad-cam's implementation
  (``pytorch_grad_cam.metrics.road``): the top (MoRF) or bottom (LeRF) ``100 - p`` percent of
  the pixels are replaced by noisy linear imputation from their neighbours, for every percentile
  ``p``, and the change of the target's score from the unperturbed image is averaged over the
  percentiles. ``road_morf``: lower is more faithful; ``road_lerf``: higher is; ``road_combined``
  = ``(road_lerf - road_morf) / 2`` (pytorch-grad-cam's ``ROADCombined``): higher is.
* **Deletion / insertion AUC** (Petsiuk et al., RISE, BMVC 2018): the pixels are removed
  (deletion: set to ``0`` of the normalised image, the dataset's mean colour, or to the image's
  mean) or revealed (insertion: starting from a Gaussian-blurred copy, sigma 5, kernel 11 as
  RISE) in order of saliency, a fraction ``i / steps`` of them at step ``i``; the target's score
  curve over ``i / steps`` in [0, 1] is integrated by the trapezoid rule. Deletion: lower is
  more faithful; insertion: higher is. The ``steps + 1`` perturbed copies run in batches.

The **score** is a function of the head's logits, ``(B, N) -> (B, K)``: :func:`head_score_fn`
gives the one :meth:`ModelInfo.class_scores <glmix_vis.loading.ModelInfo.class_scores>` reads
(a sigmoid per class for a multi-label head; the softmax mass of each class's group for an
ImageNet head read through a ``class_map``); any other works the same.

Ties in the ranking (a ReLU'd map is zero over much of the image) are broken at random with a
fixed seed, so that every step removes exactly its share of pixels: pytorch-grad-cam's ROAD
thresholds at a percentile, and on a map that is 60% zeros would otherwise remove the whole image
at every percentile below 60. ROAD's imputation noise comes from the same seed.

:class:`RowStore` keeps one JSON line per image (``OUT/faithfulness.jsonl`` in ``glmix-wsss
eval --faithfulness``), rewritten atomically, so a resumed run skips the images it holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io import atomic_write_bytes

__all__ = [
    "METRICS", "ScoreFn", "FaithfulnessConfig", "head_score_fn", "saliency_order", "trapezoid_auc",
    "deletion_insertion", "road", "image_faithfulness", "summarize", "RowStore",
]

#: The per-class numbers one image gives, and the mean a run reports of each.
METRICS = ("road_morf", "road_lerf", "road_combined", "deletion_auc", "insertion_auc")
DELETION_BASELINES = ("zero", "mean")

#: ``(B, N)`` head logits -> ``(B, K)`` class scores.
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FaithfulnessConfig:
    """How the metrics are computed (recorded with every row and in ``metrics.json``).

    Attributes:
        percentiles: ROAD's percentiles ``p``: ``100 - p`` percent of the pixels are imputed.
        steps: deletion/insertion steps (``steps + 1`` points on the curve, 0 and 1 included).
        deletion_baseline: ``"zero"`` (the normalised image's 0: the dataset mean colour) or
            ``"mean"`` (each channel's mean over the image).
        blur_sigma, blur_kernel: insertion's blurred start (RISE: 5 and 11).
        batch_size: perturbed copies per forward pass.
        seed: tie-breaking of the ranking and ROAD's imputation noise.
    """

    percentiles: tuple[int, ...] = (20, 40, 60, 80)
    steps: int = 20
    deletion_baseline: str = "zero"
    blur_sigma: float = 5.0
    blur_kernel: int = 11
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.percentiles or any(not 0 < p < 100 for p in self.percentiles):
            raise ValueError(f"percentiles must be in (0, 100), got {self.percentiles}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.deletion_baseline not in DELETION_BASELINES:
            raise ValueError(f"deletion_baseline must be one of {DELETION_BASELINES}, got {self.deletion_baseline!r}")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0 or self.blur_sigma <= 0:
            raise ValueError("blur_kernel must be odd and positive, blur_sigma positive")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        return d


class _Head(Protocol):
    multilabel: bool
    class_map: list[list[int]] | None


def head_score_fn(info: _Head) -> ScoreFn:
    """The class score :meth:`ModelInfo.class_scores` reads, batched: sigmoid per class for a
    multi-label head, else the softmax, summed over each ``class_map`` group when there is one."""
    groups = None if info.class_map is None else [list(map(int, g)) for g in info.class_map]

    def score(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        probs = logits.sigmoid() if info.multilabel else logits.softmax(-1)
        if groups is None:
            return probs
        return torch.stack([probs[:, g].sum(-1) for g in groups], dim=1)

    return score


# --------------------------------------------------------------------------------------------
# the ranking and the curves
# --------------------------------------------------------------------------------------------
def saliency_order(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(H, W)`` int64: each pixel's place when the pixels are sorted by decreasing saliency
    (0: the most salient); ties are broken at random with ``seed``."""
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim != 2:
        raise ValueError(f"a saliency map is (H, W), got shape {sal.shape}")
    tiebreak = np.random.default_rng(seed).random(sal.size)
    order = np.lexsort((tiebreak, -sal.ravel()))  # last key first: by -saliency, then the tie-break
    place = np.empty(sal.size, dtype=np.int64)
    place[order] = np.arange(sal.size)
    return place.reshape(sal.shape)


def trapezoid_auc(curve: Sequence[float] | np.ndarray) -> float:
    """Area under ``curve`` sampled at ``i / (len - 1)`` on [0, 1], by the trapezoid rule."""
    y = np.asarray(curve, dtype=np.float64)
    if y.ndim != 1 or y.size < 2:
        raise ValueError("a curve needs at least two points")
    return float((y[:-1] + y[1:]).sum() / (2 * (y.size - 1)))


def _gaussian_blur(x: torch.Tensor, sigma: float, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflected borders."""
    half = kernel // 2
    t = torch.arange(kernel, dtype=torch.float32, device=x.device) - half
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    pad_h, pad_w = min(half, x.shape[2] - 1), min(half, x.shape[3] - 1)
    y = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect") if (pad_h or pad_w) else x
    kh = k[half - pad_h: half + pad_h + 1]
    kw = k[half - pad_w: half + pad_w + 1]
    y = F.conv2d(y, (kh / kh.sum()).view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return F.conv2d(y, (kw / kw.sum()).view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)


@torch.no_grad()
def _scores(model: nn.Module, batches: Iterable[torch.Tensor], score_fn: ScoreFn, target: int) -> np.ndarray:
    out = [score_fn(model(b))[:, target].float().cpu() for b in batches]
    return torch.cat(out).numpy().astype(np.float64)


def deletion_insertion(model: nn.Module, image: torch.Tensor, saliency: np.ndarray, score_fn: ScoreFn,
                       target: int, config: FaithfulnessConfig | None = None) -> tuple[float, float]:
    """``(deletion_auc, insertion_auc)`` of one ``(1, 3, H, W)`` normalised image for class ``target``
    (an index into ``score_fn``'s output) with its ``(H, W)`` saliency map."""
    cfg = config or FaithfulnessConfig()
    x = image if image.ndim == 4 else image[None]
    if x.shape[0] != 1 or tuple(x.shape[-2:]) != tuple(np.shape(saliency)):
        raise ValueError(f"one (1, 3, H, W) image and its (H, W) saliency, got {tuple(x.shape)} and "
                         f"{np.shape(saliency)}")
    h, w = x.shape[-2:]
    place = torch.from_numpy(saliency_order(saliency, cfg.seed)).to(x.device)
    counts = [round(i * h * w / cfg.steps) for i in range(cfg.steps + 1)]
    baseline = torch.zeros_like(x) if cfg.deletion_baseline == "zero" else x.mean((2, 3), keepdim=True).expand_as(x)
    blurred = _gaussian_blur(x, cfg.blur_sigma, cfg.blur_kernel)

    def copies(start: torch.Tensor, end: torch.Tensor) -> Iterable[torch.Tensor]:
        """The image going from ``start`` to ``end`` pixel by pixel in saliency order, in batches."""
        for i in range(0, len(counts), cfg.batch_size):
            k = torch.as_tensor(counts[i: i + cfg.batch_size], device=x.device)
            switched = (place[None] < k[:, None, None])[:, None].to(x.dtype)  # (n, 1, H, W)
            yield start * (1 - switched) + end * switched

    deletion = _scores(model, copies(x, baseline), score_fn, target)
    insertion = _scores(model, copies(blurred, x), score_fn, target)
    return trapezoid_auc(deletion), trapezoid_auc(insertion)


class _Target:
    """A pytorch-grad-cam metric target: class ``k``'s score from one ``(N,)`` output."""

    def __init__(self, score_fn: ScoreFn, k: int) -> None:
        self.score_fn, self.k = score_fn, k

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.score_fn(output[None])[0, self.k]


def road(model: nn.Module, image: torch.Tensor, saliency: np.ndarray, score_fn: ScoreFn,
         targets: Sequence[int], config: FaithfulnessConfig | None = None) -> dict[str, np.ndarray]:
    """ROAD of one ``(1, 3, H, W)`` image for each class in ``targets`` with its ``(K, H, W)``
    saliency maps (one per target), by pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` and
    ``ROADLeastRelevantFirstAverage``; ``road_combined`` is their ``ROADCombined``. The copies of
    all targets at one percentile go through the model together."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage

    cfg = config or FaithfulnessConfig()
    x = image if image.ndim == 4 else image[None]
    sal = np.asarray(saliency)
    if sal.ndim != 3 or sal.shape[0] != len(targets) or sal.shape[1:] != tuple(x.shape[-2:]):
        raise ValueError(f"saliency must be (len(targets), H, W) = ({len(targets)}, {x.shape[-2]}, "
                         f"{x.shape[-1]}), got {sal.shape}")
    n = x.shape[-2] * x.shape[-1]
    # the rank as the map: ROAD thresholds at percentiles, which now cut exact shares of pixels
    ranks = np.stack([1.0 - saliency_order(s, cfg.seed) / n for s in sal]).astype(np.float32)
    batch = x.expand(len(targets), -1, -1, -1)
    fns = [_Target(score_fn, int(k)) for k in targets]
    percentiles = list(cfg.percentiles)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        morf = ROADMostRelevantFirstAverage(percentiles)(batch, ranks, fns, model)
        lerf = ROADLeastRelevantFirstAverage(percentiles)(batch, ranks, fns, model)
    morf, lerf = np.asarray(morf, np.float64), np.asarray(lerf, np.float64)
    return dict(road_morf=morf, road_lerf=lerf, road_combined=(lerf - morf) / 2)


def image_faithfulness(model: nn.Module, image: torch.Tensor, saliency: np.ndarray, classes: Sequence[int],
                       score_fn: ScoreFn, config: FaithfulnessConfig | None = None) -> list[dict[str, float]]:
    """Every metric of :data:`METRICS` for each class in ``classes`` (``saliency[j]`` is class
    ``classes[j]``'s map): one dict per class, with its ``class`` index. The model runs as it is
    (put it in eval mode first)."""
    cfg = config or FaithfulnessConfig()
    classes = [int(c) for c in classes]
    if not classes:
        return []
    r = road(model, image, saliency, score_fn, classes, cfg)
    rows = []
    for j, k in enumerate(classes):
        d, ins = deletion_insertion(model, image, saliency[j], score_fn, k, cfg)
        rows.append({"class": k, **{m: float(r[m][j]) for m in ("road_morf", "road_lerf", "road_combined")},
                     "deletion_auc": d, "insertion_auc": ins})
    return rows


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The mean of every metric over (image, class) pairs, with the counts behind it."""
    rows = list(rows)
    pairs = [c for row in rows for c in row["classes"]]
    out: dict[str, Any] = {m: (float(np.mean([c[m] for c in pairs])) if pairs else None) for m in METRICS}
    out.update(images=len({row["image_id"] for row in rows}), pairs=len(pairs))
    return out


class RowStore:
    """``path``: one JSON line per image, ``{"image_id", "config", "classes": [...]}``, rewritten
    atomically after every image. Rows made with another :class:`FaithfulnessConfig` are dropped."""

    def __init__(self, path: str | Path, config: FaithfulnessConfig) -> None:
        self.path = Path(path)
        self.config = config.to_dict()
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("config") == self.config and "image_id" in row:
                    self.rows[str(row["image_id"])] = row

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.rows

    def add(self, image_id: str, classes: list[dict[str, Any]]) -> None:
        self.rows[image_id] = {"image_id": image_id, "config": self.config, "classes": classes}
        text = "".join(json.dumps(r) + "\n" for r in self.rows.values())
        atomic_write_bytes(self.path, text.encode())
