"""Multi-scale and flip test-time augmentation of class evidence (IRN's ``make_cam`` protocol).

The image batch is resized to every scale, run with and without a horizontal flip, and each
run's unnormalised evidence is computed directly at the original size (flipped maps flipped
back). The maps are averaged and then normalised once per class, as IRN sums its ReLU'd CAMs
over scales and flips before dividing by the maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import EvidenceMethod, normalize_per_class

__all__ = ["DEFAULT_SCALES", "MIN_SIDE", "augments", "scaled_size", "tta_evidence"]

#: IRN's CAM scales (Ahn et al., CVPR 2019, ``cam_scales``), each with a flipped copy.
DEFAULT_SCALES: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
#: Smallest side a scaled image may have: GLNet's total stride, one final-grid cell.
MIN_SIDE = 32


def augments(scales: Sequence[float], flip: bool) -> bool:
    """Whether ``scales``/``flip`` ask for any augmentation (anything but the image once, as it is)."""
    return bool(flip) or tuple(float(s) for s in scales) != (1.0,)


def scaled_size(size: Sequence[int], scale: float) -> tuple[int, int]:
    """``round(side * scale)`` for both sides, at least :data:`MIN_SIDE`."""
    return tuple(max(MIN_SIDE, round(int(s) * scale)) for s in size)  # type: ignore[return-value]


def tta_evidence(method: EvidenceMethod, model: nn.Module, images: torch.Tensor,
                 classes: Sequence[int] | None = None, scales: Sequence[float] = DEFAULT_SCALES,
                 flip: bool = True, normalize: bool = True, size: Sequence[int] | None = None) -> torch.Tensor:
    """``(B, K', H, W)`` evidence for ``images`` (B, 3, H, W) averaged over scales and flips.

    Args:
        method: any evidence method; its unnormalised ``compute`` maps are averaged, unless
            the method augments only part of its computation (:meth:`EvidenceMethod.augmented`;
            slot-cam by default augments its dense evidence and keeps the image's own slots).
        scales: image scale factors (bilinear resizing of the normalised image batch).
        flip: also run the horizontally flipped batch (in the same forward pass).
        normalize: divide each class map by its maximum at the end (ReLU + max, in [0, 1]); never
            for a method whose maps are probabilities (``seg``: they are averaged as they are).
        size: output ``(H, W)``, default the batch's. Pass the original image size when the
            batch was resized for the model: every method then draws its maps directly at that
            size (for slot-cam the slot edges stay sharp; no second interpolation).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
    if not scales:
        raise ValueError("scales must not be empty")
    b = images.shape[0]
    in_size = (images.shape[-2], images.shape[-1])
    size = in_size if size is None else (int(size[0]), int(size[1]))
    cls = None if classes is None else [int(c) for c in classes]
    normalize = normalize and not method.probabilities
    with torch.no_grad():
        custom = method.augmented(model, images, cls, tuple(float(s) for s in scales), bool(flip), size)
    if custom is not None:
        return normalize_per_class(custom) if normalize else custom.float()
    total: torch.Tensor | None = None
    runs = 0
    for scale in scales:
        target = scaled_size(in_size, scale)
        x = images if target == in_size else F.interpolate(images, size=target, mode="bilinear",
                                                        align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        maps = method.compute(model, x, classes, size=size).float()
        if flip:
            maps = maps[:b] + maps[b:].flip(-1)
        total = maps if total is None else total + maps
        runs += 2 if flip else 1
    assert total is not None
    total = total / runs
    return normalize_per_class(total) if normalize else total
