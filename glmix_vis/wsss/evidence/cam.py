"""CAM: the linear classifier applied at every final-stage location (Zhou et al., CVPR 2016).

GLNet's classifier is ``head(features.mean((2, 3)))``, so the head applied to each location of
the final (normed) features gives maps whose spatial mean is exactly the model's logit (with
``bias=True``, the default). The maps are ReLU'd on the final grid and upsampled bilinearly to
the input size, as IRN does.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...models.slots import SlotOutput
from .base import ClassMap, EvidenceMethod, apply_linear, linear_head, register_evidence, resize_maps

__all__ = ["CAM"]


@register_evidence("cam")
class CAM(EvidenceMethod):
    """Class activation maps of the linear head.

    Args:
        class_map, class_reduce: see :class:`EvidenceMethod`.
        bias: add the head's bias at every location (then the maps average to the logits).
            Classic CAM has no bias term; the bias only shifts a map before the ReLU.
    """

    def __init__(self, class_map: ClassMap | None = None, class_reduce: str = "max", bias: bool = True) -> None:
        super().__init__(class_map, class_reduce)
        self.bias = bias

    def logit_maps(self, model: nn.Module, out: SlotOutput, classes: list[int] | None = None) -> torch.Tensor:
        """``(B, K', h, w)`` dense target-class logits on the final grid (before any ReLU)."""
        head = linear_head(model)
        dense = apply_linear(out.features.permute(0, 2, 3, 1), head, self.bias)  # (B, h, w, N)
        return self.select_targets(dense.permute(0, 3, 1, 2), classes)

    def grid_maps(self, model: nn.Module, out: SlotOutput, classes: list[int] | None = None) -> torch.Tensor:
        """ReLU'd maps on the final grid."""
        return self.logit_maps(model, out, classes).clamp_min(0)

    def raw(self, model: nn.Module, out: SlotOutput, classes: list[int] | None,
            size: tuple[int, int]) -> torch.Tensor:
        return resize_maps(self.grid_maps(model, out, classes), size)
