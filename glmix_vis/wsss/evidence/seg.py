"""``seg``: a trained segmenter's own predictions (stage 2 of WSSS) as a method like the others.

The maps are the segmenter's per-pixel class probabilities (a softmax over every class,
background included, :attr:`SlotOutput.segmentation` upsampled bilinearly to the image size), for
the foreground classes; background is the rest. They are used as they are
(:attr:`EvidenceMethod.probabilities`): not normalised per class, and the mask is their argmax
over **all** classes, with no image labels and no background threshold (the standard
segmentation protocol: a segmenter is scored on what it predicts alone). Test-time augmentation
averages the probabilities over scales and flips.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from ...models.slots import SlotOutput
from .base import EvidenceMethod, register_evidence, resize_maps

__all__ = ["SegmenterPrediction"]


@register_evidence("seg")
class SegmenterPrediction(EvidenceMethod):
    """The foreground class probabilities of a segmenter (:class:`~glmix_vis.models.segmenter.GLNetSegmenter`)."""

    probabilities: ClassVar[bool] = True

    def raw(self, model: nn.Module, out: SlotOutput, classes: list[int] | None,
            size: tuple[int, int]) -> torch.Tensor:
        if out.segmentation is None:
            raise ValueError("method seg needs a segmenter checkpoint (one written by glmix-wsss train-seg); "
                             "this model has no segmentation head")
        logits = resize_maps(out.segmentation.float(), size)
        return self.select_targets(logits.softmax(1)[:, 1:], classes)
