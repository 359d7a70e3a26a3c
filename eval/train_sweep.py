"""The loop the tuning scripts share: one forward pass per image, many variants, eval's sweep for each.

``sweep_variants`` runs the network once per image of a split, asks ``variant_scores`` for the
``(K, H, W)`` evidence of every variant from that pass, and accumulates each variant's threshold-sweep
confusion matrices as ``glmix-wsss eval --sweep`` does (no CRF, the images' ground-truth labels).
Used by ``tune_slot_cam.py`` and ``tune_slot_walk.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from glmix_vis.data.base import SegmentationDataset
from glmix_vis.loading import ModelInfo
from glmix_vis.models.slots import SlotOutput, run_slots
from glmix_vis.preprocess import image_to_batch
from glmix_vis.wsss.masks import ThresholdSweep, best_threshold, sweep_confusions

#: (image, batch, forward pass, labels) -> {variant name: (K, H, W) evidence}
VariantScores = Callable[[np.ndarray, torch.Tensor, SlotOutput, np.ndarray], dict[str, np.ndarray]]


def sweep_variants(dataset: SegmentationDataset, model: nn.Module, info: ModelInfo, images: int,
                   thresholds: Sequence[float], variant_scores: VariantScores) -> dict[str, ThresholdSweep]:
    """Each variant's sweep over the first ``images`` images of ``dataset`` (its best threshold and mIoU)."""
    c = len(dataset.class_names)
    conf: dict[str, np.ndarray] = {}
    for i in tqdm(range(min(images, len(dataset))), desc="images", file=sys.stderr):
        image, gt, labels = dataset.load_image(i), dataset.load_mask(i), dataset.image_labels(i)
        x = image_to_batch(image, info.mean, info.std, device="cpu")
        slots = run_slots(model, x)
        for name, scores in variant_scores(image, x, slots, labels).items():
            conf.setdefault(name, np.zeros((len(thresholds), c, c), np.int64))
            conf[name] += sweep_confusions(scores, gt, thresholds, labels)
    return {name: best_threshold(m, list(thresholds)) for name, m in conf.items()}
