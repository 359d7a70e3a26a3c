"""Token evidence: the dense token-labeling head of the ``*_tklb`` models.

Token labeling (Jiang et al., NeurIPS 2021) trains ``tklb_aux_head`` to classify every
final-stage location, so its per-location logits are a class map the model was trained to
produce, rather than a by-product of average pooling as in CAM.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...models.slots import SlotOutput
from .base import EvidenceMethod, register_evidence, resize_maps

__all__ = ["TokenEvidence"]


@register_evidence("token")
class TokenEvidence(EvidenceMethod):
    """Per-location logits of the token-labeling head, ReLU'd and upsampled to the input size."""

    def logit_maps(self, model: nn.Module, out: SlotOutput, classes: list[int] | None = None) -> torch.Tensor:
        """``(B, K', h, w)`` dense target-class logits of the token head on the final grid."""
        if out.token_logits is None:
            raise ValueError(
                f"the 'token' evidence needs a token-labeling model (a *_tklb variant with "
                f"tklb_aux_head); {type(model).__name__} with token_labeling="
                f"{getattr(model, 'token_labeling', False)} has none: use 'cam' or 'slot-cam'")
        b, _, h, w = out.features.shape
        dense = out.token_logits.float().transpose(1, 2).reshape(b, -1, h, w)
        return self.select_targets(dense, classes)

    def raw(self, model: nn.Module, out: SlotOutput, classes: list[int] | None,
            size: tuple[int, int]) -> torch.Tensor:
        return resize_maps(self.logit_maps(model, out, classes).clamp_min(0), size)
