"""The figures' one door to the predictor's masks and evidence: a
:class:`~glmix_vis.wsss.recipe.MaskRecipe` (``"slot-cam+slot-walk+crf"``) becomes the
predictor's arguments here and nowhere else, so that a change of how the predictor takes a
recipe is a change to this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..predictor import SlotPredictor
    from ..wsss.recipe import MaskRecipe

__all__ = ["Augment", "recipe_evidence", "recipe_mask", "recipe_threshold"]


@dataclass(frozen=True)
class Augment:
    """Test-time augmentation (eval's ``--scales`` / ``--flip``)."""

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False


def recipe_threshold(predictor: SlotPredictor, recipe: MaskRecipe, bg_threshold: float | None) -> float:
    """The background threshold of ``recipe``'s mask: ``bg_threshold``, else the checkpoint's tuned
    value for its method (else IRN's 0.15)."""
    return predictor.info.bg_threshold(recipe.method) if bg_threshold is None else bg_threshold


def recipe_mask(predictor: SlotPredictor, recipe: MaskRecipe, labels: np.ndarray | None, threshold: float,
                tta: Augment = Augment()) -> np.ndarray:
    """``(H, W)`` uint8 mask of ``recipe`` on the predictor's image (``labels``: the classes it may
    use, ``None``: the head's), the mask ``glmix-wsss eval`` writes with the same settings."""
    return predictor.pseudo_mask(recipe.method, labels, bg_threshold=threshold, crf=recipe.crf,
                                 refinement=recipe.refinement, scales=tta.scales, flip=tta.flip)


def recipe_evidence(predictor: SlotPredictor, recipe: MaskRecipe, labels: np.ndarray | None,
                    tta: Augment = Augment()) -> np.ndarray:
    """``(K, H, W)`` evidence of ``recipe``'s method, refined by its refinement: what its mask
    thresholds (the CRF, if the recipe has it, makes a mask and is left out here)."""
    scores = predictor.evidence(recipe.method, scales=tta.scales, flip=tta.flip)
    if recipe.refinement == "none":
        return scores
    from ..wsss.refinement import get_refinement

    chosen = predictor.predicted_labels() if labels is None else labels
    return get_refinement(recipe.refinement)(scores, chosen, image=predictor.image, slots=predictor.output)
